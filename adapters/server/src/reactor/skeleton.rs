//! The reactor loop, written once over a [`Backend`]: the connection table,
//! admission, wake-ups from other threads, timers, service, the close and
//! linger machine, and the drain. A backend only talks to the kernel: it
//! waits, watches the listeners, registers a socket, hands over what arrived
//! and sends what the engine gives.
//!
//! One iteration:
//!
//! 1. take the events of the last wait ([`Backend::wait`]): what arrived for
//!    a connection goes to its [`Driver`], new connections are admitted, the
//!    wake-ups of other threads run their connections;
//! 2. fire the deadlines that passed;
//! 3. begin the drain, or end, once a shutdown was asked for;
//! 4. for every connection touched in this iteration, [`Backend::flush`]
//!    what it has to write, then take the closing steps that wait for
//!    nothing;
//! 5. wait for the kernel, until the earliest deadline at the latest.
//!
//! A connection's end is: write the engine's last bytes (for at most
//! [`close::WRITE_LIMIT`]), half-close, then discard what the peer still
//! sends for up to [`close::LINGER`] or [`close::LINGER_BYTES`] (dropping a
//! socket with unread input makes the kernel send a reset, which can destroy
//! a 400/408/413 before the client reads it). Each step is taken when the
//! kernel reports the socket ready, never waited for.
use super::{Drain, Generations, Handle, Next, State, split, token, waker};
use crate::listen::{ACCEPT_BACKOFF, accept_error_is_transient};
use crate::observer::Drained;
use crate::timers::Timers;
use crate::{Admission, Driver, Server, close};
use slab::Slab;
use std::io::{self, Write as _};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// Reads of one connection in a row before the others get their turn.
const READ_BURST: usize = 16;
/// Accepts in a row before the connections get their turn.
const ACCEPT_BURST: usize = 64;

/// What the kernel reported, as a backend hands it to the loop.
pub enum Event<B: Backend> {
    /// The reactor's eventfd: another thread woke some of its connections.
    Notify,
    /// Listener `i` has connections waiting: accept them here.
    Acceptable(usize),
    /// The kernel accepted a connection (or failed to: never `EAGAIN`).
    Accepted(io::Result<TcpStream>),
    /// Input for the connection with this token ([`token`]).
    Input(u64, B::Input),
    /// The connection with this token can send, or a send of it completed.
    Output(u64, B::Output),
}

/// What [`Backend::receive`] found.
pub enum Received<'a> {
    /// Bytes from the peer; `true`: read again (more may be waiting).
    Bytes(&'a [u8], bool),
    /// Nothing now.
    Nothing,
    /// The peer's end, or an error that ends receiving.
    End,
}

/// A kernel interface a reactor runs on (epoll, io_uring): the system calls
/// and nothing else.
pub trait Backend: Sized + 'static {
    /// What a connection holds of the backend: its socket, the operations
    /// it has in flight.
    type Io;
    /// What the kernel says arrived for a connection.
    type Input: Copy;
    /// What the kernel says of a connection's sending.
    type Output;
    /// What the reactor's [`Handle`] keeps beside its eventfd (epoll: the
    /// epoll instance, shared with the thread that binds).
    type Sys: Send + Sync + 'static;
    /// The pump's own settings.
    type Options: Copy + Default + Send + std::fmt::Debug + 'static;
    /// Which runtime this is.
    const RUNTIME: crate::config::Runtime;

    /// The options as this machine can take them.
    #[must_use]
    fn bounded(options: Self::Options) -> Self::Options {
        options
    }
    /// One reactor's handle, made before the threads start.
    fn handle() -> io::Result<Handle<Self::Sys>>;
    /// Before the threads start: watches the listeners (one per reactor,
    /// on the same address) from each reactor's handle.
    fn watch(handles: &[Arc<Handle<Self::Sys>>], listeners: &[Arc<TcpListener>]) -> io::Result<()>;
    /// Reactor `index`, on its own thread.
    fn new(
        index: usize,
        handle: Arc<Handle<Self::Sys>>,
        listeners: &Arc<[Arc<TcpListener>]>,
        options: Self::Options,
    ) -> io::Result<Self>;
    /// Reactor `index` begins to run (after the boot record is logged).
    fn started(&mut self, index: usize) {
        let _ = index;
    }
    /// Submits what was queued and waits for the kernel, at most `timeout`
    /// (`None`: until something happens); appends what it reported.
    fn wait(&mut self, timeout: Option<Duration>, events: &mut Vec<Event<Self>>) -> io::Result<()>;
    /// Watches the listeners for new connections (called every iteration
    /// while accepting: again after a pause, or after an accept ended).
    fn listen(&mut self, listeners: &[Arc<TcpListener>]) -> io::Result<()>;
    /// Stops watching the listeners for a while (out of descriptors).
    fn pause(&mut self, listeners: &[Arc<TcpListener>]);
    /// Lets go of the listeners for good: shutting down.
    fn unlisten(&mut self, listeners: &[Arc<TcpListener>]);
    /// Takes an admitted connection, to be known by `token` from now on.
    fn register(&mut self, stream: TcpStream, token: u64) -> io::Result<Self::Io>;
    /// What arrived: the bytes of `input`, or read now. `drain`: the
    /// engine is done, so what comes is discarded, and reading goes on.
    fn receive(&mut self, io: &mut Self::Io, input: Self::Input, drain: bool) -> Received<'_>;
    /// The loop is through with `input` (a buffer goes back to the kernel).
    fn done(&mut self, input: Self::Input);
    /// An output event of the connection; an error ends it.
    fn sent(&mut self, io: &mut Self::Io, token: u64, output: Self::Output) -> io::Result<()>;
    /// Sends what the engine has to write (all the socket takes now, or one
    /// send in flight at a time) and keeps receiving armed.
    fn flush(&mut self, io: &mut Self::Io, token: u64, driver: &mut Driver) -> io::Result<()>;
    /// A send is still in flight.
    fn sending(io: &Self::Io) -> bool;
    /// Half-closes the socket: the peer learns the end.
    fn half_close(io: &Self::Io);
    /// Half-closed and lingering: the input to read at once, or `None` when
    /// the connection cannot discard what the peer sends (it is dropped).
    fn linger(&mut self, io: &Self::Io) -> Option<Self::Input>;
    /// The connection is gone: lets go of its socket (cancelling what it has
    /// in flight).
    fn release(&mut self, io: Self::Io);
}

/// A socket, its engine, and its place on the reactor.
struct Conn<Io> {
    io: Io,
    /// Tells this connection from an earlier one with the same slab key.
    generation: u32,
    driver: Driver,
    /// Counts the connection as open until it is dropped.
    admission: Admission,
    /// Set while the connection sits in the reactor's wake-up queue.
    queued: Arc<AtomicBool>,
    state: State,
    /// The peer's end was seen (or receiving failed).
    eof: bool,
    /// In the list of connections to flush this iteration.
    touched: bool,
}

/// One thread's event loop over backend `B`.
pub struct Reactor<B: Backend> {
    index: usize,
    handle: Arc<Handle<B::Sys>>,
    server: Arc<Server>,
    /// Every reactor's listener; `None` once shutting down.
    listeners: Option<Arc<[Arc<TcpListener>]>>,
    stop: Arc<OnceLock<Instant>>,
    backend: B,
    conns: Slab<Conn<B::Io>>,
    timers: Timers,
    generations: Generations,
    paused_until: Option<Instant>,
    /// Connections to flush at the end of this iteration.
    touched: Vec<usize>,
    /// Connections to read again at once: they filled `READ_BURST` reads,
    /// or began to linger.
    again: Vec<(u64, B::Input)>,
    events: Vec<Event<B>>,
}

impl<B: Backend> Reactor<B> {
    pub(super) fn new(
        index: usize,
        handle: Arc<Handle<B::Sys>>,
        server: Arc<Server>,
        listeners: Arc<[Arc<TcpListener>]>,
        stop: Arc<OnceLock<Instant>>,
        backend: B,
    ) -> Self {
        Reactor {
            index,
            handle,
            server,
            listeners: Some(listeners),
            stop,
            backend,
            conns: Slab::new(),
            timers: Timers::default(),
            generations: Generations::default(),
            paused_until: None,
            touched: Vec::new(),
            again: Vec::new(),
            events: Vec::with_capacity(1024),
        }
    }

    /// Runs until shutdown and every connection closed, or the drain is over.
    /// Returns the admissions of connections still open then: the server
    /// counts them while it reports how the drain went.
    pub(super) fn run(mut self) -> io::Result<Vec<Admission>> {
        let mut drain = Drain::default();
        self.backend.started(self.index);
        loop {
            let now = Instant::now();
            self.dispatch(now);
            while let Some(key) = self.timers.pop_due(now) {
                self.on_timer(key, now);
            }
            if drain.begins(&self.stop, &self.server) {
                self.begin_shutdown(now);
            }
            if drain.is_over(now, self.conns.len()) {
                break;
            }
            if self.paused_until.is_some_and(|t| t <= now) {
                self.paused_until = None;
            }
            if let Some(l) = self
                .listeners
                .as_ref()
                .filter(|_| self.paused_until.is_none())
            {
                self.backend.listen(l)?;
            }
            self.flush(now);
            let wake_at = drain.wake_at([self.timers.poll_timeout(), self.paused_until]);
            let timeout = match wake_at {
                _ if !self.again.is_empty() => Some(Duration::ZERO),
                Some(t) => Some(t.saturating_duration_since(Instant::now())),
                None => None,
            };
            self.backend.wait(timeout, &mut self.events)?;
        }
        let mut open = Vec::with_capacity(self.conns.len());
        for c in self.conns.drain() {
            self.backend.release(c.io);
            c.driver.finish();
            open.push(c.admission);
        }
        Ok(open)
    }

    /// Handles the events of the last wait, then the reads left over.
    fn dispatch(&mut self, now: Instant) {
        let mut events = std::mem::take(&mut self.events);
        // Every connection with input starts loading its call's state now,
        // all at once, rather than as each is handled (`Driver::prefetch`;
        // the first `AHEAD` of them).
        let inputs = events.iter().filter_map(|e| match e {
            Event::Input(t, _) => Some(*t),
            _ => None,
        });
        for t in inputs.take(crate::prefetch::AHEAD) {
            if let Some(key) = self.lookup(t) {
                self.conns[key].driver.prefetch();
                self.timers.prefetch(key);
            }
        }
        for event in events.drain(..) {
            match event {
                Event::Notify => self.on_notify(now),
                Event::Acceptable(i) => self.accept(i, now),
                Event::Accepted(Ok(stream)) if self.listeners.is_some() => {
                    if let Ok(peer) = stream.peer_addr() {
                        self.admit(stream, peer, now);
                    }
                }
                // Accepted before the cancellation reached the kernel:
                // shutting down takes no new connection (closing it tells
                // the client at once).
                Event::Accepted(Ok(_)) => {}
                Event::Accepted(Err(e)) => self.accept_failed(&e, now),
                Event::Input(t, input) => match self.lookup(t) {
                    Some(key) => self.on_input(key, input, now),
                    None => self.backend.done(input),
                },
                Event::Output(t, output) => self.on_output(t, output, now),
            }
        }
        self.events = events;
        for (t, input) in std::mem::take(&mut self.again) {
            match self.lookup(t) {
                Some(key) => self.on_input(key, input, now),
                None => self.backend.done(input),
            }
        }
    }

    /// The slab key of the connection `token` names, if it is still there.
    fn lookup(&self, token: u64) -> Option<usize> {
        let (key, generation) = split(token);
        self.conns
            .get(key)
            .is_some_and(|c| c.generation == generation)
            .then_some(key)
    }

    fn begin_shutdown(&mut self, now: Instant) {
        if self.index == 0 {
            tracing::info!(
                open_connections = self.server.open_connections(),
                drain_s = self.server.options().drain.as_secs_f64(),
                "shutting down: no new connections, draining"
            );
        }
        // The last reactor to let go closes the sockets: connecting fails.
        if let Some(l) = self.listeners.take() {
            self.backend.unlisten(&l);
        }
        let open: Vec<usize> = self.conns.iter().map(|(k, _)| k).collect();
        for key in open {
            self.input(key, now, Driver::shutdown);
        }
    }

    /// Gives `input` to connection `key`'s engine, if it still runs, and
    /// services it; whether it ran.
    fn input(&mut self, key: usize, now: Instant, input: fn(&mut Driver, Instant)) -> bool {
        match self.conns.get_mut(key) {
            Some(c) if c.state == State::Open => {
                input(&mut c.driver, now);
                self.service(key, now);
                true
            }
            _ => false,
        }
    }

    /// Takes the connections waiting on listener `i`.
    fn accept(&mut self, i: usize, now: Instant) {
        for _ in 0..ACCEPT_BURST {
            if self.paused_until.is_some() {
                return;
            }
            let Some(l) = self.listeners.as_ref().and_then(|l| l.get(i)) else {
                return;
            };
            match l.accept() {
                Ok((stream, peer)) => self.admit(stream, peer, now),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) => self.accept_failed(&e, now),
            }
        }
    }

    /// Out of descriptors (EMFILE and friends) leaves the listener ready:
    /// stop watching it for a while. Errors that concern one connection
    /// are passed over.
    fn accept_failed(&mut self, e: &io::Error, now: Instant) {
        if accept_error_is_transient(e) {
            return;
        }
        self.server.accept_failed(e, now);
        if let Some(l) = &self.listeners {
            self.backend.pause(l);
        }
        self.paused_until = Some(now + ACCEPT_BACKOFF);
    }

    fn admit(&mut self, stream: TcpStream, peer: SocketAddr, now: Instant) {
        let _ = stream.set_nodelay(true);
        let Some(admission) = self.server.admit(peer) else {
            // The canned 503, best effort: a fresh socket's buffer takes it.
            let _ = stream.set_nonblocking(true);
            let _ = (&stream).write(callstream_core::http::overloaded_response());
            let _ = stream.shutdown(Shutdown::Both);
            return;
        };
        let generation = self.generations.take_next();
        let entry = self.conns.vacant_entry();
        let key = entry.key();
        let io = match self.backend.register(stream, token(key, generation)) {
            Ok(io) => io,
            Err(e) => {
                tracing::warn!(%peer, error = %e, "cannot watch the connection; closed it");
                return;
            }
        };
        let queued = Arc::new(AtomicBool::new(false));
        let waker = waker(&self.handle, key, generation, queued.clone());
        entry.insert(Conn {
            io,
            generation,
            driver: admission.driver(peer, now, Some(waker)),
            admission,
            queued,
            state: State::Open,
            eof: false,
            touched: false,
        });
        self.service(key, now);
    }

    fn on_notify(&mut self, now: Instant) {
        let conns = &self.conns;
        let run = self.handle.wakeups.take_to_run(|key, generation| {
            let c = conns.get(key).filter(|c| c.generation == generation)?;
            Some(&*c.queued)
        });
        for key in run {
            self.input(key, now, Driver::handle_timeout);
        }
    }

    fn on_timer(&mut self, key: usize, now: Instant) {
        if self.input(key, now, Driver::handle_timeout) {
            return;
        }
        let Some(c) = self.conns.get_mut(key) else {
            return;
        };
        // A closing connection's deadline: giving up on the last bytes
        // half-closes the socket (no linger).
        let next = c.state.expire(now);
        if next == Next::Remove && matches!(c.state, State::Flushing(_)) {
            B::half_close(&c.io);
        }
        self.apply(key, next);
    }

    /// What arrived for connection `key`: fed to its engine while it runs,
    /// discarded (and counted) once it closed. Reads go on while the backend
    /// says more may wait, `READ_BURST` times, then the connection waits
    /// for the next iteration.
    fn on_input(&mut self, key: usize, input: B::Input, now: Instant) {
        for _ in 0..READ_BURST {
            let Some(c) = self.conns.get_mut(key) else {
                return self.backend.done(input);
            };
            let (next, more) = match self
                .backend
                .receive(&mut c.io, input, c.state != State::Open)
            {
                Received::Bytes(bytes, more) => match &mut c.state {
                    State::Open if !c.eof => {
                        c.driver.handle_receive(now, bytes);
                        (None, more)
                    }
                    State::Lingering(_, total) => {
                        *total += bytes.len();
                        let done = *total >= close::LINGER_BYTES;
                        (done.then_some(Next::Remove), more && !done)
                    }
                    _ => (None, more),
                },
                Received::Nothing => (None, false),
                Received::End => {
                    c.eof = true;
                    match c.state {
                        State::Open => {
                            c.driver.handle_eof(now);
                            (None, false)
                        }
                        State::Lingering(..) => (Some(Next::Remove), false),
                        State::Flushing(_) => (None, false),
                    }
                }
            };
            match next {
                Some(next) => self.apply(key, next),
                None => self.service(key, now),
            }
            if !more {
                return self.backend.done(input);
            }
        }
        match self.conns.get(key) {
            Some(c) => self.again.push((token(key, c.generation), input)),
            None => self.backend.done(input),
        }
    }

    fn on_output(&mut self, token: u64, output: B::Output, now: Instant) {
        let Some(key) = self.lookup(token) else {
            return;
        };
        let c = &mut self.conns[key];
        match self.backend.sent(&mut c.io, token, output) {
            Ok(()) => self.touch(key),
            Err(_) => self.failed(key, now),
        }
    }

    /// Drains the engine and arms its deadline; what it has to write goes
    /// out with this iteration's flush.
    fn service(&mut self, key: usize, now: Instant) {
        let Some(c) = self.conns.get_mut(key) else {
            return;
        };
        let next = match c.state {
            State::Open => match c.driver.poll_output() {
                Drained::Timeout(t) => Next::Until(t),
                Drained::Close => {
                    let until = now + close::WRITE_LIMIT;
                    c.state = State::Flushing(until);
                    Next::Until(until)
                }
            },
            _ => Next::Stay,
        };
        self.touch(key);
        self.apply(key, next);
    }

    fn touch(&mut self, key: usize) {
        if let Some(c) = self.conns.get_mut(key)
            && !c.touched
        {
            c.touched = true;
            self.touched.push(key);
        }
    }

    /// For each connection touched this iteration: sends what it has to
    /// write, and takes the closing steps that wait for nothing.
    fn flush(&mut self, now: Instant) {
        let mut touched = std::mem::take(&mut self.touched);
        for &key in &touched {
            let Some(c) = self.conns.get_mut(key) else {
                continue;
            };
            c.touched = false;
            let token = token(key, c.generation);
            if let Err(e) = self.backend.flush(&mut c.io, token, &mut c.driver) {
                tracing::debug!(error = %e, "send failed");
                self.failed(key, now);
                continue;
            }
            let next = self.flushed(key, now);
            self.apply(key, next);
        }
        // Keep the list's allocation.
        touched.clear();
        if self.touched.is_empty() {
            self.touched = touched;
        }
    }

    /// Once a closing connection's last bytes are out: half-closes, then
    /// lingers unless the peer already closed its side.
    fn flushed(&mut self, key: usize, now: Instant) -> Next {
        let c = &mut self.conns[key];
        if !matches!(c.state, State::Flushing(_))
            || B::sending(&c.io)
            || !c.driver.transmit().is_empty()
        {
            return Next::Stay;
        }
        B::half_close(&c.io);
        let Some(input) = self.backend.linger(&c.io).filter(|_| !c.eof) else {
            return Next::Remove;
        };
        let until = now + close::LINGER;
        c.state = State::Lingering(until, 0);
        self.again.push((token(key, c.generation), input));
        Next::Until(until)
    }

    /// Sending or receiving failed: the call ends as at the peer's end.
    fn failed(&mut self, key: usize, now: Instant) {
        if let Some(c) = self.conns.get_mut(key)
            && c.state == State::Open
        {
            c.driver.handle_eof(now);
            let _ = c.driver.poll_output();
        }
        self.remove(key);
    }

    fn apply(&mut self, key: usize, next: Next) {
        match next {
            Next::Stay => {}
            Next::Until(t) => self.timers.arm(key, t),
            Next::Remove => self.remove(key),
        }
    }

    fn remove(&mut self, key: usize) {
        self.timers.cancel(key);
        if let Some(c) = self.conns.try_remove(key) {
            self.backend.release(c.io);
            c.driver.finish();
        }
    }
}
