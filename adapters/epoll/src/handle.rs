//! What other threads share with one reactor: its epoll instance, and the
//! queue and eventfd through which a handler's remote control (on a thread of
//! its own) wakes one of the reactor's connections.
use callstream_core::handler::Waker;
use rustix::event::epoll::{self, EventData, EventFlags};
use std::io;
use std::net::TcpListener;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// Event data of the eventfd; listener `i` is `1 + i`. Connections carry a
/// nonzero generation in the high half, so they never collide.
pub(crate) const NOTIFY: u64 = 0;

/// One reactor's epoll instance and wake-up queue.
pub(crate) struct Handle {
    pub(crate) epoll: OwnedFd,
    eventfd: OwnedFd,
    /// Connections to run: (slab key, generation).
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

    /// Wakes the reactor's `epoll_wait` (from any thread).
    pub(crate) fn notify(&self) {
        let _ = rustix::io::write(&self.eventfd, &1u64.to_ne_bytes());
    }

    /// On the reactor, after an eventfd event: the connections to run.
    pub(crate) fn take_woken(&self) -> Vec<(usize, u32)> {
        let _ = rustix::io::read(&self.eventfd, &mut [0u8; 8]);
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
