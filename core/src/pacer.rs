//! The outbound pacer: the application's audio and marks in, media messages
//! out on absolute deadlines.
//!
//! # Contract
//!
//! [`Pacer::enqueue`] queues μ-law audio, [`Pacer::mark`] queues a mark after
//! it. In the crate's [run loop](crate#run-loop) its poller is
//! [`Pacer::poll_transmit`] (a drain ends at `None`; each [`Outgoing`] is one
//! message for Twilio, in order) and its deadline [`Pacer::poll_timeout`].
//!
//! # The schedule
//!
//! Twilio plays what it receives in order, at the listener's clock, from the
//! moment the first byte arrives when it had nothing left to play. The pacer
//! models that: a *schedule* starts when audio is sent while Twilio is idle,
//! and byte `i` of the schedule plays at `start + i / 8 ms`. Chunk `k` (of
//! `chunk` length, default 20 ms) is sent once its play time is at most `lead`
//! away (default 100 ms), that is at the absolute deadline
//! `start + k × chunk − lead`: never "sleep 20 ms and send", which drifts.
//! So Twilio holds at most `lead + chunk` of our audio, and a `clear`
//! silences the caller within that. `lead` = [`Duration::MAX`] sends
//! everything at once (in `chunk`-sized messages).
//!
//! A message never crosses a `chunk` boundary of the schedule nor a mark; when
//! less than a chunk is queued and it is due, what there is goes out.
//!
//! Audio queued after Twilio ran dry starts a new schedule; audio queued
//! while Twilio is still playing continues the current one, seamlessly.
//! [`Pacer::clear`] drops everything queued, returns the marks that were
//! waiting, and ends the schedule where it stands (Twilio discards what it
//! had not played).
//!
//! [`Pacer::played_ms`] is the audio Twilio has played, by the schedule. The
//! schedule is Twilio's clock seen from here; when Twilio confirms a point
//! later than the schedule expected (a mark echoed late), [`Pacer::confirm`]
//! moves the schedule back by the difference, so the lead is kept over
//! Twilio's real position, not over an optimistic guess.
//!
//! # Limits
//!
//! At most `max_queued` of audio (default 60 s) and `max_marks` marks
//! (default 256) wait. Audio past the limit is not queued: `enqueue` queues
//! what fits and returns [`QueueFull`] with how much was dropped (the end of
//! the audio, so what plays is a prefix of what was asked). A mark past the
//! limit is refused with [`TooManyMarks`].
//!
//! ```
//! use callstream_core::pacer::{Outgoing, Pacer, PacerConfig};
//! use std::time::{Duration, Instant};
//!
//! let t0 = Instant::now();
//! let mut pacer = Pacer::new(PacerConfig::default());
//! pacer.enqueue(&[0xFF; 8000]).unwrap(); // one second
//! pacer.mark("done".to_string()).unwrap();
//! let mut buf = Vec::new();
//! let mut sent = 0;
//! while let Some(Outgoing::Media { .. }) = pacer.poll_transmit(t0, &mut buf) {
//!     sent += buf.len();
//! }
//! // 100 ms lead: chunks playing at 0, 20, … 100 ms went out at once.
//! assert_eq!(sent, 6 * 160);
//! assert_eq!(pacer.poll_timeout(), Some(t0 + Duration::from_millis(20)));
//! ```

use std::collections::VecDeque;
use std::ops::Range;
use std::time::{Duration, Instant};

use crate::codec;

/// Bytes (samples) per second.
const RATE: u128 = codec::SAMPLE_RATE as u128;
/// Shortest and longest chunk a configuration may ask for.
const MIN_CHUNK: Duration = Duration::from_millis(1);
const MAX_CHUNK: Duration = Duration::from_secs(10);

/// Tuning of a [`Pacer`]. `Default` gives the values in the module docs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PacerConfig {
    /// Audio per media message (default 20 ms; clamped to 1 ms ..= 10 s,
    /// whole samples).
    pub chunk: Duration,
    /// How far ahead of Twilio's playback audio is sent (default 100 ms;
    /// [`Duration::MAX`] sends everything at once).
    pub lead: Duration,
    /// Most audio waiting to be sent (default 60 s).
    pub max_queued: Duration,
    /// Most marks waiting to be sent (default 256).
    pub max_marks: usize,
}

impl Default for PacerConfig {
    fn default() -> Self {
        PacerConfig {
            chunk: Duration::from_millis(20),
            lead: Duration::from_millis(100),
            max_queued: Duration::from_secs(60),
            max_marks: 256,
        }
    }
}

impl PacerConfig {
    /// No pacing: everything queued is sent at once (Twilio buffers it).
    /// A `clear` then has everything at Twilio to flush.
    pub fn unpaced() -> Self {
        PacerConfig {
            lead: Duration::MAX,
            ..PacerConfig::default()
        }
    }
}

/// The audio queue was full: the first part was queued, `dropped` bytes
/// (samples) at the end were not.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueueFull {
    /// Bytes (samples at 8 kHz) that were not queued.
    pub dropped: usize,
}

impl std::fmt::Display for QueueFull {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "outbound audio queue full: {} ms at the end dropped",
            self.dropped as u128 * 1000 / RATE
        )
    }
}

impl std::error::Error for QueueFull {}

/// The mark queue was full: the mark was not queued.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TooManyMarks {
    /// The refused mark's name.
    pub name: String,
}

impl std::fmt::Display for TooManyMarks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "too many marks waiting: mark {:?} refused", self.name)
    }
}

impl std::error::Error for TooManyMarks {}

/// One message for Twilio, from [`Pacer::poll_transmit`].
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outgoing {
    /// A media message: its μ-law bytes are in the caller's buffer.
    Media {
        /// When Twilio plays its first byte, by the schedule.
        play_at: Instant,
    },
    /// A mark message.
    Mark {
        /// The mark's name.
        name: String,
        /// When Twilio will have played everything before it, by the
        /// schedule (the send time when Twilio has nothing left to play).
        done_at: Instant,
    },
}

struct QueuedMark {
    /// Position in the queue: the mark goes out once `head` reaches it.
    at: u64,
    name: String,
}

/// Paces outbound audio and marks. See the module docs.
pub struct Pacer {
    chunk_bytes: u64,
    lead: Duration,
    max_queued: usize,
    max_marks: usize,
    /// Audio waiting: `queue[read..]`.
    queue: Vec<u8>,
    read: usize,
    /// Bytes ever taken off the queue (sent or cleared): queue positions.
    head: u64,
    marks: VecDeque<QueuedMark>,
    /// Start of the current schedule, if any.
    start: Option<Instant>,
    /// Bytes sent in the current schedule.
    sent: u64,
    /// Bytes Twilio played in schedules that are over.
    played_before: u64,
    /// Bytes sent, all schedules.
    sent_total: u64,
}

fn bytes_to_duration(bytes: u64) -> Duration {
    let nanos = u128::from(bytes) * 1_000_000_000 / RATE;
    Duration::new(
        (nanos / 1_000_000_000) as u64,
        (nanos % 1_000_000_000) as u32,
    )
}

fn duration_to_bytes(d: Duration) -> u64 {
    u64::try_from(d.as_nanos() * RATE / 1_000_000_000).unwrap_or(u64::MAX)
}

impl Pacer {
    /// Where the next audio is queued and the next message's taken from.
    /// See [`Connection::hot_memory`](crate::connection::Connection::hot_memory).
    pub(crate) fn hot_memory(&self, visit: crate::hot::Visit<'_>) {
        crate::hot::queue(visit, &self.queue, self.queue.capacity(), self.read);
    }

    /// A pacer with the given tuning.
    pub fn new(config: PacerConfig) -> Self {
        let chunk = config.chunk.clamp(MIN_CHUNK, MAX_CHUNK);
        let max_queued =
            usize::try_from(duration_to_bytes(config.max_queued)).unwrap_or(usize::MAX);
        Pacer {
            chunk_bytes: duration_to_bytes(chunk).max(1),
            lead: config.lead,
            max_queued,
            max_marks: config.max_marks,
            queue: Vec::new(),
            read: 0,
            head: 0,
            marks: VecDeque::new(),
            start: None,
            sent: 0,
            played_before: 0,
            sent_total: 0,
        }
    }

    /// Queues μ-law audio after what is queued. Past `max_queued`, queues
    /// the part that fits and says how much was dropped.
    pub fn enqueue(&mut self, ulaw: &[u8]) -> Result<(), QueueFull> {
        let room = self.max_queued.saturating_sub(self.queued_bytes());
        let take = ulaw.len().min(room);
        self.make_room();
        self.queue.extend_from_slice(&ulaw[..take]);
        if take < ulaw.len() {
            return Err(QueueFull {
                dropped: ulaw.len() - take,
            });
        }
        Ok(())
    }

    /// Queues 16-bit PCM at 8 kHz (encoded to μ-law) after what is queued.
    pub fn enqueue_pcm(&mut self, pcm: &[i16]) -> Result<(), QueueFull> {
        let room = self.max_queued.saturating_sub(self.queued_bytes());
        let take = pcm.len().min(room);
        self.make_room();
        self.queue
            .extend(pcm[..take].iter().map(|&s| codec::encode(s)));
        if take < pcm.len() {
            return Err(QueueFull {
                dropped: pcm.len() - take,
            });
        }
        Ok(())
    }

    /// Queues a mark after the audio queued so far.
    pub fn mark(&mut self, name: String) -> Result<(), TooManyMarks> {
        if self.marks.len() >= self.max_marks {
            return Err(TooManyMarks { name });
        }
        let at = self.head + self.queued_bytes() as u64;
        self.marks.push_back(QueuedMark { at, name });
        Ok(())
    }

    /// The next message due at `now`, if any. For [`Outgoing::Media`] its
    /// μ-law bytes replace the contents of `out`.
    #[must_use]
    pub fn poll_transmit(&mut self, now: Instant, out: &mut Vec<u8>) -> Option<Outgoing> {
        let (o, _) = self.poll_transmit_with(now, |bytes| {
            out.clear();
            out.extend_from_slice(bytes);
        })?;
        Some(o)
    }

    /// Like [`poll_transmit`](Self::poll_transmit), but an
    /// [`Outgoing::Media`]'s μ-law bytes are lent to `media` where they lie,
    /// not copied, and what it makes comes back with the message.
    #[must_use]
    pub fn poll_transmit_with<T>(
        &mut self,
        now: Instant,
        media: impl FnOnce(&[u8]) -> T,
    ) -> Option<(Outgoing, Option<T>)> {
        let (o, bytes) = self.next(now)?;
        let made = bytes.map(|bytes| media(self.queue.get(bytes).unwrap_or_default()));
        Some((o, made))
    }

    /// The next message due at `now`, and where in `queue` a media
    /// message's bytes are.
    fn next(&mut self, now: Instant) -> Option<(Outgoing, Option<Range<usize>>)> {
        if let Some(m) = self.marks.front()
            && m.at <= self.head
        {
            let name = self.marks.pop_front()?.name;
            let done_at = match self.end() {
                Some(end) if end > now => end,
                _ => now,
            };
            return Some((Outgoing::Mark { name, done_at }, None));
        }
        let queued = self.queued_bytes() as u64;
        if queued == 0 {
            return None;
        }
        let start = match self.start {
            Some(start) if self.end().is_some_and(|end| end >= now) => start,
            _ => {
                // Twilio has played everything: this audio starts a new schedule.
                self.end_schedule(now);
                self.start = Some(now);
                now
            }
        };
        let offset = bytes_to_duration(self.sent);
        let horizon = now
            .saturating_duration_since(start)
            .saturating_add(self.lead);
        if offset > horizon {
            return None;
        }
        let to_boundary = self.chunk_bytes - self.sent % self.chunk_bytes;
        let to_mark = self
            .marks
            .front()
            .map_or(u64::MAX, |m| m.at.saturating_sub(self.head));
        let n = queued.min(to_boundary).min(to_mark) as usize;
        let bytes = self.read..self.read + n;
        self.read += n;
        self.head += n as u64;
        self.sent += n as u64;
        self.sent_total += n as u64;
        let media = Outgoing::Media {
            play_at: start.checked_add(offset).unwrap_or(start),
        };
        Some((media, Some(bytes)))
    }

    /// When the next message falls due, if something is queued that is not
    /// due yet. (After `poll_transmit` returned `None`.)
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.queued_bytes() == 0 {
            return None;
        }
        let start = self.start?;
        let offset = bytes_to_duration(self.sent);
        let at = start.checked_add(offset)?;
        Some(at.checked_sub(self.lead).unwrap_or(start).max(start))
    }

    /// Drops all queued audio and marks (returned, in order) and ends the
    /// schedule at `now`: Twilio discards what it had not played.
    pub fn clear(&mut self, now: Instant) -> Vec<String> {
        self.head += self.queued_bytes() as u64;
        self.queue.clear();
        self.read = 0;
        let played = self.played_in_schedule(now);
        self.played_before += played;
        self.start = None;
        self.sent = 0;
        self.marks.drain(..).map(|m| m.name).collect()
    }

    /// Twilio confirmed at `now` that what the schedule expected to finish at
    /// `done_at` has played. If that is later than expected, the schedule
    /// moves back by the difference. Ignored for points outside the current
    /// schedule.
    pub fn confirm(&mut self, now: Instant, done_at: Instant) {
        let (Some(start), Some(end)) = (self.start, self.end()) else {
            return;
        };
        if done_at > start && done_at <= end && now > done_at {
            self.start = start.checked_add(now - done_at);
        }
    }

    /// Bytes (samples) of our audio Twilio has played by `now`, by the schedule.
    pub fn played_bytes(&self, now: Instant) -> u64 {
        self.played_before + self.played_in_schedule(now)
    }

    /// Milliseconds of our audio Twilio has played by `now`, by the schedule.
    /// (May step back a little when [`confirm`](Self::confirm) moves the schedule.)
    pub fn played_ms(&self, now: Instant) -> u64 {
        self.played_bytes(now) * 1000 / RATE as u64
    }

    /// Whether audio is queued here or, by the schedule, still playing at Twilio.
    pub fn is_playing(&self, now: Instant) -> bool {
        self.queued_bytes() > 0 || self.end().is_some_and(|end| end > now)
    }

    /// When Twilio will have played everything sent, by the schedule.
    pub fn end(&self) -> Option<Instant> {
        self.start?.checked_add(bytes_to_duration(self.sent))
    }

    /// Bytes (samples) of audio queued, not yet sent.
    pub fn queued_bytes(&self) -> usize {
        self.queue.len() - self.read
    }

    /// Marks queued, not yet sent.
    pub fn queued_marks(&self) -> usize {
        self.marks.len()
    }

    /// Bytes sent to Twilio since the pacer was created.
    pub fn sent_bytes(&self) -> u64 {
        self.sent_total
    }

    fn played_in_schedule(&self, now: Instant) -> u64 {
        match self.start {
            Some(start) => self
                .sent
                .min(duration_to_bytes(now.saturating_duration_since(start))),
            None => 0,
        }
    }

    fn end_schedule(&mut self, now: Instant) {
        self.played_before += self.played_in_schedule(now);
        self.start = None;
        self.sent = 0;
    }

    /// Drops sent bytes from the front of the buffer once they are the bulk of it.
    fn make_room(&mut self) {
        if self.read > 0 && self.read >= self.queue.len() / 2 {
            self.queue.drain(..self.read);
            self.read = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MS: Duration = Duration::from_millis(1);

    /// Everything due at `now`: (bytes, play offset from t0 in ms) for media, name for marks.
    fn drain(p: &mut Pacer, now: Instant, t0: Instant) -> Vec<Result<(usize, u64), String>> {
        let mut buf = Vec::new();
        let mut out = Vec::new();
        while let Some(o) = p.poll_transmit(now, &mut buf) {
            out.push(match o {
                Outgoing::Media { play_at } => Ok((buf.len(), (play_at - t0).as_millis() as u64)),
                Outgoing::Mark { name, .. } => Err(name),
            });
        }
        out
    }

    #[test]
    fn hot_memory_names_where_the_next_audio_lands() {
        let t0 = Instant::now();
        let mut p = Pacer::new(PacerConfig::default());
        let mut buf = Vec::new();
        for k in 0..40u32 {
            let now = t0 + MS * 20 * k;
            let mut named = Vec::new();
            p.hot_memory(&mut |at, len| named.push((at as usize, len)));
            p.enqueue(&[0x7e; 160]).unwrap();
            let end = p.queue.as_ptr() as usize + p.queue.len();
            let landed = end - 160;
            if k > 0 {
                assert!(
                    named.iter().any(|&(s, len)| s <= landed && end <= s + len),
                    "audio {k} at {landed:#x}..{end:#x}, named {named:?}"
                );
            }
            while p.poll_transmit(now, &mut buf).is_some() {}
        }
    }

    #[test]
    fn lent_bytes_are_the_copied_bytes() {
        let t0 = Instant::now();
        let (mut copied, mut lent) = (
            Pacer::new(PacerConfig::default()),
            Pacer::new(PacerConfig::default()),
        );
        let audio: Vec<u8> = (0..1000u32).map(|i| (i * 7) as u8).collect();
        let mut buf = Vec::new();
        for p in [&mut copied, &mut lent] {
            p.enqueue(&audio[..300]).unwrap();
            p.mark("half".into()).unwrap();
            p.enqueue(&audio[300..]).unwrap();
        }
        for step in 0..60 {
            let now = t0 + step * 10 * MS;
            loop {
                let a = copied.poll_transmit(now, &mut buf);
                let b = lent.poll_transmit_with(now, <[u8]>::to_vec);
                let Some(a) = a else {
                    assert_eq!(b, None);
                    break;
                };
                let (b, bytes) = b.unwrap();
                match &a {
                    Outgoing::Media { .. } => assert_eq!(bytes.as_ref(), Some(&buf)),
                    Outgoing::Mark { .. } => assert_eq!(bytes, None),
                }
                assert_eq!(a, b);
            }
            // Enqueueing compacts the queue: lent bytes stay right after it.
            if step == 20 {
                copied.enqueue(&audio[..200]).unwrap();
                lent.enqueue(&audio[..200]).unwrap();
            }
        }
        assert_eq!(copied.queued_bytes(), 0);
        assert_eq!(lent.queued_bytes(), 0);
    }

    #[test]
    fn sends_lead_ahead_then_one_chunk_per_deadline() {
        let t0 = Instant::now();
        let mut p = Pacer::new(PacerConfig::default());
        p.enqueue(&[0xFF; 1600]).unwrap(); // 200 ms
        let first = drain(&mut p, t0, t0);
        assert_eq!(first.len(), 6);
        assert_eq!(first[5], Ok((160, 100)));
        // Next deadline: chunk 6 plays at 120 ms, due at 20 ms.
        assert_eq!(p.poll_timeout(), Some(t0 + 20 * MS));
        assert!(drain(&mut p, t0 + 19 * MS, t0).is_empty());
        assert_eq!(drain(&mut p, t0 + 20 * MS, t0), [Ok((160, 120))]);
        // A late wake-up sends everything that fell due, without drifting.
        assert_eq!(drain(&mut p, t0 + 75 * MS, t0).len(), 2);
        assert_eq!(p.poll_timeout(), Some(t0 + 80 * MS));
        assert_eq!(drain(&mut p, t0 + 80 * MS, t0), [Ok((160, 180))]);
        assert_eq!(p.poll_timeout(), None);
        assert_eq!(p.sent_bytes(), 1600);
    }

    #[test]
    fn ten_minutes_of_audio_never_drift() {
        let t0 = Instant::now();
        let mut p = Pacer::new(PacerConfig::default());
        let frames = 30_000u64;
        p.enqueue(&vec![0xFF; 160 * frames as usize]).unwrap_err();
        // The default 60 s cap took the first 3000 frames; queue the rest as it drains.
        let mut buf = Vec::new();
        let mut k = 0u64;
        let mut now = t0;
        let mut fed = 3000u64;
        while k < frames {
            while let Some(Outgoing::Media { play_at }) = p.poll_transmit(now, &mut buf) {
                assert_eq!(play_at, t0 + 20 * MS * k as u32);
                assert!(play_at <= now + 100 * MS, "sent too early");
                k += 1;
            }
            if fed < frames && p.queued_bytes() < 160 * 100 {
                p.enqueue(&vec![0xFF; 160 * 100]).unwrap();
                fed += 100;
            }
            match p.poll_timeout() {
                Some(t) => now = t,
                None => break,
            }
        }
        assert_eq!(k, frames);
        assert_eq!(p.played_ms(t0 + Duration::from_secs(600)), 600_000);
    }

    #[test]
    fn unpaced_sends_everything_at_once() {
        let t0 = Instant::now();
        let mut p = Pacer::new(PacerConfig::unpaced());
        p.enqueue(&[0xFF; 1000]).unwrap();
        let out = drain(&mut p, t0, t0);
        assert_eq!(out.len(), 7);
        assert_eq!(out[6], Ok((40, 120)));
        assert_eq!(p.poll_timeout(), None);
        assert!(p.is_playing(t0 + 124 * MS));
        assert!(!p.is_playing(t0 + 125 * MS));
    }

    #[test]
    fn chunk_size_is_configurable() {
        let t0 = Instant::now();
        let mut p = Pacer::new(PacerConfig {
            chunk: Duration::from_millis(100),
            lead: Duration::ZERO,
            ..PacerConfig::default()
        });
        p.enqueue(&[0xFF; 2000]).unwrap();
        assert_eq!(drain(&mut p, t0, t0), [Ok((800, 0))]);
        assert_eq!(p.poll_timeout(), Some(t0 + 100 * MS));
        // A chunk shorter than a sample is raised to one sample.
        let p = Pacer::new(PacerConfig {
            chunk: Duration::ZERO,
            ..PacerConfig::default()
        });
        assert_eq!(p.chunk_bytes, 8);
    }

    #[test]
    fn marks_follow_the_audio_before_them() {
        let t0 = Instant::now();
        let mut p = Pacer::new(PacerConfig::default());
        p.mark("first".into()).unwrap();
        p.enqueue(&[0xFF; 100]).unwrap();
        p.mark("second".into()).unwrap();
        p.enqueue(&[0xFF; 300]).unwrap();
        p.mark("third".into()).unwrap();
        let out = drain(&mut p, t0, t0);
        assert_eq!(
            out,
            [
                Err("first".to_string()),
                Ok((100, 0)),
                Err("second".to_string()),
                Ok((60, 12)), // up to the chunk boundary at 160
                Ok((160, 20)),
                Ok((80, 40)),
                Err("third".to_string()),
            ]
        );
    }

    #[test]
    fn mark_done_at_is_end_of_audio_before_it() {
        let t0 = Instant::now();
        let mut p = Pacer::new(PacerConfig::unpaced());
        p.mark("idle".into()).unwrap();
        p.enqueue(&[0xFF; 800]).unwrap();
        p.mark("after".into()).unwrap();
        let mut buf = Vec::new();
        let mut done = Vec::new();
        while let Some(o) = p.poll_transmit(t0, &mut buf) {
            if let Outgoing::Mark { done_at, .. } = o {
                done.push(done_at);
            }
        }
        assert_eq!(done, [t0, t0 + 100 * MS]);
    }

    #[test]
    fn clear_drops_queue_and_restarts_schedule() {
        let t0 = Instant::now();
        let mut p = Pacer::new(PacerConfig::default());
        p.enqueue(&[0xFF; 1600]).unwrap();
        p.mark("m".into()).unwrap();
        let _ = drain(&mut p, t0, t0);
        let t1 = t0 + 50 * MS;
        assert_eq!(p.clear(t1), ["m".to_string()]);
        assert_eq!(p.queued_bytes(), 0);
        assert!(!p.is_playing(t1));
        assert_eq!(p.played_ms(t1), 50);
        // Played time stops at the clear.
        assert_eq!(p.played_ms(t1 + Duration::from_secs(5)), 50);
        // New audio starts a new schedule at once.
        p.enqueue(&[0xFF; 160]).unwrap();
        assert_eq!(drain(&mut p, t1, t1), [Ok((160, 0))]);
        assert_eq!(p.played_ms(t1 + 10 * MS), 60);
    }

    #[test]
    fn audio_queued_while_playing_continues_the_schedule() {
        let t0 = Instant::now();
        let mut p = Pacer::new(PacerConfig::default());
        p.enqueue(&[0xFF; 800]).unwrap(); // 100 ms
        let _ = drain(&mut p, t0, t0);
        p.enqueue(&[0xFF; 160]).unwrap();
        // Twilio plays until 100 ms: the new chunk plays right after.
        assert_eq!(drain(&mut p, t0 + 30 * MS, t0), [Ok((160, 100))]);
        // After Twilio ran dry, audio starts a new schedule at its send time.
        p.enqueue(&[0xFF; 160]).unwrap();
        assert_eq!(drain(&mut p, t0 + 500 * MS, t0), [Ok((160, 500))]);
        assert_eq!(p.played_ms(t0 + 520 * MS), 140);
    }

    #[test]
    fn late_confirmation_moves_the_schedule_back() {
        let t0 = Instant::now();
        let mut p = Pacer::new(PacerConfig::default());
        p.enqueue(&[0xFF; 1600]).unwrap();
        let _ = drain(&mut p, t0, t0);
        // Twilio says what should have finished at 40 ms finished at 70 ms.
        p.confirm(t0 + 70 * MS, t0 + 40 * MS);
        assert_eq!(p.poll_timeout(), Some(t0 + 50 * MS));
        assert_eq!(p.played_ms(t0 + 70 * MS), 40);
        // Points outside the schedule are ignored.
        p.confirm(t0 + 900 * MS, t0 + 800 * MS);
        assert_eq!(p.poll_timeout(), Some(t0 + 50 * MS));
    }

    #[test]
    fn queue_limit_keeps_the_prefix() {
        let mut p = Pacer::new(PacerConfig {
            max_queued: Duration::from_millis(100),
            ..PacerConfig::default()
        });
        assert_eq!(p.enqueue(&[0xFF; 700]), Ok(()));
        assert_eq!(p.enqueue(&[0xFF; 200]), Err(QueueFull { dropped: 100 }));
        assert_eq!(p.queued_bytes(), 800);
        assert_eq!(p.enqueue_pcm(&[0; 10]), Err(QueueFull { dropped: 10 }));
        let t0 = Instant::now();
        let _ = drain(&mut p, t0, t0);
        // What was sent makes room again.
        assert_eq!(p.queued_bytes(), 0);
        assert_eq!(p.enqueue_pcm(&[0; 800]), Ok(()));
    }

    #[test]
    fn mark_limit() {
        let mut p = Pacer::new(PacerConfig {
            max_marks: 2,
            ..PacerConfig::default()
        });
        p.mark("a".into()).unwrap();
        p.mark("b".into()).unwrap();
        assert_eq!(p.mark("c".into()), Err(TooManyMarks { name: "c".into() }));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Whatever the commands and timing: audio goes out in order and
        /// gap-free on the schedule, never earlier than `lead` before it
        /// plays, a clear always empties the queue, and every mark comes out
        /// once (sent or returned by a clear).
        #[test]
        fn pacing_invariants(
            ops in proptest::collection::vec((0u8..4, 0usize..700, 0u64..60), 1..60),
            lead_ms in prop_oneof![Just(u64::MAX), 0u64..200],
        ) {
            let lead = if lead_ms == u64::MAX { Duration::MAX } else { Duration::from_millis(lead_ms) };
            let t0 = Instant::now();
            let mut p = Pacer::new(PacerConfig { lead, ..PacerConfig::default() });
            let mut now = t0;
            let mut buf = Vec::new();
            let mut marks_made = 0u32;
            let mut marks_out = Vec::new();
            let mut counter = 0u8;
            let mut expected_next: Option<Instant> = None;
            for (op, n, dt) in ops {
                now += Duration::from_millis(dt);
                match op {
                    0 | 1 => {
                        let bytes: Vec<u8> = (0..n).map(|_| { counter = counter.wrapping_add(1); counter }).collect();
                        let _ = p.enqueue(&bytes);
                    }
                    2 => {
                        p.mark(marks_made.to_string()).unwrap();
                        marks_made += 1;
                    }
                    _ => {
                        marks_out.extend(p.clear(now));
                        prop_assert_eq!(p.queued_bytes(), 0);
                        prop_assert_eq!(p.queued_marks(), 0);
                        prop_assert!(!p.is_playing(now));
                        expected_next = None;
                    }
                }
                // Drive to `now`, as an event loop would, through each deadline.
                loop {
                    while let Some(o) = p.poll_transmit(now, &mut buf) {
                        match o {
                            Outgoing::Media { play_at } => {
                                prop_assert!(!buf.is_empty());
                                if lead != Duration::MAX {
                                    prop_assert!(play_at <= now + lead);
                                }
                                if let Some(e) = expected_next && e >= now {
                                    prop_assert_eq!(play_at, e, "gap or overlap in the schedule");
                                }
                                expected_next = Some(play_at + bytes_to_duration(buf.len() as u64));
                            }
                            Outgoing::Mark { name, .. } => marks_out.push(name),
                        }
                    }
                    match p.poll_timeout() {
                        Some(t) if t <= now => prop_assert!(false, "deadline in the past after draining"),
                        _ => break,
                    }
                }
            }
            marks_out.extend(p.clear(now));
            let expected: Vec<String> = (0..marks_made).map(|m| m.to_string()).collect();
            prop_assert_eq!(marks_out, expected);
        }
    }
}
