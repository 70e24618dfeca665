"use strict";
// The exec transport: one process per call, messages on stdin, ours on
// stdout, one JSON object a line; stderr is callstream's log.

const { Console } = require("node:console");
const { Session, TAG } = require("./core");

/** Splits a byte stream into lines (as UTF-8 text), however long, calling `onLine` for each. */
function lines(input, onLine, onEnd) {
  let parts = [];
  input.on("data", (chunk) => {
    let start = 0;
    let nl;
    while ((nl = chunk.indexOf(10, start)) !== -1) {
      parts.push(chunk.subarray(start, nl));
      const line = parts.length === 1 ? parts[0] : Buffer.concat(parts);
      parts = [];
      onLine(line.toString("utf8"));
      start = nl + 1;
    }
    if (start < chunk.length) parts.push(chunk.subarray(start));
  });
  let ended = false;
  const end = (why) => {
    if (ended) return;
    ended = true;
    if (parts.length > 0) onLine(Buffer.concat(parts).toString("utf8")); // a last line without its newline
    parts = [];
    onEnd(why);
  };
  input.on("end", () => end("end of input"));
  input.on("error", (err) => end(`input failed: ${err.message}`));
}

/**
 * Runs one call on stdin/stdout and exits 0 once it is over: after `stop`
 * (and onStop), at end of input (after the messages read so far are handled)
 * and on SIGTERM. console.log and friends go to stderr: stdout is the protocol.
 */
function runExec(BotClass) {
  const input = process.stdin;
  const output = process.stdout;
  const toStderr = new Console({ stdout: process.stderr, stderr: process.stderr });
  for (const k of ["log", "info", "debug", "dir", "dirxml", "table"]) console[k] = toStderr[k].bind(toStderr);

  let exiting = false;
  const exit = () => {
    if (exiting) return;
    exiting = true;
    input.pause();
    if (session.closed || output.destroyed || output.writableLength === 0) process.exit(0);
    output.write("", () => process.exit(0)); // once every line before it is out
  };
  process.on("SIGTERM", () => process.exit(0));

  const env = process.env;
  const session = new Session(BotClass, {
    write: (line) => output.write(`${line}\n`),
    facts: {
      call_sid: env.CALLSTREAM_CALL_SID,
      stream_sid: env.CALLSTREAM_STREAM_SID,
      account_sid: env.CALLSTREAM_ACCOUNT_SID,
    },
  });
  output.on("error", (err) => {
    // callstream closed our output (EPIPE): the call is gone.
    session.closed = true;
    session.inputEnded(`output closed: ${err.code || err.message}`);
  });
  lines(input, (line) => session.feed(line), (why) => session.inputEnded(why));
  session.finished.then(exit);
  return session;
}

module.exports = { runExec, lines, TAG };
