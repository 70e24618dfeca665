//! One reactor: an epoll instance, the connections it accepted, their timers.
//!
//! Each connection is a byte pump and a timer around the server layer's
//! [`Driver`], as in the other adapters: read into it, write what it gives,
//! wake at its deadline. A reactor thread owns its connections outright, so
//! the frame path takes no lock and wakes no other thread. Sockets are
//! registered once, edge-triggered for reading and writing: no `epoll_ctl`
//! per frame.
use crate::timers::Timers;
use callstream_server::observer::Drained;
use callstream_server::{Admission, Driver, Server, close};
use rustix::event::epoll::{self, EventData, EventFlags};
use slab::Slab;
use std::io::{self, Read as _, Write as _};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

/// Event data of the wake-up eventfd; listener `i` is `1 + i`. Connections
/// carry a nonzero generation in the high half, so they never collide.
const NOTIFY: u64 = 0;
/// 8 KiB per read: a media message is under 400 bytes.
const READ_BUF: usize = 8192;
/// Full reads in a row before the other connections get their turn.
const READ_BURST: usize = 16;
/// Accepts in a row before the connections get their turn.
const ACCEPT_BURST: usize = 64;
/// Out of descriptors (EMFILE and friends): stop accepting this long rather
/// than spin on a listener that stays readable.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// What other threads share with one reactor: its epoll instance and its
/// wake-up queue.
pub(crate) struct Handle {
    epoll: OwnedFd,
    eventfd: OwnedFd,
    /// Connections a handler's remote control asked to run: (key, generation).
    woken: Mutex<Vec<(usize, u32)>>,
}

impl Handle {
    pub(crate) fn new() -> io::Result<Handle> {
        let epoll = epoll::create(epoll::CreateFlags::CLOEXEC)?;
        let flags = rustix::event::EventfdFlags::CLOEXEC | rustix::event::EventfdFlags::NONBLOCK;
        let eventfd = rustix::event::eventfd(0, flags)?;
        epoll::add(&epoll, &eventfd, EventData::new_u64(NOTIFY), EventFlags::IN)?;
        let woken = Mutex::new(Vec::new());
        Ok(Handle {
            epoll,
            eventfd,
            woken,
        })
    }

    /// Registers listener `i`. Exclusive: a new connection wakes one reactor
    /// waiting in `epoll_wait`, the listener's own first (it registered there
    /// first). A reactor busy in a handler is not waiting, so another takes
    /// the connection: the kernel's SO_REUSEPORT spreading never strands a
    /// caller behind a blocked thread.
    pub(crate) fn listen(&self, l: &TcpListener, i: usize) -> io::Result<()> {
        let flags = EventFlags::IN | EventFlags::EXCLUSIVE;
        Ok(epoll::add(
            &self.epoll,
            l,
            EventData::new_u64(1 + i as u64),
            flags,
        )?)
    }

    /// Wakes the reactor's `epoll_wait` (from any thread).
    pub(crate) fn notify(&self) {
        let _ = rustix::io::write(&self.eventfd, &1u64.to_ne_bytes());
    }

    fn wake(&self, key: usize, generation: u32) {
        let mut woken = self.woken.lock().unwrap_or_else(|e| e.into_inner());
        woken.push((key, generation));
        drop(woken);
        self.notify();
    }
}

enum State {
    /// The engine runs.
    Open,
    /// The engine closed: writing its last bytes, until then at the latest.
    Flushing(Instant),
    /// Half-closed: discarding what the peer still sends until then, so that
    /// the kernel sends no reset over the last answer.
    Lingering(Instant, usize),
}

struct Conn {
    stream: TcpStream,
    generation: u32,
    driver: Driver,
    _admission: Admission,
    /// Set while the connection sits in the wake-up queue: one entry per
    /// burst of remote-control commands.
    queued: Arc<AtomicBool>,
    state: State,
    eof: bool,
}

/// One thread's event loop.
pub(crate) struct Reactor {
    pub(crate) index: usize,
    pub(crate) handle: Arc<Handle>,
    pub(crate) server: Arc<Server>,
    pub(crate) listeners: Option<Arc<[TcpListener]>>,
    pub(crate) stop: Arc<OnceLock<Instant>>,
    conns: Slab<Conn>,
    timers: Timers,
    generations: u32,
    paused_until: Option<Instant>,
    /// Connections that filled the read buffer READ_BURST times in a row.
    again: Vec<usize>,
    buf: Vec<u8>,
}

impl Reactor {
    pub(crate) fn new(
        index: usize,
        handle: Arc<Handle>,
        server: Arc<Server>,
        listeners: Arc<[TcpListener]>,
        stop: Arc<OnceLock<Instant>>,
    ) -> Reactor {
        Reactor {
            index,
            handle,
            server,
            listeners: Some(listeners),
            stop,
            conns: Slab::new(),
            timers: Timers::default(),
            generations: 0,
            paused_until: None,
            again: Vec::new(),
            buf: vec![0; READ_BUF],
        }
    }

    /// Runs until shutdown and every connection closed, or `give_up_at`.
    /// Returns the admissions of connections still open then: the server
    /// counts them while it reports how the drain went.
    pub(crate) fn run(mut self) -> io::Result<Vec<Admission>> {
        let mut events = Vec::with_capacity(1024);
        let mut give_up_at = None;
        loop {
            let now = Instant::now();
            while let Some(key) = self.timers.pop_due(now) {
                self.on_timer(key, now);
            }
            if give_up_at.is_none() {
                if let Some(&at) = self.stop.get() {
                    give_up_at = Some(self.server.options().give_up_at(at));
                    self.begin_shutdown(now);
                }
            }
            if let Some(g) = give_up_at {
                if self.conns.is_empty() || now >= g {
                    break;
                }
            }
            if self.paused_until.is_some_and(|t| t <= now) {
                self.paused_until = None;
                self.listen(true);
            }
            let wake_at = [self.timers.next(), self.paused_until, give_up_at]
                .into_iter()
                .flatten()
                .min();
            let timeout = match wake_at {
                _ if !self.again.is_empty() => Some(Duration::ZERO),
                Some(t) => Some(t.saturating_duration_since(Instant::now())),
                None => None,
            };
            let timeout = timeout.and_then(|t| rustix::event::Timespec::try_from(t).ok());
            events.clear();
            let spare = rustix::buffer::spare_capacity(&mut events);
            match epoll::wait(&self.handle.epoll, spare, timeout.as_ref()) {
                Ok(_) | Err(rustix::io::Errno::INTR) => {}
                Err(e) => return Err(e.into()),
            }
            let now = Instant::now();
            for ev in &events {
                let (data, flags) = (ev.data.u64(), ev.flags);
                let (key, generation) = ((data & 0xffff_ffff) as usize, (data >> 32) as u32);
                match (generation, key) {
                    (0, 0) => self.on_notify(now),
                    (0, i) => self.accept(i - 1, now),
                    _ => self.on_ready(key, generation, flags, now),
                }
            }
            for key in std::mem::take(&mut self.again) {
                self.on_ready(key, 0, EventFlags::IN, now);
            }
        }
        let mut left = Vec::new();
        for conn in self.conns.drain() {
            conn.driver.finish();
            left.push(conn._admission);
        }
        Ok(left)
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
        self.listen(false);
        self.listeners = None;
        let open: Vec<usize> = self.conns.iter().map(|(k, _)| k).collect();
        for key in open {
            if let Some(c) = self.conns.get_mut(key) {
                if matches!(c.state, State::Open) {
                    c.driver.shutdown(now);
                    self.service(key, now);
                }
            }
        }
    }

    fn listen(&mut self, on: bool) {
        for (i, l) in self.listeners.iter().flat_map(|l| l.iter()).enumerate() {
            let _ = match on {
                true => self.handle.listen(l, i),
                false => epoll::delete(&self.handle.epoll, l).map_err(io::Error::from),
            };
        }
    }

    fn accept(&mut self, i: usize, now: Instant) {
        for _ in 0..ACCEPT_BURST {
            let Some(l) = self.listeners.as_ref().and_then(|l| l.get(i)) else {
                return;
            };
            match l.accept() {
                Ok((stream, peer)) => self.admit(stream, peer, now),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::Interrupted | io::ErrorKind::ConnectionAborted
                    ) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    self.listen(false);
                    self.paused_until = Some(now + ACCEPT_BACKOFF);
                    return;
                }
            }
        }
    }

    fn admit(&mut self, stream: TcpStream, peer: SocketAddr, now: Instant) {
        if stream.set_nonblocking(true).is_err() {
            return;
        }
        let _ = stream.set_nodelay(true);
        let Some(admission) = self.server.admit(peer) else {
            // The canned 503, best effort: a fresh socket's buffer takes it.
            let _ = (&stream).write(callstream_core::http::overloaded_response());
            let _ = stream.shutdown(Shutdown::Both);
            return;
        };
        self.generations = self.generations.checked_add(1).unwrap_or(1);
        let generation = self.generations;
        let entry = self.conns.vacant_entry();
        let key = entry.key();
        let queued = Arc::new(AtomicBool::new(false));
        let (q, h) = (queued.clone(), Arc::downgrade(&self.handle));
        let waker = Arc::new(move || wake(&q, &h, key, generation));
        let driver = self.server.driver(peer, now, Some(waker));
        let data = EventData::new_u64(u64::from(generation) << 32 | key as u64);
        let flags = EventFlags::IN | EventFlags::OUT | EventFlags::RDHUP | EventFlags::ET;
        if let Err(e) = epoll::add(&self.handle.epoll, &stream, data, flags) {
            tracing::warn!(%peer, error = %e, "cannot watch the connection; closed it");
            driver.finish();
            return;
        }
        entry.insert(Conn {
            stream,
            generation,
            driver,
            _admission: admission,
            queued,
            state: State::Open,
            eof: false,
        });
        self.service(key, now);
    }

    fn on_notify(&mut self, now: Instant) {
        let _ = rustix::io::read(&self.handle.eventfd, &mut [0u8; 8]);
        let woken =
            std::mem::take(&mut *self.handle.woken.lock().unwrap_or_else(|e| e.into_inner()));
        for (key, generation) in woken {
            let Some(c) = self
                .conns
                .get_mut(key)
                .filter(|c| c.generation == generation)
            else {
                continue;
            };
            c.queued.store(false, Ordering::Release);
            if matches!(c.state, State::Open) {
                c.driver.handle_timeout(now);
                self.service(key, now);
            }
        }
    }

    fn on_timer(&mut self, key: usize, now: Instant) {
        let Some(c) = self.conns.get_mut(key) else {
            return;
        };
        match c.state {
            State::Open => {
                c.driver.handle_timeout(now);
                self.service(key, now);
            }
            // The write limit passed: give up on the last bytes, no linger.
            State::Flushing(until) if until <= now => {
                let _ = c.stream.shutdown(Shutdown::Write);
                self.remove(key);
            }
            State::Lingering(until, _) if until <= now => self.remove(key),
            State::Flushing(until) | State::Lingering(until, _) => self.timers.arm(key, until),
        }
    }

    /// Readiness; `generation` 0 means "whichever connection has the key now".
    fn on_ready(&mut self, key: usize, generation: u32, flags: EventFlags, now: Instant) {
        let Some(c) = self.conns.get_mut(key) else {
            return;
        };
        if generation != 0 && c.generation != generation {
            return;
        }
        match c.state {
            State::Open => {
                let readable =
                    EventFlags::IN | EventFlags::RDHUP | EventFlags::HUP | EventFlags::ERR;
                if flags.intersects(readable) {
                    self.read(key, now);
                } else {
                    self.service(key, now);
                }
            }
            State::Flushing(_) => self.flush(key, now),
            State::Lingering(..) => self.linger(key),
        }
    }

    /// Reads what the socket holds, draining the engine after each read.
    fn read(&mut self, key: usize, now: Instant) {
        for _ in 0..READ_BURST {
            let Some(c) = self
                .conns
                .get_mut(key)
                .filter(|c| matches!(c.state, State::Open))
            else {
                return;
            };
            if c.eof {
                return self.service(key, now);
            }
            let n = match c.stream.read(&mut self.buf) {
                Ok(0) => {
                    c.eof = true;
                    c.driver.handle_eof(now);
                    0
                }
                Ok(n) => {
                    c.driver
                        .handle_receive(now, self.buf.get(..n).unwrap_or_default());
                    n
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return self.service(key, now),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => {
                    c.eof = true;
                    c.driver.handle_eof(now);
                    0
                }
            };
            self.service(key, now);
            // A short read emptied the socket: anything arriving later is a
            // new edge. Reading on until WouldBlock would cost a syscall per
            // frame.
            if n < self.buf.len() {
                return;
            }
        }
        self.again.push(key);
    }

    /// Drains the engine, arms its deadline, writes what the socket takes.
    fn service(&mut self, key: usize, now: Instant) {
        let Some(c) = self.conns.get_mut(key) else {
            return;
        };
        let close = match c.driver.poll() {
            Drained::Wait(t) => {
                self.timers.arm(key, t);
                false
            }
            Drained::Close => true,
        };
        // Never wait on the write alone: a peer that stops reading cannot
        // freeze this loop (the engine bounds what waits and closes past its
        // limit).
        if let Err(e) = write_now(&c.stream, &mut c.driver) {
            tracing::debug!(error = %e, "write failed");
            c.driver.handle_eof(now);
            let _ = c.driver.poll();
            return self.remove(key);
        }
        if close {
            c.state = State::Flushing(now + close::WRITE_LIMIT);
            self.timers.arm(key, now + close::WRITE_LIMIT);
            self.flush(key, now);
        }
    }

    /// Writes the engine's last bytes, then half-closes and lingers.
    fn flush(&mut self, key: usize, now: Instant) {
        let Some(c) = self.conns.get_mut(key) else {
            return;
        };
        if write_now(&c.stream, &mut c.driver).is_err() {
            let _ = c.stream.shutdown(Shutdown::Write);
            return self.remove(key);
        }
        if c.driver.transmit().is_empty() {
            let _ = c.stream.shutdown(Shutdown::Write);
            c.state = State::Lingering(now + close::LINGER, 0);
            self.timers.arm(key, now + close::LINGER);
            self.linger(key);
        }
    }

    /// Discards what the peer still sends, until its end or the limits.
    fn linger(&mut self, key: usize) {
        let mut sink = [0u8; 4096];
        loop {
            let Some(c) = self.conns.get_mut(key) else {
                return;
            };
            let State::Lingering(_, total) = &mut c.state else {
                return;
            };
            match c.stream.read(&mut sink) {
                Ok(n) if n > 0 && *total + n < close::LINGER_BYTES => *total += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                _ => return self.remove(key),
            }
        }
    }

    fn remove(&mut self, key: usize) {
        self.timers.cancel(key);
        if let Some(c) = self.conns.try_remove(key) {
            // Closing the socket also takes it out of the epoll set.
            drop(c.stream);
            c.driver.finish();
        }
    }
}

/// The waker a connection's engine calls when a handler's remote control
/// queued a command (from any thread): one queue entry and one eventfd write
/// per burst of commands.
fn wake(queued: &AtomicBool, handle: &Weak<Handle>, key: usize, generation: u32) {
    if queued.swap(true, Ordering::AcqRel) {
        return;
    }
    if let Some(h) = handle.upgrade() {
        h.wake(key, generation);
    }
}

/// Writes as much of the engine's output as the socket takes without waiting.
fn write_now(mut stream: &TcpStream, conn: &mut Driver) -> io::Result<()> {
    while !conn.transmit().is_empty() {
        match stream.write(conn.transmit()) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => conn.consume_transmit(n),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
