//! One connection on a reactor: its socket, its engine, the operations it
//! has on the ring, and how it ends.
//!
//! As in the other adapters, the end is: write the engine's last bytes (for
//! at most [`close::WRITE_LIMIT`]), half-close, then discard what the peer
//! still sends for up to [`close::LINGER`] or [`close::LINGER_BYTES`]
//! (dropping a socket with unread input makes the kernel send a reset, which
//! can destroy a 400/408/413 before the client reads it). Here the last
//! bytes go out through the ring like the others, and the discarding is done
//! by the multishot receive already armed.
use callstream_server::reactor::{Next, State};
use callstream_server::{Admission, Driver, close};
use std::net::{Shutdown, TcpStream};
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

/// A socket, its engine, and its place on the reactor.
pub(crate) struct Conn {
    /// Shared with the ring's operations on it: the descriptor stays open
    /// (its number not reused) until the last of them completes.
    pub(crate) stream: Rc<TcpStream>,
    /// Tells this connection from an earlier one with the same slab key.
    pub(crate) generation: u32,
    pub(crate) driver: Driver,
    /// Counts the connection as open until it is dropped.
    pub(crate) admission: Admission,
    /// Set while the connection sits in the reactor's wake-up queue.
    pub(crate) queued: Arc<AtomicBool>,
    pub(crate) state: State,
    /// The peer's end was seen (or receiving failed).
    pub(crate) eof: bool,
    /// A multishot receive is armed.
    pub(crate) receiving: bool,
    /// A send is in flight; the engine's further output waits in its
    /// transmit buffer.
    pub(crate) sending: bool,
    /// The send buffer between sends (kept to save an allocation a frame).
    pub(crate) spare: Vec<u8>,
    /// In the reactor's list of connections to flush this loop.
    pub(crate) touched: bool,
}

impl Conn {
    /// The connection's ring token: its generation (never 0) above its key.
    pub(crate) fn token(&self, key: usize) -> u64 {
        callstream_server::reactor::token(key, self.generation)
    }

    /// The engine asked to close at `now`: its last bytes go out first.
    pub(crate) fn close(&mut self, now: Instant) -> Next {
        let until = now + close::WRITE_LIMIT;
        self.state = State::Flushing(until);
        Next::Until(until)
    }

    /// Once the last bytes are out: half-closes and lingers, unless the peer
    /// already closed its side.
    pub(crate) fn flushed(&mut self, now: Instant) -> Next {
        if !matches!(self.state, State::Flushing(_))
            || self.sending
            || !self.driver.transmit().is_empty()
        {
            return Next::Stay;
        }
        let _ = self.stream.shutdown(Shutdown::Write);
        if self.eof || !self.receiving {
            return Next::Remove;
        }
        let until = now + close::LINGER;
        self.state = State::Lingering(until, 0);
        Next::Until(until)
    }

    /// `n` bytes arrived while lingering (0: the peer's end).
    pub(crate) fn discard(&mut self, n: usize) -> Next {
        let State::Lingering(until, total) = &mut self.state else {
            return Next::Stay;
        };
        *total += n;
        if n == 0 || *total >= close::LINGER_BYTES {
            return Next::Remove;
        }
        Next::Until(*until)
    }

    /// A closing connection's deadline came ([`State::expire`]); giving up
    /// on the last bytes half-closes the socket (no linger).
    pub(crate) fn expire(&mut self, now: Instant) -> Next {
        let next = self.state.expire(now);
        if next == Next::Remove && matches!(self.state, State::Flushing(_)) {
            let _ = self.stream.shutdown(Shutdown::Write);
        }
        next
    }

    /// The connection is gone: completes a call that never saw its end.
    /// Returns the admission, which counts it until dropped.
    pub(crate) fn finish(self) -> Admission {
        self.driver.finish();
        self.admission
    }
}
