//! The reactor pumps' one loop: the pumps that run one thread per core, each
//! owning the connections it accepted in a slab (`callstream-epoll`,
//! `callstream-uring`). A pump is a [`Backend`]: the system calls that wait,
//! watch the listeners, register a socket, receive and send. Everything else
//! is written once, here: the loop and its connection table, admission,
//! wake-ups from other threads, timers, the close and linger machine
//! ([`skeleton`]), and the threads, their start, shutdown and join
//! ([`Reactors`]).
#[cfg(target_os = "linux")]
pub mod skeleton;
#[cfg(target_os = "linux")]
mod threads;

#[cfg(target_os = "linux")]
pub use skeleton::{Backend, Event, Received};
#[cfg(target_os = "linux")]
pub use threads::{Handle, Reactors, ShutdownHandle};

use crate::{Admission, Server};
use callstream_core::handler::Waker;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::Instant;

/// A connection's token, as the kernel hands it back with an event: its slab
/// key in the low half (a key fits in 32 bits: a reactor holds far fewer
/// connections than that), its generation in the high half. Generations
/// start at 1, so a token with generation 0 is never a connection's (the
/// pumps use those for their listeners and their wake-up descriptor).
#[must_use]
pub fn token(key: usize, generation: u32) -> u64 {
    debug_assert!(u32::try_from(key).is_ok(), "slab key {key} over 32 bits");
    u64::from(generation) << 32 | (key as u64 & 0xffff_ffff)
}

/// The key and generation of a [`token`].
#[must_use]
pub fn split(token: u64) -> (usize, u32) {
    ((token & 0xffff_ffff) as usize, (token >> 32) as u32)
}

/// Tells a connection from an earlier one that had the same slab key: an
/// event or a wake-up meant for the earlier one is then dropped.
#[derive(Debug, Default)]
pub struct Generations(u32);

impl Generations {
    /// The next generation: never 0, wrapping after `u32::MAX` to 1.
    pub fn take_next(&mut self) -> u32 {
        self.0 = self.0.checked_add(1).unwrap_or(1);
        self.0
    }
}

/// What a reactor shares with other threads: a way to wake it, and the
/// connections a handler's remote control asked it to run.
pub trait Notify: Send + Sync + 'static {
    /// Wakes the reactor's wait (from any thread).
    fn notify(&self);
    /// The connections to run once it wakes.
    fn wakeups(&self) -> &Wakeups;
}

/// Connections woken from other threads, as (slab key, generation).
#[derive(Debug, Default)]
pub struct Wakeups(Mutex<Vec<(usize, u32)>>);

impl Wakeups {
    /// On the reactor, once woken: the connections to run.
    fn take(&self) -> Vec<(usize, u32)> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// On the reactor, once woken: the keys of the connections to run now.
    /// `queued(key, generation)` gives a woken connection's queued flag
    /// while it is still the connection that was woken; each flag is cleared
    /// before the key is handed out. The clear is a swap, not a store: it is
    /// ordered before the engine's look at its own inbox, so a command sent
    /// meanwhile is either seen when the connection runs or queues it again.
    pub fn take_to_run<'a>(
        &self,
        mut queued: impl FnMut(usize, u32) -> Option<&'a AtomicBool>,
    ) -> Vec<usize> {
        let mut woken = self.take();
        woken.retain(|&(key, generation)| {
            queued(key, generation).is_some_and(|flag| {
                flag.swap(false, Ordering::AcqRel);
                true
            })
        });
        woken.into_iter().map(|(key, _)| key).collect()
    }

    fn push(&self, key: usize, generation: u32) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((key, generation));
    }
}

/// The waker for the engine of connection `key` on reactor `handle`: one
/// queue entry and one notification per burst of remote-control commands
/// (`queued` stays set until the reactor takes the entry, and the reactor
/// clears it before it runs the connection). It holds the reactor weakly: a
/// handler thread that outlives the server keeps no descriptor open.
pub fn waker<H: Notify>(
    handle: &Arc<H>,
    key: usize,
    generation: u32,
    queued: Arc<AtomicBool>,
) -> Waker {
    let handle = Arc::downgrade(handle);
    Arc::new(move || {
        if queued.swap(true, Ordering::AcqRel) {
            return;
        }
        if let Some(h) = handle.upgrade() {
            h.wakeups().push(key, generation);
            h.notify();
        }
    })
}

/// Where a connection on a reactor is in its life. Its end is: write the
/// engine's last bytes (at most [`close::WRITE_LIMIT`](crate::close::WRITE_LIMIT)),
/// half-close, then discard what the peer still sends (at most
/// [`close::LINGER`](crate::close::LINGER) or
/// [`close::LINGER_BYTES`](crate::close::LINGER_BYTES)).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// The engine runs.
    Open,
    /// The engine closed: writing its last bytes, until then at the latest.
    Flushing(Instant),
    /// Half-closed: discarding what the peer still sends until then; the
    /// bytes discarded so far.
    Lingering(Instant, usize),
}

/// What a reactor does with a connection after a step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Next {
    /// Nothing more now: wait for its input or its armed deadline.
    Stay,
    /// Wake it at this deadline at the latest.
    Until(Instant),
    /// It is over: drop it.
    Remove,
}

impl State {
    /// A closing connection's deadline came at `now` (or an engine deadline
    /// armed earlier): past the write limit its last bytes are given up on,
    /// past the linger it is done; before either, it waits for that one.
    /// A connection removed while `Flushing` gave up on its last bytes, and
    /// is half-closed before it is dropped, so the peer learns the end.
    #[must_use]
    pub fn expire(self, now: Instant) -> Next {
        match self {
            State::Open => Next::Stay,
            State::Flushing(until) | State::Lingering(until, _) if until <= now => Next::Remove,
            State::Flushing(until) | State::Lingering(until, _) => Next::Until(until),
        }
    }
}

/// A reactor's shutdown as it goes: nothing until the server's stop time is
/// set, then the moment the reactor gives up on the connections it still
/// has ([`crate::Options::give_up_at`]).
#[derive(Debug, Default)]
pub struct Drain {
    give_up_at: Option<Instant>,
}

impl Drain {
    /// True once, the first time the reactor sees `stop` set: it then stops
    /// accepting and asks its connections to close (the engine gives live
    /// calls their grace).
    pub fn begins(&mut self, stop: &OnceLock<Instant>, server: &Server) -> bool {
        match (self.give_up_at, stop.get()) {
            (None, Some(&at)) => {
                self.give_up_at = Some(server.options().give_up_at(at));
                true
            }
            _ => false,
        }
    }

    /// Whether the reactor is done at `now`: draining, and with no
    /// connection left or past the drain period.
    #[must_use]
    pub fn is_over(&self, now: Instant, connections: usize) -> bool {
        self.give_up_at
            .is_some_and(|g| connections == 0 || now >= g)
    }

    /// When the reactor must wake at the latest: the earliest of `others`
    /// (its timers, say) and, once draining, the moment it gives up.
    #[must_use]
    pub fn wake_at(&self, others: impl IntoIterator<Item = Option<Instant>>) -> Option<Instant> {
        others.into_iter().chain([self.give_up_at]).flatten().min()
    }
}

/// A reactor thread: the connections still open when it ended.
pub type ReactorThread = JoinHandle<io::Result<Vec<Admission>>>;

/// Waits for every reactor thread, then lets `server` report how the drain
/// went ([`Server::finish`]) while the connections still open are counted.
/// The first error a reactor returned (or a reactor's panic) is the result.
pub fn join(
    server: &Server,
    stop: &OnceLock<Instant>,
    threads: Vec<ReactorThread>,
) -> io::Result<()> {
    let mut result = Ok(());
    let mut still_open = Vec::new();
    for t in threads {
        match t.join() {
            Ok(Ok(left)) => still_open.extend(left),
            Ok(Err(e)) => result = result.and(Err(e)),
            Err(_) => result = result.and(Err(io::Error::other("a reactor panicked"))),
        }
    }
    let give_up_at = stop.get().map(|&at| server.options().give_up_at(at));
    server.finish(give_up_at);
    drop(still_open);
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    #[test]
    fn a_token_gives_back_its_key_and_generation() {
        for (key, generation) in [(0, 1), (7, 3), (0xffff_ffff, u32::MAX), (12, 0)] {
            assert_eq!(split(token(key, generation)), (key, generation));
        }
        // A listener's or the wake-up descriptor's data: generation 0.
        assert_eq!(split(3), (3, 0));
    }

    #[test]
    fn a_closing_connection_waits_for_its_deadline_then_goes() {
        let t = Instant::now();
        let later = t + std::time::Duration::from_secs(1);
        assert_eq!(State::Open.expire(later), Next::Stay);
        for state in [State::Flushing(later), State::Lingering(later, 10)] {
            assert_eq!(state.expire(t), Next::Until(later));
            assert_eq!(state.expire(later), Next::Remove);
        }
    }

    #[test]
    fn generations_never_are_zero() {
        let mut g = Generations::default();
        assert_eq!((g.take_next(), g.take_next()), (1, 2));
        let mut g = Generations(u32::MAX - 1);
        assert_eq!(
            (g.take_next(), g.take_next(), g.take_next()),
            (u32::MAX, 1, 2)
        );
    }

    #[derive(Default)]
    struct Reactor {
        notified: AtomicUsize,
        wakeups: Wakeups,
    }

    impl Notify for Reactor {
        fn notify(&self) {
            self.notified.fetch_add(1, Ordering::SeqCst);
        }
        fn wakeups(&self) -> &Wakeups {
            &self.wakeups
        }
    }

    #[test]
    fn a_burst_of_wakes_queues_a_connection_once() {
        let reactor = Arc::new(Reactor::default());
        let queued = Arc::new(AtomicBool::new(false));
        let wake = waker(&reactor, 5, 9, queued.clone());
        wake();
        wake();
        assert_eq!(reactor.notified.load(Ordering::SeqCst), 1);
        assert_eq!(reactor.wakeups.take(), vec![(5, 9)]);
        // The reactor clears the flag before it runs the connection: the
        // next command queues it again.
        queued.store(false, Ordering::SeqCst);
        wake();
        assert_eq!(reactor.wakeups.take(), vec![(5, 9)]);
        assert_eq!(reactor.notified.load(Ordering::SeqCst), 2);
        // A reactor gone: waking does nothing (and holds nothing open).
        let weak = Arc::downgrade(&reactor);
        queued.store(false, Ordering::SeqCst);
        drop(reactor);
        wake();
        assert!(weak.upgrade().is_none());
    }

    #[test]
    fn only_connections_still_there_run_and_their_flags_are_cleared() {
        let reactor = Arc::new(Reactor::default());
        let (a, b) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicBool::new(false)),
        );
        waker(&reactor, 1, 7, a.clone())();
        waker(&reactor, 2, 8, b.clone())();
        assert!(a.load(Ordering::SeqCst) && b.load(Ordering::SeqCst));
        // Key 2 now holds a later connection (generation 9).
        let run = reactor
            .wakeups
            .take_to_run(|key, generation| match (key, generation) {
                (1, 7) => Some(&*a),
                _ => None,
            });
        assert_eq!(run, vec![1]);
        assert!(!a.load(Ordering::SeqCst), "cleared before it runs");
        assert!(
            b.load(Ordering::SeqCst),
            "another connection's flag is left alone"
        );
        assert!(reactor.wakeups.take().is_empty());
    }

    #[test]
    fn a_drain_begins_once_and_ends_when_empty_or_late() {
        let (engine, options) = crate::testing::configured(&[]);
        let server = Server::new(options, engine).unwrap();
        let (stop, mut drain) = (OnceLock::new(), Drain::default());
        let t = Instant::now();
        assert!(!drain.begins(&stop, &server));
        assert!(
            !drain.is_over(t, 0),
            "not draining: an empty reactor goes on"
        );
        assert_eq!(drain.wake_at([None]), None);
        assert_eq!(drain.wake_at([None, Some(t)]), Some(t));
        stop.set(t).unwrap();
        assert!(drain.begins(&stop, &server));
        assert!(!drain.begins(&stop, &server), "once");
        let give_up = drain.wake_at([None]).expect("a deadline");
        assert_eq!(give_up, server.options().give_up_at(t));
        assert!(give_up > t);
        assert_eq!(drain.wake_at([Some(t)]), Some(t), "the earliest");
        assert!(!drain.is_over(t, 3));
        assert!(drain.is_over(t, 0));
        assert!(drain.is_over(give_up, 3));
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn shutdown_is_recorded_once_and_wakes_every_reactor() {
        let reactors: Vec<Arc<Reactor>> = vec![Arc::default(), Arc::default()];
        let notify: Vec<Arc<dyn Notify>> = reactors
            .iter()
            .map(|r| r.clone() as Arc<dyn Notify>)
            .collect();
        let stop = Arc::new(OnceLock::new());
        let handle = ShutdownHandle::new(notify.into(), stop.clone());
        handle.clone().shutdown();
        let at = *stop.get().expect("recorded");
        handle.shutdown();
        assert_eq!(stop.get(), Some(&at));
        for r in &reactors {
            assert_eq!(r.notified.load(Ordering::SeqCst), 1);
        }
    }
}
