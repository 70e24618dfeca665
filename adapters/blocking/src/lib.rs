//! # callstream-blocking
//!
//! callstream's server on plain std threads: one thread per connection, a
//! blocking socket with a read timeout as the timer. It drives the server
//! layer's [`Driver`](callstream_server::Driver) like the smol server (logs, metrics, recordings and the
//! shutdown policy are `callstream-server`'s), so the two behave identically;
//! the conformance tests run against both.
//!
//! It suits embedding in a program that has no async runtime, and modest call
//! counts: each connection costs a thread. A `RemoteControl` wake (a handler
//! sending audio from its own thread) is noticed within [`POLL`], because a
//! blocking read cannot be interrupted.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

use callstream_server::config::Settings;
use callstream_server::listen::{ACCEPT_BACKOFF, accept_error_is_transient};
use callstream_server::observer::Drained;
use callstream_server::{Pump, Server, close};
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// The longest a connection thread sleeps before looking at its wake and
/// shutdown flags.
pub const POLL: Duration = Duration::from_millis(10);

struct Shared {
    server: Arc<Server>,
    shutting_down: AtomicBool,
    /// Until the accept loop has seen `shutting_down` and ended.
    accepting: AtomicBool,
    /// When the shutdown was asked for: the drain counts from there, however
    /// long the accept loop takes to see it.
    shutdown_at: OnceLock<Instant>,
}

/// A bound server on std threads, ready to run.
pub struct BlockingServer {
    listener: TcpListener,
    shared: Arc<Shared>,
}

/// Stops a running server gracefully.
#[derive(Clone)]
pub struct ShutdownHandle {
    shared: Arc<Shared>,
    addr: SocketAddr,
}

impl ShutdownHandle {
    /// Begins the graceful shutdown: no new connections; calls drain for the
    /// configured period, then close with 1001.
    pub fn shutdown(&self) {
        if !self.shared.shutting_down.swap(true, Ordering::SeqCst) {
            // Unblock accept() with a connection of our own, retried while
            // it cannot go through (out of descriptors, with no caller in
            // the backlog, accept() would otherwise wait for good).
            let _ = self.shared.shutdown_at.set(Instant::now());
            let shared = self.shared.clone();
            callstream_server::listen::wake_accept(self.addr, move || {
                !shared.accepting.load(Ordering::SeqCst)
            });
        }
    }
}

impl BlockingServer {
    /// Binds now, so the address is known before [`BlockingServer::run`].
    pub fn bind(server: Arc<Server>) -> io::Result<BlockingServer> {
        let listener = callstream_server::bind_listener(server.options().bind, "PORT")?;
        let shared = Arc::new(Shared {
            server,
            shutting_down: AtomicBool::new(false),
            accepting: AtomicBool::new(true),
            shutdown_at: OnceLock::new(),
        });
        Ok(BlockingServer { listener, shared })
    }

    /// A handle that starts the graceful shutdown from anywhere.
    pub fn shutdown_handle(&self) -> io::Result<ShutdownHandle> {
        // The loopback of the listener's own family: 127.0.0.1 does not
        // reach an IPv6-only `::`, and shutdown would then wait for the
        // next client to connect.
        let addr = callstream_server::listen::wake_addr(self.local_addr()?);
        Ok(ShutdownHandle {
            shared: self.shared.clone(),
            addr,
        })
    }
}

/// After the last answer, reads and discards briefly: dropping a socket with
/// unread input makes the kernel send a reset, which can destroy a
/// 400/408/413 before the client reads it.
fn linger(stream: &mut TcpStream) {
    let until = Instant::now() + close::LINGER;
    let mut sink = [0u8; 4096];
    let mut total = 0;
    while total < close::LINGER_BYTES {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() || stream.set_read_timeout(Some(left)).is_err() {
            break;
        }
        match stream.read(&mut sink) {
            Ok(0) | Err(_) => break,
            Ok(n) => total += n,
        }
    }
}

impl Pump for BlockingServer {
    fn runtime(&self) -> callstream_server::config::Runtime {
        callstream_server::config::Runtime::Blocking
    }

    /// The bound address.
    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    fn shutdown_fn(&self) -> impl FnOnce() + Send + 'static {
        let handle = self.shutdown_handle();
        move || match handle {
            Ok(h) => h.shutdown(),
            Err(e) => {
                tracing::error!(error = %e, "cannot shut down: the listener's address is unknown")
            }
        }
    }

    /// Accepts connections until shutdown, then waits for them to drain.
    fn run(self) -> io::Result<()> {
        let server = &self.shared.server;
        for stream in self.listener.incoming() {
            if self.shared.shutting_down.load(Ordering::SeqCst) {
                break;
            }
            let stream = match stream {
                Ok(s) => s,
                Err(e) if accept_error_is_transient(&e) => continue,
                Err(e) => {
                    // Out of descriptors (EMFILE and friends), a caller
                    // waiting in the backlog keeps accept() failing at once:
                    // pause rather than spin.
                    server.accept_failed(&e, Instant::now());
                    std::thread::sleep(ACCEPT_BACKOFF);
                    continue;
                }
            };
            let peer = stream
                .peer_addr()
                .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
            let _ = stream.set_nodelay(true);
            let Some(admission) = server.admit(peer) else {
                let mut s = stream;
                let _ = s.set_write_timeout(Some(Duration::from_secs(1)));
                let _ = s.write_all(callstream_core::http::overloaded_response());
                let _ = s.shutdown(Shutdown::Both);
                continue;
            };
            let shared = self.shared.clone();
            let spawned = std::thread::Builder::new()
                .name("callstream-conn".into())
                .spawn(move || {
                    serve_connection(stream, peer, &shared, &admission);
                    drop(admission);
                });
            if let Err(e) = spawned {
                // Out of threads: this connection is dropped (its admission
                // with it), the server goes on.
                tracing::error!(%peer, error = %e, "cannot start a thread for the connection; closed it");
            }
        }
        self.shared.accepting.store(false, Ordering::SeqCst);
        drop(self.listener);
        let asked = self.shared.shutdown_at.get().copied();
        let give_up_at = server
            .options()
            .give_up_at(asked.unwrap_or_else(Instant::now));
        tracing::info!(
            open_connections = server.open_connections(),
            "shutting down: no new connections, draining"
        );
        // The process must be gone within the drain period.
        while server.open_connections() > 0 && Instant::now() < give_up_at {
            std::thread::sleep(Duration::from_millis(20));
        }
        server.finish(Some(give_up_at));
        Ok(())
    }
}

/// Runs the server with these settings until SIGTERM or SIGINT, then drains.
pub fn run(s: Settings) -> Result<(), Box<dyn std::error::Error>> {
    callstream_server::serve(&s, BlockingServer::bind)
}

fn serve_connection(
    mut stream: TcpStream,
    peer: SocketAddr,
    shared: &Shared,
    admission: &callstream_server::Admission,
) {
    // A peer that stops reading must not hold this thread forever.
    let _ = stream.set_write_timeout(Some(Duration::from_secs(10)));
    let woken = Arc::new(AtomicBool::new(false));
    let w = woken.clone();
    let waker = Arc::new(move || w.store(true, Ordering::Release));
    let mut driver = admission.driver(peer, Instant::now(), Some(waker));
    let mut buf = vec![0u8; 8192];
    let mut shutdown_sent = false;
    let mut eof = false;
    loop {
        let (close, deadline) = match driver.poll_output() {
            Drained::Timeout(t) => (false, Some(t)),
            Drained::Close => (true, None),
        };
        let pending = driver.transmit().len();
        if pending > 0 {
            if let Err(e) = stream.write_all(driver.transmit()) {
                tracing::debug!(%peer, error = %e, "write failed");
                driver.handle_eof(Instant::now());
                let _ = driver.poll_output();
                break;
            }
            driver.consume_transmit(pending);
        }
        if close {
            let _ = stream.shutdown(Shutdown::Write);
            linger(&mut stream);
            break;
        }
        let now = Instant::now();
        if !shutdown_sent && shared.shutting_down.load(Ordering::SeqCst) {
            shutdown_sent = true;
            driver.shutdown(now);
            continue;
        }
        if woken.swap(false, Ordering::AcqRel) || deadline.is_some_and(|d| d <= now) {
            driver.handle_timeout(now);
            continue;
        }
        if eof {
            // Nothing more will arrive; only time moves the connection on.
            std::thread::sleep(POLL);
            driver.handle_timeout(Instant::now());
            continue;
        }
        let wait = deadline
            .map_or(POLL, |d| (d - now).min(POLL))
            .max(Duration::from_millis(1));
        let _ = stream.set_read_timeout(Some(wait));
        match stream.read(&mut buf) {
            Ok(0) => {
                eof = true;
                driver.handle_eof(Instant::now());
            }
            Ok(n) => driver.handle_receive(Instant::now(), &buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) =>
            {
                if deadline.is_some_and(|d| d <= Instant::now()) {
                    driver.handle_timeout(Instant::now());
                }
            }
            Err(_) => {
                eof = true;
                driver.handle_eof(Instant::now());
            }
        }
    }
    driver.finish();
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    /// Binds `bind`, runs, shuts down: `run` returns without another client
    /// connecting. Skipped (with the reason printed) where the address
    /// cannot be bound.
    fn shuts_down_when_bound_to(bind: SocketAddr) {
        let opts = callstream_server::Options {
            bind,
            drain: Duration::from_secs(1),
            ..callstream_server::Options::default()
        };
        let config = callstream_core::connection::Config::default();
        let server = BlockingServer::bind(Server::new(opts, config).unwrap());
        let server = match server {
            Ok(s) => s,
            Err(e) => {
                eprintln!("skipped: cannot listen on {bind} here: {e}");
                return;
            }
        };
        let stop = server.shutdown_handle().unwrap();
        // The wake-up goes to the loopback of the listener's family, which
        // reaches it whether or not `::` also takes IPv4 (IPV6_V6ONLY).
        assert!(stop.addr.ip().is_loopback(), "{}", stop.addr);
        assert_eq!(stop.addr.is_ipv6(), bind.is_ipv6(), "{}", stop.addr);
        let (done_tx, done) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = done_tx.send(server.run().is_ok());
        });
        stop.shutdown();
        // Returns within the drain period; a run still blocked in accept()
        // returns never.
        assert_eq!(
            done.recv_timeout(Duration::from_secs(30)),
            Ok(true),
            "run did not return after shutdown ({bind})"
        );
    }

    #[test]
    fn shutdown_wakes_an_ipv6_listener() {
        shuts_down_when_bound_to(SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, 0)));
        shuts_down_when_bound_to(SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, 0)));
    }

    #[test]
    fn shutdown_wakes_an_ipv4_listener() {
        shuts_down_when_bound_to(SocketAddr::from(([127, 0, 0, 1], 0)));
        shuts_down_when_bound_to(SocketAddr::from(([0, 0, 0, 0], 0)));
    }
}
