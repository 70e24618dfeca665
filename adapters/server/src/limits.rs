//! Server-wide limits an unauthenticated client could otherwise exhaust:
//! connections that are not (yet) media streams, and the memory their
//! request buffers hold.
//!
//! # Which connections give way
//!
//! Any client can open a TCP connection and trickle a request head a byte at
//! a time; a plain `MAX_CONNECTIONS` then fills with such sockets and every
//! webhook, upgrade and `/healthz` gets 503 while the calls the server exists
//! for cannot even start. A connection proves itself only by completing a
//! signed upgrade: until then (an HTTP connection: fresh, mid-request or idle
//! between keep-alive requests) it is *pending*.
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
//!   when there is one, and is refused (503) only when every connection is a
//!   media stream: then the server really is full.
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
//! are summed across the server; a connection whose buffers grow past
//! [`Options::request_memory`](crate::Options::request_memory) in total is
//! shed (503) at once, so parked bodies cannot take the server's memory.
use callstream_core::connection::Waker;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

/// One connection's "close now" flag and the waker that makes its pump look.
pub(crate) struct ShedSignal {
    flag: AtomicBool,
    /// Set when the pump makes the connection's driver; a shed raised before
    /// then is found by the driver's first poll.
    waker: OnceLock<Waker>,
}

impl ShedSignal {
    /// The waker that brings the connection's pump to its driver.
    pub(crate) fn set_waker(&self, waker: Waker) {
        let _ = self.waker.set(waker);
    }

    /// Whether the connection was told to close; clears the flag.
    pub(crate) fn take(&self) -> bool {
        self.flag.swap(false, Ordering::AcqRel)
    }

    fn raise(&self) {
        self.flag.store(true, Ordering::Release);
        if let Some(w) = self.waker.get() {
            w();
        }
    }
}

/// The pending connections, oldest first, and the request memory in use.
pub(crate) struct Pressure {
    max_pending: usize,
    request_memory: usize,
    pending: Mutex<BTreeMap<u64, Arc<ShedSignal>>>,
    next: AtomicU64,
    memory: AtomicUsize,
    shed: AtomicU64,
}

impl Pressure {
    pub(crate) fn new(max_pending: usize, request_memory: usize) -> Pressure {
        Pressure {
            max_pending: max_pending.max(1),
            request_memory,
            pending: Mutex::new(BTreeMap::new()),
            next: AtomicU64::new(0),
            memory: AtomicUsize::new(0),
            shed: AtomicU64::new(0),
        }
    }

    /// Registers a new (pending) connection, in the order connections are
    /// admitted; past the pending limit the oldest pending one is shed.
    /// Returns its key and signal.
    pub(crate) fn register(&self) -> (u64, Arc<ShedSignal>) {
        let key = self.next.fetch_add(1, Ordering::Relaxed);
        let signal = Arc::new(ShedSignal {
            flag: AtomicBool::new(false),
            waker: OnceLock::new(),
        });
        let victim = {
            let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
            let victim = if pending.len() >= self.max_pending {
                pending.pop_first()
            } else {
                None
            };
            pending.insert(key, signal.clone());
            victim
        };
        if let Some((_, v)) = victim {
            self.count_shed("pending-connection limit reached");
            v.raise();
        }
        (key, signal)
    }

    /// The connection is no longer pending (it became a stream, or closed).
    pub(crate) fn settle(&self, key: u64) {
        self.pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&key);
    }

    /// Sheds the oldest pending connection to make room; false when there is
    /// none (every connection is a media stream).
    pub(crate) fn shed_oldest(&self) -> bool {
        let victim = self
            .pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop_first();
        match victim {
            Some((_, v)) => {
                self.count_shed("connection limit reached");
                v.raise();
                true
            }
            None => false,
        }
    }

    /// A connection's request buffers went from `old` to `new` bytes.
    /// True when that growth put the server past its budget (the caller
    /// sheds the connection).
    pub(crate) fn account(&self, old: usize, new: usize) -> bool {
        if new >= old {
            let total = self.memory.fetch_add(new - old, Ordering::Relaxed) + (new - old);
            new > old && total > self.request_memory
        } else {
            self.memory.fetch_sub(old - new, Ordering::Relaxed);
            false
        }
    }

    /// Counts a shed past the memory budget.
    pub(crate) fn shed_for_memory(&self) {
        self.count_shed("request memory budget reached");
    }

    /// Connections shed so far.
    pub(crate) fn shed_total(&self) -> u64 {
        self.shed.load(Ordering::Relaxed)
    }

    /// Bytes held by request buffers now.
    pub(crate) fn memory(&self) -> usize {
        self.memory.load(Ordering::Relaxed)
    }

    /// Pending connections now.
    pub(crate) fn pending(&self) -> usize {
        self.pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    fn count_shed(&self, why: &'static str) {
        let n = self.shed.fetch_add(1, Ordering::Relaxed) + 1;
        // A flood sheds thousands: log the first and then at powers of two,
        // so the log says it is happening without becoming the flood.
        if n.is_power_of_two() {
            tracing::warn!(
                shed_total = n,
                max_pending = self.max_pending,
                request_memory_bytes = self.request_memory,
                "{why}: closed the oldest connection that is not a media stream"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn past_the_pending_limit_the_oldest_is_shed() {
        let p = Pressure::new(2, usize::MAX);
        let (a, sa) = p.register();
        let (_, sb) = p.register();
        let (_, sc) = p.register();
        assert!(sa.take(), "the oldest was shed");
        assert!(!sb.take() && !sc.take());
        assert_eq!(p.pending(), 2);
        // Settling a connection that was shed already is harmless.
        p.settle(a);
        assert!(p.shed_oldest());
        assert!(sb.take());
        assert!(p.shed_oldest());
        assert!(sc.take());
        assert!(!p.shed_oldest(), "nothing pending: the server is full");
        assert_eq!(p.shed_total(), 3);
    }

    #[test]
    fn the_memory_budget_blames_the_connection_that_grew() {
        let p = Pressure::new(10, 100);
        assert!(!p.account(0, 60));
        assert!(p.account(0, 50), "110 > 100");
        assert!(!p.account(50, 0));
        assert!(!p.account(60, 60), "no growth, no blame");
        assert_eq!(p.memory(), 60);
    }
}
