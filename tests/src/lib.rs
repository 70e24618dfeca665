//! Shared helpers for callstream's cross-crate tests: a Twilio-shaped client
//! built from independent pieces (raw bytes for the upgrade, tungstenite for
//! framing, hmac/sha1 for the signature), plain-socket HTTP, and servers
//! started on ephemeral ports.
use base64::Engine as _;
use hmac::{Hmac, Mac};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};
use tungstenite::Message;
use tungstenite::protocol::{Role, WebSocket};

/// The auth token the test servers are configured with.
pub const TOKEN: &str = "test-auth-token-0123456789";
/// The account the test calls come from.
pub const ACCOUNT: &str = "AC0123456789abcdef0123456789abcdef";

/// X-Twilio-Signature computed the way Twilio documents it: HMAC-SHA1 over the
/// URL followed by the sorted parameters, base64. Independent of the core's
/// implementation on purpose.
#[must_use]
pub fn twilio_signature(token: &str, url: &str, params: &[(&str, &str)]) -> String {
    let mut sorted: Vec<_> = params.to_vec();
    sorted.sort();
    let mut data = url.to_owned();
    for (k, v) in sorted {
        data.push_str(k);
        data.push_str(v);
    }
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(token.as_bytes()).expect("any key length");
    mac.update(data.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// Form-encodes pairs the way Twilio's webhooks arrive.
#[must_use]
pub fn form(params: &[(&str, &str)]) -> String {
    fn enc(s: &str) -> String {
        let mut o = String::new();
        for b in s.bytes() {
            match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'*' => {
                    o.push(b as char)
                }
                b' ' => o.push('+'),
                _ => o.push_str(&format!("%{b:02X}")),
            }
        }
        o
    }
    params
        .iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// An HTTP answer.
#[derive(Debug)]
pub struct HttpResponse {
    /// Status code.
    pub status: u16,
    /// Header lines, names lower-cased.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: String,
}

impl HttpResponse {
    /// The first value of a header.
    #[must_use]
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Sends one raw request on a fresh connection and reads one answer.
pub fn http_raw(addr: SocketAddr, request: &[u8]) -> io::Result<HttpResponse> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    s.write_all(request)?;
    read_response(&mut BufReader::new(s))
}

/// Reads one HTTP/1.1 answer (Content-Length framed, or none for 1xx/204/304).
pub fn read_response<R: BufRead>(r: &mut R) -> io::Result<HttpResponse> {
    let mut line = String::new();
    r.read_line(&mut line)?;
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| io::Error::other(format!("bad status line {line:?}")))?;
    let mut headers = Vec::new();
    loop {
        line.clear();
        r.read_line(&mut line)?;
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':') {
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_owned()));
        }
    }
    let len: usize = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; len];
    r.read_exact(&mut body)?;
    Ok(HttpResponse {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

/// A signed form POST to `path`, as Twilio sends webhooks.
pub fn post_signed(
    addr: SocketAddr,
    host: &str,
    path: &str,
    params: &[(&str, &str)],
) -> io::Result<HttpResponse> {
    let url = format!("https://{host}{path}");
    let sig = twilio_signature(TOKEN, &url, params);
    let body = form(params);
    let req = format!(
        "POST {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: TwilioProxy/1.1\r\nContent-Type: application/x-www-form-urlencoded\r\nX-Twilio-Signature: {sig}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    http_raw(addr, req.as_bytes())
}

/// A media stream as Twilio opens it.
pub struct TwilioStream {
    /// The WebSocket, client side.
    pub ws: WebSocket<TcpStream>,
    /// The stream SID used.
    pub stream_sid: String,
    /// The call SID used.
    pub call_sid: String,
    /// The subprotocol the server named in its 101, if any.
    pub subprotocol: Option<String>,
    seq: u64,
    chunk: u64,
}

/// What connecting a stream needs.
pub struct StreamOpts<'a> {
    /// The `Host` Twilio sends (the public host).
    pub host: &'a str,
    /// Sign the upgrade with this token (None: no signature header).
    pub token: Option<&'a str>,
    /// Offer this `Sec-WebSocket-Protocol` value.
    pub offer_protocol: Option<&'a str>,
    /// Path requested.
    pub path: &'a str,
}

impl Default for StreamOpts<'_> {
    fn default() -> Self {
        StreamOpts {
            host: "callstream.test",
            token: Some(TOKEN),
            offer_protocol: None,
            path: "/ws/twilio-media",
        }
    }
}

impl TwilioStream {
    /// Opens the socket with the upgrade request Twilio sends (docs/protocol.md §1:
    /// lower-case header names, `Twilio.TmeWs/1.0`, `accept-encoding: gzip`,
    /// signed over the `wss://` URL), then wraps it in a tungstenite client.
    pub fn connect(addr: SocketAddr, opts: &StreamOpts<'_>, n: u32) -> io::Result<TwilioStream> {
        let mut s = TcpStream::connect(addr)?;
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        s.set_nodelay(true)?;
        let key = base64::engine::general_purpose::STANDARD.encode([n as u8; 16]);
        let mut req = format!(
            "GET {} HTTP/1.1\r\nhost: {}\r\nuser-agent: Twilio.TmeWs/1.0\r\nconnection: Upgrade\r\nupgrade: websocket\r\nsec-websocket-key: {key}\r\nsec-websocket-version: 13\r\n",
            opts.path, opts.host
        );
        if let Some(t) = opts.token {
            let url = format!("wss://{}{}", opts.host, opts.path);
            req.push_str(&format!(
                "x-twilio-signature: {}\r\n",
                twilio_signature(t, &url, &[])
            ));
        }
        if let Some(p) = opts.offer_protocol {
            req.push_str(&format!("sec-websocket-protocol: {p}\r\n"));
        }
        req.push_str("accept-encoding: gzip\r\n\r\n");
        s.write_all(req.as_bytes())?;
        // Read the answer head byte by byte so no frame bytes are consumed.
        let mut head = Vec::new();
        let mut b = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            if s.read(&mut b)? == 0 || head.len() > 16384 {
                return Err(io::Error::other(format!(
                    "no complete answer: {:?}",
                    String::from_utf8_lossy(&head)
                )));
            }
            head.push(b[0]);
        }
        // A refusal carries a body: read it so the whole answer can be parsed.
        let head_text = String::from_utf8_lossy(&head).to_ascii_lowercase();
        let len: usize = head_text
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
            .min(65536);
        let mut body = vec![0; len];
        s.read_exact(&mut body)?;
        head.extend_from_slice(&body);
        let resp = read_response(&mut BufReader::new(&head[..]))?;
        if resp.status != 101 {
            return Err(io::Error::other(format!(
                "upgrade refused: {} {}",
                resp.status, resp.body
            )));
        }
        let subprotocol = resp.header("sec-websocket-protocol").map(str::to_owned);
        let ws = WebSocket::from_raw_socket(s, Role::Client, None);
        Ok(TwilioStream {
            ws,
            stream_sid: format!("MZ{:032x}", 0xabc000 + n as u128),
            call_sid: format!("CA{:032x}", 0xdef000 + n as u128),
            subprotocol,
            seq: 0,
            chunk: 0,
        })
    }

    fn send_text(&mut self, text: String) -> io::Result<()> {
        self.ws.send(Message::text(text)).map_err(io::Error::other)
    }

    /// `connected` then `start`, with custom parameters.
    pub fn start(&mut self, params: &[(&str, &str)]) -> io::Result<()> {
        self.send_text(r#"{"event":"connected","protocol":"Call","version":"1.0.0"}"#.to_owned())?;
        self.seq = 1;
        let custom: serde_json::Map<String, serde_json::Value> = params
            .iter()
            .map(|(k, v)| ((*k).to_owned(), serde_json::Value::from(*v)))
            .collect();
        let msg = serde_json::json!({
            "event": "start", "sequenceNumber": "1", "streamSid": self.stream_sid,
            "start": {"accountSid": ACCOUNT, "streamSid": self.stream_sid, "callSid": self.call_sid,
                      "tracks": ["inbound"], "customParameters": custom,
                      "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}}
        });
        self.send_text(msg.to_string())
    }

    /// One inbound media message with this μ-law payload.
    pub fn media(&mut self, ulaw: &[u8]) -> io::Result<()> {
        self.seq += 1;
        self.chunk += 1;
        let ts = (self.chunk - 1) * 20;
        let payload = base64::engine::general_purpose::STANDARD.encode(ulaw);
        self.send_text(format!(
            r#"{{"event":"media","sequenceNumber":"{}","streamSid":"{}","media":{{"track":"inbound","chunk":"{}","timestamp":"{ts}","payload":"{payload}"}}}}"#,
            self.seq, self.stream_sid, self.chunk
        ))
    }

    /// The `mark` echo Twilio sends when audio before a mark has played.
    pub fn mark_echo(&mut self, name: &str) -> io::Result<()> {
        self.seq += 1;
        let msg = serde_json::json!({"event": "mark", "sequenceNumber": self.seq.to_string(), "streamSid": self.stream_sid, "mark": {"name": name}});
        self.send_text(msg.to_string())
    }

    /// A key press, as Twilio reports it (`dtmf.track` is `inbound_track`).
    pub fn dtmf(&mut self, digit: char) -> io::Result<()> {
        self.seq += 1;
        let msg = serde_json::json!({"event": "dtmf", "sequenceNumber": self.seq.to_string(), "streamSid": self.stream_sid,
            "dtmf": {"track": "inbound_track", "digit": digit.to_string()}});
        self.send_text(msg.to_string())
    }

    /// `stop`.
    pub fn stop(&mut self) -> io::Result<()> {
        self.seq += 1;
        let msg = serde_json::json!({"event": "stop", "sequenceNumber": self.seq.to_string(), "streamSid": self.stream_sid,
            "stop": {"accountSid": ACCOUNT, "callSid": self.call_sid}});
        self.send_text(msg.to_string())
    }

    /// Sends `ulaw` as 20 ms frames on absolute deadlines (real time), reading
    /// whatever the server sends in between; returns the messages received.
    pub fn stream_audio(&mut self, ulaw: &[u8]) -> io::Result<Vec<ServerMessage>> {
        let mut got = Vec::new();
        let start = Instant::now();
        for (k, frame) in ulaw.chunks(160).enumerate() {
            let due = start + Duration::from_millis(20 * k as u64);
            self.read_until(due, &mut got)?;
            self.media(frame)?;
        }
        Ok(got)
    }

    /// Reads server messages until at least `bytes` of media have come in all
    /// (counting what `got` holds already), or `limit` passes.
    pub fn read_media(
        &mut self,
        bytes: usize,
        limit: Duration,
        got: &mut Vec<ServerMessage>,
    ) -> io::Result<()> {
        let end = Instant::now() + limit;
        while media_bytes(got).len() < bytes && Instant::now() < end {
            if got.iter().any(|m| matches!(m, ServerMessage::Closed(_))) {
                break;
            }
            self.read_until((Instant::now() + Duration::from_millis(100)).min(end), got)?;
        }
        Ok(())
    }

    /// Reads server messages until `deadline`.
    pub fn read_until(
        &mut self,
        deadline: Instant,
        got: &mut Vec<ServerMessage>,
    ) -> io::Result<()> {
        loop {
            let now = Instant::now();
            if now >= deadline {
                return Ok(());
            }
            self.ws
                .get_mut()
                .set_read_timeout(Some((deadline - now).max(Duration::from_millis(1))))?;
            match self.ws.read() {
                Ok(Message::Text(t)) => got.push(ServerMessage::parse(t.as_str())?),
                Ok(Message::Close(c)) => {
                    got.push(ServerMessage::Closed(c.map(|c| u16::from(c.code))));
                    return Ok(());
                }
                Ok(_) => {}
                Err(tungstenite::Error::Io(e))
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) => {}
                Err(tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed) => {
                    got.push(ServerMessage::Closed(None));
                    return Ok(());
                }
                Err(e) => return Err(io::Error::other(e)),
            }
        }
    }
}

/// A message the server sent on the stream, checked against Twilio's rules
/// (only media, mark, clear; exactly the documented fields).
#[derive(Debug, Clone, PartialEq)]
pub enum ServerMessage {
    /// Outbound audio, μ-law bytes.
    Media(Vec<u8>),
    /// A mark.
    Mark(String),
    /// A clear.
    Clear,
    /// The server closed the socket, with this code.
    Closed(Option<u16>),
}

impl ServerMessage {
    /// Parses and validates one text frame from the server.
    pub fn parse(text: &str) -> io::Result<ServerMessage> {
        let bad = |why: &str| io::Error::other(format!("{why}: {text}"));
        let v: serde_json::Value = serde_json::from_str(text).map_err(|_| bad("not JSON"))?;
        let o = v.as_object().ok_or_else(|| bad("not an object"))?;
        let keys: Vec<&str> = {
            let mut k: Vec<&str> = o.keys().map(String::as_str).collect();
            k.sort_unstable();
            k
        };
        if !o
            .get("streamSid")
            .and_then(|s| s.as_str())
            .is_some_and(|s| s.starts_with("MZ") && s.len() == 34)
        {
            return Err(bad("missing or malformed streamSid"));
        }
        match o.get("event").and_then(|e| e.as_str()) {
            Some("media") => {
                let m = o["media"]
                    .as_object()
                    .ok_or_else(|| bad("media not an object"))?;
                if keys != ["event", "media", "streamSid"] || m.len() != 1 {
                    return Err(bad("media with fields other than the documented ones"));
                }
                let p = m
                    .get("payload")
                    .and_then(|p| p.as_str())
                    .ok_or_else(|| bad("no payload"))?;
                Ok(ServerMessage::Media(
                    base64::engine::general_purpose::STANDARD
                        .decode(p)
                        .map_err(|_| bad("payload not base64"))?,
                ))
            }
            Some("mark") => {
                let m = o["mark"]
                    .as_object()
                    .ok_or_else(|| bad("mark not an object"))?;
                if keys != ["event", "mark", "streamSid"] || m.len() != 1 {
                    return Err(bad("mark with fields other than the documented ones"));
                }
                Ok(ServerMessage::Mark(
                    m.get("name")
                        .and_then(|n| n.as_str())
                        .ok_or_else(|| bad("no mark name"))?
                        .to_owned(),
                ))
            }
            Some("clear") if keys == ["event", "streamSid"] => Ok(ServerMessage::Clear),
            _ => Err(bad(
                "not one of media, mark, clear with exactly the documented fields",
            )),
        }
    }
}

/// All μ-law bytes in the media messages of `msgs`, in order.
#[must_use]
pub fn media_bytes(msgs: &[ServerMessage]) -> Vec<u8> {
    msgs.iter()
        .filter_map(|m| {
            if let ServerMessage::Media(b) = m {
                Some(b.as_slice())
            } else {
                None
            }
        })
        .flatten()
        .copied()
        .collect()
}

/// Decodes μ-law with Python's `audioop.ulaw2lin`, the reference codec.
pub fn audioop_ulaw2lin(ulaw: &[u8]) -> io::Result<Vec<i16>> {
    let mut child = std::process::Command::new("python3")
        .args(["-W", "ignore", "-c", "import sys,audioop; sys.stdout.buffer.write(audioop.ulaw2lin(sys.stdin.buffer.read(), 2))"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()?;
    let mut stdin = child
        .stdin
        .take()
        .ok_or_else(|| io::Error::other("no stdin"))?;
    let data = ulaw.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&data));
    let out = child.wait_with_output()?;
    writer
        .join()
        .map_err(|_| io::Error::other("writer panicked"))??;
    if !out.status.success() {
        return Err(io::Error::other("python3 audioop failed"));
    }
    Ok(out
        .stdout
        .chunks_exact(2)
        .map(|c| i16::from_le_bytes([c[0], c[1]]))
        .collect())
}

/// Speech made by real tools: `espeak-ng` speaks `text`, `sox` turns it into
/// 8 kHz mono μ-law (raw, no header), as Twilio carries it. Both are Debian
/// packages that `.ci/run` installs.
pub fn speech_ulaw(text: &str) -> io::Result<Vec<u8>> {
    let dir = tempfile::tempdir()?;
    let wav = dir.path().join("speech.wav");
    let raw = dir.path().join("speech.ulaw");
    let ok = std::process::Command::new("espeak-ng")
        .arg("-w")
        .arg(&wav)
        .arg(text)
        .status()?
        .success();
    if !ok {
        return Err(io::Error::other("espeak-ng failed"));
    }
    let ok = std::process::Command::new("sox")
        .arg(&wav)
        .args(["-r", "8000", "-c", "1", "-e", "mu-law", "-t", "raw"])
        .arg(&raw)
        .status()?
        .success();
    if !ok {
        return Err(io::Error::other("sox failed"));
    }
    std::fs::read(raw)
}

/// `n` frames of μ-law digital silence.
#[must_use]
pub fn silence(frames: usize) -> Vec<u8> {
    vec![0xFF; frames * 160]
}

/// Which server implementation a test drives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Adapter {
    /// `callstream-smol`: async tasks on executor threads.
    Smol,
    /// `callstream-blocking`: one std thread per connection.
    Blocking,
}

/// A callstream server running in this process on an ephemeral port.
pub struct RunningServer {
    /// Where it listens.
    pub addr: SocketAddr,
    shutdown: Box<dyn Fn() + Send + Sync>,
    thread: Option<std::thread::JoinHandle<io::Result<()>>>,
}

impl RunningServer {
    /// Starts a smol server with test settings; see [`RunningServer::start_on`].
    pub fn start(tweak: impl FnOnce(&mut callstream_server::config::Settings)) -> RunningServer {
        Self::start_on(Adapter::Smol, tweak)
    }

    /// Starts a server with test settings (signed with [`TOKEN`], public base
    /// `https://callstream.test`), adjusted by `tweak`.
    pub fn start_on(
        adapter: Adapter,
        tweak: impl FnOnce(&mut callstream_server::config::Settings),
    ) -> RunningServer {
        Self::start_custom(adapter, tweak, |_| {})
    }

    /// Like [`RunningServer::start_on`], then `engine` adjusts the engine's
    /// configuration (e.g. to install a custom handler).
    pub fn start_custom(
        adapter: Adapter,
        tweak: impl FnOnce(&mut callstream_server::config::Settings),
        engine: impl FnOnce(&mut callstream_core::connection::Config),
    ) -> RunningServer {
        use clap::Parser as _;
        let mut s = callstream_server::config::Cli::try_parse_from([
            "callstream",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
        ])
        .expect("default settings parse")
        .settings();
        s.auth_token = Some(TOKEN.to_owned());
        s.public_base_url = Some("https://callstream.test".to_owned());
        s.threads = Some(2);
        tweak(&mut s);
        let (mut config, opts) = callstream_server::configure(&s).expect("valid test settings");
        engine(&mut config);
        let shared = callstream_server::Server::new(opts, config).expect("server");
        match adapter {
            Adapter::Smol => {
                let server = callstream_smol::SmolServer::bind(shared).expect("bind");
                let addr = server.local_addr().expect("local addr");
                let h = server.shutdown_handle();
                let thread = Some(std::thread::spawn(move || server.run()));
                RunningServer {
                    addr,
                    shutdown: Box::new(move || h.shutdown()),
                    thread,
                }
            }
            Adapter::Blocking => {
                let server = callstream_blocking::BlockingServer::bind(shared).expect("bind");
                let addr = server.local_addr().expect("local addr");
                let h = server.shutdown_handle().expect("shutdown handle");
                let thread = Some(std::thread::spawn(move || server.run()));
                RunningServer {
                    addr,
                    shutdown: Box::new(move || h.shutdown()),
                    thread,
                }
            }
        }
    }

    /// Starts the graceful shutdown without waiting for it.
    pub fn begin_shutdown(&self) {
        (self.shutdown)();
    }

    /// Requests the graceful shutdown and waits for `run` to return.
    pub fn stop(mut self) -> io::Result<()> {
        (self.shutdown)();
        match self.thread.take() {
            Some(t) => t
                .join()
                .map_err(|_| io::Error::other("server thread panicked"))?,
            None => Ok(()),
        }
    }
}

impl Drop for RunningServer {
    fn drop(&mut self) {
        (self.shutdown)();
    }
}
