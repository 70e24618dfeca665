"use strict";
// The ws transport, as callstream uses it: one WebSocket per call, the call's
// facts in the query, one message per text frame.
const test = require("node:test");
const assert = require("node:assert/strict");
const WebSocket = require("ws");
const cs = require("..");
const bots = require("./fixtures/bots");
const { START, STOP, METHODS_OUT, ALL_IN, ALL_OUT, line, debug, spawnBot } = require("./helpers");

const QUERY = "?call_sid=CAquery&stream_sid=MZquery&account_sid=ACquery";

/** A client like callstream's: { frames (text), send(msg), until(test), closed: Promise<code> }. */
function connect(url) {
  const ws = new WebSocket(url);
  const c = { ws, frames: [], waiters: [] };
  const check = () => { c.waiters = c.waiters.filter((w) => !w()); };
  ws.on("message", (data, isBinary) => {
    c.frames.push(isBinary ? data : data.toString("utf8"));
    check();
  });
  c.closed = new Promise((resolve) => ws.on("close", (code) => { c.closeCode = code; check(); resolve(code); }));
  c.open = new Promise((resolve, reject) => { ws.on("open", resolve); ws.on("error", reject); });
  c.send = (...msgs) => msgs.forEach((m) => ws.send(line(m)));
  c.until = (cond, ms = 5000) =>
    new Promise((resolve, reject) => {
      if (cond()) return resolve();
      const timer = setTimeout(() => reject(new Error(`timed out; frames: ${c.frames.join("\n")}`)), ms);
      c.waiters.push(() => {
        if (!cond()) return false;
        clearTimeout(timer);
        resolve();
        return true;
      });
      return undefined;
    });
  return c;
}

/** serveWs on a free port for the test; the url to connect to. */
async function serve(t, BotClass) {
  const server = await cs.serveWs(BotClass, { host: "127.0.0.1", port: 0 });
  t.after(() => {
    for (const client of server.clients) client.terminate();
    server.close();
  });
  return `ws://127.0.0.1:${server.address().port}/`;
}

/** Captures what this process writes to stderr while `fn` runs. */
async function stderrOf(fn) {
  const write = process.stderr.write;
  let text = "";
  process.stderr.write = (chunk, ...rest) => {
    text += chunk;
    return true;
  };
  try {
    await fn();
  } finally {
    process.stderr.write = write;
  }
  return text;
}

test("ws: config is the first frame, every call method one text frame, exactly", async (t) => {
  const c = connect(await serve(t, bots.Methods));
  await c.open;
  c.send(START);
  await c.until(() => c.frames.length === METHODS_OUT.length);
  assert.deepEqual(c.frames, METHODS_OUT);
  c.send(STOP);
  assert.equal(await c.closed, 1000); // the bot closes once the call is over
});

test("ws: every handler is dispatched; after stop the socket is closed", async (t) => {
  const c = connect(await serve(t, bots.Recorder));
  await c.open;
  c.send(...ALL_IN);
  assert.equal(await c.closed, 1000);
  assert.deepEqual(c.frames, ALL_OUT);
});

test("ws: the call's facts come from the query until start", async (t) => {
  const c = connect((await serve(t, bots.Facts)) + QUERY);
  await c.open;
  c.send({ type: "early" }, START, STOP);
  await c.closed;
  assert.deepEqual(c.frames, [
    debug("before start", "CAquery", "MZquery", "ACquery", null),
    debug("after start", START.call_sid, START.stream_sid, START.account_sid),
  ]);
});

test("ws: one Bot per connection, calls at once do not mix", async (t) => {
  const url = await serve(t, bots.Echo);
  const a = connect(url);
  const b = connect(url);
  await Promise.all([a.open, b.open]);
  const turn = (pcm) => ({ type: "utterance", rate: 8000, pcm, duration_ms: 20 });
  a.send(START, turn("AQA="));
  b.send(START, turn("AgA="), turn("AwA="));
  a.send(turn("BAA="));
  await a.until(() => a.frames.length === 4);
  await b.until(() => b.frames.length === 4);
  assert.deepEqual(a.frames, [
    '{"type":"play","rate":8000,"pcm":"AQA="}', '{"type":"mark","name":"echo-1"}',
    '{"type":"play","rate":8000,"pcm":"BAA="}', '{"type":"mark","name":"echo-2"}',
  ]);
  assert.deepEqual(b.frames, [
    '{"type":"play","rate":8000,"pcm":"AgA="}', '{"type":"mark","name":"echo-1"}',
    '{"type":"play","rate":8000,"pcm":"AwA="}', '{"type":"mark","name":"echo-2"}',
  ]);
  a.send({ type: "dtmf", digit: "#" });
  await a.until(() => a.frames.length === 5);
  assert.equal(a.frames[4], '{"type":"hangup"}');
  a.send(STOP);
  b.send(STOP);
  assert.deepEqual(await Promise.all([a.closed, b.closed]), [1000, 1000]);
});

test("ws: binary frames and garbage are ignored with a log line; handler errors become log frames", async (t) => {
  const url = await serve(t, bots.Faulty);
  const c = connect(url);
  const err = await stderrOf(async () => {
    await c.open;
    c.send(START);
    c.ws.send(Buffer.from('{"type":"dtmf","digit":"8"}'), { binary: true });
    c.send("not json", "[1]", { no: "type" }, { type: "dtmf", digit: "1" }, { type: "dtmf", digit: "9" }, STOP);
    await c.closed;
  });
  assert.deepEqual(c.frames, ['{"type":"log","level":"error","message":"onDtmf raised Error: boom"}', debug("dtmf", "9")]);
  assert.match(err, /ignored a binary frame/);
  assert.match(err, /not JSON: not json/);
  assert.match(err, /not a JSON object: \[1\]/);
  assert.match(err, /without a string "type"/);
  assert.match(err, /onDtmf raised Error: boom/);
});

test("ws: async handlers in order; a socket closed without stop still gets onStop", async (t) => {
  const seen = [];
  class Tracker extends bots.Slow {
    async onStop(call, reason) {
      seen.push(["stop", reason]);
    }
    async onUtterance(call, u) {
      await new Promise((r) => setTimeout(r, u.durationMs));
      seen.push(["utterance", u.durationMs]);
    }
    onDtmf(call, digit) {
      seen.push(["dtmf", digit]);
    }
  }
  const c = connect(await serve(t, Tracker));
  await c.open;
  c.send(START, { type: "utterance", rate: 16000, pcm: "", duration_ms: 60 }, { type: "dtmf", digit: "1" }, { type: "utterance", rate: 16000, pcm: "", duration_ms: 0 });
  c.ws.close(1000);
  await c.closed;
  const deadline = Date.now() + 3000;
  while (seen.length < 4 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
  assert.deepEqual(seen, [["utterance", 60], ["dtmf", "1"], ["utterance", 0], ["stop", "connection closed"]]);
});

test("ws: --serve-ws HOST:PORT serves the bot; SIGTERM exits 0", async () => {
  const h = spawnBot("Echo", { args: ["--serve-ws", "127.0.0.1:0"] });
  await h.until(() => /listening on ws:\/\/127\.0\.0\.1:\d+\//.test(h.err));
  const port = h.err.match(/listening on ws:\/\/127\.0\.0\.1:(\d+)\//)[1];
  const c = connect(`ws://127.0.0.1:${port}/${QUERY}`);
  await c.open;
  c.send(START, { type: "utterance", rate: 16000, pcm: "AQD//w==", duration_ms: 20 }, STOP);
  assert.equal(await c.closed, 1000);
  assert.deepEqual(c.frames, ['{"type":"play","rate":16000,"pcm":"AQD//w=="}', '{"type":"mark","name":"echo-1"}']);
  h.child.kill("SIGTERM");
  const { code, signal } = await h.exited;
  assert.equal(code, 0);
  assert.equal(signal, null);
  h.end();
});

test("ws: --serve-ws with a bad address or a port in use exits non-zero with a message", async (t) => {
  const bad = spawnBot("Echo", { args: ["--serve-ws", "127.0.0.1:notaport"] });
  assert.equal((await bad.exited).code, 2);
  assert.match(bad.err, /--serve-ws wants HOST:PORT/);
  const url = await serve(t, bots.Echo);
  const taken = spawnBot("Echo", { args: [`--serve-ws=${new URL(url).host}`] });
  assert.equal((await taken.exited).code, 1);
  assert.match(taken.err, /cannot serve ws on 127\.0\.0\.1:\d+: .*EADDRINUSE/);
});
