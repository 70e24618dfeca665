"use strict";
// callstream-bot: a callstream program-bridge bot as a class of handlers
// (docs/bridge.md, protocol version 2). See README.md.

const { Bot, Call, Session, VERSION } = require("./lib/core");
const { runExec } = require("./lib/exec");
const { serveWs } = require("./lib/ws");


/** "HOST:PORT", "[::1]:PORT" or ":PORT" (127.0.0.1). */
function parseHostPort(text) {
  const at = text.lastIndexOf(":");
  const host = (at < 0 ? "" : text.slice(0, at)).replace(/^\[|\]$/g, "") || "127.0.0.1";
  const port = Number(at < 0 ? text : text.slice(at + 1));
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new Error(`--serve-ws wants HOST:PORT, not ${text}`);
  return { host, port };
}

/** The value of `--serve-ws HOST:PORT` (or `--serve-ws=HOST:PORT`) in argv, else null. */
function serveWsArg(argv) {
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === "--serve-ws") {
      if (i + 1 >= argv.length) throw new Error("--serve-ws wants HOST:PORT");
      return argv[i + 1];
    }
    if (argv[i].startsWith("--serve-ws=")) return argv[i].slice("--serve-ws=".length);
  }
  return null;
}

/**
 * Runs the bot: the exec transport (stdin/stdout) by default, or with
 * `--serve-ws HOST:PORT` in argv a WebSocket server, one Bot per connection.
 */
function run(BotClass, argv = process.argv.slice(2)) {
  let addr;
  try {
    addr = serveWsArg(argv);
  } catch (err) {
    process.stderr.write(`callstream-bot: ${err.message}\n`);
    process.exit(2);
  }
  if (addr === null) return runExec(BotClass);
  let where;
  try {
    where = parseHostPort(addr);
  } catch (err) {
    process.stderr.write(`callstream-bot: ${err.message}\n`);
    process.exit(2);
  }
  process.on("SIGTERM", () => process.exit(0));
  return serveWs(BotClass, where).then(
    (server) => {
      const { address, port } = server.address();
      const host = address.includes(":") ? `[${address}]` : address;
      process.stderr.write(`callstream-bot: listening on ws://${host}:${port}/\n`);
      return server;
    },
    (err) => {
      process.stderr.write(`callstream-bot: cannot serve ws on ${addr}: ${err.message}\n`);
      process.exit(1);
    },
  );
}

module.exports = { Bot, Call, Session, run, runExec, serveWs, parseHostPort, VERSION };
