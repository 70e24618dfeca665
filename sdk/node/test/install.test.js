"use strict";
// The package as a user gets it: packed, installed by path (copied, or
// linked) into an application of their own, and required from there.
const test = require("node:test");
const assert = require("node:assert/strict");
const { execFileSync, spawnSync } = require("node:child_process");
const fs = require("node:fs");
const os = require("node:os");
const path = require("node:path");

const PKG = path.join(__dirname, "..");
const NPM = process.platform === "win32" ? "npm.cmd" : "npm";
const QUIET = ["--no-audit", "--no-fund", "--prefer-offline", "--loglevel=error"];

function npm(args, cwd) {
  return execFileSync(NPM, args, { cwd, encoding: "utf8", stdio: ["ignore", "pipe", "pipe"], timeout: 120000 });
}

/** A fresh application folder with a package.json. */
function app(t, name) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `callstream-bot-${name}-`));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  fs.writeFileSync(path.join(dir, "package.json"), JSON.stringify({ name: `app-${name}`, version: "1.0.0", private: true }));
  return dir;
}

// From inside the application: the API is there, an exec bot answers a
// line, and (unless told otherwise) the ws transport listens.
const CHECK = `
const cs = require("callstream-bot");
const { execFileSync } = require("node:child_process");
for (const k of ["Bot", "run", "serveWs"]) if (typeof cs[k] !== "function") throw new Error("no " + k);
const bot = 'const cs = require("callstream-bot"); class B extends cs.Bot { onDtmf(c, d) { c.reply(d); } } cs.run(B);';
const out = execFileSync(process.execPath, ["-e", bot], { input: '{"type":"dtmf","digit":"7"}\\n', encoding: "utf8" });
if (out !== '{"type":"reply","text":"7"}\\n') throw new Error("exec bot wrote " + JSON.stringify(out));
console.log("exec ok");
cs.serveWs(cs.Bot, { port: 0 }).then(
  (s) => { console.log("ws ok"); s.close(); },
  (e) => { console.log("ws failed: " + e.message); },
);
`;

function check(dir) {
  const r = spawnSync(process.execPath, ["-e", CHECK], { cwd: dir, encoding: "utf8", timeout: 30000 });
  assert.equal(r.status, 0, r.stderr);
  return r.stdout;
}

let packed = null;
/** npm pack, once: { tarball, files }. */
function pack() {
  if (packed) return packed;
  const dest = fs.mkdtempSync(path.join(os.tmpdir(), "callstream-bot-pack-"));
  process.on("exit", () => fs.rmSync(dest, { recursive: true, force: true }));
  const [info] = JSON.parse(npm(["pack", "--json", "--pack-destination", dest, PKG], dest));
  packed = { tarball: path.join(dest, info.filename), files: info.files.map((f) => f.path).sort() };
  return packed;
}

test("npm pack: the package holds its code, types and README, not its tests", { timeout: 120000 }, () => {
  assert.deepEqual(pack().files, ["README.md", "index.d.ts", "index.js", "lib/core.js", "lib/exec.js", "lib/ws.js", "package.json"]);
});

test("npm install <tarball>: exec and ws transports work (ws comes along)", { timeout: 120000 }, (t) => {
  const dir = app(t, "tarball");
  npm(["install", ...QUIET, pack().tarball], dir);
  assert.equal(check(dir), "exec ok\nws ok\n");
});

test("npm install --install-links <folder>: a copy, with ws", { timeout: 120000 }, (t) => {
  const dir = app(t, "copy");
  npm(["install", ...QUIET, "--install-links", PKG], dir);
  assert.ok(!fs.lstatSync(path.join(dir, "node_modules", "callstream-bot")).isSymbolicLink());
  assert.equal(check(dir), "exec ok\nws ok\n");
});

test("npm install <folder> (a link): exec works; ws once ws is installed beside it", { timeout: 120000 }, (t) => {
  // A folder like a fresh checkout's sdk/node: no node_modules of its own.
  const src = fs.mkdtempSync(path.join(os.tmpdir(), "callstream-bot-src-"));
  t.after(() => fs.rmSync(src, { recursive: true, force: true }));
  execFileSync("tar", ["-xzf", pack().tarball, "-C", src]);
  const pkg = path.join(src, "package");
  const dir = app(t, "link");
  npm(["install", ...QUIET, "--install-links=false", pkg], dir); // npm 9.0 to 9.3 copied by default
  assert.ok(fs.lstatSync(path.join(dir, "node_modules", "callstream-bot")).isSymbolicLink());
  // npm does not install a linked folder's dependencies: no ws yet.
  assert.match(check(dir), /^exec ok\nws failed: the ws transport needs the ws package/);
  npm(["install", ...QUIET, "ws@8.23.0"], dir);
  assert.equal(check(dir), "exec ok\nws ok\n");
});
