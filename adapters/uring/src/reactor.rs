//! One reactor: a thread's ring, the connections it accepted, their timers.
//!
//! Each loop iteration is one `io_uring_enter`, which both submits what the
//! previous iteration queued and waits for completions:
//!
//! 1. take every completion: receives (each a buffer of bytes the kernel
//!    read, many per armed receive), finished sends, new connections, the
//!    eventfd; feed them to the connections' [`Driver`]s;
//! 2. fire the engine deadlines that passed;
//! 3. for every connection touched, queue one send of all it has to write
//!    (a copy: the engine's transmit buffer keeps growing while the kernel
//!    sends, so the bytes in flight live in the ring's table) — unless one
//!    is still in flight, whose completion touches it again;
//! 4. enter the kernel: submit the queued sends and wait for the next
//!    completion, until the earliest engine deadline at the latest. With a
//!    tick, wait that long for completions to gather first (fewer, fuller
//!    iterations: less work per frame, later echoes).
//!
//! Receiving costs no system call (a multishot receive stays armed), and
//! sending none of its own: per loop, one `io_uring_enter` serves every
//! frame that arrived since the last.
use crate::conn::Conn;
use crate::handle::Handle;
use crate::ring::{Completion, Keep, Op, Ring};
use callstream_server::listen::{ACCEPT_BACKOFF, accept_error_is_transient};
use callstream_server::observer::Drained;
use callstream_server::reactor::{Drain, Generations, Next, Notify as _, State, split, waker};
use callstream_server::timers::Timers;
use callstream_server::{Admission, Server};
use slab::Slab;
use std::io::{self, Write as _};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::rc::Rc;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// The token of the eventfd read.
const NOTIFY: u64 = 0;
/// Multishot accept on listener `i`: `ACCEPT + i`.
const ACCEPT: u64 = 1;
/// Multishot readiness of another reactor's listener `i`: `POLL + i`.
const POLL: u64 = 1 << 31;
/// Accepts in a row on another reactor's listener before the connections
/// get their turn.
const ACCEPT_BURST: usize = 64;

/// One thread's event loop.
pub(crate) struct Reactor {
    index: usize,
    handle: Arc<Handle>,
    server: Arc<Server>,
    /// Every reactor's listener; `None` once shutting down.
    listeners: Option<Arc<[Arc<TcpListener>]>>,
    stop: Arc<OnceLock<Instant>>,
    /// The least wait for completions to gather (zero: none).
    tick: Duration,
    ring: Ring,
    conns: Slab<Conn>,
    timers: Timers,
    generations: Generations,
    /// Connections to flush at the end of this iteration.
    touched: Vec<usize>,
    /// Listener operations that ended and are to be armed again.
    rearm: Vec<u64>,
    paused_until: Option<Instant>,
    completions: Vec<Completion>,
}

impl Reactor {
    /// A reactor for the calling thread (its ring accepts submissions from
    /// this thread only).
    pub(crate) fn new(
        index: usize,
        handle: Arc<Handle>,
        server: Arc<Server>,
        listeners: Arc<[Arc<TcpListener>]>,
        stop: Arc<OnceLock<Instant>>,
        options: crate::UringOptions,
    ) -> io::Result<Reactor> {
        let (tick, ring) = (options.tick, Ring::new(options.receive_buffers)?);
        if !tick.is_zero() && !ring.has_min_wait() {
            tracing::warn!(
                "this kernel cannot wait for a batch (min_wait_usec, Linux 6.12): the tick is ignored"
            );
        }
        let rearm = (0..listeners.len() as u64)
            .map(|i| {
                if i == index as u64 {
                    ACCEPT + i
                } else {
                    POLL + i
                }
            })
            .collect();
        Ok(Reactor {
            index,
            handle,
            server,
            listeners: Some(listeners),
            stop,
            tick,
            ring,
            conns: Slab::new(),
            timers: Timers::default(),
            generations: Generations::default(),
            touched: Vec::new(),
            rearm,
            paused_until: None,
            completions: Vec::with_capacity(1024),
        })
    }

    /// Runs until shutdown and every connection closed, or the drain is over.
    /// Returns the admissions of connections still open then: the server
    /// counts them while it reports how the drain went.
    pub(crate) fn run(mut self) -> io::Result<Vec<Admission>> {
        self.ring.read(Rc::new(self.handle.clone()), NOTIFY)?;
        let mut drain = Drain::default();
        loop {
            let now = Instant::now();
            let mut completions = std::mem::take(&mut self.completions);
            self.ring.completions(&mut completions);
            // Every connection with bytes in this batch starts loading its
            // call's state now, all at once (`Driver::prefetch`; the first
            // `AHEAD` of them), rather than as each is handled.
            let received = completions
                .iter()
                .filter(|done| done.op == Op::Recv && done.buffer.is_some());
            for done in received.take(callstream_server::prefetch::AHEAD) {
                if let Some(conn) = peek(&self.conns, done.token) {
                    conn.driver.prefetch();
                    self.timers.prefetch(split(done.token).0);
                }
            }
            for c in completions.drain(..) {
                self.on_completion(c, now)?;
            }
            self.completions = completions;
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
            if self.paused_until.is_none() {
                self.arm_listeners()?;
            }
            self.flush(now);
            self.ring.publish();
            let wake_at = drain.wake_at([self.timers.poll_timeout(), self.paused_until]);
            let timeout = wake_at.map(|t| t.saturating_duration_since(Instant::now()));
            let batch = (!self.tick.is_zero()).then_some(self.tick);
            self.ring.wait(timeout, batch)?;
        }
        Ok(self.conns.drain().map(Conn::finish).collect())
    }

    fn on_completion(&mut self, c: Completion, now: Instant) -> io::Result<()> {
        match c.op {
            Op::Recv => self.on_recv(c, now),
            Op::Send => self.on_sent(c, now),
            Op::Read => {
                self.ring.read(Rc::new(self.handle.clone()), NOTIFY)?;
                self.on_notify(now);
            }
            Op::Accept => {
                if let Some(fd) = c.accepted {
                    // Accepted before the cancellation reached the kernel:
                    // shutting down takes no new connection (closing it
                    // tells the client at once).
                    if self.listeners.is_some() {
                        self.admit(TcpStream::from(fd), now);
                    }
                } else if !is_transient(c.result) {
                    self.server
                        .accept_failed(&io::Error::from_raw_os_error(-c.result), now);
                    self.paused_until = Some(now + ACCEPT_BACKOFF);
                }
                if !c.more {
                    self.rearm.push(c.token);
                }
            }
            Op::Poll => {
                self.accept_now((c.token - POLL) as usize, now);
                if !c.more {
                    self.rearm.push(c.token);
                }
            }
            Op::Cancel => {}
        }
        Ok(())
    }

    /// Arms the listener operations that ended (all of them at first).
    fn arm_listeners(&mut self) -> io::Result<()> {
        let Some(listeners) = &self.listeners else {
            self.rearm.clear();
            return Ok(());
        };
        for token in self.rearm.drain(..) {
            let (i, accept) = match token.checked_sub(POLL) {
                Some(i) => (i, false),
                None => (token - ACCEPT, true),
            };
            let Some(l) = listeners.get(i as usize) else {
                continue;
            };
            let keep: Keep = Rc::new(l.clone());
            if accept {
                self.ring.accept_multi(keep, token)?;
            } else {
                self.ring.poll_multi(keep, token)?;
            }
        }
        Ok(())
    }

    fn begin_shutdown(&mut self, now: Instant) {
        if self.index == 0 {
            tracing::info!(
                open_connections = self.server.open_connections(),
                drain_s = self.server.options().drain.as_secs_f64(),
                "shutting down: no new connections, draining"
            );
        }
        // Cancelling lets go of the listeners: the last reactor to let go
        // closes the sockets, and connecting fails.
        for l in self.listeners.take().iter().flat_map(|l| l.iter()) {
            let _ = self.ring.cancel_fd(Rc::new(l.clone()));
        }
        let open: Vec<usize> = self.conns.iter().map(|(k, _)| k).collect();
        for key in open {
            if let Some(c) = self.conns.get_mut(key)
                && c.state == State::Open
            {
                c.driver.shutdown(now);
                self.service(key, now);
            }
        }
    }

    /// Another reactor's listener is readable: accept here, in case that
    /// reactor is stuck in a handler (its own accept waits for it).
    fn accept_now(&mut self, i: usize, now: Instant) {
        for _ in 0..ACCEPT_BURST {
            if self.paused_until.is_some() {
                return;
            }
            let Some(l) = self.listeners.as_ref().and_then(|l| l.get(i)) else {
                return;
            };
            match l.accept() {
                Ok((stream, _)) => self.admit(stream, now),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.raw_os_error().is_some_and(|e| is_transient(-e)) => {}
                Err(e) => {
                    self.server.accept_failed(&e, now);
                    self.paused_until = Some(now + ACCEPT_BACKOFF);
                    return;
                }
            }
        }
    }

    fn admit(&mut self, stream: TcpStream, now: Instant) {
        let Ok(peer) = stream.peer_addr() else {
            return;
        };
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
        let queued = Arc::new(AtomicBool::new(false));
        let waker = waker(&self.handle, key, generation, queued.clone());
        let driver = admission.driver(peer, now, Some(waker));
        entry.insert(Conn {
            stream: Rc::new(stream),
            generation,
            driver,
            admission,
            queued,
            state: State::Open,
            eof: false,
            receiving: false,
            sending: false,
            spare: Vec::new(),
            touched: false,
        });
        // The receive is armed by the flush, with the sends.
        self.service(key, now);
    }

    fn on_recv(&mut self, c: Completion, now: Instant) {
        let data = c
            .buffer
            .map(|id| (id, usize::try_from(c.result).unwrap_or(0)));
        let Some((key, conn)) = lookup(&mut self.conns, c.token) else {
            if let Some((id, _)) = data {
                self.ring.recycle(id);
            }
            return;
        };
        if !c.more {
            // Armed again by the flush (the connection is touched below).
            conn.receiving = false;
        }
        let next = match (data, c.result) {
            (Some((id, n)), _) => {
                if conn.state == State::Open && !conn.eof {
                    conn.driver.handle_receive(now, self.ring.received(id, n));
                }
                self.ring.recycle(id);
                match conn.state {
                    State::Open => None,
                    _ => Some(conn.discard(n)),
                }
            }
            // Out of buffers, or cancelled: armed again by the flush if the
            // connection is still there.
            (None, r) if r == -libc::ENOBUFS || r == -libc::ECANCELED => Some(Next::Stay),
            // The peer's end (0), or an error, found by receiving.
            (None, _) => {
                conn.eof = true;
                match conn.state {
                    State::Open => {
                        conn.driver.handle_eof(now);
                        None
                    }
                    State::Lingering(..) => Some(conn.discard(0)),
                    State::Flushing(_) => Some(Next::Stay),
                }
            }
        };
        match next {
            None => self.service(key, now),
            Some(next) => {
                self.touch(key);
                self.apply(key, next);
            }
        }
    }

    fn on_sent(&mut self, c: Completion, now: Instant) {
        let Some((key, conn)) = lookup(&mut self.conns, c.token) else {
            return;
        };
        conn.sending = false;
        let Some((bytes, from)) = c.bytes else {
            return;
        };
        let sent = match usize::try_from(c.result) {
            Ok(n) if n > 0 => from + n,
            _ => {
                if conn.state == State::Open {
                    conn.driver.handle_eof(now);
                    let _ = conn.driver.poll_output();
                }
                return self.remove(key);
            }
        };
        if sent < bytes.len() {
            // A short send: the rest goes next, before anything newer.
            let (stream, token) = (conn.stream.clone(), conn.token(key));
            conn.sending = true;
            if self.ring.send(stream, token, bytes, sent).is_err() {
                self.remove(key);
            }
            return;
        }
        conn.spare = bytes;
        self.touch(key);
    }

    fn on_notify(&mut self, now: Instant) {
        let conns = &self.conns;
        let run = self.handle.wakeups().take_to_run(|key, generation| {
            let c = conns.get(key).filter(|c| c.generation == generation)?;
            Some(&*c.queued)
        });
        for key in run {
            if let Some(c) = self.conns.get_mut(key)
                && c.state == State::Open
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
        if c.state == State::Open {
            c.driver.handle_timeout(now);
            self.service(key, now);
        } else {
            let next = c.expire(now);
            self.apply(key, next);
        }
    }

    /// After an input: drains the engine and arms its deadline; what it
    /// has to write goes out with this iteration's flush.
    fn service(&mut self, key: usize, now: Instant) {
        let Some(c) = self.conns.get_mut(key) else {
            return;
        };
        let next = match c.driver.poll_output() {
            Drained::Timeout(t) => Next::Until(t),
            Drained::Close if c.state == State::Open => c.close(now),
            Drained::Close => Next::Stay,
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

    /// For each connection touched this iteration: arms its receive if it
    /// ended, queues one send of everything it has to write, and takes the
    /// closing steps that wait for nothing.
    fn flush(&mut self, now: Instant) {
        let touched = std::mem::take(&mut self.touched);
        for &key in &touched {
            let Some(c) = self.conns.get_mut(key) else {
                continue;
            };
            c.touched = false;
            let token = c.token(key);
            let mut failed = false;
            if !c.receiving && !c.eof {
                c.receiving = true;
                failed |= self.ring.recv_multi(c.stream.clone(), token).is_err();
            }
            if !c.sending && !c.driver.transmit().is_empty() {
                let mut bytes = std::mem::take(&mut c.spare);
                bytes.clear();
                bytes.extend_from_slice(c.driver.transmit());
                c.driver.consume_transmit(bytes.len());
                c.sending = true;
                failed |= self.ring.send(c.stream.clone(), token, bytes, 0).is_err();
            }
            let next = if failed {
                tracing::warn!("cannot queue on the ring; closed the connection");
                Next::Remove
            } else {
                c.flushed(now)
            };
            self.apply(key, next);
        }
        // Keep the list's allocation.
        let mut touched = touched;
        touched.clear();
        if self.touched.is_empty() {
            self.touched = touched;
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
            if c.receiving || c.sending {
                // The socket closes when the last operation on it completes.
                let _ = self.ring.cancel_fd(c.stream.clone());
            }
            drop(c.finish());
        }
    }
}

/// The connection `token` names, if it is still there.
fn lookup(conns: &mut Slab<Conn>, token: u64) -> Option<(usize, &mut Conn)> {
    let (key, generation) = split(token);
    conns
        .get_mut(key)
        .filter(|c| c.generation == generation)
        .map(|c| (key, c))
}

/// [`lookup`], to look only.
fn peek(conns: &Slab<Conn>, token: u64) -> Option<&Conn> {
    let (key, generation) = split(token);
    conns.get(key).filter(|c| c.generation == generation)
}

/// Accept errors that concern one connection, not the listener (and the
/// ring's own: `EAGAIN`, a cancelled accept).
fn is_transient(result: i32) -> bool {
    matches!(-result, libc::EAGAIN | libc::ECANCELED)
        || accept_error_is_transient(&io::Error::from_raw_os_error(-result))
}
