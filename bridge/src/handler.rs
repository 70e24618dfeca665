//! The [`Handler`] that ties a call to its program: on the pump thread, it
//! turns the call's events into messages for the program (never blocking:
//! they go into the link's bounded [`Outbox`](super::outbox::Outbox)),
//! assembles caller turns from the detector's decisions, and works out
//! `heard_ms` on a barge-in. The transport's threads do the rest.
use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use callstream_core::call::{CallEvent, MarkOutcome, StopReason};
use callstream_core::handler::{Control, Handler};
use callstream_core::wire::StreamStart as Start;

use super::link::Link;
use super::outbox::Outbound;
use super::protocol::{Parameters, ToProgram, VERSION};
use super::{Bridge, Transport, metrics};

/// Audio kept before the detector's start of speech, and after its end, so
/// the recogniser hears the whole first and last sound.
pub const MARGIN_MS: u64 = 200;
/// The most of the caller kept while no turn is under way, whatever the
/// detector watches: a bound on memory against a run that never decides.
const MAX_RECENT_MS: u64 = 3000;
/// Longest utterance: past it, the turn is cut there (and the rest is lost).
pub const MAX_UTTERANCE_MS: u64 = 60_000;
const FRAME_MS: u64 = 20;

/// 20 ms frames of the caller, by stream time.
type Frames = Vec<(u64, Vec<i16>)>;

/// One call's bridge handler.
pub struct BridgeHandler {
    bridge: Arc<Bridge>,
    start: Start,
    link: Option<Arc<Link>>,
    /// The caller's last frames while not in a turn: [`MARGIN_MS`] before
    /// the earliest start of speech the detector could yet report (at most
    /// [`MAX_RECENT_MS`]).
    recent: VecDeque<(u64, Vec<i16>)>,
    /// The turn being recorded.
    turn: Option<Frames>,
    /// A turn that ended, waiting for its last [`MARGIN_MS`].
    ending: Option<(Frames, u64, Instant)>,
    /// `played_ms` when the audio now playing began: at the last mark that
    /// resolved, or the last clear.
    heard_from: u64,
    /// A barge-in waiting for the marks it cleared (they follow it).
    barge_in: Option<(u64, Vec<String>)>,
    /// Marks a clear took from the link's queue before the call saw them:
    /// they resolve `cleared` after the call's own.
    queue_cleared: Vec<String>,
    dropped_frames: u64,
    /// Raw frames handed to the program so far (its `seq`), and those
    /// dropped since the last one that went.
    audio_seq: u64,
    dropped_since: u64,
}

impl BridgeHandler {
    pub(super) fn new(bridge: Arc<Bridge>, start: &Start) -> BridgeHandler {
        BridgeHandler {
            bridge,
            start: start.clone(),
            link: None,
            recent: VecDeque::new(),
            turn: None,
            ending: None,
            heard_from: 0,
            barge_in: None,
            queue_cleared: Vec::new(),
            dropped_frames: 0,
            audio_seq: 0,
            dropped_since: 0,
        }
    }

    fn event(&self, link: &Link, line: String) {
        if link.outbox.push_event(Outbound::Line(line)).is_err() && !link.outbox.is_closed() {
            link.fail_on_pump("the program is not reading: its queue of messages is full");
        }
    }

    /// A barge-in (with the marks it cleared), or the marks a clear took
    /// from the link's queue: told to the program once the call's own
    /// cleared marks have come.
    fn flush_barge_in(&mut self, link: &Link) {
        let queued = std::mem::take(&mut self.queue_cleared);
        let cleared = match self.barge_in.take() {
            Some((heard_ms, mut cleared)) => {
                cleared.extend(queued);
                let line = ToProgram::BargeIn {
                    heard_ms,
                    cleared: &cleared,
                }
                .to_line();
                self.event(link, line);
                cleared
            }
            None => queued,
        };
        for name in &cleared {
            self.event(
                link,
                ToProgram::Mark {
                    name,
                    outcome: "cleared",
                }
                .to_line(),
            );
        }
    }

    fn send_turn(&mut self, link: &Link, frames: Frames, until_ms: u64, at: Instant) {
        let samples: Vec<i16> = frames
            .into_iter()
            .filter(|(ts, _)| *ts < until_ms)
            .flat_map(|(_, s)| s)
            .collect();
        if samples.is_empty() {
            return;
        }
        if link
            .outbox
            .push_event(Outbound::Utterance(samples, at))
            .is_err()
            && !link.outbox.is_closed()
        {
            link.fail_on_pump(
                "the program cannot take an utterance: its queue of messages is full",
            );
        }
    }

    /// `keep_ms`: how much of the caller to keep while not in a turn.
    fn on_audio(&mut self, link: &Link, ts: u64, samples: &[i16], keep_ms: u64) {
        if link.audio.load(Ordering::Acquire) {
            let seq = self.audio_seq;
            self.audio_seq += 1;
            if link
                .outbox
                .push_audio(samples.to_vec(), seq, self.dropped_since)
            {
                self.dropped_since = 0;
            } else if !link.outbox.is_closed() {
                self.dropped_since += 1;
                self.dropped_frames += 1;
                metrics::AUDIO_DROPPED.fetch_add(1, Ordering::Relaxed);
                if self.dropped_frames == 1 {
                    tracing::warn!(call_sid = %link.call_sid, "BRIDGE_AUDIO_DROPPED the program reads raw audio too slowly: frames are dropped (counted in /metrics)");
                }
            }
        }
        if let Some(turn) = &mut self.turn {
            if (turn.len() as u64) * FRAME_MS < MAX_UTTERANCE_MS + MARGIN_MS {
                turn.push((ts, samples.to_vec()));
            }
        } else {
            self.recent.push_back((ts, samples.to_vec()));
            while self.recent.len() as u64 * FRAME_MS > keep_ms {
                self.recent.pop_front();
            }
        }
        if let Some((frames, until, at)) = &mut self.ending {
            if ts < *until {
                frames.push((ts, samples.to_vec()));
            }
            if ts + FRAME_MS >= *until {
                let (frames, until, at) = (std::mem::take(frames), *until, *at);
                self.ending = None;
                self.send_turn(link, frames, until, at);
            }
        }
    }

    /// Applies what the link holds for the call; a clear of the program's
    /// starts `heard_ms` again.
    fn feed(&mut self, link: &Link, control: &mut Control<'_>) {
        link.apply_pending(control);
        let clears = control.clears();
        let dropped = link.feed(control);
        self.queue_cleared.extend(dropped);
        if control.clears() != clears {
            self.heard_from = control.played_ms();
        }
    }

    fn start_link(&mut self, control: &Control<'_>) -> Arc<Link> {
        let link = Arc::new(
            Link::new(
                self.start.call_id.clone(),
                control.remote(),
                self.bridge.on_failure,
                self.bridge.after.clone(),
            )
            .with_wav(matches!(self.bridge.transport, Transport::Exec(_))),
        );
        metrics::CALLS.fetch_add(1, Ordering::Relaxed);
        let params: Vec<(String, String)> = self
            .start
            .parameters
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let line = ToProgram::Start {
            version: VERSION,
            call_sid: &self.start.call_id,
            stream_sid: &self.start.stream_id,
            account_sid: &self.start.account_id,
            parameters: Parameters(&params),
        }
        .to_line();
        let _ = link.outbox.push_event(Outbound::Line(line));
        self.bridge.spawn(&self.start, &params, link.clone());
        link
    }
}

impl Handler for BridgeHandler {
    fn on_event(&mut self, event: &CallEvent, control: &mut Control<'_>) {
        let link = match (&self.link, event) {
            (Some(l), _) => l.clone(),
            (None, CallEvent::Started(_)) => {
                let l = self.start_link(control);
                self.link = Some(l.clone());
                l
            }
            (None, _) => return,
        };
        // A barge-in is told once the marks it cleared have come; the
        // speech that caused it comes just before it.
        if !matches!(
            event,
            CallEvent::MarkDone {
                outcome: MarkOutcome::Cleared,
                ..
            } | CallEvent::SpeechStarted { .. }
                | CallEvent::BargeIn
        ) {
            self.flush_barge_in(&link);
        }
        match event {
            CallEvent::Audio(frame) => {
                // Speech is reported once the detector has heard enough, and
                // dated back to where it began: keep the margin before the
                // earliest start it could yet name.
                let ts = frame.timestamp_ms;
                let from = control
                    .earliest_speech_start_ms()
                    .unwrap_or(ts + FRAME_MS)
                    .min(ts + FRAME_MS);
                let keep = (ts + FRAME_MS - from + MARGIN_MS).min(MAX_RECENT_MS);
                self.on_audio(&link, ts, &frame.samples, keep);
            }
            CallEvent::SpeechStarted { at_ms, .. } => {
                self.event(&link, ToProgram::SpeechStarted.to_line());
                let from = at_ms.saturating_sub(MARGIN_MS);
                // A turn still waiting for its tail is sent as it is.
                if let Some((frames, until, at)) = self.ending.take() {
                    self.send_turn(&link, frames, until, at);
                }
                let turn = self
                    .recent
                    .drain(..)
                    .filter(|(ts, _)| *ts >= from)
                    .collect();
                // A program that recognises the raw frames itself asked
                // for no whole turns.
                if link.utterances.load(Ordering::Acquire) {
                    self.turn = Some(turn);
                }
            }
            CallEvent::SpeechEnded { at_ms, .. } => {
                if let Some(turn) = self.turn.take() {
                    let until = at_ms.saturating_add(MARGIN_MS);
                    let last = turn.last().map_or(0, |(ts, _)| *ts);
                    if last + FRAME_MS >= until {
                        self.send_turn(&link, turn, until, Instant::now());
                    } else {
                        self.ending = Some((turn, until, Instant::now()));
                    }
                }
            }
            CallEvent::Dtmf { digit } => {
                self.event(
                    &link,
                    ToProgram::Dtmf {
                        digit: digit.to_string(),
                    }
                    .to_line(),
                );
            }
            CallEvent::BargeIn => {
                // The session cleared the reply; what waited of it in the
                // link's queue went with it (the feed saw the clear), and
                // its marks are told with this barge-in.
                let heard_ms = control.played_ms().saturating_sub(self.heard_from);
                self.heard_from = control.played_ms();
                self.barge_in = Some((heard_ms, Vec::new()));
            }
            CallEvent::MarkDone { name, outcome } => {
                self.heard_from = control.played_ms();
                match (&mut self.barge_in, outcome) {
                    (Some((_, cleared)), MarkOutcome::Cleared) => cleared.push(name.clone()),
                    _ => {
                        let outcome = match outcome {
                            MarkOutcome::Played => "played",
                            MarkOutcome::Cleared => "cleared",
                        };
                        self.event(&link, ToProgram::Mark { name, outcome }.to_line());
                    }
                }
            }
            CallEvent::Stopped { reason, .. } => {
                if let Some((frames, until, at)) = self.ending.take() {
                    self.send_turn(&link, frames, until, at);
                }
                let why = if link.is_finished() {
                    "the program ended the call".to_owned()
                } else {
                    match reason {
                        StopReason::Stop => "the caller hung up".to_owned(),
                        StopReason::Closed => "the stream closed".to_owned(),
                        StopReason::Hangup => "callstream hung up".to_owned(),
                        other => other.to_string(),
                    }
                };
                link.stopped(why);
            }
            _ => {}
        }
        self.feed(&link, control);
    }

    /// The program's audio, marks or clear wait for the call.
    fn on_wake(&mut self, control: &mut Control<'_>) {
        if let Some(link) = self.link.clone() {
            self.feed(&link, control);
        }
    }
}

impl Drop for BridgeHandler {
    fn drop(&mut self) {
        // A connection dropped without its call's end (the server gave up on
        // it): the program still gets its stop, and its reaper runs.
        if let Some(link) = &self.link {
            link.stopped("the server is shutting down".to_owned());
        }
    }
}
