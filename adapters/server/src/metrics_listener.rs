//! `/metrics` on an address of its own (`METRICS=127.0.0.1:9090`), so that
//! the Prometheus text is not on the public port Twilio (and everyone else)
//! reaches, or nowhere at all (`METRICS=off`).
//!
//! The listener is one std thread answering one connection at a time: a
//! scrape every few seconds from one collector needs no more, and a
//! connection is cut off [`IO_TIMEOUT`] after it was accepted, however it
//! trickles its bytes (a timeout per read would let a byte every few seconds
//! hold the thread for hours). Requests go through the core's HTTP parser
//! and its size limits; the answer always closes.
use crate::listen::{ACCEPT_BACKOFF, AcceptFailures, accept_error_is_transient};
use callstream_core::http::{Limits, RequestParser, Response};
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Where `/metrics` is served.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum MetricsAt {
    /// On the public port, beside the webhooks (the default).
    #[default]
    Public,
    /// Nowhere: `/metrics` is 404.
    Off,
    /// On a listener of its own at this address; 404 on the public port.
    Listen(SocketAddr),
}

impl FromStr for MetricsAt {
    type Err = String;

    /// `public`, `off`, or an address with a port (`127.0.0.1:9090`,
    /// `[::1]:9090`, `localhost:9090`).
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "public" | "on" => Ok(MetricsAt::Public),
            "off" | "none" => Ok(MetricsAt::Off),
            _ => crate::config::resolve_addr(s.trim())
                .map(MetricsAt::Listen)
                .map_err(|e| format!("expected public, off or an address with a port: {e}")),
        }
    }
}

impl std::fmt::Display for MetricsAt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MetricsAt::Public => f.write_str("public"),
            MetricsAt::Off => f.write_str("off"),
            MetricsAt::Listen(a) => write!(f, "{a}"),
        }
    }
}

/// The most one scrape connection may take in all, from its accept to the
/// last byte of the answer, before it is dropped.
pub const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// The metrics text, rendered at each scrape.
pub type Render = Arc<dyn Fn() -> String + Send + Sync>;

/// A running metrics listener; dropping it stops the thread.
pub struct MetricsListener {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    /// Set when the thread's loop has ended and its listener is closed.
    ended: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// Sets its flag when dropped: when the thread's loop ends, however.
struct SetOnDrop(Arc<AtomicBool>);

impl Drop for SetOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

impl MetricsListener {
    /// Binds `addr` now (so that a taken port fails the boot) and serves
    /// `render()` at `GET /metrics` on a thread of its own.
    /// A failed accept is counted in `failures` and pauses accepting for
    /// [`crate::listen::ACCEPT_BACKOFF`].
    pub fn start(
        addr: SocketAddr,
        render: Render,
        failures: Arc<AcceptFailures>,
    ) -> io::Result<MetricsListener> {
        Self::start_with(addr, render, IO_TIMEOUT, failures)
    }

    /// [`MetricsListener::start`] with each connection given `limit` in all.
    fn start_with(
        addr: SocketAddr,
        render: Render,
        limit: Duration,
        failures: Arc<AcceptFailures>,
    ) -> io::Result<MetricsListener> {
        let listener = crate::bind_listener(addr, "METRICS")?;
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let ended = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let end = ended.clone();
        let thread = std::thread::Builder::new()
            .name("callstream-metrics".into())
            .spawn(move || {
                // Dropped in reverse: the listener is closed, then `ended`.
                let _ended = SetOnDrop(end);
                let listener = listener;
                for stream in listener.incoming() {
                    if flag.load(Ordering::SeqCst) {
                        break;
                    }
                    match stream {
                        Ok(stream) => {
                            failures.accepted();
                            let _ = serve(stream, &render, Instant::now() + limit);
                        }
                        Err(e) if accept_error_is_transient(&e) => {}
                        // Out of descriptors, a scrape waiting in the backlog
                        // keeps `accept` failing at once: pause, not spin.
                        Err(e) => {
                            failures.record(&e, Instant::now());
                            std::thread::sleep(ACCEPT_BACKOFF);
                        }
                    }
                }
            })?;
        Ok(MetricsListener {
            addr,
            stop,
            ended,
            thread: Some(thread),
        })
    }

    /// The bound address (the real port when 0 was asked for).
    #[must_use]
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for MetricsListener {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Unblock accept() with a connection of our own. Should that not go
        // through now (out of descriptors), it is retried until it does or
        // the loop has ended, and the thread is left to end by itself.
        let wake = crate::listen::wake_addr(self.addr);
        let ended = self.ended.clone();
        if crate::listen::wake_accept(wake, move || ended.load(Ordering::SeqCst))
            && let Some(t) = self.thread.take()
        {
            let _ = t.join();
        }
    }
}

/// Reads one request (bounded by the core parser's limits), writes one
/// answer, closes; all before `deadline`.
fn serve(mut stream: TcpStream, render: &Render, deadline: Instant) -> io::Result<()> {
    // Each read and write may wait only for what is left of the deadline.
    let left = || {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "scrape connection past its deadline",
            ))
        } else {
            Ok(left)
        }
    };
    let mut parser = RequestParser::new(Limits::default(), Instant::now());
    let mut buf = [0u8; 4096];
    let (answer, head_only) = loop {
        match parser.poll_request() {
            Ok(Some(request)) => {
                let head_only = request.method() == "HEAD";
                break (answer(request.method(), request.path(), render), head_only);
            }
            Ok(None) => {}
            Err(e) => break (Response::for_parse_error(&e), false),
        }
        stream.set_read_timeout(Some(left()?))?;
        let n = stream.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        parser.handle_receive(Instant::now(), buf.get(..n).unwrap_or_default());
    };
    let answer = answer.close();
    let mut out = Vec::new();
    if head_only {
        answer.write_head_to(&mut out);
    } else {
        answer.write_to(&mut out);
    }
    let mut rest = out.as_slice();
    while !rest.is_empty() {
        stream.set_write_timeout(Some(left()?))?;
        match stream.write(rest) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => rest = rest.get(n..).unwrap_or_default(),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    stream.flush()
}

/// `GET`/`HEAD /metrics` (with or without the trailing slash, as on the
/// public port) is the text; any other path 404, any other method 405.
fn answer(method: &str, path: &str, render: &Render) -> Response {
    if !matches!(path, "/metrics" | "/metrics/") {
        return Response::not_found();
    }
    match method {
        "GET" | "HEAD" => Response::new(200)
            .header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
            .header("Cache-Control", "no-store")
            .body(render()),
        _ => Response::method_not_allowed(&["GET", "HEAD"]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(addr: SocketAddr, raw: &str) -> String {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(raw.as_bytes()).unwrap();
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        out
    }

    #[test]
    fn a_trickling_client_cannot_keep_a_scrape_waiting() {
        let render: Render = Arc::new(|| "callstream_up 1\n".to_owned());
        let limit = Duration::from_secs(1);
        let l = MetricsListener::start_with(
            SocketAddr::from(([127, 0, 0, 1], 0)),
            render,
            limit,
            Arc::default(),
        )
        .unwrap();
        let a = l.local_addr();
        // Accepted first, it sends a byte well within any per-read timeout,
        // for as long as the test runs.
        let mut trickle = TcpStream::connect(a).unwrap();
        let done = Arc::new(AtomicBool::new(false));
        let stop = done.clone();
        let trickler = std::thread::spawn(move || {
            for &b in b"GET /metrics HTTP/1.1\r\nHost: x".iter().cycle() {
                if stop.load(Ordering::SeqCst) || trickle.write_all(&[b]).is_err() {
                    break;
                }
                std::thread::sleep(limit / 5);
            }
        });
        // Answered once the trickling connection's deadline has passed; with
        // a timeout per read only, never while the trickle goes on.
        let scrape = get(a, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
        done.store(true, Ordering::SeqCst);
        assert!(scrape.starts_with("HTTP/1.1 200 OK\r\n"), "{scrape:?}");
        trickler.join().unwrap();
    }

    #[test]
    fn settings_parse() {
        assert_eq!("public".parse(), Ok(MetricsAt::Public));
        assert_eq!("OFF".parse(), Ok(MetricsAt::Off));
        assert_eq!(
            "127.0.0.1:9090".parse(),
            Ok(MetricsAt::Listen(SocketAddr::from(([127, 0, 0, 1], 9090))))
        );
        let local: MetricsAt = "localhost:9090".parse().unwrap();
        assert!(matches!(local, MetricsAt::Listen(a) if a.ip().is_loopback() && a.port() == 9090));
        assert!("9090".parse::<MetricsAt>().is_err());
        assert!("nowhere".parse::<MetricsAt>().is_err());
    }

    #[test]
    fn serves_metrics_only_and_closes() {
        let render: Render = Arc::new(|| "callstream_up 1\n".to_owned());
        let l = MetricsListener::start(
            SocketAddr::from(([127, 0, 0, 1], 0)),
            render,
            Arc::default(),
        )
        .unwrap();
        let a = l.local_addr();
        let ok = get(a, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(ok.starts_with("HTTP/1.1 200 OK\r\n"), "{ok}");
        assert!(ok.contains("Connection: close\r\n"), "{ok}");
        assert!(ok.ends_with("\r\n\r\ncallstream_up 1\n"), "{ok}");
        let head = get(a, "HEAD /metrics/ HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
        assert!(!head.contains("callstream_up"), "{head}");
        let other = get(a, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(other.starts_with("HTTP/1.1 404 "), "{other}");
        let post = get(
            a,
            "POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
        );
        assert!(post.starts_with("HTTP/1.1 405 "), "{post}");
        let bad = get(a, "GARBAGE\r\n\r\n");
        assert!(bad.starts_with("HTTP/1.1 400 "), "{bad}");
        // A client that connects and says nothing is dropped, and the next one is served.
        let silent = TcpStream::connect(a).unwrap();
        drop(silent);
        let again = get(a, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(again.starts_with("HTTP/1.1 200 OK\r\n"), "{again}");
        drop(l);
        assert!(
            TcpStream::connect_timeout(&a, Duration::from_millis(500)).is_err(),
            "still listening after drop"
        );
    }
}
