//! Waking a connection's task from another thread, for async pumps.
use std::sync::atomic::Ordering;
use std::task::Poll;

/// A handler's remote control (another thread) asking this connection's task
/// to run: a flag plus the task's waker. Cheaper to poll on every loop than a
/// channel, which registers a listener each time.
#[derive(Default)]
pub struct RemoteWake {
    woken: std::sync::atomic::AtomicBool,
    waker: std::sync::Mutex<Option<std::task::Waker>>,
}

impl RemoteWake {
    /// Sets the flag and wakes the task (from any thread).
    pub fn wake(&self) {
        self.woken.store(true, Ordering::Release);
        let w = self.waker.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(w) = w {
            w.wake();
        }
    }

    /// Ready once per wake since the last ready poll; registers the task's
    /// waker otherwise.
    pub fn poll(&self, cx: &mut std::task::Context<'_>) -> Poll<()> {
        if self.woken.swap(false, Ordering::AcqRel) {
            return Poll::Ready(());
        }
        let mut slot = self.waker.lock().unwrap_or_else(|e| e.into_inner());
        if !slot.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            *slot = Some(cx.waker().clone());
        }
        drop(slot);
        // A wake between the swap and storing the waker must not be lost.
        if self.woken.swap(false, Ordering::AcqRel) {
            return Poll::Ready(());
        }
        Poll::Pending
    }
}
