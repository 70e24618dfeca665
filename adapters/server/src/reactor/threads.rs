//! A server of reactors, one thread each, over a [`Backend`]: binding,
//! starting, shutting down and joining, written once for every backend.
use super::skeleton::{Backend, Reactor};
use super::{Notify, ReactorThread, Wakeups, join};
use crate::{Pump, Server};
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::{Arc, OnceLock, mpsc};
use std::time::Instant;

/// What other threads share with one reactor: its eventfd, the queue
/// through which a handler's remote control (on a thread of its own) wakes
/// one of the reactor's connections, and what its backend keeps beside
/// them (`sys`).
pub struct Handle<S> {
    /// The backend's share (epoll: its instance).
    pub sys: S,
    eventfd: OwnedFd,
    /// Connections to run.
    pub(super) wakeups: Wakeups,
}

impl<S> Handle<S> {
    /// A handle with a fresh eventfd; `nonblocking` for a backend that reads
    /// it when ready rather than through a read the kernel completes.
    pub fn new(sys: S, nonblocking: bool) -> io::Result<Handle<S>> {
        let mut flags = rustix::event::EventfdFlags::CLOEXEC;
        if nonblocking {
            flags |= rustix::event::EventfdFlags::NONBLOCK;
        }
        Ok(Handle {
            sys,
            eventfd: rustix::event::eventfd(0, flags)?,
            wakeups: Wakeups::default(),
        })
    }

    /// Resets a nonblocking eventfd after it was reported readable.
    pub fn clear(&self) {
        let _ = rustix::io::read(&self.eventfd, &mut [0u8; 8]);
    }
}

impl<S> AsFd for Handle<S> {
    /// The eventfd.
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.eventfd.as_fd()
    }
}

impl<S: Send + Sync + 'static> Notify for Handle<S> {
    /// Makes the eventfd readable (from any thread).
    fn notify(&self) {
        let _ = rustix::io::write(&self.eventfd, &1u64.to_ne_bytes());
    }

    fn wakeups(&self) -> &Wakeups {
        &self.wakeups
    }
}

/// Stops a running server gracefully, from any thread: records when the
/// shutdown was asked for (once) and wakes every reactor, which then stops
/// accepting and lets its calls drain.
#[derive(Clone)]
pub struct ShutdownHandle {
    reactors: Arc<[Arc<dyn Notify>]>,
    stop: Arc<OnceLock<Instant>>,
}

impl ShutdownHandle {
    /// For these reactors, which look at `stop` after every wake-up.
    pub fn new(reactors: Arc<[Arc<dyn Notify>]>, stop: Arc<OnceLock<Instant>>) -> Self {
        ShutdownHandle { reactors, stop }
    }

    /// Begins the graceful shutdown: no new connections; calls drain for the
    /// configured period, then close with 1001. Calling it again does nothing
    /// more.
    pub fn shutdown(&self) {
        if self.stop.set(Instant::now()).is_ok() {
            for r in self.reactors.iter() {
                r.notify();
            }
        }
    }
}

/// A reactor thread built and waiting for the word to run (dropping the
/// sender ends it unrun).
type Waiting = (ReactorThread, mpsc::Sender<()>);

/// A bound server of reactors over backend `B`, one thread each, ready to
/// run. Each reactor owns the connections it accepted: no lock and no
/// cross-thread wake-up on the frame path.
///
/// - **Listeners**: one per reactor, bound to the same address with
///   SO_REUSEPORT, so the kernel spreads new connections across cores; a
///   reactor also takes its peers' connections when they are busy (how is
///   the backend's: [`Backend::watch`], [`Backend::listen`]).
/// - **Timers**: per reactor, one deadline per connection, re-armed only
///   when it moves earlier; the earliest bounds the wait.
/// - **Remote control**: a handler's thread queues the connection on its
///   reactor and writes the reactor's eventfd.
pub struct Reactors<B: Backend> {
    server: Arc<Server>,
    listeners: Arc<[Arc<TcpListener>]>,
    handles: Arc<[Arc<Handle<B::Sys>>]>,
    /// When the shutdown was requested.
    stop: Arc<OnceLock<Instant>>,
    threads: Vec<Waiting>,
    options: B::Options,
}

impl<B: Backend> Reactors<B> {
    /// [`Reactors::bind_with`] the default options.
    pub fn bind(server: Arc<Server>) -> io::Result<Self> {
        Self::bind_with(server, B::Options::default())
    }

    /// Binds the listening sockets ([`Options::threads`] of them) and builds
    /// a reactor on each thread, so that the address, an ephemeral port
    /// included, is known and every reactor is ready before
    /// [`Reactors::run`].
    ///
    /// [`Options::threads`]: crate::Options::threads
    pub fn bind_with(server: Arc<Server>, options: B::Options) -> io::Result<Self> {
        let options = B::bounded(options);
        let threads = server.options().threads.max(1);
        // A probe without SO_REUSEPORT first: it fails while anything listens
        // on the port, another instance of this server included, which
        // SO_REUSEPORT would otherwise let us split the traffic with
        // silently. For port 0 it picks the port.
        let probe = crate::bind_listener(server.options().bind, "PORT")?;
        let addr = probe.local_addr()?;
        drop(probe);
        let listeners = (0..threads)
            .map(|_| {
                crate::listen::bind_shared(addr)
                    .map(Arc::new)
                    .map_err(|e| crate::listen_error(addr, "PORT", e))
            })
            .collect::<io::Result<Vec<_>>>()?;
        let listeners: Arc<[Arc<TcpListener>]> = listeners.into();
        let handles = (0..threads)
            .map(|_| B::handle().map(Arc::new))
            .collect::<io::Result<Vec<_>>>()?;
        B::watch(&handles, &listeners)?;
        let handles: Arc<[Arc<Handle<B::Sys>>]> = handles.into();
        let stop = Arc::new(OnceLock::new());
        let shutdown = shutdown_handle(&handles, &stop);
        let mut waiting = Vec::with_capacity(threads);
        for (i, handle) in handles.iter().enumerate() {
            let (ready_tx, ready_rx) = mpsc::sync_channel(1);
            let (go_tx, go_rx) = mpsc::channel::<()>();
            let (handle, server, listeners, stop, shutdown) = (
                handle.clone(),
                server.clone(),
                listeners.clone(),
                stop.clone(),
                shutdown.clone(),
            );
            let thread = std::thread::Builder::new()
                .name(format!("callstream-{i}"))
                .spawn(move || {
                    // Built on its own thread: an io_uring takes submissions
                    // from the thread that made it only.
                    let backend = match B::new(i, handle.clone(), &listeners, options) {
                        Ok(b) => b,
                        Err(e) => {
                            let _ = ready_tx.send(Err(e));
                            return Ok(Vec::new());
                        }
                    };
                    let _ = ready_tx.send(Ok(()));
                    if go_rx.recv().is_err() {
                        return Ok(Vec::new());
                    }
                    let r = Reactor::new(i, handle, server, listeners, stop, backend).run();
                    if r.is_err() {
                        // The server cannot go on short of a reactor.
                        shutdown.shutdown();
                    }
                    r
                })?;
            ready_rx
                .recv()
                .map_err(|_| io::Error::other("a reactor thread ended while starting"))??;
            waiting.push((thread, go_tx));
        }
        Ok(Reactors {
            server,
            listeners,
            handles,
            stop,
            threads: waiting,
            options,
        })
    }

    /// The options in effect (bounded to what the machine takes).
    #[must_use]
    pub fn options(&self) -> B::Options {
        self.options
    }

    /// A handle that starts the graceful shutdown from anywhere.
    #[must_use]
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        shutdown_handle(&self.handles, &self.stop)
    }
}

fn shutdown_handle<S: Send + Sync + 'static>(
    handles: &[Arc<Handle<S>>],
    stop: &Arc<OnceLock<Instant>>,
) -> ShutdownHandle {
    let reactors: Vec<Arc<dyn Notify>> = handles
        .iter()
        .map(|h| h.clone() as Arc<dyn Notify>)
        .collect();
    ShutdownHandle::new(reactors.into(), stop.clone())
}

impl<B: Backend> Pump for Reactors<B> {
    fn runtime(&self) -> crate::config::Runtime {
        B::RUNTIME
    }

    /// The bound address.
    fn local_addr(&self) -> io::Result<SocketAddr> {
        match self.listeners.first() {
            Some(l) => l.local_addr(),
            None => Err(io::Error::other("no listener")),
        }
    }

    fn shutdown_fn(&self) -> impl FnOnce() + Send + 'static {
        let handle = self.shutdown_handle();
        move || handle.shutdown()
    }

    /// Runs the reactors until a shutdown is requested and every connection
    /// has closed, or the drain period is over.
    fn run(self) -> io::Result<()> {
        let Reactors {
            server,
            listeners,
            threads,
            stop,
            ..
        } = self;
        // The reactors hold the listeners now: the last to shut down closes
        // them.
        drop(listeners);
        let threads = threads
            .into_iter()
            .map(|(thread, go)| {
                let _ = go.send(());
                thread
            })
            .collect();
        join(&server, &stop, threads)
    }
}
