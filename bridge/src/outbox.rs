//! The bounded queue of messages to a program, filled on the pump thread
//! (never blocking) and emptied by the transport's thread.
//!
//! One queue keeps the order of everything the program is told. Raw audio
//! frames and events are bounded apart: a frame that does not fit is dropped
//! and counted (a streaming recogniser that falls behind loses audio, not the
//! call); an event that does not fit is refused, and the caller treats that
//! as the program's failure (utterances, DTMF and marks are never dropped).
use std::collections::VecDeque;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Most events waiting for the program. A program that keeps up holds none;
/// a hung one fills this within a few turns.
pub const MAX_EVENTS: usize = 64;
/// Most raw audio frames waiting (1 s).
pub const MAX_AUDIO_FRAMES: usize = 50;

/// What is queued for the program: serialised by the transport's thread, so
/// the pump thread only moves samples.
#[derive(Debug)]
pub enum Outbound {
    /// The `start` line, already written.
    Line(String),
    /// A caller turn, 8 kHz samples, and when the turn ended (the detector's
    /// decision reached the bridge), for the latency measurement.
    Utterance(Vec<i16>, Instant),
    /// 20 ms of the caller, 8 kHz; its number among the call's frames, and
    /// how many were dropped just before it.
    Audio(Vec<i16>, u64, u64),
    /// `stop`, the last message.
    Stop(String),
}

#[derive(Default)]
struct State {
    queue: VecDeque<Outbound>,
    events: usize,
    frames: usize,
    closed: bool,
}

/// The queue.
#[derive(Default)]
pub struct Outbox {
    state: Mutex<State>,
    ready: Condvar,
}

/// An event did not fit ([`MAX_EVENTS`]) or the queue is closed.
#[derive(Debug, PartialEq, Eq)]
pub struct Refused;

impl Outbox {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Every change is one push or pop: a panic elsewhere left it whole.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues an event (anything but raw audio).
    pub fn push_event(&self, o: Outbound) -> Result<(), Refused> {
        self.push_within(o, MAX_EVENTS)
    }

    /// Queues a message the program may lose (an `error`) while fewer than
    /// half of [`MAX_EVENTS`] wait: it never takes the room of one that
    /// must not be lost.
    pub fn push_best_effort(&self, o: Outbound) -> Result<(), Refused> {
        self.push_within(o, MAX_EVENTS / 2)
    }

    fn push_within(&self, o: Outbound, limit: usize) -> Result<(), Refused> {
        let mut s = self.lock();
        if s.closed || s.events >= limit {
            return Err(Refused);
        }
        s.events += 1;
        s.queue.push_back(o);
        drop(s);
        self.ready.notify_one();
        Ok(())
    }

    /// Queues `stop` and closes the queue: nothing more is accepted, and the
    /// transport ends once it has written what is queued. `stop` goes in
    /// past the event limit: a program that reads gets it.
    pub fn close_with_stop(&self, reason: String) {
        let mut s = self.lock();
        if !s.closed {
            s.queue.push_back(Outbound::Stop(reason));
            s.closed = true;
        }
        drop(s);
        self.ready.notify_all();
    }

    /// Closes the queue and drops what waits (the program is abandoned).
    pub fn abandon(&self) {
        let mut s = self.lock();
        s.closed = true;
        s.queue.clear();
        s.events = 0;
        s.frames = 0;
        drop(s);
        self.ready.notify_all();
    }

    /// Queues a raw audio frame; `false` when it was dropped.
    pub fn push_audio(&self, samples: Vec<i16>, seq: u64, dropped: u64) -> bool {
        let mut s = self.lock();
        if s.closed || s.frames >= MAX_AUDIO_FRAMES {
            return false;
        }
        s.frames += 1;
        s.queue.push_back(Outbound::Audio(samples, seq, dropped));
        drop(s);
        self.ready.notify_one();
        true
    }

    /// The next message, waiting up to `wait` (`None` waits as long as it
    /// takes). `Err(())` once the queue is closed and empty.
    #[allow(clippy::result_unit_err)]
    pub fn pop(&self, wait: Option<Duration>) -> Result<Option<Outbound>, ()> {
        let deadline = wait.map(|w| Instant::now() + w);
        let mut s = self.lock();
        loop {
            if let Some(o) = s.queue.pop_front() {
                match o {
                    Outbound::Audio(..) => s.frames -= 1,
                    Outbound::Stop(_) => {}
                    _ => s.events -= 1,
                }
                return Ok(Some(o));
            }
            if s.closed {
                return Err(());
            }
            match deadline {
                None => s = self.ready.wait(s).unwrap_or_else(|p| p.into_inner()),
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        return Ok(None);
                    }
                    s = self
                        .ready
                        .wait_timeout(s, d - now)
                        .unwrap_or_else(|p| p.into_inner())
                        .0;
                }
            }
        }
    }

    /// Whether the queue is closed.
    pub fn is_closed(&self) -> bool {
        self.lock().closed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_bounded_and_refused_past_the_limit() {
        let o = Outbox::default();
        for _ in 0..MAX_EVENTS {
            o.push_event(Outbound::Line("x".into())).unwrap();
        }
        assert_eq!(o.push_event(Outbound::Line("x".into())), Err(Refused));
        // Taking one makes room for one.
        assert!(matches!(o.pop(Some(Duration::ZERO)), Ok(Some(_))));
        assert!(o.push_event(Outbound::Line("x".into())).is_ok());
    }

    #[test]
    fn audio_past_its_limit_is_dropped_without_touching_events() {
        let o = Outbox::default();
        for _ in 0..MAX_AUDIO_FRAMES {
            assert!(o.push_audio(vec![0; 160], 0, 0));
        }
        assert!(!o.push_audio(vec![0; 160], 0, 0));
        assert!(o.push_event(Outbound::Line("x".into())).is_ok());
    }

    #[test]
    fn stop_goes_in_when_full_and_closes() {
        let o = Outbox::default();
        for _ in 0..MAX_EVENTS {
            o.push_event(Outbound::Line("x".into())).unwrap();
        }
        o.close_with_stop("done".into());
        assert_eq!(o.push_event(Outbound::Line("x".into())), Err(Refused));
        assert!(!o.push_audio(vec![0], 0, 0));
        let mut n = 0;
        let mut last = None;
        while let Ok(Some(m)) = o.pop(None) {
            n += 1;
            last = Some(m);
        }
        assert_eq!(n, MAX_EVENTS + 1);
        assert!(matches!(last, Some(Outbound::Stop(r)) if r == "done"));
        assert_eq!(o.pop(None).unwrap_err(), ());
    }

    #[test]
    fn pop_times_out_when_empty() {
        let o = Outbox::default();
        assert!(matches!(o.pop(Some(Duration::from_millis(1))), Ok(None)));
    }
}
