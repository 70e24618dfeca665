//! One event loop's timers, for pumps that run many connections on one
//! thread (the epoll and io_uring adapters): at most one armed deadline per
//! connection, in a binary heap with lazy deletion.
//!
//! Like the smol pump's one timer per connection, a deadline is re-armed only
//! when it moves earlier: the engine treats an early wake-up as harmless (it
//! names its deadline again), so a later deadline can wait until the armed one
//! fires. A deadline that moves earlier leaves a stale entry in the heap; it is
//! skipped when it comes to the top, and the heap is rebuilt from the armed
//! deadlines when stale entries outnumber live ones, so memory stays bounded by
//! the number of connections whatever the engine asks.
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Instant;

/// Heap entries beyond twice the armed deadlines (plus this slack) trigger a
/// rebuild.
const SLACK: usize = 64;

/// Deadlines keyed by connection (a slab key).
#[derive(Default)]
pub struct Timers {
    /// `(deadline, key, arming)`: live while `armed[key]` names the same arming.
    heap: BinaryHeap<Reverse<(Instant, usize, u64)>>,
    /// The deadline armed for each key, with the number of its arming.
    armed: Vec<Option<(Instant, u64)>>,
    /// Armings so far: tells a re-armed key's old entries from its new one.
    armings: u64,
    /// Keys armed now.
    live: usize,
}

impl Timers {
    /// Arms `key` for `at`, unless it is armed for `at` or earlier already.
    pub fn arm(&mut self, key: usize, at: Instant) {
        if self.armed.len() <= key {
            self.armed.resize(key + 1, None);
        }
        let Some(slot) = self.armed.get_mut(key) else {
            return;
        };
        match slot {
            Some((armed, _)) if *armed <= at => return,
            Some(_) => {}
            None => self.live += 1,
        }
        self.armings += 1;
        *slot = Some((at, self.armings));
        self.heap.push(Reverse((at, key, self.armings)));
        if self.heap.len() > 2 * self.live + SLACK {
            let armed = &self.armed;
            self.heap
                .retain(|Reverse((at, key, n))| is_live(armed, *at, *key, *n));
        }
    }

    /// Asks the CPU for the line holding `key`'s armed deadline: with many
    /// connections, the check each step makes in [`arm`](Self::arm) finds
    /// it cold otherwise (a pump calls this with
    /// [`Driver::prefetch`](crate::Driver::prefetch), before the read).
    pub fn prefetch(&self, key: usize) {
        if let Some(slot) = self.armed.get(key) {
            crate::prefetch::region(std::ptr::from_ref(slot).cast(), size_of_val(slot));
        }
    }

    /// Disarms `key` (its connection is gone, or its slab key is reused).
    pub fn cancel(&mut self, key: usize) {
        if let Some(slot) = self.armed.get_mut(key)
            && slot.take().is_some()
        {
            self.live -= 1;
        }
    }

    /// The earliest armed deadline.
    pub fn poll_timeout(&mut self) -> Option<Instant> {
        self.drop_stale();
        self.heap.peek().map(|Reverse((at, _, _))| *at)
    }

    /// A key whose deadline is at or before `now`, disarmed; `None` when no
    /// deadline has passed.
    pub fn pop_due(&mut self, now: Instant) -> Option<usize> {
        self.drop_stale();
        let &Reverse((at, key, _)) = self.heap.peek()?;
        if at > now {
            return None;
        }
        self.heap.pop();
        self.cancel(key);
        Some(key)
    }

    fn drop_stale(&mut self) {
        while let Some(&Reverse((at, key, n))) = self.heap.peek() {
            if is_live(&self.armed, at, key, n) {
                return;
            }
            self.heap.pop();
        }
    }

    #[cfg(test)]
    fn entries(&self) -> usize {
        self.heap.len()
    }
}

fn is_live(armed: &[Option<(Instant, u64)>], at: Instant, key: usize, n: u64) -> bool {
    armed.get(key).copied().flatten() == Some((at, n))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn ms(t0: Instant, n: u64) -> Instant {
        t0 + Duration::from_millis(n)
    }

    #[test]
    fn fire_in_deadline_order_once_each() {
        let t0 = Instant::now();
        let mut t = Timers::default();
        t.arm(3, ms(t0, 30));
        t.arm(1, ms(t0, 10));
        t.arm(2, ms(t0, 20));
        assert_eq!(t.poll_timeout(), Some(ms(t0, 10)));
        assert_eq!(t.pop_due(ms(t0, 5)), None);
        assert_eq!(t.pop_due(ms(t0, 25)), Some(1));
        assert_eq!(t.pop_due(ms(t0, 25)), Some(2));
        assert_eq!(t.pop_due(ms(t0, 25)), None);
        assert_eq!(t.poll_timeout(), Some(ms(t0, 30)));
        assert_eq!(t.pop_due(ms(t0, 30)), Some(3));
        assert_eq!(t.poll_timeout(), None);
    }

    #[test]
    fn an_earlier_deadline_replaces_a_later_one_is_ignored() {
        let t0 = Instant::now();
        let mut t = Timers::default();
        t.arm(0, ms(t0, 50));
        t.arm(0, ms(t0, 20));
        t.arm(0, ms(t0, 40));
        assert_eq!(t.poll_timeout(), Some(ms(t0, 20)));
        assert_eq!(t.pop_due(ms(t0, 100)), Some(0));
        // The 50 ms entry was replaced: nothing more fires.
        assert_eq!(t.pop_due(ms(t0, 100)), None);
        assert_eq!(t.poll_timeout(), None);
    }

    #[test]
    fn a_cancelled_key_never_fires_even_when_reused() {
        let t0 = Instant::now();
        let mut t = Timers::default();
        t.arm(7, ms(t0, 10));
        t.cancel(7);
        assert_eq!(t.poll_timeout(), None);
        // The slab hands key 7 to a new connection with the same deadline:
        // only the new arming fires, once.
        t.arm(7, ms(t0, 10));
        assert_eq!(t.pop_due(ms(t0, 10)), Some(7));
        assert_eq!(t.pop_due(ms(t0, 10)), None);
    }

    #[test]
    fn prefetch_is_a_hint_for_any_key() {
        // Armed, never armed, cancelled and far out of range: nothing fires
        // or changes.
        let t0 = Instant::now();
        let mut t = Timers::default();
        t.arm(2, ms(t0, 10));
        t.arm(5, ms(t0, 20));
        t.cancel(5);
        for key in [0, 2, 5, 9, usize::MAX] {
            t.prefetch(key);
        }
        assert_eq!((t.live, t.entries()), (1, 2));
        assert_eq!(t.pop_due(ms(t0, 30)), Some(2));
        assert_eq!(t.pop_due(ms(t0, 30)), None);
    }

    #[test]
    fn stale_entries_stay_bounded() {
        // The echo pattern: a far deadline (idle), then a near one (the next
        // frame) on every frame, for many connections. Each near one leaves
        // the far one stale.
        let t0 = Instant::now();
        let mut t = Timers::default();
        let conns = 100;
        for frame in 0..1000u64 {
            let now = ms(t0, frame * 20);
            while t.pop_due(now).is_some() {}
            for key in 0..conns {
                t.arm(key, now + Duration::from_secs(60));
                t.arm(key, ms(now, 20));
            }
            assert!(t.entries() <= 2 * conns + SLACK + 1, "{}", t.entries());
        }
        assert_eq!(t.live, conns);
    }
}
