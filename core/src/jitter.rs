//! The inbound jitter buffer: Twilio's media messages in, a gap-free stream of
//! 20 ms frames out.
//!
//! # Contract
//!
//! [`JitterBuffer::handle_receive`] takes one media message (its `chunk`, its `timestamp`
//! and its μ-law payload, of any length) and the time it arrived.
//! [`JitterBuffer::poll_frame`] hands out [`AudioFrame`]s: exactly
//! [`FRAME_SAMPLES`](crate::codec::FRAME_SAMPLES) samples each, in stream order,
//! never one twice, with `timestamp_ms` equal to `origin + k × 20` for the
//! `k`-th frame handed out (the *cadence*: it never drifts, whatever order or
//! size the input came in). `origin` is the `timestamp` of the first message
//! that was handed on. In the crate's [run loop](crate#run-loop) its
//! poller is `poll_frame` (a drain ends at `None`) and its deadline
//! [`JitterBuffer::poll_timeout`].
//!
//! # Playout time and arrival
//!
//! The consumer is an application (a recogniser, a recorder), not a loudspeaker:
//! it wants every frame, in order, as early as possible, and it keeps its own
//! time by counting frames. So:
//!
//! - a message whose predecessors have all been handed on is handed on at once:
//!   audio that arrives in order passes with no added delay;
//! - a message that arrives after a missing `chunk` waits for it, at most
//!   `depth` (default 40 ms) counted from the arrival of the first message held
//!   back; then the hole is filled with silence marked `concealed`, and the
//!   held messages follow;
//! - a message that arrives after its place in the stream was given away (or a
//!   `chunk` already handed on) is dropped and counted as `late` (or
//!   `duplicate`);
//! - when Twilio sends nothing at all, nothing comes out: a stalled connection
//!   delivers its backlog when it recovers, with nothing lost.
//!
//! # Ordering and position
//!
//! Messages are ordered by `chunk` (Twilio numbers media messages from 1 and
//! may skip or repeat one). Where a message's audio belongs in the stream comes
//! from its `timestamp` (milliseconds since the stream started): when the
//! timestamp is within half a frame of where the audio before it ended, the
//! audio is placed right after it (Twilio's millisecond timestamps jitter); a
//! timestamp further ahead opens a gap of whole 20 ms frames, filled with
//! concealed silence; one further behind is placed right after anyway and the
//! stream re-aligned to it. So the stream time of the frames handed out stays
//! within half a frame of Twilio's timestamps, except after a gap longer than
//! `max_gap` (default 1 s): only `max_gap` of silence is inserted and the
//! frames after it run behind Twilio's timestamps by the rest (`resyncs`
//! counts those). A frame is `concealed` when any of its samples is.
//!
//! # Limits
//!
//! At most `max_frames` messages wait in the buffer (default 50); one more
//! forces the oldest hole to be concealed at once. A payload longer than
//! `max_payload` bytes (default 8000, one second) is refused whole. Concealed
//! silence is at most `max_gap` per hole (`max_gap` itself is capped at 60 s).
//! So, whatever the chunk numbers and timestamps say, the buffer holds at most
//! `max_frames × max_payload` bytes waiting, and one `handle_receive` hands on at most
//! `(max_frames + 1) × (max_gap + max_payload)` samples for `poll_frame` to cut.
//!
//! ```
//! use callstream_core::jitter::{JitterBuffer, JitterConfig};
//! use std::time::{Duration, Instant};
//!
//! let t0 = Instant::now();
//! let mut jb = JitterBuffer::new(JitterConfig::default());
//! // chunk 2 arrives before chunk 1: it waits.
//! jb.handle_receive(t0, 2, 20, &[0xFF; 160]);
//! assert!(jb.poll_frame(t0).is_none());
//! // chunk 1 arrives 5 ms later: both come out, in order.
//! let t1 = t0 + Duration::from_millis(5);
//! jb.handle_receive(t1, 1, 0, &[0xFF; 160]);
//! assert_eq!(jb.poll_frame(t1).map(|f| f.timestamp_ms), Some(0));
//! assert_eq!(jb.poll_frame(t1).map(|f| f.timestamp_ms), Some(20));
//! // chunk 4 arrives, chunk 3 never does: after `depth` it is concealed.
//! jb.handle_receive(t1, 4, 60, &[0xFF; 160]);
//! assert!(jb.poll_frame(t1).is_none());
//! let t2 = jb.poll_timeout().unwrap();
//! let f = jb.poll_frame(t2).unwrap();
//! assert_eq!((f.timestamp_ms, f.concealed), (40, true));
//! assert_eq!(jb.poll_frame(t2).map(|f| f.timestamp_ms), Some(60));
//! assert_eq!(jb.stats().reordered, 1);
//! assert_eq!(jb.stats().concealed, 1);
//! ```

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use crate::codec::{self, FRAME_MS, FRAME_SAMPLES};

/// Samples per millisecond at 8 kHz.
const SAMPLES_PER_MS: i128 = 8;
/// A timestamp within this many samples of where the audio before it ended
/// is taken as contiguous (half a frame).
const TOLERANCE: i128 = (FRAME_SAMPLES / 2) as i128;
/// How many chunk numbers behind the stream position are remembered, to tell
/// a duplicate from a late message.
const WINDOW: u128 = 256;
/// The longest `max_gap` a configuration may ask for.
const MAX_GAP_LIMIT: Duration = Duration::from_secs(60);

/// One 20 ms frame of inbound audio, as the application sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AudioFrame {
    /// Stream time of the first sample, in milliseconds: `origin + k × 20`
    /// for the `k`-th frame of the stream.
    pub timestamp_ms: u64,
    /// 160 samples of 16-bit PCM at 8 kHz.
    pub samples: [i16; FRAME_SAMPLES],
    /// True when any sample is silence standing in for audio that never came.
    pub concealed: bool,
}

/// Tuning of a [`JitterBuffer`]. `Default` gives the values in the module docs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JitterConfig {
    /// How long a message waits for a missing earlier one (default 40 ms).
    /// Zero conceals a hole as soon as anything after it arrives.
    pub depth: Duration,
    /// Most messages held waiting at once (default 50); at least 1.
    pub max_frames: usize,
    /// Longest payload accepted, in μ-law bytes (default 8000, one second).
    pub max_payload: usize,
    /// Most silence inserted for one gap (default 1 s).
    pub max_gap: Duration,
}

impl Default for JitterConfig {
    fn default() -> Self {
        JitterConfig {
            depth: Duration::from_millis(40),
            max_frames: 50,
            max_payload: 8000,
            max_gap: Duration::from_secs(1),
        }
    }
}

/// What happened to a pushed message.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Push {
    /// Taken: handed on already or waiting for an earlier chunk.
    Accepted,
    /// Dropped: this chunk was already received.
    Duplicate,
    /// Dropped: its place in the stream was already given away.
    Late,
    /// Dropped: the payload is longer than `max_payload`.
    TooLarge,
}

/// Counters of a [`JitterBuffer`], all since it was created.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct JitterStats {
    /// Media messages pushed, whatever became of them.
    pub received: u64,
    /// Messages that arrived after a higher chunk (and were still in time).
    pub reordered: u64,
    /// Messages dropped because their chunk had been received already.
    pub duplicate: u64,
    /// Messages dropped because their place had been given away.
    pub late: u64,
    /// Frames handed out with `concealed` set.
    pub concealed: u64,
    /// Messages refused for a payload over `max_payload`.
    pub oversize: u64,
    /// Gaps longer than `max_gap`, or timestamps jumping backwards, after
    /// which the stream was re-aligned to Twilio's timestamps.
    pub resyncs: u64,
    /// Frames handed out.
    pub frames: u64,
}

struct Held {
    timestamp: u64,
    arrived: Instant,
    ulaw: Vec<u8>,
}

/// Orders, de-duplicates and re-frames inbound audio. See the module docs.
pub struct JitterBuffer {
    config: JitterConfig,
    /// Messages waiting for an earlier chunk, by chunk.
    held: BTreeMap<u64, Held>,
    /// Payload buffers to reuse, so reordering does not allocate per message.
    spare: Vec<Vec<u8>>,
    /// The chunk that comes next; `None` until the stream's first message is handed on.
    next_chunk: Option<u128>,
    /// Highest chunk accepted so far.
    highest_chunk: Option<u64>,
    /// Bit `c % WINDOW` says whether chunk `c` (within `WINDOW` behind
    /// `next_chunk`) was received.
    seen: [u64; (WINDOW / 64) as usize],
    /// Timestamp of the first message handed on.
    origin_ms: u64,
    /// Added to a message's timestamp position after re-alignments, in samples.
    shift: i128,
    /// Samples handed on into `fifo` since the origin (its end position).
    released: u64,
    /// Samples handed on, not yet cut into frames: `fifo[read..]`, kept as
    /// μ-law (half the memory a call touches per frame) and decoded as each
    /// frame is cut.
    fifo: Vec<u8>,
    read: usize,
    /// Samples cut into frames so far (`fifo` starts here).
    popped: u64,
    /// Concealed sample ranges `[start, end)` not yet handed out.
    concealed: VecDeque<(u64, u64)>,
    stats: JitterStats,
}

impl JitterBuffer {
    /// Where the next frame's μ-law is appended and taken from. See
    /// [`Connection::hot_memory`](crate::connection::Connection::hot_memory).
    pub(crate) fn hot_memory(&self, visit: crate::hot::Visit<'_>) {
        crate::hot::queue(visit, &self.fifo, self.fifo.capacity(), self.read);
    }

    /// A buffer with the given tuning (`max_frames` is raised to 1 if zero,
    /// `max_gap` lowered to 60 s if longer).
    pub fn new(mut config: JitterConfig) -> Self {
        config.max_frames = config.max_frames.max(1);
        config.max_gap = config.max_gap.min(MAX_GAP_LIMIT);
        JitterBuffer {
            config,
            held: BTreeMap::new(),
            spare: Vec::new(),
            next_chunk: None,
            highest_chunk: None,
            seen: [0; (WINDOW / 64) as usize],
            origin_ms: 0,
            shift: 0,
            released: 0,
            fifo: Vec::with_capacity(4 * FRAME_SAMPLES),
            read: 0,
            popped: 0,
            concealed: VecDeque::new(),
            stats: JitterStats::default(),
        }
    }

    /// The tuning in use.
    pub fn config(&self) -> &JitterConfig {
        &self.config
    }

    /// The counters so far.
    pub fn stats(&self) -> &JitterStats {
        &self.stats
    }

    /// Messages waiting for an earlier chunk.
    pub fn held(&self) -> usize {
        self.held.len()
    }

    /// Samples handed on but not yet cut into a frame (less than a frame
    /// unless frames are waiting to be popped).
    pub fn pending_samples(&self) -> usize {
        self.fifo.len() - self.read
    }

    /// Takes one media message that arrived at `now`: its `chunk` number,
    /// `timestamp` (ms since the stream started) and μ-law payload.
    pub fn handle_receive(
        &mut self,
        now: Instant,
        chunk: u64,
        timestamp_ms: u64,
        ulaw: &[u8],
    ) -> Push {
        self.stats.received += 1;
        if ulaw.len() > self.config.max_payload {
            self.stats.oversize += 1;
            return Push::TooLarge;
        }
        let c = u128::from(chunk);
        if let Some(next) = self.next_chunk
            && c < next
        {
            // Behind the stream position: was it here before, or did we give up on it?
            return if next - c <= WINDOW && self.was_seen(c) {
                self.stats.duplicate += 1;
                Push::Duplicate
            } else {
                self.stats.late += 1;
                Push::Late
            };
        }
        if self.held.contains_key(&chunk) {
            self.stats.duplicate += 1;
            return Push::Duplicate;
        }
        match self.highest_chunk {
            Some(h) if chunk < h => self.stats.reordered += 1,
            Some(h) if chunk == h => {}
            _ => self.highest_chunk = Some(chunk),
        }
        // Twilio counts chunks from 1; before the first message is handed on,
        // chunk 1 (or 0) cannot have anything missing before it.
        let in_order = match self.next_chunk {
            Some(next) => c == next,
            None => chunk <= 1,
        };
        if in_order {
            self.release(chunk, timestamp_ms, ulaw);
            self.release_contiguous();
        } else {
            let mut buf = self.spare.pop().unwrap_or_default();
            buf.clear();
            buf.extend_from_slice(ulaw);
            self.held.insert(
                chunk,
                Held {
                    timestamp: timestamp_ms,
                    arrived: now,
                    ulaw: buf,
                },
            );
            // Full: the oldest hole is concealed now rather than holding more.
            while self.held.len() > self.config.max_frames {
                self.release_first_held();
            }
        }
        Push::Accepted
    }

    /// The next frame due at `now`, if any. Conceals holes that have been
    /// waited for long enough first.
    #[must_use]
    pub fn poll_frame(&mut self, now: Instant) -> Option<AudioFrame> {
        self.expire(now);
        let mut samples = [0i16; FRAME_SAMPLES];
        codec::decode_into(
            self.fifo.get(self.read..self.read + FRAME_SAMPLES)?,
            &mut samples,
        );
        self.read += FRAME_SAMPLES;
        let start = self.popped;
        let end = start + FRAME_SAMPLES as u64;
        self.popped = end;
        let mut concealed = false;
        while let Some(&(s, e)) = self.concealed.front() {
            if s >= end {
                break;
            }
            concealed |= e > start;
            if e <= end {
                self.concealed.pop_front();
            } else {
                break;
            }
        }
        let k = self.stats.frames;
        self.stats.frames += 1;
        if concealed {
            self.stats.concealed += 1;
        }
        Some(AudioFrame {
            timestamp_ms: self.origin_ms.saturating_add(k.saturating_mul(FRAME_MS)),
            samples,
            concealed,
        })
    }

    /// When a held message will have waited `depth`, so that [`poll_frame`](Self::poll_frame)
    /// has something new without new input; `None` when nothing is held.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        let first = self.held.values().map(|h| h.arrived).min()?;
        Some(first.checked_add(self.config.depth).unwrap_or(first))
    }

    /// The end of the stream: hands on everything held (concealing holes) and
    /// pads the last partial frame with concealed silence, so that `poll_frame`
    /// returns every remaining sample.
    pub fn flush(&mut self) {
        while !self.held.is_empty() {
            self.release_first_held();
        }
        let partial = self.pending_samples() % FRAME_SAMPLES;
        if partial != 0 {
            self.conceal((FRAME_SAMPLES - partial) as u64);
        }
    }

    fn expire(&mut self, now: Instant) {
        while let Some(deadline) = self.poll_timeout() {
            if deadline > now {
                break;
            }
            self.release_first_held();
        }
    }

    fn release_first_held(&mut self) {
        if let Some((chunk, held)) = self.held.pop_first() {
            self.release(chunk, held.timestamp, &held.ulaw);
            self.spare.push(held.ulaw);
            self.release_contiguous();
        }
    }

    fn release_contiguous(&mut self) {
        while let Some(next) = self.next_chunk {
            let Ok(next) = u64::try_from(next) else { break };
            let Some(held) = self.held.remove(&next) else {
                break;
            };
            self.release(next, held.timestamp, &held.ulaw);
            self.spare.push(held.ulaw);
        }
    }

    /// Hands one message's audio on to the frame cutter, after any gap its
    /// timestamp says lies before it.
    fn release(&mut self, chunk: u64, timestamp_ms: u64, ulaw: &[u8]) {
        let position = match self.next_chunk {
            None => {
                self.origin_ms = timestamp_ms;
                0
            }
            Some(_) => {
                (i128::from(timestamp_ms) - i128::from(self.origin_ms)) * SAMPLES_PER_MS
                    + self.shift
            }
        };
        let expected = i128::from(self.released);
        let ahead = position - expected;
        if ahead > TOLERANCE {
            let frame = FRAME_SAMPLES as i128;
            let max_frames = (self.config.max_gap.as_millis() as i128 / FRAME_MS as i128).max(0);
            let frames = (ahead + TOLERANCE) / frame;
            if frames > max_frames {
                self.stats.resyncs += 1;
                self.shift -= ahead - max_frames * frame;
            }
            let gap = frames.min(max_frames) * frame;
            self.conceal(gap as u64);
        } else if ahead < -TOLERANCE {
            // Timestamps went backwards: keep the audio contiguous and follow them.
            self.stats.resyncs += 1;
            self.shift -= ahead;
        }
        self.make_room();
        self.fifo.extend_from_slice(ulaw);
        self.released += ulaw.len() as u64;
        self.advance_to(u128::from(chunk) + 1);
        self.mark_seen(u128::from(chunk));
    }

    /// Forgets samples already cut into frames: all of them when everything
    /// was (the usual case, no copy), else once they are the bulk of the buffer.
    fn make_room(&mut self) {
        if self.read == self.fifo.len() {
            self.fifo.clear();
            self.read = 0;
        } else if self.read >= self.fifo.len() / 2 {
            self.fifo.drain(..self.read);
            self.read = 0;
        }
    }

    fn conceal(&mut self, samples: u64) {
        if samples == 0 {
            return;
        }
        let start = self.released;
        self.make_room();
        self.fifo
            .resize(self.fifo.len() + samples as usize, codec::SILENCE);
        self.released += samples;
        match self.concealed.back_mut() {
            Some((_, end)) if *end == start => *end = self.released,
            _ => self.concealed.push_back((start, self.released)),
        }
    }

    /// Moves the stream position to `next`, forgetting chunks that fall out of
    /// the window (they, and the chunks skipped, count as not received).
    fn advance_to(&mut self, next: u128) {
        let from = self.next_chunk.unwrap_or(next);
        if next.saturating_sub(from) >= WINDOW {
            self.seen = [0; (WINDOW / 64) as usize];
        } else {
            for c in from..next {
                self.set_seen(c, false);
            }
        }
        self.next_chunk = Some(next);
    }

    fn mark_seen(&mut self, chunk: u128) {
        self.set_seen(chunk, true);
    }

    fn set_seen(&mut self, chunk: u128, on: bool) {
        let bit = (chunk % WINDOW) as usize;
        let word = &mut self.seen[bit / 64];
        if on {
            *word |= 1 << (bit % 64);
        } else {
            *word &= !(1 << (bit % 64));
        }
    }

    fn was_seen(&self, chunk: u128) -> bool {
        let bit = (chunk % WINDOW) as usize;
        self.seen[bit / 64] & (1 << (bit % 64)) != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MS: Duration = Duration::from_millis(1);

    /// A frame of μ-law whose every byte encodes `n`, so frames can be told apart.
    fn tone(n: i16) -> Vec<u8> {
        vec![codec::encode(n); FRAME_SAMPLES]
    }

    fn drain(jb: &mut JitterBuffer, now: Instant) -> Vec<AudioFrame> {
        std::iter::from_fn(|| jb.poll_frame(now)).collect()
    }

    fn level(f: &AudioFrame) -> i16 {
        f.samples[0]
    }

    /// The ranges `hot_memory` names now.
    fn hot(jb: &JitterBuffer) -> Vec<(usize, usize)> {
        let mut named = Vec::new();
        jb.hot_memory(&mut |p, len| named.push((p as usize, len)));
        named
    }

    #[test]
    fn hot_memory_names_where_the_next_frame_lands() {
        let t0 = Instant::now();
        let mut jb = JitterBuffer::new(JitterConfig::default());
        for k in 0..40u64 {
            let now = t0 + MS * 20 * k as u32;
            let named = hot(&jb);
            jb.handle_receive(now, k + 1, k * 20, &tone(1000));
            // The frame just appended, named before it came.
            let end = jb.fifo.as_ptr() as usize + jb.fifo.len();
            let landed = end - FRAME_SAMPLES;
            if k > 0 {
                assert!(
                    named.iter().any(|&(s, len)| s <= landed && end <= s + len),
                    "frame {k} at {landed:#x}..{end:#x}, named {named:?}"
                );
            }
            // Sometimes two frames wait: the queue is read from the middle.
            if k % 7 != 3 {
                drain(&mut jb, now);
            }
        }
    }

    #[test]
    fn in_order_frames_pass_at_once() {
        let t0 = Instant::now();
        let mut jb = JitterBuffer::new(JitterConfig::default());
        for k in 0..10u64 {
            let now = t0 + MS * 20 * k as u32;
            assert_eq!(
                jb.handle_receive(now, k + 1, k * 20, &tone(1000)),
                Push::Accepted
            );
            let out = drain(&mut jb, now);
            assert_eq!(out.len(), 1);
            assert_eq!(out[0].timestamp_ms, k * 20);
            assert!(!out[0].concealed);
            assert_eq!(jb.poll_timeout(), None);
        }
        assert_eq!(jb.stats().frames, 10);
        assert_eq!(jb.stats().reordered, 0);
    }

    #[test]
    fn origin_is_first_timestamp() {
        let t0 = Instant::now();
        let mut jb = JitterBuffer::new(JitterConfig::default());
        jb.handle_receive(t0, 1, 57, &tone(0));
        jb.handle_receive(t0, 2, 77, &tone(0));
        let ts: Vec<u64> = drain(&mut jb, t0).iter().map(|f| f.timestamp_ms).collect();
        assert_eq!(ts, [57, 77]);
    }

    #[test]
    fn reordered_within_depth_is_restored() {
        let t0 = Instant::now();
        let mut jb = JitterBuffer::new(JitterConfig::default());
        jb.handle_receive(t0, 1, 0, &tone(100));
        jb.handle_receive(t0, 3, 40, &tone(300));
        jb.handle_receive(t0, 2, 20, &tone(200));
        let out = drain(&mut jb, t0);
        let levels: Vec<i16> = out.iter().map(level).collect();
        assert_eq!(
            levels,
            [
                codec::decode(codec::encode(100)),
                codec::decode(codec::encode(200)),
                codec::decode(codec::encode(300))
            ]
        );
        assert_eq!(jb.stats().reordered, 1);
        assert_eq!(jb.stats().concealed, 0);
    }

    #[test]
    fn first_message_out_of_order_waits_for_chunk_one() {
        let t0 = Instant::now();
        let mut jb = JitterBuffer::new(JitterConfig::default());
        jb.handle_receive(t0, 2, 20, &tone(200));
        assert!(jb.poll_frame(t0).is_none());
        jb.handle_receive(t0 + 10 * MS, 1, 0, &tone(100));
        let out = drain(&mut jb, t0 + 10 * MS);
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].timestamp_ms, 0);
    }

    #[test]
    fn first_message_missing_starts_stream_after_depth() {
        let t0 = Instant::now();
        let mut jb = JitterBuffer::new(JitterConfig::default());
        jb.handle_receive(t0, 3, 40, &tone(300));
        assert_eq!(jb.poll_timeout(), Some(t0 + 40 * MS));
        assert!(jb.poll_frame(t0 + 39 * MS).is_none());
        let out = drain(&mut jb, t0 + 40 * MS);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].timestamp_ms, 40);
        assert!(!out[0].concealed);
    }

    #[test]
    fn hole_is_concealed_after_depth_and_late_frame_dropped() {
        let t0 = Instant::now();
        let mut jb = JitterBuffer::new(JitterConfig::default());
        jb.handle_receive(t0, 1, 0, &tone(100));
        jb.handle_receive(t0 + 20 * MS, 3, 40, &tone(300));
        jb.handle_receive(t0 + 40 * MS, 4, 60, &tone(400));
        assert_eq!(drain(&mut jb, t0 + 59 * MS).len(), 1);
        // The hole's deadline counts from the first message held, chunk 3.
        assert_eq!(jb.poll_timeout(), Some(t0 + 60 * MS));
        let out = drain(&mut jb, t0 + 60 * MS);
        let flags: Vec<(u64, bool)> = out.iter().map(|f| (f.timestamp_ms, f.concealed)).collect();
        assert_eq!(flags, [(20, true), (40, false), (60, false)]);
        assert_eq!(
            jb.handle_receive(t0 + 61 * MS, 2, 20, &tone(200)),
            Push::Late
        );
        assert_eq!(jb.stats().late, 1);
        assert_eq!(jb.stats().concealed, 1);
    }

    #[test]
    fn zero_depth_conceals_at_once() {
        let t0 = Instant::now();
        let mut jb = JitterBuffer::new(JitterConfig {
            depth: Duration::ZERO,
            ..JitterConfig::default()
        });
        jb.handle_receive(t0, 1, 0, &tone(0));
        jb.handle_receive(t0, 3, 40, &tone(0));
        assert_eq!(drain(&mut jb, t0).len(), 3);
    }

    #[test]
    fn duplicates_are_dropped_whether_held_or_handed_on() {
        let t0 = Instant::now();
        let mut jb = JitterBuffer::new(JitterConfig::default());
        assert_eq!(jb.handle_receive(t0, 1, 0, &tone(0)), Push::Accepted);
        assert_eq!(jb.handle_receive(t0, 1, 0, &tone(0)), Push::Duplicate);
        assert_eq!(jb.handle_receive(t0, 3, 40, &tone(0)), Push::Accepted);
        assert_eq!(jb.handle_receive(t0, 3, 40, &tone(0)), Push::Duplicate);
        assert_eq!(jb.stats().duplicate, 2);
        assert_eq!(jb.stats().received, 4);
    }

    #[test]
    fn chunk_far_behind_is_late() {
        let t0 = Instant::now();
        let mut jb = JitterBuffer::new(JitterConfig::default());
        for k in 1..=300u64 {
            jb.handle_receive(t0, k, (k - 1) * 20, &tone(0));
        }
        let _ = drain(&mut jb, t0);
        // Chunk 2 was received, but it is out of the window: late, not duplicate.
        assert_eq!(jb.handle_receive(t0, 2, 20, &tone(0)), Push::Late);
        assert_eq!(
            jb.handle_receive(t0, 299, 298 * 20, &tone(0)),
            Push::Duplicate
        );
    }

    #[test]
    fn odd_sized_payloads_are_reframed() {
        let t0 = Instant::now();
        let mut jb = JitterBuffer::new(JitterConfig::default());
        // 100 + 220 + 160 + 0 + 40 = 520 samples: three frames and 40 left over.
        let sizes = [100usize, 220, 160, 0, 40];
        let mut ts = 0u64;
        for (i, n) in sizes.iter().enumerate() {
            jb.handle_receive(t0, i as u64 + 1, ts, &vec![codec::encode(500); *n]);
            ts += *n as u64 / 8;
        }
        let out = drain(&mut jb, t0);
        assert_eq!(
            out.iter().map(|f| f.timestamp_ms).collect::<Vec<_>>(),
            [0, 20, 40]
        );
        assert!(out.iter().all(|f| !f.concealed));
        assert_eq!(jb.pending_samples(), 40);
        jb.flush();
        let last = drain(&mut jb, t0);
        assert_eq!(last.len(), 1);
        assert!(last[0].concealed);
        assert_eq!(last[0].samples[39], codec::decode(codec::encode(500)));
        assert_eq!(last[0].samples[40], 0);
    }

    #[test]
    fn timestamp_jitter_within_half_a_frame_is_absorbed() {
        let t0 = Instant::now();
        let mut jb = JitterBuffer::new(JitterConfig::default());
        for (k, ts) in [0u64, 21, 39, 61, 80, 109].iter().enumerate() {
            jb.handle_receive(t0, k as u64 + 1, *ts, &tone(0));
        }
        let out = drain(&mut jb, t0);
        assert_eq!(out.len(), 6);
        assert!(out.iter().all(|f| !f.concealed));
        assert_eq!(jb.stats().resyncs, 0);
    }

    #[test]
    fn timestamp_gap_with_consecutive_chunks_is_concealed() {
        let t0 = Instant::now();
        let mut jb = JitterBuffer::new(JitterConfig::default());
        jb.handle_receive(t0, 1, 0, &tone(0));
        jb.handle_receive(t0, 2, 100, &tone(0));
        let out = drain(&mut jb, t0);
        let c: Vec<bool> = out.iter().map(|f| f.concealed).collect();
        assert_eq!(c, [false, true, true, true, true, false]);
        assert_eq!(out[5].timestamp_ms, 100);
    }

    #[test]
    fn huge_timestamp_jump_inserts_at_most_max_gap() {
        let t0 = Instant::now();
        let mut jb = JitterBuffer::new(JitterConfig::default());
        jb.handle_receive(t0, 1, 0, &tone(0));
        jb.handle_receive(t0, 2, u64::MAX, &tone(0));
        jb.handle_receive(t0, 3, u64::MAX, &tone(0));
        let out = drain(&mut jb, t0);
        // 1 frame, 50 concealed (1 s), then chunks 2 and 3 back to back.
        assert_eq!(out.len(), 53);
        assert_eq!(out.iter().filter(|f| f.concealed).count(), 50);
        assert_eq!(
            jb.stats().resyncs,
            2,
            "the jump, then u64::MAX again is 'backwards'"
        );
        assert!(jb.pending_samples() < FRAME_SAMPLES);
    }

    #[test]
    fn huge_chunk_jump_is_bounded() {
        let t0 = Instant::now();
        let mut jb = JitterBuffer::new(JitterConfig::default());
        jb.handle_receive(t0, 1, 0, &tone(0));
        jb.handle_receive(t0, u64::MAX, 20, &tone(0));
        let out = drain(&mut jb, t0 + 40 * MS);
        assert_eq!(out.len(), 2);
        assert_eq!(jb.handle_receive(t0, 2, 40, &tone(0)), Push::Late);
        assert_eq!(
            jb.handle_receive(t0, u64::MAX, 40, &tone(0)),
            Push::Duplicate
        );
    }

    #[test]
    fn backwards_timestamps_stay_contiguous() {
        let t0 = Instant::now();
        let mut jb = JitterBuffer::new(JitterConfig::default());
        jb.handle_receive(t0, 1, 5000, &tone(0));
        jb.handle_receive(t0, 2, 0, &tone(0));
        jb.handle_receive(t0, 3, 20, &tone(0));
        let out = drain(&mut jb, t0);
        assert_eq!(out.len(), 3);
        assert!(out.iter().all(|f| !f.concealed));
        assert_eq!(jb.stats().resyncs, 1);
    }

    #[test]
    fn payload_over_limit_is_refused() {
        let t0 = Instant::now();
        let mut jb = JitterBuffer::new(JitterConfig {
            max_payload: 320,
            ..JitterConfig::default()
        });
        assert_eq!(jb.handle_receive(t0, 1, 0, &[0xFF; 320]), Push::Accepted);
        assert_eq!(jb.handle_receive(t0, 2, 40, &[0xFF; 321]), Push::TooLarge);
        assert_eq!(jb.stats().oversize, 1);
        assert_eq!(drain(&mut jb, t0).len(), 2);
    }

    #[test]
    fn held_messages_over_limit_force_concealment() {
        let t0 = Instant::now();
        let mut jb = JitterBuffer::new(JitterConfig {
            max_frames: 3,
            depth: Duration::from_secs(10),
            ..JitterConfig::default()
        });
        jb.handle_receive(t0, 1, 0, &tone(0));
        for k in 3..=5u64 {
            jb.handle_receive(t0, k, (k - 1) * 20, &tone(0));
        }
        assert_eq!(jb.held(), 3);
        assert_eq!(drain(&mut jb, t0).len(), 1);
        // The fourth held message forces chunk 2's hole closed.
        jb.handle_receive(t0, 6, 100, &tone(0));
        assert_eq!(jb.held(), 0);
        let out = drain(&mut jb, t0);
        assert_eq!(out.len(), 5);
        assert!(out[0].concealed);
        assert_eq!(jb.handle_receive(t0, 2, 20, &tone(0)), Push::Late);
    }

    #[test]
    fn flush_releases_held_messages() {
        let t0 = Instant::now();
        let mut jb = JitterBuffer::new(JitterConfig::default());
        jb.handle_receive(t0, 1, 0, &tone(0));
        jb.handle_receive(t0, 3, 40, &tone(0));
        jb.flush();
        assert_eq!(drain(&mut jb, t0).len(), 3);
        assert_eq!(jb.poll_timeout(), None);
    }

    /// A stream of `n` 20 ms messages, shuffled a bounded distance, with some
    /// repeated and some lost, arriving 20 ms apart.
    fn scrambled() -> impl Strategy<Value = Vec<(u64, u64, usize)>> {
        (1usize..120)
            .prop_flat_map(|n| {
                (
                    Just(n),
                    proptest::collection::vec(0usize..4, n),
                    proptest::collection::vec(0u8..10, n),
                )
            })
            .prop_map(|(n, displacement, fate)| {
                let mut order: Vec<(usize, u64)> =
                    (0..n).map(|i| (i + displacement[i], i as u64)).collect();
                order.sort();
                let mut out = Vec::new();
                for (_, k) in order {
                    match fate[k as usize] {
                        0 => {} // lost
                        1 => {
                            out.push((k + 1, k * 20, 160));
                            out.push((k + 1, k * 20, 160)); // repeated
                        }
                        _ => out.push((k + 1, k * 20, 160)),
                    }
                }
                out
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Whatever the order, frame k is stamped origin + 20 k, no chunk's
        /// audio comes out twice, and the counters add up.
        #[test]
        fn cadence_never_drifts_and_nothing_is_delivered_twice(msgs in scrambled(), step in 0u64..40) {
            let t0 = Instant::now();
            let mut jb = JitterBuffer::new(JitterConfig::default());
            let mut out = Vec::new();
            let mut now = t0;
            for (i, (chunk, ts, len)) in msgs.iter().enumerate() {
                now = t0 + Duration::from_millis(i as u64 * step);
                // Each frame carries its chunk number in every byte (0xFF - chunk
                // decodes to a level rising with the chunk), so a repeat would show.
                let payload: Vec<u8> = vec![0xFF - *chunk as u8; *len];
                let _ = jb.handle_receive(now, *chunk, *ts, &payload);
                out.extend(std::iter::from_fn(|| jb.poll_frame(now)));
            }
            jb.flush();
            out.extend(std::iter::from_fn(|| jb.poll_frame(now)));
            if let Some(first) = out.first() {
                for (k, f) in out.iter().enumerate() {
                    prop_assert_eq!(f.timestamp_ms, first.timestamp_ms + 20 * k as u64);
                }
            }
            let real: Vec<i16> = out.iter().filter(|f| !f.concealed).map(|f| f.samples[0]).collect();
            let mut dedup = real.clone();
            dedup.sort();
            dedup.dedup();
            prop_assert_eq!(real.len(), dedup.len(), "a frame came out twice");
            // Real frames come out in chunk order.
            prop_assert!(real.windows(2).all(|w| w[0] < w[1]));
            let s = jb.stats();
            prop_assert_eq!(s.received, msgs.len() as u64);
            prop_assert_eq!(real.len() as u64 + s.duplicate + s.late, s.received);
            prop_assert_eq!(s.frames, out.len() as u64);
        }

        /// Arbitrary chunks, timestamps and sizes never panic and never hold
        /// more than the limits allow.
        #[test]
        fn hostile_input_stays_bounded(
            msgs in proptest::collection::vec(
                (prop_oneof![0u64..20, any::<u64>()], prop_oneof![0u64..400, any::<u64>()], 0usize..600, 0u64..100),
                0..80,
            )
        ) {
            let t0 = Instant::now();
            let mut jb = JitterBuffer::new(JitterConfig { max_payload: 500, max_frames: 8, ..JitterConfig::default() });
            let mut now = t0;
            for (chunk, ts, len, dt) in msgs {
                now += Duration::from_millis(dt);
                let _ = jb.handle_receive(now, chunk, ts, &vec![0xFF; len]);
                prop_assert!(jb.held() <= 8);
                prop_assert!(jb.pending_samples() <= 9 * (8000 + 500) + 160);
                while jb.poll_frame(now).is_some() {}
            }
        }
    }
}
