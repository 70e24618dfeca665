#!/usr/bin/env node
// Echo bot for callstream's program bridge (docs/bridge.md): plays each caller
// turn back at the rate it came in, marks it, hangs up on DTMF '#'. No deps.
const readline = require("node:readline");
const send = (msg) => process.stdout.write(JSON.stringify(msg) + "\n");
let turns = 0;
let done = false; // readline still hands over lines it had buffered: ignore them
readline.createInterface({ input: process.stdin }).on("line", (line) => {
  let msg;
  try { msg = JSON.parse(line); } catch { return; } // not JSON: ignore it
  if (done || msg === null || typeof msg !== "object") return;
  if (msg.type === "utterance") {
    send({ type: "play", rate: msg.rate, pcm: msg.pcm });
    send({ type: "mark", name: `echo-${++turns}` });
  } else if (msg.type === "dtmf" && msg.digit === "#") {
    done = true;
    process.stdout.write(JSON.stringify({ type: "hangup" }) + "\n", () => process.exit(0));
  } else if (msg.type === "stop") {
    done = true;
    process.exit(0);
  }
}).on("close", () => done || process.exit(0)); // end of input: the call is gone
