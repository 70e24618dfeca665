//! What other threads share with one reactor: the eventfd its ring reads,
//! and the queue through which a handler's remote control (on a thread of
//! its own) wakes one of the reactor's connections, or the shutdown handle
//! wakes the reactor.
use callstream_server::reactor::{Notify, Wakeups};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

/// One reactor's eventfd and wake-up queue.
pub(crate) struct Handle {
    eventfd: OwnedFd,
    /// Connections to run.
    wakeups: Wakeups,
}

impl AsFd for Handle {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.eventfd.as_fd()
    }
}

impl Handle {
    pub(crate) fn new() -> io::Result<Handle> {
        let flags = rustix::event::EventfdFlags::CLOEXEC;
        let eventfd = rustix::event::eventfd(0, flags)?;
        Ok(Handle {
            eventfd,
            wakeups: Wakeups::default(),
        })
    }
}

impl Notify for Handle {
    /// Completes the ring's read of the eventfd (from any thread).
    fn notify(&self) {
        let _ = rustix::io::write(&self.eventfd, &1u64.to_ne_bytes());
    }

    /// After its eventfd read completed, the reactor takes the connections
    /// to run from here.
    fn wakeups(&self) -> &Wakeups {
        &self.wakeups
    }
}
