"use strict";
// The ws transport: callstream connects once per call (query parameters
// call_sid, stream_sid, account_sid); the same messages, one per text frame.

const path = require("node:path");
const { createRequire } = require("node:module");
const { Session } = require("./core");

/** callstream's bound on a line or text frame. */
const MAX_FRAME = 16 * 1024 * 1024;

/**
 * The `ws` package: this package's own (a copy installed with npm, or
 * `npm install` run in sdk/node), else the application's (a package linked
 * by path finds nothing of its user's: npm does not install a linked
 * folder's dependencies, so the user may `npm install ws` beside it).
 */
function loadWs() {
  try {
    return require("ws");
  } catch (err) {
    if (!err || err.code !== "MODULE_NOT_FOUND") throw err;
  }
  const bases = [require.main && require.main.filename, path.join(process.cwd(), "noop.js")];
  for (const base of bases) {
    if (!base) continue;
    try {
      return createRequire(base)("ws");
    } catch (err) {
      if (!err || err.code !== "MODULE_NOT_FOUND") throw err;
    }
  }
  throw new Error(
    "the ws transport needs the ws package: install this package with `npm install --install-links /path/to/sdk/node` " +
      "(or run `npm install` in sdk/node, or `npm install ws@8.23.0` in your application)",
  );
}

function serveConnection(BotClass, socket, request) {
  const query = new URL(request.url || "/", "ws://bot").searchParams;
  const facts = {
    call_sid: query.get("call_sid") ?? undefined,
    stream_sid: query.get("stream_sid") ?? undefined,
    account_sid: query.get("account_sid") ?? undefined,
  };
  let session;
  try {
    session = new Session(BotClass, {
      write: (line) => {
        if (socket.readyState === socket.OPEN) socket.send(line);
      },
      facts,
      label: `ws ${request.socket.remoteAddress}:${request.socket.remotePort}`,
    });
  } catch (err) {
    process.stderr.write(`callstream-bot: the bot could not start: ${err && err.stack ? err.stack : err}\n`);
    socket.close(1011, "the bot could not start");
    return;
  }
  socket.on("message", (data, isBinary) => {
    if (isBinary) {
      session.warn("ignored a binary frame: the bridge speaks text frames");
      return;
    }
    session.feed(data.toString("utf8"));
  });
  socket.on("error", (err) => session.warn(`websocket error: ${err.message}`));
  socket.on("close", () => {
    session.closed = true;
    session.inputEnded("connection closed");
  });
  session.finished.then(() => {
    if (socket.readyState === socket.OPEN) socket.close(1000);
    session.closed = true;
  });
}

/**
 * Serves the ws transport: one new Bot per WebSocket connection. Resolves
 * with the listening `ws` WebSocketServer (`server.address().port`;
 * `server.close()` stops listening).
 */
function serveWs(BotClass, { host = "127.0.0.1", port = 0 } = {}) {
  let WebSocketServer;
  try {
    ({ WebSocketServer } = loadWs());
  } catch (err) {
    return Promise.reject(err);
  }
  return new Promise((resolve, reject) => {
    const server = new WebSocketServer({ host, port, maxPayload: MAX_FRAME });
    server.once("error", reject);
    server.once("listening", () => {
      server.off("error", reject);
      server.on("error", (err) => process.stderr.write(`callstream-bot: ws server error: ${err.message}\n`));
      resolve(server);
    });
    server.on("connection", (socket, request) => serveConnection(BotClass, socket, request));
  });
}

module.exports = { serveWs, MAX_FRAME };
