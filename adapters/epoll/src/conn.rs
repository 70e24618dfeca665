//! One connection on a reactor, and how it ends: write the engine's last
//! bytes (at most [`close::WRITE_LIMIT`]), half-close, then read and discard
//! for up to [`close::LINGER`] or [`close::LINGER_BYTES`] (dropping a socket
//! with unread input makes the kernel send a reset, which can destroy a
//! 400/408/413 before the client reads it). Each step is taken when the
//! socket is ready, never waited for: a reactor serves its other connections
//! meanwhile.
use callstream_server::reactor::{Next, State};
use callstream_server::{Admission, Driver, close};
use std::io::{self, Read as _};
use std::net::{Shutdown, TcpStream};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

/// A socket, its engine, and its place on the reactor.
pub(crate) struct Conn {
    pub(crate) stream: TcpStream,
    /// Tells this connection from an earlier one with the same slab key.
    pub(crate) generation: u32,
    pub(crate) driver: Driver,
    /// Counts the connection as open until it is dropped.
    pub(crate) admission: Admission,
    /// Set while the connection sits in the reactor's wake-up queue.
    pub(crate) queued: Arc<AtomicBool>,
    pub(crate) state: State,
    pub(crate) eof: bool,
}

impl Conn {
    /// The engine asked to close at `now`.
    pub(crate) fn close(&mut self, now: Instant) -> Next {
        self.state = State::Flushing(now + close::WRITE_LIMIT);
        self.flush(now)
    }

    /// Writes more of the last bytes; once they are out, half-closes and
    /// lingers.
    pub(crate) fn flush(&mut self, now: Instant) -> Next {
        let State::Flushing(until) = self.state else {
            return Next::Stay;
        };
        if self.driver.write_now(&self.stream).is_err() {
            let _ = self.stream.shutdown(Shutdown::Write);
            return Next::Remove;
        }
        if !self.driver.transmit().is_empty() {
            return Next::Until(until);
        }
        let _ = self.stream.shutdown(Shutdown::Write);
        let until = now + close::LINGER;
        self.state = State::Lingering(until, 0);
        match self.linger() {
            Next::Remove => Next::Remove,
            _ => Next::Until(until),
        }
    }

    /// Discards what the peer still sends, until its end or the byte limit.
    pub(crate) fn linger(&mut self) -> Next {
        let mut sink = [0u8; 4096];
        loop {
            let State::Lingering(_, total) = &mut self.state else {
                return Next::Stay;
            };
            match self.stream.read(&mut sink) {
                Ok(n) if n > 0 && *total + n < close::LINGER_BYTES => *total += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Next::Stay,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                _ => return Next::Remove,
            }
        }
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
        drop(self.stream);
        self.driver.finish();
        self.admission
    }
}
