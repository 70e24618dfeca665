//! The handlers callstream ships: `echo`, `parrot` and `silent`.

use std::collections::VecDeque;
use std::time::Duration;

use super::{Control, Handler};
use crate::call::CallEvent;
use crate::codec::{FRAME_MS, FRAME_SAMPLES};

/// Plays every inbound frame straight back: a test of latency and of the
/// audio path. Turns barge-in off (the caller's voice is the audio it plays).
#[derive(Debug, Default)]
pub struct Echo;

impl Handler for Echo {
    fn on_event(&mut self, event: &CallEvent, control: &mut Control<'_>) {
        match event {
            CallEvent::Started(_) => control.set_barge_in(false),
            CallEvent::Audio(frame) => {
                // Concealed frames too, so the echo keeps the caller's timing.
                let _ = control.play_pcm(&frame.samples);
            }
            _ => {}
        }
    }
}

/// Consumes audio and sends nothing.
#[derive(Debug, Default)]
pub struct Silent;

impl Handler for Silent {
    fn on_event(&mut self, _event: &CallEvent, _control: &mut Control<'_>) {}
}

/// Tuning of a [`Parrot`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParrotConfig {
    /// Longest utterance recorded; audio past it is not (default 30 s).
    pub max_recording: Duration,
    /// Audio kept from before the speech-start decision, so the recording
    /// begins where the detector dates the speech (default 400 ms).
    pub pre_roll: Duration,
    /// Audio kept after the detector's end of speech, so the last sound is
    /// not clipped (default 100 ms).
    pub tail: Duration,
}

impl Default for ParrotConfig {
    fn default() -> Self {
        ParrotConfig {
            max_recording: Duration::from_secs(30),
            pre_roll: Duration::from_millis(400),
            tail: Duration::from_millis(100),
        }
    }
}

type Frame = (u64, [i16; FRAME_SAMPLES]);

/// Records what the caller says; when the caller stops speaking, plays it
/// back followed by a mark `parrot-N` (N counts replies from 1). Speaking
/// over the playback interrupts it (barge-in) and starts a new recording.
#[derive(Debug, Default)]
pub struct Parrot {
    config: ParrotConfig,
    /// The last `pre_roll` of audio, for the start of the next recording.
    recent: VecDeque<Frame>,
    /// The utterance being recorded, if the caller is speaking.
    recording: Option<Vec<Frame>>,
    replies: u64,
}

impl Parrot {
    /// A parrot with the given tuning.
    pub fn new(config: ParrotConfig) -> Self {
        Parrot {
            config,
            ..Parrot::default()
        }
    }

    /// Replies played so far.
    pub fn replies(&self) -> u64 {
        self.replies
    }

    fn frames(d: Duration) -> usize {
        (d.as_millis() / u128::from(FRAME_MS)) as usize
    }
}

impl Handler for Parrot {
    fn on_event(&mut self, event: &CallEvent, control: &mut Control<'_>) {
        match event {
            CallEvent::Audio(frame) => {
                let f = (frame.timestamp_ms, frame.samples);
                if let Some(rec) = &mut self.recording {
                    if rec.len() < Self::frames(self.config.max_recording) {
                        rec.push(f);
                    }
                } else {
                    self.recent.push_back(f);
                    while self.recent.len() > Self::frames(self.config.pre_roll) {
                        self.recent.pop_front();
                    }
                }
            }
            CallEvent::SpeechStarted { at_ms, .. } => {
                // The detector decides late but dates early: start from its date.
                let rec: Vec<Frame> = self
                    .recent
                    .drain(..)
                    .filter(|(ts, _)| ts >= at_ms)
                    .collect();
                self.recording = Some(rec);
            }
            CallEvent::SpeechEnded { at_ms, .. } => {
                let Some(rec) = self.recording.take() else {
                    return;
                };
                let until = at_ms.saturating_add(self.config.tail.as_millis() as u64);
                let pcm: Vec<i16> = rec
                    .iter()
                    .filter(|(ts, _)| *ts < until)
                    .flat_map(|(_, s)| s.iter().copied())
                    .collect();
                if pcm.is_empty() {
                    return;
                }
                self.replies += 1;
                let _ = control.play_pcm(&pcm);
                let _ = control.mark(&format!("parrot-{}", self.replies));
            }
            _ => {}
        }
    }
}
