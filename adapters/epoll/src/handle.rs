//! What other threads share with one reactor: its epoll instance, and the
//! queue and eventfd through which a handler's remote control (on a thread of
//! its own) wakes one of the reactor's connections.
use callstream_server::reactor::{Notify, Wakeups};
use rustix::event::epoll::{self, EventData, EventFlags};
use std::io;
use std::net::TcpListener;
use std::os::fd::OwnedFd;

/// Event data of the eventfd; listener `i` is `1 + i`. Connections carry a
/// nonzero generation in the high half, so they never collide.
pub(crate) const NOTIFY: u64 = 0;

/// One reactor's epoll instance and wake-up queue.
pub(crate) struct Handle {
    pub(crate) epoll: OwnedFd,
    eventfd: OwnedFd,
    /// Connections to run.
    wakeups: Wakeups,
}

impl Handle {
    pub(crate) fn new() -> io::Result<Handle> {
        let epoll = epoll::create(epoll::CreateFlags::CLOEXEC)?;
        let flags = rustix::event::EventfdFlags::CLOEXEC | rustix::event::EventfdFlags::NONBLOCK;
        let eventfd = rustix::event::eventfd(0, flags)?;
        epoll::add(&epoll, &eventfd, EventData::new_u64(NOTIFY), EventFlags::IN)?;
        Ok(Handle {
            epoll,
            eventfd,
            wakeups: Wakeups::default(),
        })
    }

    /// Watches listener `i`. Exclusive: a new connection wakes one reactor
    /// waiting in `epoll_wait`, the first registered first. A reactor busy in
    /// a handler is not waiting, so another one takes the connection.
    pub(crate) fn listen(&self, l: &TcpListener, i: usize) -> io::Result<()> {
        let data = EventData::new_u64(1 + i as u64);
        let flags = EventFlags::IN | EventFlags::EXCLUSIVE;
        Ok(epoll::add(&self.epoll, l, data, flags)?)
    }

    /// Stops watching a listener.
    pub(crate) fn unlisten(&self, l: &TcpListener) {
        let _ = epoll::delete(&self.epoll, l);
    }

    /// On the reactor, after an eventfd event: the connections to run
    /// ([`Wakeups::take_to_run`]).
    pub(crate) fn take_to_run<'a>(
        &self,
        queued: impl FnMut(usize, u32) -> Option<&'a std::sync::atomic::AtomicBool>,
    ) -> Vec<usize> {
        let _ = rustix::io::read(&self.eventfd, &mut [0u8; 8]);
        self.wakeups.take_to_run(queued)
    }
}

impl Notify for Handle {
    /// Wakes the reactor's `epoll_wait` (from any thread).
    fn notify(&self) {
        let _ = rustix::io::write(&self.eventfd, &1u64.to_ne_bytes());
    }

    fn wakeups(&self) -> &Wakeups {
        &self.wakeups
    }
}
