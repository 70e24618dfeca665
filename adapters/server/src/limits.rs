//! Server-wide limits an unauthenticated client could otherwise exhaust:
//! connections that are not (yet) media streams, and the memory their
//! request buffers hold.
//!
//! # Which connections give way
//!
//! Any client can open a TCP connection and trickle a request head a byte at
//! a time; a plain `MAX_CONNECTIONS` then fills with such sockets and every
//! webhook, upgrade and `/healthz` gets 503 while the calls the server exists
//! for cannot even start. A connection proves itself only by becoming a
//! call (a signed upgrade, then `start`): until its upgrade (an HTTP
//! connection: fresh, mid-request or idle between keep-alive requests) it is
//! *pending*, and between upgrade and `start` it is a stream that has not
//! started (below).
//!
//! Two rules keep room for requests that make progress:
//!
//! - At most [`Options::max_pending`](crate::Options::max_pending) pending
//!   connections (default a quarter of `MAX_CONNECTIONS`): a new connection
//!   past it sheds the **oldest** pending one. Refusing the newcomer instead
//!   would let the trickling sockets, which got there first, keep the server;
//!   shedding the oldest turns them over, and a real request (Twilio's head
//!   and body arrive within a round trip) is answered long before it becomes
//!   the oldest. The rest of `MAX_CONNECTIONS` is only reachable by streams.
//! - At `MAX_CONNECTIONS`, a newcomer sheds the oldest pending connection
//!   when there is one (else the oldest stream without `start`), and is
//!   refused (503) only when every connection is a call and the
//!   [`HEADROOM`] is taken: then the server really is full.
//!
//! # Streams that have not started
//!
//! A signed upgrade proves less than it seems: the signature covers only
//! the stream's URL, so anyone who saw one upgrade can replay it, and a
//! stream that never sends `start` holds its connection until the start
//! timeout. A stream therefore stays sheddable until its `start` arrives
//! (Twilio sends it at once), in a set of its own with its own limit,
//! [`Options::max_unstarted`](crate::Options::max_unstarted): past it, the
//! oldest stream still waiting is closed (1013, "try again later"). Replayed
//! upgrades then turn over among themselves and can crowd out neither calls
//! nor the pending HTTP connections. At `MAX_CONNECTIONS` a newcomer sheds
//! the oldest pending connection, else the oldest stream that has waited for
//! `start` longer than [`START_GRACE`]: a stream younger than that is most
//! likely a call whose `start` is on its way.
//!
//! # Room for health checks
//!
//! When every connection is a call, a newcomer is still taken in, up to
//! [`HEADROOM`] past `MAX_CONNECTIONS`, as a connection that may not become
//! a stream (an upgrade on it gets 503): `/healthz`, `/metrics` and
//! webhooks are answered however full the call slots are, and a load
//! balancer does not take a busy server for a dead one.
//!
//! A shed connection is closed by its own pump: it is flagged, its waker
//! fires, and the next call into its [`Driver`](crate::Driver) closes it
//! ([`Connection::shed`](callstream_core::connection::Connection::shed): 503
//! to a request in progress, nothing to an idle one). It still counts as open
//! until its pump lets go, so the count can pass `MAX_CONNECTIONS` by the
//! sheds in flight, for the few milliseconds each takes.
//!
//! # Request memory
//!
//! A request's head and body are buffered before its signature can be
//! checked (the body is part of what is signed). The bytes every HTTP
//! connection holds ([`Connection::request_buffer_bytes`](callstream_core::connection::Connection::request_buffer_bytes))
//! are summed across the server. When a connection's growth puts the total
//! past [`Options::request_memory`](crate::Options::request_memory), the
//! **oldest** pending connections that hold request memory are shed (503)
//! until the total is back within it, as with the pending limit: blaming
//! the connection that just grew would let parked bodies, which got there
//! first, keep the budget full and answer every new webhook 503. The one
//! that grew is shed only when the others together cannot make room (its
//! own request is larger than what is left). Bytes of connections already
//! told to close count as given back, so one flood of growth does not shed
//! more than it needs while their pumps get round to closing them.
use callstream_core::connection::Waker;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{Duration, Instant};

/// Connections taken in past `MAX_CONNECTIONS` when every connection is a
/// call (or a stream within its [`START_GRACE`]); none of them may become a
/// stream.
pub const HEADROOM: usize = 32;

/// How long a stream may wait for `start` before a newcomer at
/// `MAX_CONNECTIONS` may shed it (Twilio sends `start` with `connected`,
/// right after the upgrade).
pub const START_GRACE: Duration = Duration::from_secs(1);

/// One connection's "close now" flag and the waker that makes its pump look.
pub(crate) struct ShedSignal {
    flag: AtomicBool,
    /// Set when the pump makes the connection's driver; a shed raised before
    /// then is found by the driver's first poll.
    waker: OnceLock<Waker>,
    /// Request bytes of this connection counted as on their way back (it
    /// was shed while holding them); changed only under the state's lock.
    doomed: AtomicUsize,
}

impl ShedSignal {
    /// The waker that brings the connection's pump to its driver.
    pub(crate) fn set_waker(&self, waker: Waker) {
        let _ = self.waker.set(waker);
    }

    /// Whether the connection was told to close; clears the flag.
    pub(crate) fn take(&self) -> bool {
        // Looked at on every input: a read leaves the line shared and clean,
        // where a swap would take it exclusive each time. A raise this read
        // misses also wakes the connection, whose next input sees it.
        self.flag.load(Ordering::Acquire) && self.flag.swap(false, Ordering::AcqRel)
    }

    fn raise(&self) {
        self.flag.store(true, Ordering::Release);
        if let Some(w) = self.waker.get() {
            w();
        }
    }
}

/// A pending connection: its signal and the request bytes it holds.
struct Entry {
    signal: Arc<ShedSignal>,
    held: usize,
}

/// What the lock guards: the pending connections, oldest first, and the
/// request memory.
#[derive(Default)]
struct State {
    pending: BTreeMap<u64, Entry>,
    /// Streams whose `start` has not come, oldest first, with when they
    /// were upgraded.
    unstarted: BTreeMap<u64, (Instant, Arc<ShedSignal>)>,
    /// Bytes held by request buffers of every connection.
    memory: usize,
    /// Of [`State::memory`], the bytes of connections already shed.
    doomed: usize,
    /// Of [`State::memory`], the bytes of pending connections.
    pending_held: usize,
}

impl State {
    /// Takes `entry` (already out of the pending set) as shed: its bytes
    /// count as on their way back.
    fn doom(&mut self, entry: &Entry) {
        self.pending_held = self.pending_held.saturating_sub(entry.held);
        entry.signal.doomed.fetch_add(entry.held, Ordering::Relaxed);
        self.doomed += entry.held;
    }

    /// Takes the connection `key` out of the pending set and the unstarted
    /// streams (it settled); false when it was in neither (it was shed).
    fn settle(&mut self, key: u64) -> bool {
        if self.unstarted.remove(&key).is_some() {
            return true;
        }
        let Some(e) = self.pending.remove(&key) else {
            return false;
        };
        self.pending_held = self.pending_held.saturating_sub(e.held);
        true
    }
}

/// The pending connections, oldest first, and the request memory in use.
pub(crate) struct Pressure {
    max_pending: usize,
    max_unstarted: usize,
    /// Most media streams at once (`MAX_CONNECTIONS`): past it a
    /// connection's upgrade is answered 503.
    max_streams: usize,
    /// Media streams open now (started or not).
    streams: AtomicUsize,
    request_memory: usize,
    state: Mutex<State>,
    next: AtomicU64,
    shed: AtomicU64,
}

impl Pressure {
    pub(crate) fn new(max_pending: usize, max_unstarted: usize, request_memory: usize) -> Pressure {
        Pressure {
            max_pending: max_pending.max(1),
            max_unstarted: max_unstarted.max(1),
            max_streams: usize::MAX,
            streams: AtomicUsize::new(0),
            request_memory,
            state: Mutex::new(State::default()),
            next: AtomicU64::new(0),
            shed: AtomicU64::new(0),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Registers a new (pending) connection, in the order connections are
    /// admitted; past the pending limit the oldest pending one is shed.
    /// Returns its key and signal.
    pub(crate) fn register(&self) -> (u64, Arc<ShedSignal>) {
        let key = self.next.fetch_add(1, Ordering::Relaxed);
        let signal = Arc::new(ShedSignal {
            flag: AtomicBool::new(false),
            waker: OnceLock::new(),
            doomed: AtomicUsize::new(0),
        });
        let victim = {
            let mut state = self.state();
            let victim = if state.pending.len() >= self.max_pending {
                state.pending.pop_first()
            } else {
                None
            };
            if let Some((_, v)) = &victim {
                state.doom(v);
            }
            state.pending.insert(
                key,
                Entry {
                    signal: signal.clone(),
                    held: 0,
                },
            );
            victim
        };
        if let Some((_, v)) = victim {
            self.count_shed("pending-connection limit reached");
            v.signal.raise();
        }
        (key, signal)
    }

    /// The connection is no longer pending (it became a stream, or closed).
    /// True when it took itself out of the pending set: only a pending
    /// connection is shed, so its signal is never raised from now on.
    /// False when it had been shed already (the raise may be on its way).
    pub(crate) fn settle(&self, key: u64) -> bool {
        self.state().settle(key)
    }

    /// Sets the most media streams at once.
    pub(crate) fn with_max_streams(mut self, max: usize) -> Pressure {
        self.max_streams = max.max(1);
        self
    }

    /// A connection became a media stream; false when that put the
    /// streams past their limit (the caller sheds it).
    pub(crate) fn stream_opened(&self) -> bool {
        self.streams.fetch_add(1, Ordering::AcqRel) < self.max_streams
    }

    /// A media stream closed.
    pub(crate) fn stream_closed(&self) {
        let _ = self
            .streams
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
    }

    /// Whether every stream slot is taken: a connection's upgrade is then
    /// answered 503.
    pub(crate) fn streams_full(&self) -> bool {
        self.streams.load(Ordering::Acquire) >= self.max_streams
    }

    /// The pending connection `key` became a stream: it leaves the pending
    /// set for the streams that have not started; past their limit the
    /// oldest of those is shed. False when it was no longer pending (it was
    /// shed already; the raise may be on its way).
    pub(crate) fn upgraded(&self, key: u64, now: Instant) -> bool {
        let victim = {
            let mut state = self.state();
            let Some(entry) = state.pending.remove(&key) else {
                return false;
            };
            state.pending_held = state.pending_held.saturating_sub(entry.held);
            // The stream that has waited longest since its upgrade (not
            // since its connection: one admitted long ago may upgrade late).
            let victim = if state.unstarted.len() >= self.max_unstarted {
                let oldest = state
                    .unstarted
                    .iter()
                    .min_by_key(|(_, (since, _))| *since)
                    .map(|(k, _)| *k);
                oldest.and_then(|k| state.unstarted.remove_entry(&k))
            } else {
                None
            };
            state.unstarted.insert(key, (now, entry.signal));
            victim
        };
        if let Some((_, (_, v))) = victim {
            self.count_shed("limit of streams without start reached");
            v.raise();
        }
        true
    }

    /// Sheds the oldest pending connection to make room, or else the oldest
    /// stream that has waited for `start` past [`START_GRACE`] at `now`;
    /// false when there is neither (every connection is a call, or about to
    /// be one).
    pub(crate) fn shed_oldest(&self, now: Instant) -> bool {
        let victim = {
            let mut state = self.state();
            match state.pending.pop_first() {
                Some((_, v)) => {
                    state.doom(&v);
                    Some(v.signal)
                }
                None => {
                    let waited = state
                        .unstarted
                        .iter()
                        .filter(|(_, (since, _))| {
                            now.saturating_duration_since(*since) > START_GRACE
                        })
                        .min_by_key(|(_, (since, _))| *since)
                        .map(|(k, _)| *k);
                    waited
                        .and_then(|k| state.unstarted.remove(&k))
                        .map(|(_, v)| v)
                }
            }
        };
        match victim {
            Some(v) => {
                self.count_shed("connection limit reached");
                v.raise();
                true
            }
            None => false,
        }
    }

    /// The request buffers of the connection with `signal` (pending as
    /// `key`, if it still is) went from `old` to `new` bytes. When its growth
    /// put the server past its budget, the oldest other pending connections
    /// holding request memory are shed until it is within it again; true
    /// when even that is not enough and this connection must give way (the
    /// caller sheds it).
    pub(crate) fn account(
        &self,
        key: Option<u64>,
        signal: &ShedSignal,
        old: usize,
        new: usize,
    ) -> bool {
        if old == new {
            return false;
        }
        let mut victims = Vec::new();
        let blame = {
            let mut state = self.state();
            let state = &mut *state;
            state.memory = (state.memory + new).saturating_sub(old);
            if new < old {
                // Bytes of a shed connection coming back are no longer on
                // their way.
                let back = signal.doomed.load(Ordering::Relaxed).min(old - new);
                signal.doomed.fetch_sub(back, Ordering::Relaxed);
                state.doomed = state.doomed.saturating_sub(back);
            }
            let mut own = 0;
            if let Some(e) = key.and_then(|k| state.pending.get_mut(&k)) {
                e.held = new;
                own = new;
                state.pending_held = (state.pending_held + new).saturating_sub(old);
            }
            let over = |s: &State| s.memory.saturating_sub(s.doomed) > self.request_memory;
            // Shedding every other pending connection would not make room:
            // this request alone is too large for what is left.
            let hopeless = |s: &State| {
                s.memory
                    .saturating_sub(s.doomed)
                    .saturating_sub(s.pending_held.saturating_sub(own))
                    > self.request_memory
            };
            if new <= old || !over(state) {
                false
            } else if hopeless(state) {
                true
            } else {
                // Oldest first, never the one that grew.
                let mut from = 0;
                while over(state) {
                    let Some(k) = state
                        .pending
                        .range(from..)
                        .find(|(k, e)| Some(**k) != key && e.held > 0)
                        .map(|(k, _)| *k)
                    else {
                        break;
                    };
                    from = k + 1;
                    if let Some(v) = state.pending.remove(&k) {
                        state.doom(&v);
                        victims.push(v.signal);
                    }
                }
                over(state)
            }
        };
        for v in victims {
            self.count_shed("request memory budget reached");
            v.raise();
        }
        blame
    }

    /// Counts a shed past the memory budget.
    pub(crate) fn shed_for_memory(&self) {
        self.count_shed("request memory budget reached");
    }

    /// Counts a stream shed past the stream slots.
    pub(crate) fn shed_for_slots(&self) {
        self.count_shed("every stream slot taken");
    }

    /// Connections shed so far.
    pub(crate) fn shed_total(&self) -> u64 {
        self.shed.load(Ordering::Relaxed)
    }

    /// Bytes held by request buffers now.
    pub(crate) fn memory(&self) -> usize {
        self.state().memory
    }

    /// Pending connections now.
    pub(crate) fn pending(&self) -> usize {
        self.state().pending.len()
    }

    /// Streams whose `start` has not come, now.
    pub(crate) fn unstarted(&self) -> usize {
        self.state().unstarted.len()
    }

    fn count_shed(&self, why: &'static str) {
        let n = self.shed.fetch_add(1, Ordering::Relaxed) + 1;
        // A flood sheds thousands: log the first and then at powers of two,
        // so the log says it is happening without becoming the flood.
        if n.is_power_of_two() {
            tracing::warn!(
                shed_total = n,
                max_pending = self.max_pending,
                max_unstarted = self.max_unstarted,
                request_memory_bytes = self.request_memory,
                "{why}: closed the oldest connection that is not a call"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_without_start_have_a_budget_of_their_own() {
        let t0 = Instant::now();
        let late = t0 + START_GRACE + Duration::from_millis(1);
        let p = Pressure::new(3, 2, usize::MAX);
        let (http, s_http) = p.register();
        let (a, sa) = p.register();
        let (b, sb) = p.register();
        // Two upgrades: they leave the pending set for their own.
        assert!(p.upgraded(a, t0) && p.upgraded(b, t0));
        assert_eq!((p.pending(), p.unstarted()), (1, 2));
        // A third stream past the limit sheds the oldest stream, never the
        // pending HTTP connection.
        let (c, sc) = p.register();
        assert!(p.upgraded(c, t0));
        assert!(sa.take(), "the oldest stream without start was shed");
        assert!(!s_http.take() && !sb.take() && !sc.take());
        // Once started, a stream is out of reach.
        assert!(p.settle(b));
        assert_eq!(p.unstarted(), 1);
        // Room is made from the pending first, then the streams that have
        // waited past the grace (not before: `start` may be on its way).
        assert!(p.shed_oldest(t0));
        assert!(s_http.take());
        assert!(!p.shed_oldest(t0), "a stream within its grace");
        assert!(p.shed_oldest(late));
        assert!(sc.take());
        assert!(!p.shed_oldest(late), "only calls left");
        assert!(!p.settle(http) && !p.settle(c), "both were shed");
        // A shed connection cannot upgrade past its shedding.
        let (d, sd) = p.register();
        assert!(p.shed_oldest(late) && sd.take());
        assert!(!p.upgraded(d, t0));
        assert_eq!(p.unstarted(), 0);
    }

    #[test]
    fn stream_slots_are_counted_and_full_at_the_limit() {
        let p = Pressure::new(4, 4, usize::MAX).with_max_streams(2);
        assert!(!p.streams_full());
        assert!(p.stream_opened() && p.stream_opened());
        assert!(p.streams_full());
        assert!(!p.stream_opened(), "a third stream is past the slots");
        p.stream_closed();
        p.stream_closed();
        assert!(!p.streams_full());
        p.stream_closed();
        p.stream_closed();
        assert!(
            p.stream_opened(),
            "closing more than opened never underflows"
        );
    }

    #[test]
    fn the_stream_that_waited_longest_since_its_upgrade_goes_first() {
        let t0 = Instant::now();
        let late = t0 + START_GRACE + Duration::from_millis(10);
        let p = Pressure::new(8, 8, usize::MAX);
        // Admitted first, upgraded last.
        let (a, sa) = p.register();
        let (b, sb) = p.register();
        assert!(p.upgraded(b, t0));
        assert!(p.upgraded(a, t0 + START_GRACE));
        // At `late`, only b has waited past the grace.
        assert!(p.shed_oldest(late));
        assert!(sb.take() && !sa.take());
        assert!(!p.shed_oldest(late), "a is within its grace");
    }

    #[test]
    fn past_the_pending_limit_the_oldest_is_shed() {
        let p = Pressure::new(2, 2, usize::MAX);
        let (a, sa) = p.register();
        let (_, sb) = p.register();
        let (_, sc) = p.register();
        assert!(sa.take(), "the oldest was shed");
        assert!(!sb.take() && !sc.take());
        assert_eq!(p.pending(), 2);
        // Settling a connection that was shed already is harmless, and says
        // so: its signal must still be looked at.
        assert!(!p.settle(a));
        assert!(p.shed_oldest(Instant::now()));
        assert!(sb.take());
        assert!(p.shed_oldest(Instant::now()));
        assert!(sc.take());
        assert!(
            !p.shed_oldest(Instant::now()),
            "nothing pending: the server is full"
        );
        assert_eq!(p.shed_total(), 3);
        // One that settles by itself is out of reach: nothing sheds it.
        let (d, sd) = p.register();
        assert!(p.settle(d));
        assert!(!p.shed_oldest(Instant::now()));
        assert!(!sd.take());
    }

    /// A connection's account as its driver keeps it.
    struct Conn {
        key: u64,
        signal: Arc<ShedSignal>,
        held: usize,
    }

    impl Conn {
        fn new(p: &Pressure) -> Conn {
            let (key, signal) = p.register();
            Conn {
                key,
                signal,
                held: 0,
            }
        }

        /// Grows (or shrinks) to `to` bytes; true when it must give way.
        fn hold(&mut self, p: &Pressure, to: usize) -> bool {
            let blame = p.account(Some(self.key), &self.signal, self.held, to);
            self.held = to;
            blame
        }
    }

    #[test]
    fn past_the_memory_budget_the_oldest_holders_give_way() {
        let p = Pressure::new(10, 10, 100);
        let mut idle = Conn::new(&p);
        let mut a = Conn::new(&p);
        let mut b = Conn::new(&p);
        let mut fresh = Conn::new(&p);
        assert!(!a.hold(&p, 40));
        assert!(!b.hold(&p, 40));
        // The newcomer's first bytes cross the budget: the oldest holder
        // (not the idle one, which holds nothing) makes room.
        assert!(!fresh.hold(&p, 30), "the one that grew is not blamed");
        assert!(a.signal.take(), "the oldest holder was shed");
        assert!(!idle.signal.take() && !b.signal.take() && !fresh.signal.take());
        assert_eq!(p.pending(), 3);
        // Until its pump lets go, a's bytes count as on their way back:
        // more growth within the budget sheds no one else.
        assert!(!fresh.hold(&p, 50));
        assert!(!b.signal.take());
        assert_eq!(p.memory(), 130);
        assert!(!a.hold(&p, 0));
        assert!(
            !p.account(Some(a.key), &a.signal, 0, 0),
            "no growth, no blame"
        );
        assert_eq!(p.memory(), 90);
        // A request larger than all the others could make room for is its
        // own to give up; no one else is shed for it.
        assert!(idle.hold(&p, 200));
        assert!(!b.signal.take() && !fresh.signal.take());
        assert!(!idle.hold(&p, 0));
        p.settle(b.key);
        p.settle(fresh.key);
        assert!(!b.hold(&p, 0) && !fresh.hold(&p, 0));
        assert_eq!(p.memory(), 0);
        assert_eq!(p.shed_total(), 1);
    }

    #[test]
    fn connections_shed_for_room_count_as_giving_back() {
        let p = Pressure::new(1, 1, 100);
        let mut a = Conn::new(&p);
        assert!(!a.hold(&p, 90));
        // The pending limit sheds a; its 90 bytes are on their way back, so
        // b may take them before a's pump has let go.
        let mut b = Conn::new(&p);
        assert!(a.signal.take());
        assert!(!b.hold(&p, 90));
        assert!(!b.signal.take());
        assert!(!a.hold(&p, 0));
        // Now a third over budget has no one to shed but b.
        let mut c = Conn::new(&p);
        assert!(b.signal.take(), "pending limit");
        assert!(!c.hold(&p, 20), "b's bytes are on their way back");
        assert!(!b.hold(&p, 0) && !c.hold(&p, 0));
        assert_eq!(p.memory(), 0);
    }
}
