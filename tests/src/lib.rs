//! Shared helpers for callstream's cross-crate tests: a Twilio-shaped client
//! over a real socket (the `callstream-twilio` model writes and checks every
//! byte, tungstenite does the framing), plain-socket HTTP, and servers started
//! on ephemeral ports.
use callstream_twilio::response;
use callstream_twilio::{Stream, Twilio, Upgrade};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};
use tungstenite::Message;
use tungstenite::protocol::{Role, WebSocket};

pub use callstream_twilio::form::encode as form;
pub use callstream_twilio::response::Response as HttpResponse;
pub use callstream_twilio::signature::sign as twilio_signature;

/// The auth token the test servers are configured with.
pub const TOKEN: &str = "test-auth-token-0123456789";
/// The account the test calls come from.
pub const ACCOUNT: &str = "AC0123456789abcdef0123456789abcdef";

/// The most bytes an answer read here may take (a refusal's body included).
const MAX_ANSWER: usize = 1 << 20;

/// Sends one raw request on a fresh connection and reads one answer.
pub fn http_raw(addr: SocketAddr, request: &[u8]) -> io::Result<HttpResponse> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    s.write_all(request)?;
    read_response(&mut BufReader::new(s))
}

/// Reads one HTTP/1.1 answer to a GET or POST, taking exactly its bytes from
/// `r` (so that the next answer on a keep-alive connection stays there).
pub fn read_response<R: BufRead>(r: &mut R) -> io::Result<HttpResponse> {
    read_answer(r, "GET").map(|(answer, _)| answer)
}

/// Reads one answer byte by byte; returns it and the bytes it took.
fn read_answer<R: Read>(r: &mut R, method: &str) -> io::Result<(HttpResponse, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut b = [0u8; 1];
    loop {
        if let Some((answer, _)) = response::parse(&buf, method).map_err(io::Error::other)? {
            return Ok((answer, buf));
        }
        if buf.len() > MAX_ANSWER || r.read(&mut b)? == 0 {
            return Err(io::Error::other(format!(
                "no complete answer: {:?}",
                String::from_utf8_lossy(&buf)
            )));
        }
        buf.push(b[0]);
    }
}

/// A signed form POST to `path`, as Twilio sends webhooks.
pub fn post_signed(
    addr: SocketAddr,
    host: &str,
    path: &str,
    params: &[(&str, &str)],
) -> io::Result<HttpResponse> {
    http_raw(
        addr,
        &callstream_twilio::webhook::post(host, path, params, Some(TOKEN)),
    )
}

/// A media stream as Twilio opens it: the model's messages over a socket.
pub struct TwilioStream {
    /// The WebSocket, client side.
    pub ws: WebSocket<TcpStream>,
    /// The stream SID used.
    pub stream_sid: String,
    /// The call SID used.
    pub call_sid: String,
    /// The subprotocol the server named in its 101, if any.
    pub subprotocol: Option<String>,
    twilio: Twilio,
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
    /// Opens the socket with the upgrade request Twilio sends (see
    /// `callstream_twilio::upgrade`), checks the `101` as a WebSocket client
    /// must, then wraps the socket in a tungstenite client.
    pub fn connect(addr: SocketAddr, opts: &StreamOpts<'_>, n: u32) -> io::Result<TwilioStream> {
        let mut s = TcpStream::connect(addr)?;
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        s.set_nodelay(true)?;
        let mut upgrade = Upgrade::new(opts.host, opts.path, opts.token, n as u8);
        upgrade.protocol = opts.offer_protocol.map(str::to_owned);
        s.write_all(&upgrade.to_bytes())?;
        // Byte by byte, so that no frame bytes after the head are consumed.
        let (answer, bytes) = read_answer(&mut s, "GET")?;
        if answer.status != 101 {
            return Err(io::Error::other(format!(
                "upgrade refused: {} {}",
                answer.status, answer.body
            )));
        }
        let head = response::parse_head(&bytes)
            .map_err(io::Error::other)?
            .ok_or_else(|| io::Error::other("no head"))?;
        let subprotocol = upgrade.check_answer(&head).map_err(io::Error::other)?;
        let ws = WebSocket::from_raw_socket(s, Role::Client, None);
        let twilio = Twilio::new(Stream::numbered(n));
        Ok(TwilioStream {
            ws,
            stream_sid: twilio.stream.stream_sid.clone(),
            call_sid: twilio.stream.call_sid.clone(),
            subprotocol,
            twilio,
        })
    }

    fn send_text(&mut self, text: String) -> io::Result<()> {
        self.ws.send(Message::text(text)).map_err(io::Error::other)
    }

    /// `connected` then `start`, with custom parameters.
    pub fn start(&mut self, params: &[(&str, &str)]) -> io::Result<()> {
        let connected = self.twilio.connected();
        self.send_text(connected)?;
        let start = self.twilio.start(params);
        self.send_text(start)
    }

    /// One inbound media message with this μ-law payload.
    pub fn media(&mut self, ulaw: &[u8]) -> io::Result<()> {
        let text = self.twilio.media(ulaw);
        self.send_text(text)
    }

    /// The `mark` echo Twilio sends when audio before a mark has played.
    pub fn mark_echo(&mut self, name: &str) -> io::Result<()> {
        let text = self.twilio.mark_echo(name);
        self.send_text(text)
    }

    /// A key press, as Twilio reports it (`dtmf.track` is `inbound_track`).
    pub fn dtmf(&mut self, digit: char) -> io::Result<()> {
        let text = self.twilio.dtmf(&digit.to_string());
        self.send_text(text)
    }

    /// `stop`.
    pub fn stop(&mut self) -> io::Result<()> {
        let text = self.twilio.stop();
        self.send_text(text)
    }

    /// Half-closes the socket (a FIN) without a WebSocket close frame, as a
    /// peer that crashed or a proxy that gave up does.
    pub fn shutdown_write(&mut self) -> io::Result<()> {
        self.ws.get_mut().shutdown(std::net::Shutdown::Write)
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

    /// Reads server messages until `deadline`. A message Twilio would refuse
    /// (a binary frame, an invalid text) is an error.
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
                Ok(Message::Text(t)) => {
                    let msg = self
                        .twilio
                        .handle_text(Instant::now(), t.as_str())
                        .map_err(io::Error::other)?;
                    got.push(ServerMessage::from(msg));
                }
                Ok(Message::Binary(_)) => {
                    let warning = self.twilio.handle_binary(Instant::now());
                    return Err(io::Error::other(warning));
                }
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

/// What the server sent on the stream: a message Twilio accepted (checked by
/// `callstream_twilio::check`), or the end of the socket.
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

impl From<callstream_twilio::ServerMessage> for ServerMessage {
    fn from(m: callstream_twilio::ServerMessage) -> Self {
        match m {
            callstream_twilio::ServerMessage::Media(b) => ServerMessage::Media(b),
            callstream_twilio::ServerMessage::Mark(n) => ServerMessage::Mark(n),
            callstream_twilio::ServerMessage::Clear => ServerMessage::Clear,
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

/// CPython's `audioop` μ-law table (`core/tests/reference/ulaw_audioop.bin`,
/// made by `ulaw_audioop.py` there and pinned by `core/tests/codec_reference.rs`):
/// 65,536 encoded samples, then the 256 decoded codes as little-endian `i16`.
static AUDIOOP_TABLE: &[u8] = include_bytes!("../../core/tests/reference/ulaw_audioop.bin");

/// Decodes μ-law as Python's `audioop.ulaw2lin` does, from audioop's own
/// committed table: the reference decoding, with no Python needed.
#[must_use]
pub fn reference_ulaw2lin(ulaw: &[u8]) -> Vec<i16> {
    let decoded = AUDIOOP_TABLE.get(65_536..).unwrap_or_default();
    let table: Vec<i16> = decoded
        .chunks_exact(2)
        .map(|c| i16::from_le_bytes([c[0], c[1]]))
        .collect();
    ulaw.iter()
        .map(|&b| table.get(usize::from(b)).copied().unwrap_or_default())
        .collect()
}

/// Decodes μ-law with a live `audioop.ulaw2lin` in `python3` (Python ≤ 3.12,
/// or `pip install audioop-lts` on 3.13 and later). Only the end-to-end test
/// that `.ci/run` runs with `--ignored` uses it; the error says what is missing.
pub fn audioop_ulaw2lin(ulaw: &[u8]) -> io::Result<Vec<i16>> {
    const NEEDS: &str = "needs python3 with the audioop module (Python <= 3.12, or `pip install audioop-lts` on Python >= 3.13)";
    let mut child = std::process::Command::new("python3")
        .args(["-W", "ignore", "-c", "import sys,audioop; sys.stdout.buffer.write(audioop.ulaw2lin(sys.stdin.buffer.read(), 2))"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| io::Error::new(e.kind(), format!("python3: {e}; {NEEDS}")))?;
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
        return Err(io::Error::other(format!("python3 audioop failed: {NEEDS}")));
    }
    Ok(out
        .stdout
        .chunks_exact(2)
        .map(|c| i16::from_le_bytes([c[0], c[1]]))
        .collect())
}

/// Speech made by real tools (espeak-ng, then sox to 8 kHz mono μ-law, raw,
/// as Twilio carries it), read from the fixtures that
/// `tests/fixtures/make_speech.sh` wrote: `tests/fixtures/speech`, or the
/// directory `CALLSTREAM_SPEECH_DIR` names (to run the suite on freshly made
/// speech: `make_speech.sh --check`). `text` must be one of the phrases in
/// its `phrases.txt`.
pub fn speech_ulaw(text: &str) -> io::Result<Vec<u8>> {
    let dir = std::env::var_os("CALLSTREAM_SPEECH_DIR").map_or_else(
        || std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/speech"),
        std::path::PathBuf::from,
    );
    let index = std::fs::read_to_string(dir.join("phrases.txt"))
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", dir.display())))?;
    let file = index
        .lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.split_once(' ').filter(|(_, t)| *t == text).map(|(f, _)| f))
        .ok_or_else(|| {
            io::Error::other(format!(
                "no speech for {text:?} in {}: add it to tests/fixtures/make_speech.sh and rerun it",
                dir.display()
            ))
        })?;
    std::fs::read(dir.join(file))
}

/// `n` frames of μ-law digital silence.
#[must_use]
pub fn silence(frames: usize) -> Vec<u8> {
    vec![0xFF; frames * 160]
}

/// A value from the server's public `/metrics` (panics when it is missing).
#[must_use]
pub fn metric(addr: SocketAddr, name: &str) -> u64 {
    let m = http_raw(
        addr,
        b"GET /metrics HTTP/1.1\r\nHost: callstream.test\r\nConnection: close\r\n\r\n",
    )
    .expect("an answer to /metrics");
    m.body
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("{name} missing from {}", m.body))
}

/// Waits (at most `limit`) until `f` holds; returns whether it held.
pub fn wait_until(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + limit;
    while Instant::now() < end {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    f()
}

/// Which server implementation a test drives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Adapter {
    /// `callstream-smol`: async tasks on executor threads.
    Smol,
    /// `callstream-blocking`: one std thread per connection.
    Blocking,
    /// `callstream-epoll`: one epoll reactor per thread, owning its connections.
    Epoll,
    /// `callstream-uring`: one io_uring reactor per thread, owning its connections.
    Uring,
    /// `callstream-uring` with a tick and a number of receive buffers of its
    /// own (`UringOptions`).
    UringTuned {
        /// Each loop gathers completions this long.
        tick: Duration,
        /// Receive buffers per reactor.
        buffers: u16,
    },
}

/// A callstream server running in this process on an ephemeral port.
/// A bound pump, run on a thread of its own.
fn running<P: callstream_server::Pump + Send + 'static>(
    bound: io::Result<P>,
    metrics_addr: Option<SocketAddr>,
) -> RunningServer {
    let server = bound.expect("bind");
    let addr = server.local_addr().expect("local addr");
    let shutdown = std::sync::Mutex::new(Some(server.shutdown_fn()));
    let thread = Some(std::thread::spawn(move || server.run()));
    RunningServer {
        addr,
        metrics_addr,
        shutdown: Box::new(move || {
            if let Some(stop) = shutdown.lock().unwrap_or_else(|e| e.into_inner()).take() {
                stop();
            }
        }),
        thread,
    }
}

pub struct RunningServer {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Where `/metrics` is served when it has a listener of its own
    /// (`Settings::metrics`).
    pub metrics_addr: Option<SocketAddr>,
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
        let (mut config, opts) =
            callstream_server::configure_with(&s, &[&callstream_bridge::BridgeExtension])
                .expect("valid test settings");
        engine(&mut config);
        let shared = callstream_server::Server::new(opts, config).expect("server");
        let metrics_addr = shared.metrics_addr();
        match adapter {
            Adapter::Smol => running(callstream_smol::SmolServer::bind(shared), metrics_addr),
            Adapter::Blocking => running(
                callstream_blocking::BlockingServer::bind(shared),
                metrics_addr,
            ),
            Adapter::Epoll => running(callstream_epoll::EpollServer::bind(shared), metrics_addr),
            Adapter::Uring | Adapter::UringTuned { .. } => {
                let uring = match adapter {
                    Adapter::UringTuned { tick, buffers } => callstream_uring::UringOptions {
                        tick,
                        receive_buffers: buffers,
                    },
                    _ => callstream_uring::UringOptions::default(),
                };
                let server = callstream_uring::UringServer::bind_with(shared, uring);
                running(server, metrics_addr)
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
