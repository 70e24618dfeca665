//! One reactor: an epoll instance, the connections it accepted, their timers.
//!
//! Each connection is a byte pump and a timer around the server layer's
//! [`Driver`], as in the other adapters: read into it, write what it gives,
//! wake at its deadline. A reactor thread owns its connections outright, so
//! the frame path takes no lock and wakes no other thread. Sockets are
//! registered once, edge-triggered for reading and writing: no `epoll_ctl`
//! per frame.
use crate::conn::Conn;
use crate::handle::{Handle, NOTIFY};
use callstream_server::listen::{ACCEPT_BACKOFF, accept_error_is_transient};
use callstream_server::observer::Drained;
use callstream_server::reactor::{Drain, Generations, Next, State, split, token, waker};
use callstream_server::timers::Timers;
use callstream_server::{Admission, Server};
use rustix::event::epoll::{self, EventData, EventFlags};
use slab::Slab;
use std::io::{self, Read as _, Write as _};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// 8 KiB per read: a media message is under 400 bytes.
const READ_BUF: usize = 8192;
/// Full reads in a row before the other connections get their turn.
const READ_BURST: usize = 16;
/// Accepts in a row before the connections get their turn.
const ACCEPT_BURST: usize = 64;

/// One thread's event loop.
pub(crate) struct Reactor {
    index: usize,
    handle: Arc<Handle>,
    server: Arc<Server>,
    /// Every reactor's listener; `None` once shutting down.
    listeners: Option<Arc<[TcpListener]>>,
    stop: Arc<OnceLock<Instant>>,
    conns: Slab<Conn>,
    timers: Timers,
    generations: Generations,
    paused_until: Option<Instant>,
    /// Connections that filled the read buffer READ_BURST times in a row,
    /// with the flags of the edge that started the reads.
    again: Vec<(usize, EventFlags)>,
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
            generations: Generations::default(),
            paused_until: None,
            again: Vec::new(),
            buf: vec![0; READ_BUF],
        }
    }

    /// Runs until shutdown and every connection closed, or the drain is over.
    /// Returns the admissions of connections still open then: the server
    /// counts them while it reports how the drain went.
    pub(crate) fn run(mut self) -> io::Result<Vec<Admission>> {
        let mut events = Vec::with_capacity(1024);
        let mut drain = Drain::default();
        loop {
            let now = Instant::now();
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
                self.listen(true);
            }
            let wake_at = drain.wake_at([self.timers.poll_timeout(), self.paused_until]);
            let timeout = match wake_at {
                _ if !self.again.is_empty() => Some(Duration::ZERO),
                Some(t) => Some(t.saturating_duration_since(Instant::now())),
                None => None,
            };
            // rustix rounds up to whole milliseconds: never wakes early.
            let timeout = timeout.and_then(|t| rustix::event::Timespec::try_from(t).ok());
            events.clear();
            let spare = rustix::buffer::spare_capacity(&mut events);
            match epoll::wait(&self.handle.epoll, spare, timeout.as_ref()) {
                Ok(_) | Err(rustix::io::Errno::INTR) => {}
                Err(e) => return Err(e.into()),
            }
            let now = Instant::now();
            // Every connection with input starts loading its call's state
            // now, all at once, and during the reads (`Driver::prefetch`; the
            // first `AHEAD` of them).
            for ev in events.iter().take(callstream_server::prefetch::AHEAD) {
                let data = ev.data.u64();
                let (key, generation) = split(data);
                // Listeners and the eventfd have generation 0, which no
                // connection has.
                if let Some(c) = self.conns.get(key).filter(|c| c.generation == generation) {
                    c.driver.prefetch();
                    self.timers.prefetch(key);
                }
            }
            for ev in &events {
                let (data, flags) = (ev.data.u64(), ev.flags);
                let (key, generation) = split(data);
                match (generation, data) {
                    (0, NOTIFY) => self.on_notify(now),
                    (0, _) => self.accept(key - 1, now),
                    _ => self.on_ready(key, Some(generation), flags, now),
                }
            }
            for (key, flags) in std::mem::take(&mut self.again) {
                self.on_ready(key, None, flags, now);
            }
        }
        Ok(self.conns.drain().map(Conn::finish).collect())
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
            if let Some(c) = self.conns.get_mut(key)
                && matches!(c.state, State::Open)
            {
                c.driver.shutdown(now);
                self.service(key, now);
            }
        }
    }

    fn listen(&mut self, on: bool) {
        for (i, l) in self.listeners.iter().flat_map(|l| l.iter()).enumerate() {
            if on {
                let _ = self.handle.listen(l, i);
            } else {
                self.handle.unlisten(l);
            }
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
                Err(e) if accept_error_is_transient(&e) => {}
                Err(e) => {
                    // Out of descriptors (EMFILE and friends): the listener
                    // stays readable, so stop watching it for a while.
                    self.server.accept_failed(&e, now);
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
        let generation = self.generations.take_next();
        let entry = self.conns.vacant_entry();
        let key = entry.key();
        let queued = Arc::new(AtomicBool::new(false));
        let waker = waker(&self.handle, key, generation, queued.clone());
        let driver = admission.driver(peer, now, Some(waker));
        let data = EventData::new_u64(token(key, generation));
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
            admission,
            queued,
            state: State::Open,
            eof: false,
        });
        self.service(key, now);
    }

    fn on_notify(&mut self, now: Instant) {
        let conns = &self.conns;
        let run = self.handle.take_to_run(|key, generation| {
            let c = conns.get(key).filter(|c| c.generation == generation)?;
            Some(&*c.queued)
        });
        for key in run {
            if let Some(c) = self.conns.get_mut(key)
                && matches!(c.state, State::Open)
            {
                c.driver.handle_timeout(now);
                self.service(key, now);
            }
        }
    }

    fn on_timer(&mut self, key: usize, now: Instant) {
        let Some(c) = self.conns.get_mut(key) else {
            return;
        };
        if matches!(c.state, State::Open) {
            c.driver.handle_timeout(now);
            self.service(key, now);
        } else {
            let next = c.expire(now);
            self.apply(key, next);
        }
    }

    /// Readiness of connection `key` (`generation` checked when known).
    fn on_ready(&mut self, key: usize, generation: Option<u32>, flags: EventFlags, now: Instant) {
        let Some(c) = self.conns.get_mut(key) else {
            return;
        };
        if generation.is_some_and(|g| g != c.generation) {
            return;
        }
        let next = match c.state {
            State::Open => {
                let readable = EventFlags::IN | EventFlags::RDHUP | EventFlags::HUP;
                // An error is found out by reading.
                if flags.intersects(readable | EventFlags::ERR) {
                    // The peer's FIN or RST came with this edge: no later
                    // edge will report it, so reading goes on past a short
                    // read until the end is seen.
                    let ending =
                        flags.intersects(EventFlags::RDHUP | EventFlags::HUP | EventFlags::ERR);
                    self.read(key, ending, now);
                } else {
                    self.service(key, now);
                }
                return;
            }
            State::Flushing(_) => c.flush(now),
            State::Lingering(..) => c.linger(),
        };
        self.apply(key, next);
    }

    /// Reads what the socket holds, draining the engine after each read.
    /// `ending`: the edge said the peer closed or reset, so the socket is
    /// read until its end rather than until a short read.
    fn read(&mut self, key: usize, ending: bool, now: Instant) {
        for _ in 0..READ_BURST {
            let Some(c) = self.conns.get_mut(key) else {
                return;
            };
            // The engine may have closed on the last read: its close takes
            // it from here.
            if !matches!(c.state, State::Open) {
                return;
            }
            if c.eof {
                return self.service(key, now);
            }
            let n = match c.stream.read(&mut self.buf) {
                Ok(n) if n > 0 => {
                    c.driver
                        .handle_receive(now, self.buf.get(..n).unwrap_or_default());
                    n
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return self.service(key, now),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                _ => {
                    c.eof = true;
                    c.driver.handle_eof(now);
                    0
                }
            };
            self.service(key, now);
            // A short read emptied the socket: what arrives later is a new
            // edge. Reading on until WouldBlock would cost a syscall a frame.
            // Not so when the peer's end came with the data: its edge is
            // spent, and the end would go unseen until a timeout.
            if n < self.buf.len() && !ending {
                return;
            }
        }
        let flags = if ending {
            EventFlags::IN | EventFlags::RDHUP
        } else {
            EventFlags::IN
        };
        self.again.push((key, flags));
    }

    /// Drains the engine, arms its deadline, writes what the socket takes.
    fn service(&mut self, key: usize, now: Instant) {
        let Some(c) = self
            .conns
            .get_mut(key)
            .filter(|c| matches!(c.state, State::Open))
        else {
            return;
        };
        let close = match c.driver.poll_output() {
            Drained::Timeout(t) => {
                self.timers.arm(key, t);
                false
            }
            Drained::Close => true,
        };
        // Never wait on the write alone: a peer that stops reading cannot
        // freeze this loop (the engine bounds what waits and closes past its
        // limit).
        if let Err(e) = c.driver.write_now(&c.stream) {
            tracing::debug!(error = %e, "write failed");
            c.driver.handle_eof(now);
            let _ = c.driver.poll_output();
            return self.remove(key);
        }
        if close {
            let next = c.close(now);
            self.apply(key, next);
        }
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
            // Closing the socket also takes it out of the epoll set.
            drop(c.finish());
        }
    }
}
