"use strict";
// The README's bot runs as it is written, over the exec transport.
const test = require("node:test");
const assert = require("node:assert/strict");
const { spawnSync } = require("node:child_process");
const fs = require("node:fs");
const os = require("node:os");
const path = require("node:path");
const { START, STOP, line } = require("./helpers");

test("README: the whole bot runs and answers as described", (t) => {
  const readme = fs.readFileSync(path.join(__dirname, "..", "README.md"), "utf8");
  const code = readme.match(/## A whole bot\n\n```js\n([\s\S]*?)```/)[1];
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "callstream-bot-readme-"));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  fs.mkdirSync(path.join(dir, "node_modules"));
  fs.symlinkSync(path.join(__dirname, ".."), path.join(dir, "node_modules", "callstream-bot"));
  fs.writeFileSync(path.join(dir, "parrot.js"), code);
  const input = [
    START,
    { type: "mark", name: "reply-1", outcome: "played" },
    { type: "utterance", rate: 16000, pcm: "AQD//w==", duration_ms: 1200 },
    { type: "barge_in", heard_ms: 300, cleared: ["reply-2"] },
    { type: "mark", name: "reply-2", outcome: "cleared" },
    { type: "dtmf", digit: "#" },
    STOP,
  ].map((m) => `${line(m)}\n`).join("");
  const r = spawnSync(process.execPath, [path.join(dir, "parrot.js")], { input, encoding: "utf8", timeout: 10000 });
  assert.equal(r.status, 0, r.stderr);
  const out = r.stdout.trim().split("\n").map((l) => JSON.parse(l));
  assert.deepEqual(out.map((m) => m.type), ["config", "reply", "play", "mark", "transcript", "reply", "play", "mark", "log", "end"]);
  assert.deepEqual(out[0], { type: "config", rate: 16000 });
  assert.equal(Buffer.from(out[2].pcm, "base64").length, 9600); // 300 ms at 16 kHz
  assert.deepEqual(out[6], { type: "play", rate: 16000, pcm: "AQD//w==" });
  assert.deepEqual(out[8], { type: "log", level: "info", message: "talked over after 300 ms: (the caller's own words)" });
  assert.deepEqual(out[9], { type: "end", say: "Goodbye!" });
  assert.match(r.stderr, /^CA5f\w+ ended \(caller hung up\); heard 1 replies\n$/);
});
