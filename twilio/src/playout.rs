//! Twilio's playout of a server's audio (docs/protocol.md §2), sans-IO: time
//! is passed in, nothing sleeps.
//!
//! - Audio is buffered and played in order in real time, 8 kHz μ-law: one
//!   byte is 125 µs. Any chunk size is allowed.
//! - A `mark` is echoed when the audio queued before it has played, at once
//!   when nothing is queued, **and also when `clear` flushed it**: an echo
//!   means "done", not "heard". Cleared marks are echoed in order, before any
//!   later one.
//! - `clear` empties the buffer; audio not yet played is never heard.
//!
//! Contract: call [`Playout::handle_message`] for each message the server
//! sends and [`Playout::handle_timeout`] as time passes (with times that never
//! go back), then drain [`Playout::poll_echo`] until `None`;
//! [`Playout::poll_timeout`] says when to call again.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::check::ServerMessage;

/// Time one μ-law byte plays for at 8 kHz.
const BYTE: Duration = Duration::from_micros(125);

/// Twilio's playback buffer for one stream.
#[derive(Debug, Clone, Default)]
pub struct Playout {
    /// Delay from a mark being done to its echo reaching the server (the
    /// network, one way).
    pub echo_delay: Duration,
    now: Option<Instant>,
    /// When the buffered audio will have played.
    buffer_end: Option<Instant>,
    /// Marks waiting for their audio: (due, name).
    marks: VecDeque<(Instant, String)>,
    /// Echoes on their way: (arrival, name), in order.
    echoes: VecDeque<(Instant, String)>,
    /// Audio as played: (start, bytes), truncated at a clear.
    segments: Vec<(Instant, Vec<u8>)>,
    max_buffered: Duration,
    clears: usize,
    /// Echoes Twilio loses (to test a server that must not wait on one), by
    /// their 0-based index among all echoes.
    pub lose: std::collections::BTreeSet<usize>,
    /// Echoes produced so far, lost ones included.
    pub echoed: usize,
}

impl Playout {
    /// An empty buffer, echoes arriving at once.
    #[must_use]
    pub fn new() -> Playout {
        Playout::default()
    }

    /// The server sent `msg` at `now`.
    pub fn handle_message(&mut self, now: Instant, msg: &ServerMessage) {
        self.handle_timeout(now);
        let queued_end = self.buffer_end.filter(|end| *end > now).unwrap_or(now);
        match msg {
            ServerMessage::Media(bytes) => {
                let len = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
                let end = queued_end + BYTE * len;
                self.buffer_end = Some(end);
                self.max_buffered = self.max_buffered.max(end - now);
                self.segments.push((queued_end, bytes.clone()));
            }
            ServerMessage::Mark(name) => self.marks.push_back((queued_end, name.clone())),
            ServerMessage::Clear => {
                self.clears += 1;
                // Cleared marks are done: echoed now, before any later mark.
                let cleared: Vec<String> = self.marks.drain(..).map(|(_, n)| n).collect();
                for name in cleared {
                    self.echo(now + self.echo_delay, name);
                }
                for (start, bytes) in &mut self.segments {
                    bytes.truncate(played(*start, now, bytes.len()));
                }
                self.buffer_end = None;
            }
        }
        // A mark with nothing before it is done at once.
        self.handle_timeout(now);
    }

    /// Time passed to `now`: marks whose audio has played become echoes.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.now = Some(self.now.map_or(now, |t| t.max(now)));
        while let Some((due, _)) = self.marks.front() {
            if *due > now {
                break;
            }
            if let Some((due, name)) = self.marks.pop_front() {
                self.echo(due + self.echo_delay, name);
            }
        }
    }

    fn echo(&mut self, at: Instant, name: String) {
        if !self.lose.contains(&self.echoed) {
            self.echoes.push_back((at, name));
        }
        self.echoed += 1;
    }

    /// Marks held at `now` whose audio has not played.
    #[must_use]
    pub fn holding(&mut self, now: Instant) -> usize {
        self.handle_timeout(now);
        self.marks.len()
    }

    /// The next mark echo that has reached the server by now, in order.
    #[must_use]
    pub fn poll_echo(&mut self) -> Option<String> {
        let now = self.now?;
        if self.echoes.front().is_some_and(|(at, _)| *at <= now) {
            return self.echoes.pop_front().map(|(_, name)| name);
        }
        None
    }

    /// When something happens next (a mark done, an echo arriving), if ever.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        let mark = self.marks.front().map(|(due, _)| *due);
        let echo = self.echoes.front().map(|(at, _)| *at);
        match (mark, echo) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Audio buffered and not yet played at `now`.
    #[must_use]
    pub fn buffered(&self, now: Instant) -> Duration {
        self.buffer_end
            .map_or(Duration::ZERO, |end| end.saturating_duration_since(now))
    }

    /// The most audio that was ever buffered at once.
    #[must_use]
    pub fn max_buffered(&self) -> Duration {
        self.max_buffered
    }

    /// How many `clear`s the server sent.
    #[must_use]
    pub fn clears(&self) -> usize {
        self.clears
    }

    /// Milliseconds of the server's audio played by `now` (cleared audio
    /// never plays).
    #[must_use]
    pub fn played_ms(&self, now: Instant) -> u64 {
        let bytes: usize = self
            .segments
            .iter()
            .map(|(start, b)| played(*start, now, b.len()))
            .sum();
        bytes as u64 / 8
    }

    /// The audio as it will be heard: each segment's start and bytes.
    #[must_use]
    pub fn segments(&self) -> &[(Instant, Vec<u8>)] {
        &self.segments
    }
}

/// Bytes of a segment of `len` starting at `start` played by `now`.
fn played(start: Instant, now: Instant, len: usize) -> usize {
    let elapsed = now.saturating_duration_since(start).as_micros() / BYTE.as_micros();
    usize::try_from(elapsed).unwrap_or(usize::MAX).min(len)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn media(ms: usize) -> ServerMessage {
        ServerMessage::Media(vec![0x55; ms * 8])
    }
    fn mark(name: &str) -> ServerMessage {
        ServerMessage::Mark(name.into())
    }
    fn echoes(p: &mut Playout) -> Vec<String> {
        std::iter::from_fn(|| p.poll_echo()).collect()
    }

    #[test]
    fn a_mark_with_nothing_queued_is_echoed_at_once() {
        let t0 = Instant::now();
        let mut p = Playout::new();
        p.handle_message(t0, &mark("now"));
        assert_eq!(echoes(&mut p), ["now"]);
        assert_eq!(p.poll_timeout(), None);
    }

    #[test]
    fn a_mark_is_echoed_when_the_audio_before_it_has_played() {
        let t0 = Instant::now();
        let mut p = Playout::new();
        p.handle_message(t0, &media(100));
        p.handle_message(t0, &mark("a"));
        p.handle_message(t0 + 10 * MS, &media(50));
        p.handle_message(t0 + 10 * MS, &mark("b"));
        assert_eq!(p.poll_timeout(), Some(t0 + 100 * MS));
        p.handle_timeout(t0 + 99 * MS);
        assert_eq!(echoes(&mut p), Vec::<String>::new());
        p.handle_timeout(t0 + 100 * MS);
        assert_eq!(echoes(&mut p), ["a"]);
        assert_eq!(p.poll_timeout(), Some(t0 + 150 * MS));
        p.handle_timeout(t0 + 150 * MS);
        assert_eq!(echoes(&mut p), ["b"]);
        assert_eq!(p.played_ms(t0 + 200 * MS), 150);
    }

    #[test]
    fn clear_flushes_audio_and_echoes_cleared_marks_first_in_order() {
        let t0 = Instant::now();
        let mut p = Playout::new();
        p.echo_delay = 30 * MS;
        p.handle_message(t0, &media(100));
        p.handle_message(t0, &mark("a"));
        p.handle_message(t0, &media(100));
        p.handle_message(t0, &mark("b"));
        assert_eq!(p.buffered(t0 + 40 * MS), 160 * MS);
        p.handle_message(t0 + 40 * MS, &ServerMessage::Clear);
        p.handle_message(t0 + 40 * MS, &mark("c"));
        assert_eq!(p.buffered(t0 + 40 * MS), Duration::ZERO);
        assert_eq!((p.clears(), p.max_buffered()), (1, 200 * MS));
        // Nothing arrives before the echo delay, then all three in order.
        p.handle_timeout(t0 + 69 * MS);
        assert!(echoes(&mut p).is_empty());
        assert_eq!(p.poll_timeout(), Some(t0 + 70 * MS));
        p.handle_timeout(t0 + 70 * MS);
        assert_eq!(echoes(&mut p), ["a", "b", "c"]);
        // Only the 40 ms before the clear is ever heard.
        assert_eq!(p.played_ms(t0 + 10_000 * MS), 40);
        assert_eq!(p.segments()[0].1.len(), 320);
        assert!(p.segments()[1].1.is_empty());
    }

    #[test]
    fn audio_after_a_gap_starts_when_it_arrives() {
        let t0 = Instant::now();
        let mut p = Playout::new();
        p.handle_message(t0, &media(20));
        p.handle_message(t0 + 100 * MS, &media(20));
        assert_eq!(p.segments()[1].0, t0 + 100 * MS);
        assert_eq!(p.played_ms(t0 + 110 * MS), 30);
    }
}
