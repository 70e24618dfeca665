"use strict";
// Test helpers: a bot of fixtures/bots.js as a child process (the exec
// transport), or in this process behind serveWs with a ws client.
const { spawn } = require("node:child_process");
const path = require("node:path");

const RUN = path.join(__dirname, "fixtures", "run.js");

/** callstream's side of the messages the tests send. */
const START = {
  type: "start",
  version: 2,
  call_sid: "CA5f6c1e0e8a7b4c3d2e1f0a9b8c7d6e5f",
  stream_sid: "MZ0a1b2c3d4e5f60718293a4b5c6d7e8f9",
  account_sid: "AC00112233445566778899aabbccddeeff",
  parameters: { call_sid: "CA5f6c1e0e8a7b4c3d2e1f0a9b8c7d6e5f", from: "+15551230000", to: "+15559870000", direction: "inbound", caller_name: "", forwarded_from: "" },
};
const line = (msg) => (typeof msg === "string" ? msg : JSON.stringify(msg));
const debug = (...what) => JSON.stringify({ type: "log", level: "debug", message: JSON.stringify(what) });

const STOP = { type: "stop", reason: "caller hung up" };

// What Methods writes: every call method, field for field.
const METHODS_OUT = [
  '{"type":"config","rate":8000,"audio":true,"version":2}',
  '{"type":"play","rate":22050,"pcm":"AQD//w=="}',
  '{"type":"play","rate":16000,"pcm":"AQD//w=="}',
  '{"type":"play","wav":"/tmp/answer.wav"}',
  '{"type":"mark","name":"m-1"}',
  '{"type":"reply","text":"Hello there."}',
  '{"type":"play","rate":24000,"pcm":"AQA="}',
  '{"type":"mark","name":"greeting"}',
  '{"type":"play","rate":16000,"pcm":"AgA="}',
  '{"type":"mark","name":"reply-2"}',
  debug("say returned", "greeting", "reply-2"),
  '{"type":"clear"}',
  '{"type":"send_digits","digits":"12w#"}',
  '{"type":"reply","text":"The time is 3:42 PM."}',
  '{"type":"transcript","text":"what time is it"}',
  '{"type":"log","level":"info","message":"plain"}',
  '{"type":"log","level":"warn","message":"careful"}',
  debug("config too late", "config is only taken as the first line: something was sent already"),
  debug("refused", "TypeError"),
  debug("refused", "RangeError"),
  debug("refused", "TypeError"),
  '{"type":"from_the_future","x":1}',
  debug("done before", false),
  '{"type":"transfer","to":"+14155550100","caller_id":"+14155550199","timeout":20}',
  debug("done after transfer", true),
  '{"type":"transfer","to":"sip:agent@pbx.example.com"}',
  '{"type":"end","say":"Goodbye!","voice":"Polly.Joanna-Neural","language":"en-US"}',
  '{"type":"end","say":"Bye"}',
  '{"type":"end"}',
  '{"type":"hangup"}',
];

// Every kind of message callstream sends, and what Recorder makes of it.
const ALL_IN = [
  START,
  { type: "speech_started" },
  { type: "utterance", rate: 16000, pcm: "AQD//w==", duration_ms: 1840 },
  { type: "audio", rate: 16000, pcm: "AQA=", seq: 0, dropped: 0 },
  { type: "audio", rate: 16000, pcm: "AgA=", seq: 3, dropped: 2 },
  { type: "dtmf", digit: "5" },
  { type: "mark", name: "reply-1", outcome: "played" },
  { type: "barge_in", heard_ms: 640, cleared: ["reply-2"] },
  { type: "mark", name: "reply-2", outcome: "cleared" },
  { type: "error", of: "transfer", reason: 'bad transfer: <Dial><Number> "12" is not an E.164 number' },
  { type: "error", of: null, reason: "not JSON: hello" },
  { type: "later_type", x: [1, 2] },
  STOP,
];
const ALL_OUT = [
  debug("onStart", START.call_sid, START.stream_sid, START.account_sid, START.parameters, 2, "start"),
  debug("onSpeechStarted"),
  debug("onUtterance", "0100ffff", true, 16000, 1840, "utterance"),
  debug("onAudio", "0100", 16000, 0, 0),
  debug("onAudio", "0200", 16000, 3, 2),
  debug("onDtmf", "5"),
  debug("onMark", "reply-1", true),
  debug("onBargeIn", ["reply-2"], 640, "barge_in"),
  debug("onMark", "reply-2", false),
  debug("onError", "transfer", 'bad transfer: <Dial><Number> "12" is not an E.164 number'),
  debug("onError", null, "not JSON: hello"),
  debug("onMessage", { type: "later_type", x: [1, 2] }),
  debug("onStop", "caller hung up", true),
];

/**
 * Starts `node run.js BOT ...args`. Returns { child, out (lines so far), err
 * (text so far), send(msg), end(), waitFor(n lines), exited: Promise<{code, signal}> }.
 */
function spawnBot(bot, { args = [], env = {}, node = [] } = {}) {
  const child = spawn(process.execPath, [...node, RUN, bot, ...args], {
    env: { ...process.env, ...env },
    stdio: ["pipe", "pipe", "pipe"],
  });
  const h = { child, out: [], err: "", waiters: [] };
  let partial = "";
  child.stdout.setEncoding("utf8");
  child.stdout.on("data", (text) => {
    const parts = (partial + text).split("\n");
    partial = parts.pop();
    h.out.push(...parts);
    h.waiters = h.waiters.filter((w) => !w());
  });
  child.stderr.setEncoding("utf8");
  child.stderr.on("data", (text) => {
    h.err += text;
    h.waiters = h.waiters.filter((w) => !w());
  });
  child.stdin.on("error", () => {}); // the bot may exit before reading everything
  h.exited = new Promise((resolve) => child.on("close", (code, signal) => {
    if (partial) h.out.push(partial);
    resolve({ code, signal });
  }));
  h.send = (...msgs) => child.stdin.write(msgs.map((m) => `${line(m)}\n`).join(""));
  h.end = () => child.stdin.end();
  /** Resolves once `test()` holds (checked on every output), or rejects after `ms`. */
  h.until = (test, ms = 5000) =>
    new Promise((resolve, reject) => {
      if (test()) return resolve();
      const timer = setTimeout(() => reject(new Error(`timed out; stdout: ${h.out.join("\n")}\nstderr: ${h.err}`)), ms);
      h.waiters.push(() => {
        if (!test()) return false;
        clearTimeout(timer);
        resolve();
        return true;
      });
      return undefined;
    });
  return h;
}

/** Runs a bot over the exec transport with these input lines, then end of input. */
async function runExec(bot, msgs, opts = {}) {
  const h = spawnBot(bot, opts);
  h.send(...msgs);
  h.end();
  const { code, signal } = await h.exited;
  return { code, signal, out: h.out, err: h.err };
}

module.exports = { START, STOP, METHODS_OUT, ALL_IN, ALL_OUT, line, debug, spawnBot, runExec, RUN };
