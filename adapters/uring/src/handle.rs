//! What other threads share with one reactor: the eventfd its ring reads,
//! and the queue through which a handler's remote control (on a thread of
//! its own) wakes one of the reactor's connections, or the shutdown handle
//! wakes the reactor.
use callstream_core::handler::Waker;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// One reactor's eventfd and wake-up queue.
pub(crate) struct Handle {
    eventfd: OwnedFd,
    /// Connections to run: (slab key, generation).
    woken: Mutex<Vec<(usize, u32)>>,
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
            woken: Mutex::new(Vec::new()),
        })
    }

    /// Completes the ring's read of the eventfd (from any thread).
    pub(crate) fn notify(&self) {
        let _ = rustix::io::write(&self.eventfd, &1u64.to_ne_bytes());
    }

    /// On the reactor, after its eventfd read completed: the connections to
    /// run.
    pub(crate) fn take_woken(&self) -> Vec<(usize, u32)> {
        std::mem::take(&mut *self.woken.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// The waker for the engine of connection `key`: one queue entry and one
    /// eventfd write per burst of remote-control commands (`queued` stays set
    /// until the reactor takes the entry). It holds the reactor weakly: a
    /// handler thread that outlives the server keeps no descriptor open.
    pub(crate) fn waker(
        self: &Arc<Self>,
        key: usize,
        generation: u32,
        queued: Arc<AtomicBool>,
    ) -> Waker {
        let handle = Arc::downgrade(self);
        Arc::new(move || {
            if queued.swap(true, Ordering::AcqRel) {
                return;
            }
            if let Some(h) = handle.upgrade() {
                h.woken
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push((key, generation));
                h.notify();
            }
        })
    }
}
