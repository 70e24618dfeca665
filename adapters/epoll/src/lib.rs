//! # callstream-epoll
//!
//! callstream's server on one epoll reactor per core. Each reactor thread
//! owns the connections it accepted: it reads into their server-layer
//! [`Driver`](callstream_server::Driver)s, writes what they give and wakes at
//! their deadlines, with no lock and no cross-thread wake-up on the frame
//! path. Settings, logs, metrics, recordings and the shutdown policy live in
//! `callstream-server`, protocol decisions in `callstream-core`, so it
//! behaves like the smol and blocking servers; the conformance tests run
//! against all three.
//!
//! - **Listeners**: one per reactor, bound to the same address with
//!   SO_REUSEPORT, so the kernel spreads new connections across cores. Every
//!   reactor watches every listener with `EPOLLEXCLUSIVE`, its own first: a
//!   connection wakes its listener's reactor when that one is waiting, and
//!   another when it is busy (a handler that blocks its thread strands no
//!   new caller).
//! - **Sockets** are nonblocking and registered once, edge-triggered for
//!   reading and writing: no `epoll_ctl` on the frame path. A write takes
//!   what the socket takes now; the rest waits for the writable edge.
//! - **Timers**: per reactor, one deadline per connection, re-armed only when
//!   it moves earlier; the earliest is `epoll_wait`'s timeout.
//! - **Remote control**: a handler's thread queues the connection on its
//!   reactor and writes the reactor's eventfd.
//!
//! It calls `epoll_wait` itself (through rustix) rather than through the
//! `polling` crate, whose every wait also sets a timerfd, re-arms two
//! one-shot registrations and reads an eventfd: four syscalls that would be
//! paid many times per frame under load.
//!
//! ```no_run
//! use callstream_server::config::Cli;
//! use clap::Parser;
//! callstream_epoll::run(Cli::parse().settings()).unwrap();
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod conn;
mod handle;
mod reactor;

use callstream_server::config::Settings;
use callstream_server::reactor::{Shutdown, join};
use callstream_server::{Pump, Server};
use handle::Handle;
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

/// A bound server of epoll reactors, ready to run.
pub struct EpollServer {
    server: Arc<Server>,
    listeners: Arc<[TcpListener]>,
    reactors: Arc<[Arc<Handle>]>,
    /// When the shutdown was requested.
    stop: Arc<OnceLock<Instant>>,
}

/// Stops a running server gracefully, from any thread.
#[derive(Clone)]
pub struct ShutdownHandle(Shutdown<Handle>);

impl ShutdownHandle {
    /// Begins the graceful shutdown: no new connections; calls drain for the
    /// configured period, then close with 1001. Calling it again does nothing
    /// more.
    pub fn shutdown(&self) {
        self.0.shutdown();
    }
}

impl EpollServer {
    /// Binds the listening sockets now ([`Options::threads`] of them), so
    /// that the address, an ephemeral port included, is known before
    /// [`EpollServer::run`].
    ///
    /// [`Options::threads`]: callstream_server::Options::threads
    pub fn bind(server: Arc<Server>) -> io::Result<EpollServer> {
        let threads = server.options().threads.max(1);
        // A probe without SO_REUSEPORT first: it fails while anything listens
        // on the port, another instance of this server included, which
        // SO_REUSEPORT would otherwise let us split the traffic with
        // silently. For port 0 it picks the port.
        let probe = callstream_server::bind_listener(server.options().bind, "PORT")?;
        let addr = probe.local_addr()?;
        drop(probe);
        let listeners = (0..threads)
            .map(|_| {
                callstream_server::listen::bind_shared(addr)
                    .map_err(|e| callstream_server::listen_error(addr, "PORT", e))
            })
            .collect::<io::Result<Vec<_>>>()?;
        let reactors = (0..threads)
            .map(|_| Handle::new().map(Arc::new))
            .collect::<io::Result<Vec<_>>>()?;
        for (i, l) in listeners.iter().enumerate() {
            // Its own reactor first: exclusive wake-ups go in this order.
            for r in reactors.iter().cycle().skip(i).take(threads) {
                r.listen(l, i)?;
            }
        }
        Ok(EpollServer {
            server,
            listeners: listeners.into(),
            reactors: reactors.into(),
            stop: Arc::new(OnceLock::new()),
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        match self.listeners.first() {
            Some(l) => l.local_addr(),
            None => Err(io::Error::other("no listener")),
        }
    }

    /// A handle that starts the graceful shutdown from anywhere.
    #[must_use]
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        ShutdownHandle(Shutdown::new(self.reactors.clone(), self.stop.clone()))
    }

    /// Runs the reactors until a shutdown is requested and every connection
    /// has closed, or the drain period is over.
    pub fn run(self) -> io::Result<()> {
        let handle = self.shutdown_handle();
        let EpollServer {
            server,
            listeners,
            reactors,
            stop,
        } = self;
        let mut threads = Vec::new();
        let mut result = Ok(());
        for (i, r) in reactors.iter().enumerate() {
            let reactor = reactor::Reactor::new(
                i,
                r.clone(),
                server.clone(),
                listeners.clone(),
                stop.clone(),
            );
            let h = handle.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("callstream-{i}"))
                .spawn(move || {
                    let r = reactor.run();
                    if r.is_err() {
                        // The server cannot go on short of a reactor.
                        h.shutdown();
                    }
                    r
                });
            match spawned {
                Ok(t) => threads.push(t),
                Err(e) => {
                    handle.shutdown();
                    result = Err(e);
                    break;
                }
            }
        }
        // The reactors hold the listeners now: the last to shut down closes them.
        drop(listeners);
        result.and(join(&server, &stop, threads))
    }
}

impl Pump for EpollServer {
    fn runtime(&self) -> callstream_server::config::Runtime {
        callstream_server::config::Runtime::Epoll
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        EpollServer::local_addr(self)
    }

    fn shutdown_fn(&self) -> impl FnOnce() + Send + 'static {
        let handle = self.shutdown_handle();
        move || handle.shutdown()
    }

    fn run(self) -> io::Result<()> {
        EpollServer::run(self)
    }
}

/// Runs the server with these settings until SIGTERM or SIGINT, then drains.
pub fn run(s: Settings) -> Result<(), Box<dyn std::error::Error>> {
    callstream_server::serve(&s, EpollServer::bind)
}
