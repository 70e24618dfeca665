//! # callstream-epoll
//!
//! callstream's server on one epoll reactor per core: the
//! [reactor loop](callstream_server::reactor::skeleton) of the server layer
//! over epoll's system calls. Settings, logs, metrics, recordings and the
//! shutdown policy live in `callstream-server`, protocol decisions in
//! `callstream-core`, so it behaves like every other runtime; the
//! conformance tests run against all of them.
//!
//! - **Listeners**: every reactor watches every listener with
//!   `EPOLLEXCLUSIVE`, its own first: a connection wakes its listener's
//!   reactor when that one is waiting, and another when it is busy (a
//!   handler that blocks its thread strands no new caller).
//! - **Sockets** are nonblocking and registered once, edge-triggered for
//!   reading and writing: no `epoll_ctl` on the frame path. A write takes
//!   what the socket takes now; the rest waits for the writable edge. A
//!   short read empties the socket, so reading stops there (reading on until
//!   `EAGAIN` would cost a system call a frame), unless the edge also
//!   carried the peer's end: that edge is spent, so the socket is read to
//!   its end.
//! - **Wake-ups**: the reactor's eventfd is in its epoll set.
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

use callstream_server::Driver;
use callstream_server::config::{Runtime, Settings};
use callstream_server::reactor::{Backend, Event, Handle, Reactors, Received, split};
use rustix::event::epoll::{self, EventData, EventFlags};
use std::io::{self, Read as _};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::time::Duration;

pub use callstream_server::reactor::ShutdownHandle;

/// A bound server of epoll reactors, ready to run.
pub type EpollServer = Reactors<Epoll>;

/// Event data of the eventfd; listener `i` is `1 + i`. Connections carry a
/// nonzero generation in the high half, so they never collide.
const NOTIFY: u64 = 0;
/// 8 KiB per read: a media message is under 400 bytes.
const READ_BUF: usize = 8192;

/// One reactor's epoll instance, as the reactor loop's backend.
pub struct Epoll {
    handle: Arc<Handle<OwnedFd>>,
    /// The listeners are in the epoll set (not while accepting is paused).
    watching: bool,
    buf: Vec<u8>,
    ready: Vec<epoll::Event>,
}

/// An edge of a connection that can be read: whether it carried the
/// peer's end (RDHUP, HUP, ERR).
type Ending = bool;

impl Epoll {
    fn watch_listener(handle: &Handle<OwnedFd>, l: &TcpListener, i: usize) -> io::Result<()> {
        let data = EventData::new_u64(1 + i as u64);
        let flags = EventFlags::IN | EventFlags::EXCLUSIVE;
        Ok(epoll::add(&handle.sys, l, data, flags)?)
    }
}

impl Backend for Epoll {
    type Io = TcpStream;
    type Input = Ending;
    type Output = ();
    type Sys = OwnedFd;
    type Options = ();
    const RUNTIME: Runtime = Runtime::Epoll;

    fn handle() -> io::Result<Handle<OwnedFd>> {
        let handle = Handle::new(epoll::create(epoll::CreateFlags::CLOEXEC)?, true)?;
        let data = EventData::new_u64(NOTIFY);
        epoll::add(&handle.sys, &handle, data, EventFlags::IN)?;
        Ok(handle)
    }

    /// Exclusive wake-ups go in the order of registration: listener `i`'s
    /// own reactor first.
    fn watch(handles: &[Arc<Handle<OwnedFd>>], listeners: &[Arc<TcpListener>]) -> io::Result<()> {
        for (i, l) in listeners.iter().enumerate() {
            for h in handles.iter().cycle().skip(i).take(handles.len()) {
                Self::watch_listener(h, l, i)?;
            }
        }
        Ok(())
    }

    fn new(
        _: usize,
        handle: Arc<Handle<OwnedFd>>,
        _: &Arc<[Arc<TcpListener>]>,
        (): (),
    ) -> io::Result<Epoll> {
        Ok(Epoll {
            handle,
            watching: true,
            buf: vec![0; READ_BUF],
            ready: Vec::with_capacity(1024),
        })
    }

    fn wait(
        &mut self,
        timeout: Option<Duration>,
        events: &mut Vec<Event<Epoll>>,
    ) -> io::Result<()> {
        // rustix rounds up to whole milliseconds: never wakes early.
        let timeout = timeout.and_then(|t| rustix::event::Timespec::try_from(t).ok());
        self.ready.clear();
        let spare = rustix::buffer::spare_capacity(&mut self.ready);
        match epoll::wait(&self.handle.sys, spare, timeout.as_ref()) {
            Ok(_) | Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
        let ending = EventFlags::RDHUP | EventFlags::HUP | EventFlags::ERR;
        for ev in &self.ready {
            let (data, flags) = (ev.data.u64(), ev.flags);
            events.push(match split(data) {
                (_, 0) if data == NOTIFY => {
                    self.handle.clear();
                    Event::Notify
                }
                (i, 0) => Event::Acceptable(i - 1),
                // An error is found out by reading.
                _ if flags.intersects(EventFlags::IN | ending) => {
                    Event::Input(data, flags.intersects(ending))
                }
                _ => Event::Output(data, ()),
            });
        }
        Ok(())
    }

    fn listen(&mut self, listeners: &[Arc<TcpListener>]) -> io::Result<()> {
        if !self.watching {
            self.watching = true;
            for (i, l) in listeners.iter().enumerate() {
                let _ = Self::watch_listener(&self.handle, l, i);
            }
        }
        Ok(())
    }

    fn pause(&mut self, listeners: &[Arc<TcpListener>]) {
        if self.watching {
            self.watching = false;
            for l in listeners {
                let _ = epoll::delete(&self.handle.sys, l);
            }
        }
    }

    fn unlisten(&mut self, listeners: &[Arc<TcpListener>]) {
        self.pause(listeners);
    }

    fn register(&mut self, stream: TcpStream, token: u64) -> io::Result<TcpStream> {
        stream.set_nonblocking(true)?;
        let flags = EventFlags::IN | EventFlags::OUT | EventFlags::RDHUP | EventFlags::ET;
        epoll::add(&self.handle.sys, &stream, EventData::new_u64(token), flags)?;
        Ok(stream)
    }

    fn receive(&mut self, io: &mut TcpStream, ending: Ending, drain: bool) -> Received<'_> {
        loop {
            return match io.read(&mut self.buf) {
                Ok(n) if n > 0 => {
                    let more = n == self.buf.len() || ending || drain;
                    Received::Bytes(self.buf.get(..n).unwrap_or_default(), more)
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => Received::Nothing,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                _ => Received::End,
            };
        }
    }

    fn done(&mut self, _: Ending) {}

    fn sent(&mut self, _: &mut TcpStream, _: u64, (): ()) -> io::Result<()> {
        Ok(())
    }

    /// Never waits on the write: a peer that stops reading cannot freeze the
    /// loop (the engine bounds what waits, and closes past its limit).
    fn flush(&mut self, io: &mut TcpStream, _: u64, driver: &mut Driver) -> io::Result<()> {
        driver.write_now(&*io)
    }

    fn sending(_: &TcpStream) -> bool {
        false
    }

    fn half_close(io: &TcpStream) {
        let _ = io.shutdown(Shutdown::Write);
    }

    /// What came while the last bytes went out was not read (its edge is
    /// spent): read it now.
    fn linger(&mut self, _: &TcpStream) -> Option<Ending> {
        Some(false)
    }

    /// Closing the socket also takes it out of the epoll set.
    fn release(&mut self, io: TcpStream) {
        drop(io);
    }
}

/// Runs the server with these settings until SIGTERM or SIGINT, then drains.
pub fn run(s: Settings) -> Result<(), Box<dyn std::error::Error>> {
    callstream_server::serve(&s, EpollServer::bind)
}
