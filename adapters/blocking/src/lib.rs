//! # callstream-blocking
//!
//! callstream's server on plain std threads: one thread per connection, a
//! blocking socket with a read timeout as the timer. It drives the same sans-IO
//! [`Connection`] as the smol server and shares its observer (logs, metrics,
//! recordings), so the two behave identically; the conformance tests run
//! against both.
//!
//! It suits embedding in a program that has no async runtime, and modest call
//! counts: each connection costs a thread. A `RemoteControl` wake (a handler
//! sending audio from its own thread) is noticed within [`POLL`], because a
//! blocking read cannot be interrupted.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

use callstream_core::connection::{self, Connection};
use callstream_core::metrics::Metrics;
use callstream_smol::observer::{self, Drained, Observer};
use callstream_smol::server::Options;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The longest a connection thread sleeps before looking at its wake and
/// shutdown flags.
pub const POLL: Duration = Duration::from_millis(10);

struct Shared {
    engine: Arc<connection::Config>,
    metrics: Arc<Metrics>,
    opts: Options,
    open: AtomicUsize,
    shutting_down: AtomicBool,
}

/// A bound server, ready to run.
pub struct Server {
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
            // Unblock accept() with a connection of our own.
            let _ = TcpStream::connect_timeout(&self.addr, Duration::from_millis(200));
        }
    }
}

impl Server {
    /// Binds now, so the address is known before [`Server::run`].
    pub fn bind(
        opts: Options,
        mut engine: connection::Config,
        metrics: Arc<Metrics>,
    ) -> io::Result<Server> {
        let listener = TcpListener::bind(opts.bind)?;
        callstream_smol::observer::serve_metrics(&mut engine, &metrics);
        let shared = Arc::new(Shared {
            engine: Arc::new(engine),
            metrics,
            opts,
            open: AtomicUsize::new(0),
            shutting_down: AtomicBool::new(false),
        });
        Ok(Server { listener, shared })
    }

    /// The bound address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// A handle that starts the graceful shutdown from anywhere.
    pub fn shutdown_handle(&self) -> io::Result<ShutdownHandle> {
        let mut addr = self.local_addr()?;
        if addr.ip().is_unspecified() {
            addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
        }
        Ok(ShutdownHandle {
            shared: self.shared.clone(),
            addr,
        })
    }

    /// Accepts connections until shutdown, then waits for them to drain.
    pub fn run(self) -> io::Result<()> {
        let threads: Arc<Mutex<Vec<std::thread::JoinHandle<()>>>> = Arc::default();
        for stream in self.listener.incoming() {
            if self.shared.shutting_down.load(Ordering::SeqCst) {
                break;
            }
            let stream = match stream {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    std::thread::sleep(Duration::from_millis(50));
                    continue;
                }
            };
            let peer = stream
                .peer_addr()
                .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
            let _ = stream.set_nodelay(true);
            if self.shared.open.load(Ordering::Relaxed) >= self.shared.opts.max_connections {
                self.shared.metrics.connection_refused();
                tracing::warn!(%peer, limit = self.shared.opts.max_connections, "connection limit reached, answering 503");
                let mut s = stream;
                let _ = s.set_write_timeout(Some(Duration::from_secs(1)));
                let _ = s.write_all(callstream_core::http::overloaded_response());
                let _ = s.shutdown(Shutdown::Both);
                continue;
            }
            self.shared.open.fetch_add(1, Ordering::Relaxed);
            self.shared.metrics.connection_opened();
            let shared = self.shared.clone();
            let spawned = std::thread::Builder::new()
                .name("callstream-conn".into())
                .spawn(move || {
                    serve_connection(stream, peer, &shared);
                    shared.open.fetch_sub(1, Ordering::Relaxed);
                    shared.metrics.connection_closed();
                });
            let t = match spawned {
                Ok(t) => t,
                Err(e) => {
                    // Out of threads: this connection is dropped, the server goes on.
                    self.shared.open.fetch_sub(1, Ordering::Relaxed);
                    self.shared.metrics.connection_closed();
                    self.shared.metrics.connection_refused();
                    tracing::error!(%peer, error = %e, "cannot start a thread for the connection; closed it");
                    continue;
                }
            };
            let mut g = threads.lock().unwrap_or_else(|e| e.into_inner());
            g.retain(|t| !t.is_finished());
            g.push(t);
        }
        drop(self.listener);
        tracing::info!(
            open_connections = self.shared.open.load(Ordering::Relaxed),
            "shutting down: no new connections, draining"
        );
        // Wait for the connections to drain, but never past the drain period
        // plus a little: the platform kills the process anyway.
        let give_up = Instant::now() + self.shared.opts.drain + Duration::from_secs(1);
        while self.shared.open.load(Ordering::Relaxed) > 0 && Instant::now() < give_up {
            std::thread::sleep(Duration::from_millis(20));
        }
        let open = self.shared.open.load(Ordering::Relaxed);
        if open > 0 {
            tracing::warn!(
                open_connections = open,
                "connections still open after the drain period; exiting anyway"
            );
            return Ok(());
        }
        let all = std::mem::take(&mut *threads.lock().unwrap_or_else(|e| e.into_inner()));
        for t in all {
            let _ = t.join();
        }
        tracing::info!("all connections closed");
        Ok(())
    }
}

/// After the last answer, reads and discards briefly: dropping a socket with
/// unread input makes the kernel send a reset, which can destroy a
/// 400/408/413 before the client reads it.
fn linger(stream: &mut TcpStream) {
    let until = Instant::now() + Duration::from_secs(1);
    let mut sink = [0u8; 4096];
    let mut total = 0;
    while total < 64 * 1024 {
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

fn serve_connection(mut stream: TcpStream, peer: SocketAddr, shared: &Shared) {
    // A peer that stops reading must not hold this thread forever.
    let _ = stream.set_write_timeout(Some(Duration::from_secs(10)));
    let mut conn = Connection::new(shared.engine.clone(), Instant::now());
    let woken = Arc::new(AtomicBool::new(false));
    let w = woken.clone();
    conn.set_waker(Arc::new(move || w.store(true, Ordering::Release)));
    let mut obs = Observer::new(
        peer,
        shared.metrics.clone(),
        shared.opts.recordings_dir.clone(),
    );
    let mut buf = vec![0u8; 8192];
    let mut drain_until: Option<Instant> = None;
    let mut shutdown_sent = false;
    let mut eof = false;
    loop {
        let (close, deadline) = match observer::drain(&mut conn, &mut obs) {
            Drained::Wait(t) => (false, Some(t)),
            Drained::Close => (true, None),
        };
        let pending = conn.transmit().len();
        if pending > 0 {
            if let Err(e) = stream.write_all(conn.transmit()) {
                tracing::debug!(%peer, error = %e, "write failed");
                conn.handle_eof(Instant::now());
                let _ = observer::drain(&mut conn, &mut obs);
                break;
            }
            conn.consume_transmit(pending);
        }
        if close {
            let _ = stream.shutdown(Shutdown::Write);
            linger(&mut stream);
            break;
        }
        let now = Instant::now();
        if !shutdown_sent && shared.shutting_down.load(Ordering::SeqCst) {
            match drain_until {
                None if obs.in_call() => {
                    drain_until = Some(now + shared.opts.calls_close_after(&shared.engine));
                }
                Some(t) if now < t => {}
                _ => {
                    shutdown_sent = true;
                    conn.shutdown(now);
                    continue;
                }
            }
        }
        if woken.swap(false, Ordering::AcqRel) {
            conn.handle_timeout(now);
            continue;
        }
        if deadline.is_some_and(|d| d <= now) {
            conn.handle_timeout(now);
            continue;
        }
        if eof {
            // Nothing more will arrive; only time moves the connection on.
            std::thread::sleep(POLL);
            conn.handle_timeout(Instant::now());
            continue;
        }
        let wait = deadline
            .map_or(POLL, |d| (d - now).min(POLL))
            .max(Duration::from_millis(1));
        let _ = stream.set_read_timeout(Some(wait));
        match stream.read(&mut buf) {
            Ok(0) => {
                eof = true;
                conn.handle_eof(Instant::now());
            }
            Ok(n) => conn.handle_receive(Instant::now(), &buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) =>
            {
                if deadline.is_some_and(|d| d <= Instant::now()) {
                    conn.handle_timeout(Instant::now());
                }
            }
            Err(_) => {
                eof = true;
                conn.handle_eof(Instant::now());
            }
        }
    }
    obs.finish();
}
