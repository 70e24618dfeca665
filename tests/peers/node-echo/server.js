// A Media Streams server written the way Twilio's Node examples are: the `ws`
// library, JSON messages, the media echoed back and a mark every 25 frames.
// It is a peer callstream did not write, for `callstream sim` and
// `callstream check` (see tests/peers/run.sh). Usage: node server.js [PORT]
// (0 picks a free port); it prints "listening PORT" once ready.
'use strict';
const http = require('http');
const { WebSocketServer } = require('ws');

const STREAM_PATHS = new Set(['/ws/twilio-media', '/ws/twilio-media/']);

function twiml(host) {
  return '<?xml version="1.0" encoding="UTF-8"?><Response><Connect>' +
    `<Stream url="wss://${host}/ws/twilio-media"/></Connect></Response>`;
}

const server = http.createServer((req, res) => {
  const path = req.url.split('?')[0].replace(/\/$/, '');
  req.resume();
  req.on('end', () => {
    if (path === '/webhook/incoming_call_preview' || path === '/webhook/incoming_call') {
      res.writeHead(200, { 'Content-Type': 'application/xml; charset=utf-8' });
      res.end(twiml(req.headers.host));
    } else if (path.startsWith('/webhook/')) {
      res.writeHead(204);
      res.end();
    } else {
      res.writeHead(404);
      res.end();
    }
  });
});

// Echo `audio.twilio.com` when offered, otherwise no subprotocol.
const wss = new WebSocketServer({
  noServer: true,
  handleProtocols: (protocols) => (protocols.has('audio.twilio.com') ? 'audio.twilio.com' : false),
});

server.on('upgrade', (req, socket, head) => {
  if (!STREAM_PATHS.has(req.url.split('?')[0])) {
    socket.end('HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n');
    return;
  }
  wss.handleUpgrade(req, socket, head, (ws) => wss.emit('connection', ws, req));
});

wss.on('connection', (ws) => {
  let streamSid = null;
  let frames = 0;
  ws.on('message', (data, isBinary) => {
    if (isBinary) return;
    let msg;
    try {
      msg = JSON.parse(data.toString());
    } catch (e) {
      return;
    }
    switch (msg.event) {
      case 'start':
        streamSid = msg.start.streamSid;
        break;
      case 'media':
        if (!streamSid) return;
        ws.send(JSON.stringify({ event: 'media', streamSid, media: { payload: msg.media.payload } }));
        frames += 1;
        if (frames % 25 === 0) {
          ws.send(JSON.stringify({ event: 'mark', streamSid, mark: { name: `frame-${frames}` } }));
        }
        break;
      case 'stop':
        ws.close(1000);
        break;
      default:
        break;
    }
  });
});

const port = Number(process.argv[2] || process.env.PORT || 0);
server.listen(port, '127.0.0.1', () => {
  console.log(`listening ${server.address().port}`);
});
process.on('SIGTERM', () => process.exit(0));
