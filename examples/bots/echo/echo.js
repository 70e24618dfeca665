#!/usr/bin/env node
// Echo bot for callstream's program bridge (docs/bridge.md), on the
// callstream-bot package (sdk/node, required by path: no npm install for the
// exec transport): plays each caller turn back at the rate it came in, marks
// it echo-N, hangs up on DTMF '#'. `--serve-ws HOST:PORT` serves the ws
// transport instead (that one needs `npm install` in sdk/node, for ws).
const cs = require("../../../sdk/node");

class Echo extends cs.Bot {
  turns = 0;

  onUtterance(call, u) {
    call.play(u.pcm, u.rate);
    call.mark(`echo-${++this.turns}`);
  }

  onDtmf(call, digit) {
    if (digit === "#") call.hangup();
  }
}

if (require.main === module) cs.run(Echo);
module.exports = Echo;
