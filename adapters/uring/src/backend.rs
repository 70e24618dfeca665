//! The reactor loop's backend on a thread's ring.
//!
//! Each loop iteration is one `io_uring_enter`, which both submits what the
//! iteration queued (the sends of every connection it touched, receives to
//! arm again) and waits for the next completions: receives (each a buffer
//! of bytes the kernel read, many per armed receive), finished sends, new
//! connections, the eventfd. A send is a copy: the engine's transmit buffer
//! keeps growing while the kernel sends, so the bytes in flight live in the
//! ring's table, and a connection has one send in flight at a time.
//!
//! The end of a connection is the loop's; here the last bytes go out
//! through the ring like the others, and the discarding is done by the
//! multishot receive already armed.
use crate::UringOptions;
use crate::ring::{Completion, Keep, Op, Ring};
use callstream_server::Driver;
use callstream_server::config::Runtime;
use callstream_server::reactor::{Backend, Event, Handle, Received};
use std::io;
use std::net::{Shutdown, TcpListener, TcpStream};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

/// The token of the eventfd read.
const NOTIFY: u64 = 0;
/// Multishot accept on listener `i`: `ACCEPT + i`.
const ACCEPT: u64 = 1;
/// Multishot readiness of another reactor's listener `i`: `POLL + i`.
const POLL: u64 = 1 << 31;

/// One reactor's ring, as the reactor loop's backend.
pub struct Uring {
    handle: Arc<Handle<()>>,
    /// The least wait for completions to gather (zero: none).
    tick: Duration,
    ring: Ring,
    /// Listener operations that ended and are to be armed again.
    rearm: Vec<u64>,
    completions: Vec<Completion>,
}

/// A connection's socket and the operations it has on the ring.
pub struct Io {
    /// Shared with the ring's operations on it: the descriptor stays open
    /// (its number not reused) until the last of them completes.
    stream: Rc<TcpStream>,
    /// Receiving ended: the peer's end, or an error.
    ended: bool,
    /// A multishot receive is armed.
    receiving: bool,
    /// A send is in flight; the engine's further output waits in its
    /// transmit buffer.
    sending: bool,
    /// The send buffer between sends (kept to save an allocation a frame).
    spare: Vec<u8>,
}

/// A receive's completion, or nothing to read (lingering: the armed receive
/// brings what comes).
#[derive(Clone, Copy, Debug)]
pub enum Input {
    /// The kernel's result, its provided buffer, whether the receive is
    /// still armed.
    Recv(i32, Option<u16>, bool),
    /// Nothing yet.
    Idle,
}

/// A send's completion: the kernel's result, the bytes and where it began.
pub struct Output(i32, Option<(Vec<u8>, usize)>);

impl Backend for Uring {
    type Io = Io;
    type Input = Input;
    type Output = Output;
    type Sys = ();
    type Options = UringOptions;
    const RUNTIME: Runtime = Runtime::Uring;

    fn bounded(options: UringOptions) -> UringOptions {
        options.bounded()
    }

    /// The ring reads the eventfd: it blocks.
    fn handle() -> io::Result<Handle<()>> {
        Handle::new((), false)
    }

    /// Armed by each reactor on its own ring ([`Backend::listen`]).
    fn watch(_: &[Arc<Handle<()>>], _: &[Arc<TcpListener>]) -> io::Result<()> {
        Ok(())
    }

    /// A multishot accept on the reactor's own listener, a multishot
    /// readiness poll on the others': a reactor stuck in a handler strands
    /// no new caller, another accepts for it.
    fn new(
        index: usize,
        handle: Arc<Handle<()>>,
        listeners: &Arc<[Arc<TcpListener>]>,
        options: UringOptions,
    ) -> io::Result<Uring> {
        let mut ring = Ring::new(options.receive_buffers)?;
        if !options.tick.is_zero() && !ring.has_min_wait() {
            tracing::warn!(
                "this kernel cannot wait for a batch (min_wait_usec, Linux 6.12): the tick is ignored"
            );
        }
        ring.read(Rc::new(handle.clone()), NOTIFY)?;
        let rearm = (0..listeners.len() as u64)
            .map(|i| {
                if i == index as u64 {
                    ACCEPT + i
                } else {
                    POLL + i
                }
            })
            .collect();
        Ok(Uring {
            handle,
            tick: options.tick,
            ring,
            rearm,
            completions: Vec::with_capacity(1024),
        })
    }

    fn started(&mut self, index: usize) {
        if !self.tick.is_zero() && index == 0 {
            tracing::info!(
                tick_ms = self.tick.as_millis() as u64,
                "each loop gathers completions for at least the tick"
            );
        }
    }

    /// With a tick, waits that long for completions to gather first (fewer,
    /// fuller iterations: less work per frame, later echoes).
    fn wait(
        &mut self,
        timeout: Option<Duration>,
        events: &mut Vec<Event<Uring>>,
    ) -> io::Result<()> {
        self.ring.publish();
        let batch = (!self.tick.is_zero()).then_some(self.tick);
        self.ring.wait(timeout, batch)?;
        self.ring.completions(&mut self.completions);
        for c in self.completions.drain(..) {
            let event = match c.op {
                Op::Recv => Event::Input(c.token, Input::Recv(c.result, c.buffer, c.more)),
                Op::Send => Event::Output(c.token, Output(c.result, c.bytes)),
                Op::Read => {
                    self.ring.read(Rc::new(self.handle.clone()), NOTIFY)?;
                    Event::Notify
                }
                Op::Accept | Op::Poll if !c.more => {
                    self.rearm.push(c.token);
                    continue;
                }
                Op::Poll => Event::Acceptable((c.token - POLL) as usize),
                Op::Accept => match c.accepted {
                    Some(fd) => Event::Accepted(Ok(TcpStream::from(fd))),
                    None if matches!(-c.result, libc::EAGAIN | libc::ECANCELED) => continue,
                    None => Event::Accepted(Err(io::Error::from_raw_os_error(-c.result))),
                },
                Op::Cancel => continue,
            };
            events.push(event);
        }
        Ok(())
    }

    fn listen(&mut self, listeners: &[Arc<TcpListener>]) -> io::Result<()> {
        for token in std::mem::take(&mut self.rearm) {
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

    /// An accept that failed ended: it is armed again after the pause.
    fn pause(&mut self, _: &[Arc<TcpListener>]) {}

    /// Cancelling lets go of the listeners.
    fn unlisten(&mut self, listeners: &[Arc<TcpListener>]) {
        for l in listeners {
            let _ = self.ring.cancel_fd(Rc::new(l.clone()));
        }
        self.rearm.clear();
    }

    /// The receive is armed by the flush, with the sends.
    fn register(&mut self, stream: TcpStream, _: u64) -> io::Result<Io> {
        Ok(Io {
            stream: Rc::new(stream),
            ended: false,
            receiving: false,
            sending: false,
            spare: Vec::new(),
        })
    }

    fn receive(&mut self, io: &mut Io, input: Input, _: bool) -> Received<'_> {
        let Input::Recv(result, buffer, more) = input else {
            return Received::Nothing;
        };
        // Armed again by the flush.
        io.receiving &= more;
        match buffer {
            Some(id) => {
                let len = usize::try_from(result).unwrap_or(0);
                Received::Bytes(self.ring.received(id, len), false)
            }
            // Out of buffers, or cancelled: armed again by the flush.
            None if result == -libc::ENOBUFS || result == -libc::ECANCELED => Received::Nothing,
            None => {
                io.ended = true;
                Received::End
            }
        }
    }

    fn done(&mut self, input: Input) {
        if let Input::Recv(_, Some(id), _) = input {
            self.ring.recycle(id);
        }
    }

    /// A short send sends the rest next, before anything newer.
    fn sent(&mut self, io: &mut Io, token: u64, Output(result, bytes): Output) -> io::Result<()> {
        io.sending = false;
        let Some((bytes, from)) = bytes else {
            return Ok(());
        };
        let sent = match usize::try_from(result) {
            Ok(n) if n > 0 => from + n,
            _ => return Err(io::Error::from_raw_os_error(-result)),
        };
        if sent < bytes.len() {
            io.sending = true;
            return self.ring.send(io.stream.clone(), token, bytes, sent);
        }
        io.spare = bytes;
        Ok(())
    }

    /// Arms the receive if it ended, and queues one send of everything the
    /// engine has to write unless one is in flight (whose completion
    /// touches the connection again).
    fn flush(&mut self, io: &mut Io, token: u64, driver: &mut Driver) -> io::Result<()> {
        if !io.receiving && !io.ended {
            io.receiving = true;
            self.ring.recv_multi(io.stream.clone(), token)?;
        }
        if !io.sending && !driver.transmit().is_empty() {
            let mut bytes = std::mem::take(&mut io.spare);
            bytes.clear();
            bytes.extend_from_slice(driver.transmit());
            driver.consume_transmit(bytes.len());
            io.sending = true;
            self.ring.send(io.stream.clone(), token, bytes, 0)?;
        }
        Ok(())
    }

    fn sending(io: &Io) -> bool {
        io.sending
    }

    fn half_close(io: &Io) {
        let _ = io.stream.shutdown(Shutdown::Write);
    }

    /// The armed receive discards what comes; without one, nothing can.
    fn linger(&mut self, io: &Io) -> Option<Input> {
        io.receiving.then_some(Input::Idle)
    }

    /// The socket closes when the last operation on it completes.
    fn release(&mut self, io: Io) {
        if io.receiving || io.sending {
            let _ = self.ring.cancel_fd(io.stream);
        }
    }
}
