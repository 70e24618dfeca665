"use strict";
// The exec transport, as callstream runs it: a child process, JSON lines on
// stdin and stdout, logs on stderr.
const test = require("node:test");
const assert = require("node:assert/strict");
const { START, STOP, METHODS_OUT, ALL_IN, ALL_OUT, debug, spawnBot, runExec } = require("./helpers");
const path = require("node:path");

test("every call method writes its line, exactly", async () => {
  const h = spawnBot("Methods");
  h.send(START);
  await h.until(() => h.out.length === METHODS_OUT.length);
  h.send({ type: "dtmf", digit: "5" }, STOP); // after the end: not for the bot
  assert.equal((await h.exited).code, 0);
  assert.deepEqual(h.out, METHODS_OUT);
});

test("every handler is dispatched with what the message carries", async () => {
  const r = await runExec("Recorder", ALL_IN);
  assert.deepEqual(r.out, ALL_OUT);
  assert.equal(r.code, 0);
  assert.equal(r.err, "");
});

test("a bot with no config and no handlers writes nothing; the default onError logs to stderr", async () => {
  const r = await runExec("Quiet", ALL_IN);
  assert.deepEqual(r.out, []);
  assert.equal(r.code, 0);
  assert.match(r.err, /callstream refused a transfer: bad transfer/);
  assert.match(r.err, /callstream refused a line: not JSON: hello/);
});

test("stop: onStop runs, the process exits 0 by itself, and nothing after stop is handled", async () => {
  const h = spawnBot("Recorder");
  h.send(START, STOP, { type: "dtmf", digit: "1" }); // stdin stays open
  const { code, signal } = await h.exited;
  assert.equal(code, 0, h.err);
  assert.equal(signal, null);
  assert.deepEqual(h.out.slice(1), [debug("onStop", "caller hung up", true)]);
  h.end();
});

test("end of input: what was read is handled first, onStop gets 'end of input', exit 0", async () => {
  const r = await runExec("Slow", [START, { type: "utterance", rate: 16000, pcm: "", duration_ms: 150 }, { type: "dtmf", digit: "7" }]);
  assert.equal(r.code, 0);
  assert.deepEqual(r.out, [
    debug("utterance begins", 150),
    debug("utterance ends", 150, true), // end of input came while it slept: the call is done
    debug("dtmf", "7"),
    debug("stop", "end of input"),
  ]);
});

test("SIGTERM: exit 0 at once, even mid-handler", async () => {
  const h = spawnBot("Slow");
  h.send(START, { type: "utterance", rate: 16000, pcm: "", duration_ms: 60000 });
  await h.until(() => h.out.length === 1);
  h.child.kill("SIGTERM");
  const { code, signal } = await h.exited;
  assert.equal(code, 0);
  assert.equal(signal, null);
  assert.deepEqual(h.out, [debug("utterance begins", 60000)]);
});

test("async handlers run one at a time, in the order the messages came", async () => {
  const msgs = [START];
  const want = [];
  for (const [i, ms] of [80, 5, 40, 0, 20].entries()) {
    msgs.push({ type: "utterance", rate: 16000, pcm: "", duration_ms: ms }, { type: "dtmf", digit: String(i) });
    want.push(debug("utterance begins", ms), debug("utterance ends", ms, false), debug("dtmf", String(i)));
  }
  const h = spawnBot("Slow");
  h.send(...msgs);
  await h.until(() => h.out.length === want.length);
  h.send(STOP);
  assert.equal((await h.exited).code, 0);
  assert.deepEqual(h.out, [...want, debug("stop", "caller hung up")]);
});

test("a handler still running sees call.done as soon as stop arrives", async () => {
  const r = await runExec("Slow", [START, { type: "utterance", rate: 16000, pcm: "", duration_ms: 100 }, STOP]);
  assert.deepEqual(r.out, [debug("utterance begins", 100), debug("utterance ends", 100, true), debug("stop", "caller hung up")]);
});

test("a handler that throws is logged (stderr and a log line) and the call goes on", async () => {
  const digits = ["1", "2", "3", "4"].map((digit) => ({ type: "dtmf", digit }));
  const r = await runExec("Faulty", [START, ...digits, STOP]);
  assert.deepEqual(r.out, [
    '{"type":"log","level":"error","message":"onDtmf raised Error: boom"}',
    '{"type":"log","level":"error","message":"onDtmf raised TypeError: async boom"}',
    '{"type":"log","level":"error","message":"onDtmf raised string: a string"}',
    debug("dtmf", "4"),
  ]);
  assert.equal(r.code, 0);
  assert.match(r.err, /onDtmf raised Error: boom\n.*  Error: boom\n.*    at /); // with its stack
  assert.match(r.err, /\[CA5f6c1e0e8a7b4c3d2e1f0a9b8c7d6e5f\]/); // with the call SID
});

test("garbage lines are ignored, one stderr line each", async () => {
  const garbage = ["not json at all", "[1,2]", "42", "null", '"text"', '{"no":"type"}', '{"type":3}'];
  const r = await runExec("Recorder", [START, ...garbage, "", "   ", { type: "dtmf", digit: "9" }, STOP]);
  assert.deepEqual(r.out, [ALL_OUT[0], debug("onDtmf", "9"), debug("onStop", "caller hung up", true)]);
  assert.equal(r.code, 0);
  const lines = r.err.trim().split("\n");
  assert.equal(lines.length, garbage.length, r.err);
  assert.match(lines[0], /^callstream-bot: \[CA5f\w+\] ignored a line that is not JSON: not json at all$/);
  assert.match(lines[1], /not a JSON object: \[1,2\]$/);
  assert.match(lines[6], /without a string "type": \{"type":3\}$/);
});

test("a message with a field of the wrong kind is ignored with one stderr line", async () => {
  const bad = [
    { type: "utterance", rate: 16000, pcm: "not base64!", duration_ms: 20 },
    { type: "utterance", rate: 16000, pcm: "AQD/", duration_ms: 20 },
    { type: "utterance", rate: "16000", pcm: "AQA=", duration_ms: 20 },
    { type: "audio", rate: 16000, pcm: "AQA=", seq: -1, dropped: 0 },
    { type: "dtmf", digit: 5 },
    { type: "mark", name: "m" },
    { type: "barge_in", heard_ms: 10, cleared: "m" },
    { type: "error", of: 3, reason: "x" },
  ];
  const r = await runExec("Recorder", [START, ...bad, { type: "utterance", rate: 8000, pcm: "AQA=" }, { type: "stop", reason: 7 }]);
  assert.deepEqual(r.out, [
    ALL_OUT[0],
    debug("onUtterance", "0100", true, 8000, 0, "utterance"), // duration_ms missing: from the pcm
    debug("onStop", "", true), // a stop is the end whatever its reason holds
  ]);
  assert.equal(r.code, 0);
  const lines = r.err.trim().split("\n");
  assert.equal(lines.length, bad.length, r.err);
  assert.match(lines[0], /ignored a utterance message: field "pcm" is not base64$/);
  assert.match(lines[1], /ignored a utterance message: field "pcm" is not whole 16-bit samples/);
  assert.match(lines[2], /field "rate" missing or not a positive whole number$/);
  assert.match(lines[3], /ignored a audio message: field "seq" is not a whole number$/);
  assert.match(lines[4], /ignored a dtmf message: field "digit" missing or not a string$/);
  assert.match(lines[5], /ignored a mark message: field "outcome" missing or not a string$/);
  assert.match(lines[6], /field "cleared" is not a list of mark names$/);
  assert.match(lines[7], /field "of" is not a string or null$/);
});

test("a last line without its newline is still read; CRLF is fine", async () => {
  const h = spawnBot("Recorder");
  h.child.stdin.end(`${JSON.stringify(START)}\r\n{"type":"dtmf","digit":"0"}`);
  const { code } = await h.exited;
  assert.equal(code, 0);
  assert.deepEqual(h.out.slice(1), [debug("onDtmf", "0"), debug("onStop", "end of input", true)]);
});

test("a long line (a 60 s turn at 24 kHz) comes through whole", async () => {
  const pcm = Buffer.alloc(24000 * 2 * 60);
  for (let i = 0; i < pcm.length; i++) pcm[i] = (i * 7) & 0xff;
  const r = await runExec("Echo", [START, { type: "utterance", rate: 24000, pcm: pcm.toString("base64"), duration_ms: 60000 }]);
  assert.equal(r.code, 0);
  assert.equal(r.out.length, 2);
  assert.equal(r.out[0], JSON.stringify({ type: "play", rate: 24000, pcm: pcm.toString("base64") }));
  assert.equal(r.out[1], '{"type":"mark","name":"echo-1"}');
});

test("after hangup nothing but stop reaches the bot", async () => {
  const u = { type: "utterance", rate: 8000, pcm: "AQA=", duration_ms: 20 };
  const r = await runExec("Echo", [START, u, { type: "dtmf", digit: "#" }, u, { type: "dtmf", digit: "#" }]);
  assert.deepEqual(r.out, ['{"type":"play","rate":8000,"pcm":"AQA="}', '{"type":"mark","name":"echo-1"}', '{"type":"hangup"}']);
  assert.equal(r.code, 0);
});

test("config: the first line, or refused after anything else was written", async () => {
  const r = await runExec("LateConfig", [START, { type: "dtmf", digit: "1" }, STOP]);
  assert.deepEqual(r.out, [
    '{"type":"config","rate":24000,"barge_in":false}',
    debug("refused", "config is only taken as the first line: something was sent already"),
  ]);
});

test("the config line is written before anything is read", async () => {
  const h = spawnBot("Methods");
  await h.until(() => h.out.length === 1); // nothing sent yet
  assert.equal(h.out[0], METHODS_OUT[0]);
  h.end();
  assert.equal((await h.exited).code, 0);
});

test("heard and unheard follow the marks of say()", async () => {
  const r = await runExec("Talker", [
    START,
    { type: "mark", name: "r1", outcome: "played" },
    { type: "barge_in", heard_ms: 300, cleared: ["r2", "r3", "reply-4"] },
    { type: "mark", name: "r2", outcome: "cleared" },
    { type: "mark", name: "r3", outcome: "cleared" },
    { type: "mark", name: "reply-4", outcome: "cleared" },
    STOP,
  ]);
  const said = r.out.filter((l) => !l.includes('"debug"'));
  assert.equal(said.length, 3 * 3 + 2); // reply, play, mark each; the last without text
  assert.equal(said[0], '{"type":"reply","text":"One."}');
  assert.equal(said[2], '{"type":"mark","name":"r1"}');
  assert.equal(said[10], '{"type":"mark","name":"reply-4"}');
  assert.equal(r.out[9], debug("pending", ["One.", "Two.", "Three."]));
  assert.deepEqual(r.out.slice(said.length + 1), [
    debug("mark", "r1", true, ["One."]),
    debug("barge_in", ["Two.", "Three."], []),
    debug("mark", "r2", false, ["One."]),
    debug("mark", "r3", false, ["One."]),
    debug("mark", "reply-4", false, ["One."]),
    debug("stop", ["One."], ["Two.", "Three."], []),
  ]);
});

test("call facts come from CALLSTREAM_* before start, from start after", async () => {
  const env = { CALLSTREAM_CALL_SID: "CAenv", CALLSTREAM_STREAM_SID: "MZenv", CALLSTREAM_ACCOUNT_SID: "ACenv" };
  const r = await runExec("Facts", [{ type: "early" }, START], { env });
  assert.deepEqual(r.out, [
    debug("before start", "CAenv", "MZenv", "ACenv", null),
    debug("after start", START.call_sid, START.stream_sid, START.account_sid),
  ]);
});

test("console.log goes to stderr: stdout carries only protocol lines", async () => {
  const r = await runExec("Chatty", [START, STOP]);
  assert.deepEqual(r.out, ['{"type":"reply","text":"hi"}']);
  assert.match(r.err, /console\.log goes to stderr\nso does console\.info/);
});

test("the exec transport needs no package: it runs where ws cannot be found", async () => {
  const noWs = ["-r", path.join(__dirname, "fixtures", "no-ws.js")];
  const r = await runExec("Echo", [START, { type: "utterance", rate: 8000, pcm: "AQA=", duration_ms: 20 }, STOP], { node: noWs });
  assert.equal(r.code, 0, r.err);
  assert.deepEqual(r.out, ['{"type":"play","rate":8000,"pcm":"AQA="}', '{"type":"mark","name":"echo-1"}']);
  // --serve-ws there fails with a message that says what to install.
  const h = spawnBot("Echo", { args: ["--serve-ws", "127.0.0.1:0"], node: noWs });
  const { code } = await h.exited;
  assert.equal(code, 1);
  assert.match(h.err, /the ws transport needs the ws package/);
});

test("a refused transfer reaches the bot, and the call goes on", async () => {
  const h = spawnBot("Transferrer");
  h.send(START, { type: "dtmf", digit: "1" });
  await h.until(() => h.out.length === 1);
  h.send({ type: "error", of: "transfer", reason: "bad transfer: not E.164" }, { type: "dtmf", digit: "9" });
  await h.until(() => h.out.length === 3);
  h.send(STOP);
  assert.equal((await h.exited).code, 0, h.err);
  assert.deepEqual(h.out, [
    JSON.stringify({ type: "transfer", to: "12" }),
    debug("refused", "transfer", "bad transfer: not E.164", false),
    debug("still here", false),
  ]);
});
