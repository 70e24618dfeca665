//! Energy voice activity detection for 8 kHz telephone audio.
//!
//! [`Vad`] decides, frame by frame, whether the caller is speaking. Feed it the
//! decoded PCM of each inbound 20 ms frame (160 samples, see
//! [`codec::decode_into`](crate::codec::decode_into)) in stream order; it returns
//! a [`VadEvent`] when speech starts or ends. It is sans-IO and deterministic:
//! the same frames always give the same events, it never allocates after
//! [`Vad::new`], and it knows time only as a count of samples at 8 kHz.
//!
//! ```
//! use callstream_core::codec::{self, FRAME_SAMPLES};
//! use callstream_core::vad::{Vad, VadConfig, VadEvent};
//! use std::time::Duration;
//!
//! // μ-law as it arrives from Twilio: 0.4 s of silence, 0.4 s of a 400 Hz
//! // "vowel" at -16 dBFS that fades out over its last 10 ms, then silence.
//! let ulaw_frame = |frame: usize| -> Vec<u8> {
//!     (0..FRAME_SAMPLES)
//!         .map(|i| {
//!             let n = frame * FRAME_SAMPLES + i; // sample index in the call
//!             let (on, off) = (20 * FRAME_SAMPLES, 40 * FRAME_SAMPLES);
//!             if !(on..off).contains(&n) {
//!                 return codec::SILENCE;
//!             }
//!             let fade = ((off - n) as f64 / 80.0).min(1.0);
//!             let phase = 2.0 * std::f64::consts::PI * n as f64 / 20.0;
//!             codec::encode((8000.0 * fade * phase.sin()) as i16)
//!         })
//!         .collect()
//! };
//!
//! let mut vad = Vad::new(VadConfig::default());
//! let mut pcm = [0i16; FRAME_SAMPLES];
//! let mut events = Vec::new();
//! for frame in 0..80 {
//!     codec::decode_into(&ulaw_frame(frame), &mut pcm);
//!     if let Some(event) = vad.handle_frame(&pcm) {
//!         events.push((frame, event));
//!     }
//! }
//! assert_eq!(
//!     events,
//!     [
//!         // Decided 60 ms (three frames) in, dated to the first frame.
//!         (22, VadEvent::SpeechStarted { at_frame: 20 }),
//!         // Decided after 300 ms of quiet, dated to where the quiet began.
//!         (54, VadEvent::SpeechEnded { at_frame: 40, duration: Duration::from_millis(400) }),
//!     ]
//! );
//! assert!(!vad.is_speech());
//! ```
//!
//! # The algorithm
//!
//! 1. **Band.** Each frame first goes through a 200 Hz high-pass filter
//!    (second-order Butterworth, state carried from frame to frame). A phone
//!    channel carries speech from 300 Hz up; below that is hum, rumble, wind
//!    and DC offset, which would otherwise add energy that no voice made and
//!    swing from frame to frame.
//! 2. **Energy.** A frame's energy is the mean square per sample of the
//!    filtered audio, so frames of any length compare on the same scale.
//!    Levels are quoted in dBFS: 0 dBFS is a mean square of 32768², a
//!    full-scale square wave.
//! 3. **Noise floor.** The floor is the *minimum*, over the last
//!    [`floor_window_ms`](VadConfig::floor_window_ms), of the frame energy
//!    averaged over the last four frames ("minimum statistics"). Speech has
//!    pauses between syllables and words, so the minimum follows the
//!    background noise even while someone talks, without needing to know who
//!    is talking. The four-frame average keeps one dropped (zeroed) frame or a
//!    lucky quiet noise frame from pulling the floor down. The window is kept
//!    as four blocks of a quarter window each, so the floor rises at most a
//!    quarter window after the window has seen only the new level; it falls
//!    at once. A level that holds *flat* for 480 ms (24 units of 20 ms whose
//!    energies all lie within 4 dB of each other) becomes the floor at once:
//!    steady noise is that flat, speech is not (its syllables swing the
//!    energy by far more several times a second). So a step up in the noise
//!    is learned within 480 ms, not the whole window.
//! 4. **Hysteresis.** A frame is *loud* when its energy is at least
//!    [`start_db`](VadConfig::start_db) above the floor, *active* when it is at
//!    least [`stop_db`](VadConfig::stop_db) above it, and *faint* when it is at
//!    least half of `stop_db` above it. All three also need the absolute level
//!    [`min_level_dbfs`](VadConfig::min_level_dbfs), so digital silence and
//!    very quiet lines never count, whatever the floor says.
//! 5. **Start.** Speech starts once a run of active frames holds
//!    [`min_speech_ms`](VadConfig::min_speech_ms) of loud ones (a click or a
//!    single burst is shorter, while a syllable is loud for longer even when
//!    a weaker frame interrupts it) *and* the run is unlike the noise it rose
//!    from, by either of two cues:
//!    - **another spectrum**: the run's zero-crossing rate (of the filtered
//!      audio) differs by more than a quarter from the running rate of the
//!      frames that were not active (the noise's; over digital silence it is
//!      zero). A voice over white or pink noise crosses zero less often, a
//!      tone or a voice over silence differs from nothing at all;
//!    - **modulation**: after its loudest frame, the run falls at least
//!      halfway (in dB) back to the floor, or ends, as syllables do several
//!      times a second.
//!
//!    The same noise grown louder does neither, so it never starts speech: it
//!    holds flat until the floor learns it (step 3), and a run whose level the
//!    floor learns is forgotten. A voice that sounds like the noise (speech in
//!    brown noise, whose rate after the filter is close to a voice's) waits
//!    for its first dip, 100–150 ms more on the fixtures.
//!
//!    The start is dated to the first active frame of the run, at most 100 ms
//!    before its first loud frame (the rise of the syllable), or to an
//!    earlier run that ended at most 120 ms before this one began and had a
//!    loud frame or two active frames: a first syllable too weak or too short
//!    to start speech on its own, cut off by a stop consonant.
//! 6. **End.** Speech ends after [`hangover_ms`](VadConfig::hangover_ms) of
//!    frames that are not active, which bridges the gaps between words. The
//!    end is dated to the first of them, or, when the first few are faint, to
//!    the first that is not: the decay of a final consonant or vowel sits just
//!    above the noise. Over real noise (a floor above the absolute minimum)
//!    the first frame under the faint threshold counts too, because the decay
//!    goes on under the noise: without that, ends in white noise at 5 dB SNR
//!    came out 114 ms early.
//!
//! Events are reported late but dated early: `SpeechStarted` comes out with the
//! frame that completes the start run and names the first frame of speech;
//! `SpeechEnded` comes out with the frame that completes the hangover and names
//! the first frame after the speech. So the timestamps are accurate while the
//! decision waits long enough to be safe. [`Vad::is_speech`] follows the
//! decisions (true from `SpeechStarted` until `SpeechEnded`).
//!
//! # Accuracy
//!
//! On the speech fixtures in `core/tests/fixtures/vad` (espeak-ng utterances
//! laid out by sox with known boundaries, mixed with noise at measured SNRs,
//! stored as μ-law), every start and end is found within ±100 ms of the truth.
//! Worst errors (start, end), and how long after the true onset the
//! `SpeechStarted` is *reported* (what a barge-in waits), per utterance:
//!
//! | fixture | worst start | worst end | reported after the onset |
//! |---|---|---|---|
//! | clean | −15 ms | +33 ms | 60, 45, 47, 45 ms |
//! | white noise, 20 dB SNR | +20 ms | +33 ms | 100, 65, 47, 85 ms |
//! | white noise, 10 dB | +45 ms | −74 ms | 160, 125, 107, 145 ms |
//! | pink noise, 10 dB | +40 ms | −74 ms | 120, 85, 67, 205 ms |
//! | brown noise, 10 dB | −15 ms | +33 ms | 60, 185, 47, 205 ms |
//! | white noise, 5 dB | +65 ms | −94 ms | 220, 165, 127, 345 ms |
//!
//! Ends at 5–10 dB come out early because the last of a final /s/ lies under
//! the noise. The modulation wait costs the report 20–100 ms on two pink
//! utterances, 140 ms on two brown ones and 20 ms on one at 5 dB (the voice's
//! zero-crossing rate was too close to the noise's); the rest are reported
//! when they were before. A recorded step up of 15 dB in pink noise (no
//! speech) gives no event at all. The tests print these numbers
//! (`cargo test -p callstream-core --test vad_fixtures -- --nocapture`).
//!
//! # Behaviour to know
//!
//! - **Noise that steps up** by more than `start_db` but keeps its sound
//!   (the same noise, louder) is not speech: it neither differs in
//!   zero-crossing rate nor dips back toward the old floor, and once it has
//!   held flat for 480 ms it is the floor. Noise that steps up *and* changes
//!   its sound (white hiss giving way to pink noise, or a line's noise after
//!   digital silence) differs from the old noise, so it still reads as speech
//!   until it has held flat for 480 ms (or, if it is not flat, until the floor
//!   window has seen only the new level: at most `floor_window_ms` plus a
//!   quarter of it, 2.5 s by default), then `SpeechEnded`; that
//!   `SpeechStarted`, reported 60 ms in, still counts for a barge-in. Noise
//!   that steps down is followed at once. A tone, or a voice held without a
//!   swing of 4 dB, for longer than 480 ms is the same thing to this
//!   detector: it becomes the floor.
//! - **The first frame** sets the floor. A stream that opens on a syllable's
//!   onset still works (the onset is weaker than what follows: on the
//!   fixtures cut that way, every start and end stays within 100 ms). One
//!   that opens in the middle of loud speech has a floor at speech level
//!   until the first pause between words brings it down.
//! - **Concealed frames** (gaps a jitter buffer filled with silence) carry
//!   nothing about the line. Skipping them is best; feeding them is safe (the
//!   four-frame average absorbs a short gap), but a long run of them lowers the
//!   floor for a window, as any silence does.
//! - **Audio cut off dead** (a loud frame, then digital zeros) leaves the
//!   filter's decay, about 17 dB down, in the next frame, which then still
//!   counts as speech. Voices fade; only spliced audio does this.
//! - **Frame lengths** other than 160 samples are accepted: energy is per
//!   sample and durations are counted in samples, so only the granularity of
//!   the decision changes. An empty frame advances the frame index and
//!   changes nothing else.
//!
//! # Determinism
//!
//! The filter runs in integer arithmetic. Everything after it uses only
//! additions, multiplications, divisions and comparisons of `f64`, which IEEE
//! 754 defines exactly (and Rust never fuses or reorders), so every platform
//! gives the same events for the same frames. The one transcendental step,
//! turning the configured dB into ratios in [`Vad::new`], may differ in the
//! last bit between math libraries; that moves a threshold by about
//! 10⁻¹⁵ dB. [`Vad::noise_floor_dbfs`] uses a logarithm and is for display
//! only.
//!
//! # Cost
//!
//! Per 20 ms frame: one pass over the samples (a biquad, a sum of squares and
//! a sign comparison for the zero crossings), a min/max over the last 24
//! frame energies (the flat check) and a few dozen operations on the floor
//! and state; no allocation, about 600 bytes of state. Measured before and
//! after the spectrum and modulation cues, back to back on a shared 2-core
//! machine (load average 4.1–4.9): 491 ns and 485 ns per frame, no difference
//! within the noise. See `BENCHMARKS.md` for the numbers.

use std::time::Duration;

use crate::codec::{FRAME_SAMPLES, SAMPLE_RATE};

/// Samples per millisecond at the Twilio media rate.
const SAMPLES_PER_MS: u64 = SAMPLE_RATE as u64 / 1000;
/// Frames averaged before the floor tracker sees an energy.
const SMOOTH_FRAMES: usize = 4;
/// Blocks the floor window is kept in: the floor rises within a quarter window
/// of the noise rising, for four `f64`s of state.
const FLOOR_BLOCKS: usize = 4;
/// 20 ms units a level must hold, flat, to become the floor at once: 480 ms,
/// longer than a held vowel, well short of the floor window. Frames of other
/// lengths are pooled into 20 ms units first, so the time is the same.
const FLAT_FRAMES: usize = 24;
/// Largest spread (max over min energy, 4 dB) of `FLAT_FRAMES` frame
/// energies that is still "flat": steady noise stays within it, speech, which
/// is modulated by its syllables, does not.
const FLAT_RATIO: f64 = 2.511_886_431_509_58;
/// How far a speech start may be dated back over frames that were active but
/// not loud: the rise of a syllable before it crosses the start threshold.
const ONSET_LOOKBACK_SAMPLES: u64 = 100 * SAMPLES_PER_MS;
/// How close (gap between them) an earlier run with a loud frame must be for a
/// speech start to be dated back to it: a first syllable that was too short
/// to start speech on its own, split from the next by a stop consonant.
const ONSET_MERGE_SAMPLES: u64 = 120 * SAMPLES_PER_MS;
/// Shortest run without a loud frame that a start may still be dated back to
/// (see `ONSET_MERGE_SAMPLES`): two frames, longer than a one-frame flicker
/// of the noise above the stop threshold.
const PRIOR_MIN_SAMPLES: u64 = 40 * SAMPLES_PER_MS;
/// Weight of each quiet frame in the running zero-crossing rate of the noise
/// (an average over about the last 16 frames, 320 ms).
const NOISE_ZCR_WEIGHT: f64 = 1.0 / 16.0;
/// A run whose zero-crossing rate differs from the noise's by more than this
/// fraction of the larger (plus one crossing a frame) sounds unlike the noise.
const ZCR_DIFFERS: f64 = 0.25;
/// Mean square of a full-scale square wave: the 0 dBFS reference.
const FULL_SCALE: f64 = 32768.0 * 32768.0;
/// Longest configurable duration (one minute): keeps every sample count far
/// from overflow and every setting meaningful for a phone call.
const MAX_MS: u32 = 60_000;

/// The tuning of a [`Vad`]. `Default` suits 8 kHz telephone speech; each
/// default is explained on its field. [`Vad::new`] clamps out-of-range values
/// (see each field), so no setting can make the detector panic.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct VadConfig {
    /// dB above the noise floor for a frame to count toward starting speech.
    ///
    /// Default 9 dB: steady noise stays within a few dB of its floor (white
    /// noise frames vary by about ±0.5 dB, low-frequency noise by more), while
    /// the voiced parts of speech at 10 dB SNR rise 10–20 dB above it.
    /// Clamped to 0–60 dB; a value that is not finite means the default.
    pub start_db: f32,
    /// dB above the noise floor for a frame to keep speech going.
    ///
    /// Default 3.5 dB: lower than `start_db` (hysteresis), so the quieter
    /// consonants of a word keep speech going once it has started, but above
    /// the spread of steady noise, so speech ends when only noise is left.
    /// Measured on the speech fixtures: 3 dB let low-frequency noise at 0 dB
    /// SNR hold speech open 250 ms too long; 4 dB lost more than 100 ms of
    /// final consonants in white noise at 10 dB SNR. Half of it is the *faint*
    /// threshold that dates the end of a fading sound (see the module docs).
    /// Clamped to 0–`start_db`.
    pub stop_db: f32,
    /// Absolute level in dBFS (RMS per frame) below which a frame is never
    /// speech, whatever the floor.
    ///
    /// Default -45 dBFS: telephone speech is at -15 to -35 dBFS and its
    /// voiced frames well above that, while line noise and comfort noise sit
    /// below -50 dBFS; digital silence is -inf. Clamped to -100–0 dBFS.
    pub min_level_dbfs: f32,
    /// Loud audio needed, within one run of active frames, to start speech,
    /// in milliseconds.
    ///
    /// Default 60 ms (three frames): shorter than any stressed syllable, longer
    /// than a click, a cough's attack or a burst of line noise. At least one
    /// frame always counts; clamped to 0–60,000 ms.
    pub min_speech_ms: u32,
    /// Audio that is not active needed to end speech, in milliseconds.
    ///
    /// Default 300 ms: pauses between words and stop consonants rarely last
    /// longer, while a turn-taking pause is longer still, so one utterance
    /// gives one start and one end. The end is dated back to where the
    /// quiet began, so this only delays the event. Clamped to 0–60,000 ms.
    pub hangover_ms: u32,
    /// How far back the noise floor looks for its minimum, in milliseconds.
    ///
    /// Default 2000 ms: longer than the stretches of speech without a pause
    /// of 80 ms or so that would otherwise lift the floor into the speech,
    /// short enough that a new noise level is learned within 2.5 s. Clamped
    /// to 80–60,000 ms.
    pub floor_window_ms: u32,
}

impl Default for VadConfig {
    fn default() -> Self {
        VadConfig {
            start_db: 9.0,
            stop_db: 3.5,
            min_level_dbfs: -45.0,
            min_speech_ms: 60,
            hangover_ms: 300,
            floor_window_ms: 2000,
        }
    }
}

impl VadConfig {
    /// The configuration with every field brought into its documented range:
    /// what [`Vad::new`] actually uses.
    #[must_use]
    pub fn clamped(&self) -> VadConfig {
        let d = VadConfig::default();
        let db = |v: f32, default: f32, lo: f32, hi: f32| {
            if v.is_finite() {
                v.clamp(lo, hi)
            } else {
                default
            }
        };
        let start_db = db(self.start_db, d.start_db, 0.0, 60.0);
        VadConfig {
            start_db,
            stop_db: db(self.stop_db, d.stop_db.min(start_db), 0.0, start_db),
            min_level_dbfs: db(self.min_level_dbfs, d.min_level_dbfs, -100.0, 0.0),
            min_speech_ms: self.min_speech_ms.min(MAX_MS),
            hangover_ms: self.hangover_ms.min(MAX_MS),
            floor_window_ms: self.floor_window_ms.clamp(80, MAX_MS),
        }
    }
}

impl VadConfig {
    /// The default thresholds moved along one knob, for settings a person
    /// turns: `sensitivity` 0.0 hears only clear, loud speech (a noisy line,
    /// a caller on speakerphone in a street), 0.5 is the default
    /// configuration, 1.0 hears quiet and distant speech on a clean line.
    /// It moves [`start_db`](VadConfig::start_db) (15 → 9 → 5 dB),
    /// [`stop_db`](VadConfig::stop_db) (5 → 3.5 → 2.5 dB) and
    /// [`min_level_dbfs`](VadConfig::min_level_dbfs) (-35 → -45 → -55 dBFS),
    /// linearly on each half; the durations are left as they are. Values
    /// outside 0–1 are clamped; one that is not finite means 0.5.
    #[must_use]
    pub fn with_sensitivity(self, sensitivity: f32) -> VadConfig {
        let s = if sensitivity.is_finite() {
            sensitivity.clamp(0.0, 1.0)
        } else {
            0.5
        };
        // (at 0.0, at 0.5, at 1.0)
        let along = |(low, mid, high): (f32, f32, f32)| {
            if s <= 0.5 {
                low + (mid - low) * (s / 0.5)
            } else {
                mid + (high - mid) * ((s - 0.5) / 0.5)
            }
        };
        VadConfig {
            start_db: along((15.0, 9.0, 5.0)),
            stop_db: along((5.0, 3.5, 2.5)),
            min_level_dbfs: along((-35.0, -45.0, -55.0)),
            ..self
        }
    }
}

/// A change in the caller's speech, reported by [`Vad::handle_frame`].
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VadEvent {
    /// Speech began at frame `at_frame` (0-based count of frames passed to
    /// [`Vad::handle_frame`] since creation or [`Vad::reset`]): the first active
    /// frame of the run that started it, at most 100 ms before its first loud
    /// frame, or of a short run that ended at most 120 ms before it (see the
    /// module docs). Reported when the run holds
    /// [`min_speech_ms`](VadConfig::min_speech_ms) of loud audio and is
    /// unlike the noise (another spectrum, or a dip like a syllable's), so at
    /// least that much later.
    SpeechStarted {
        /// Index of the first frame of speech.
        at_frame: u64,
    },
    /// Speech ended at frame `at_frame`: the first frame that was no longer
    /// active (or, after a faint fade, the first below the faint threshold),
    /// so speech covered frames `start..at_frame`. Reported when
    /// [`hangover_ms`](VadConfig::hangover_ms) of audio has not been active,
    /// so up to that much later; `at_frame` is never past the frame that
    /// reports it.
    SpeechEnded {
        /// Index of the first frame after the speech.
        at_frame: u64,
        /// Length of the speech, from the start of its first frame to the
        /// start of `at_frame`, counted in samples at 8 kHz.
        duration: Duration,
    },
}

/// A run of frames that may become an event: where it began, how long it is,
/// and how much of it was loud.
#[derive(Debug, Clone, Copy)]
struct Run {
    frame: u64,
    sample: u64,
    samples: u64,
    loud: u64,
    /// Zero crossings counted over the run, per sample of it (`samples`).
    crossings: u64,
    /// Highest frame energy since the run's first loud frame (0 before it).
    peak: f64,
    /// Whether a frame after the peak fell halfway (in dB) back to the floor.
    dipped: bool,
    /// The floor when the run began: a floor that rises under the run means
    /// the run was the noise.
    floor: f64,
}

/// Where a run that had a loud frame but did not start speech began, and the
/// sample after its last frame: a start soon after is dated back to it.
#[derive(Debug, Clone, Copy)]
struct Prior {
    frame: u64,
    sample: u64,
    end_sample: u64,
}

/// The frames since speech was last active, and where it faded out: the
/// first of them below the faint threshold, unless a faint stretch runs on.
#[derive(Debug, Clone, Copy)]
struct Quiet {
    samples: u64,
    end_frame: u64,
    end_sample: u64,
    fading: bool,
}

#[derive(Debug, Clone, Copy)]
enum State {
    /// No speech; `onset` is the current run of active frames, if any, and
    /// `prior` the last run that had a loud frame without starting speech.
    Silence {
        onset: Option<Run>,
        prior: Option<Prior>,
    },
    /// Speech since `start`; `quiet` counts the frames since it was last active.
    Speech { start: Run, quiet: Option<Quiet> },
}

/// An energy voice activity detector with an adaptive noise floor. See the
/// [module documentation](self) for the algorithm and its contract.
#[derive(Debug, Clone)]
pub struct Vad {
    config: VadConfig,
    /// Energy ratio over the floor for a loud frame (`start_db` as a ratio).
    start_ratio: f64,
    /// Energy ratio over the floor for an active frame.
    stop_ratio: f64,
    /// Energy ratio over the floor for a frame that extends a fading end.
    faint_ratio: f64,
    /// `min_level_dbfs` as a mean square.
    min_energy: f64,
    /// The floor never goes below this: under it the absolute level decides
    /// anyway, and a floor of zero would make the ratios meaningless.
    floor_min: f64,
    min_speech_samples: u64,
    hangover_samples: u64,
    block_samples: u64,

    filter: HighPass,
    /// Energies of the last `SMOOTH_FRAMES` frames (ring).
    recent: [f64; SMOOTH_FRAMES],
    recent_len: usize,
    recent_next: usize,
    /// Minimum of each finished block, oldest overwritten first.
    blocks: [f64; FLOOR_BLOCKS],
    blocks_next: usize,
    /// Minimum of the block being filled, and how many samples it holds.
    block_min: f64,
    block_fill: u64,
    /// Energies of the last `FLAT_FRAMES` frames (ring), for the flat check.
    flat: [f64; FLAT_FRAMES],
    flat_len: usize,
    flat_next: usize,
    /// Energy (sum over samples) and samples pooled toward the next unit.
    pool_energy: f64,
    pool_samples: u64,
    floor: f64,
    /// Running zero-crossing rate (crossings per 160 samples) of the frames
    /// that were not active while there was no speech: the noise's.
    noise_zcr: Option<f64>,

    /// Frames and samples processed so far.
    frame: u64,
    sample: u64,
    state: State,
}

impl Vad {
    /// Retunes the detector mid-stream to `config`: thresholds, least
    /// speech and hangover change from the next frame; what it has learnt
    /// (the noise floor, the speech under way) and its frame count stay.
    /// The floor's window stays as it was.
    pub fn retune(&mut self, config: VadConfig) {
        let fresh = Vad::new(VadConfig {
            floor_window_ms: self.config.floor_window_ms,
            ..config
        });
        self.config = fresh.config;
        self.start_ratio = fresh.start_ratio;
        self.stop_ratio = fresh.stop_ratio;
        self.faint_ratio = fresh.faint_ratio;
        self.min_energy = fresh.min_energy;
        self.floor_min = fresh.floor_min;
        self.min_speech_samples = fresh.min_speech_samples;
        self.hangover_samples = fresh.hangover_samples;
    }

    /// A detector with no history, tuned by `config` (clamped, see
    /// [`VadConfig::clamped`]).
    #[must_use]
    pub fn new(config: VadConfig) -> Vad {
        let config = config.clamped();
        let ratio = |db: f32| 10f64.powf(f64::from(db) / 10.0);
        let start_ratio = ratio(config.start_db);
        let min_energy = FULL_SCALE * ratio(config.min_level_dbfs);
        let samples = |ms: u32| u64::from(ms) * SAMPLES_PER_MS;
        Vad {
            config,
            start_ratio,
            stop_ratio: ratio(config.stop_db),
            faint_ratio: ratio(config.stop_db / 2.0),
            min_energy,
            floor_min: min_energy / start_ratio,
            // At least one sample: a run needs one loud frame to exist at all.
            min_speech_samples: samples(config.min_speech_ms).max(1),
            hangover_samples: samples(config.hangover_ms).max(1),
            block_samples: samples(config.floor_window_ms) / FLOOR_BLOCKS as u64,
            filter: HighPass::default(),
            recent: [0.0; SMOOTH_FRAMES],
            recent_len: 0,
            recent_next: 0,
            blocks: [f64::INFINITY; FLOOR_BLOCKS],
            blocks_next: 0,
            block_min: f64::INFINITY,
            block_fill: 0,
            flat: [0.0; FLAT_FRAMES],
            flat_len: 0,
            flat_next: 0,
            pool_energy: 0.0,
            pool_samples: 0,
            floor: f64::INFINITY,
            noise_zcr: None,
            frame: 0,
            sample: 0,
            state: State::Silence {
                onset: None,
                prior: None,
            },
        }
    }

    /// The configuration in use (after clamping).
    #[must_use]
    pub fn config(&self) -> &VadConfig {
        &self.config
    }

    /// Takes the next frame of decoded PCM (160 samples for 20 ms; other
    /// lengths work, see the module docs) and returns the event it completes,
    /// if any. Never allocates, never panics.
    #[must_use = "a speech start or end is reported only once"]
    pub fn handle_frame(&mut self, frame: &[i16]) -> Option<VadEvent> {
        let index = self.frame;
        let first_sample = self.sample;
        self.frame = self.frame.saturating_add(1);
        if frame.is_empty() {
            return None;
        }
        let len = frame.len() as u64;
        self.sample = self.sample.saturating_add(len);

        let (energy, crossings) = self.filter.measure(frame);
        let raised = self.track_floor(energy, len);

        let loud = energy >= self.min_energy && energy >= self.floor * self.start_ratio;
        let active = energy >= self.min_energy && energy >= self.floor * self.stop_ratio;

        match self.state {
            State::Silence { onset, prior } => {
                // A run whose level the floor has since learned (it held flat,
                // or the window moved up under it) was the noise, not a voice.
                let onset = onset.filter(|r| !raised && self.floor <= r.floor * self.stop_ratio);
                if !active {
                    if let Some(run) = onset
                        && run.loud >= self.min_speech_samples
                    {
                        // Loud for long enough, then back down to the noise:
                        // modulated like a syllable, so speech. This frame
                        // already begins the quiet after it.
                        let quiet = self.quiet_step(None, index, first_sample, energy, len);
                        self.state = State::Speech {
                            start: run,
                            quiet: Some(quiet),
                        };
                        return Some(VadEvent::SpeechStarted {
                            at_frame: run.frame,
                        });
                    }
                    let prior = match onset {
                        Some(r) if r.loud > 0 || r.samples >= PRIOR_MIN_SAMPLES => Some(Prior {
                            frame: r.frame,
                            sample: r.sample,
                            end_sample: first_sample,
                        }),
                        _ if raised => None,
                        _ => prior,
                    };
                    let rate = crossings as f64 * FRAME_SAMPLES as f64 / len as f64;
                    self.noise_zcr = Some(match self.noise_zcr {
                        Some(z) => z + (rate - z) * NOISE_ZCR_WEIGHT,
                        None => rate,
                    });
                    self.state = State::Silence { onset: None, prior };
                    return None;
                }
                let mut run = match onset {
                    // An onset dates back over active frames, but only so far:
                    // noise that hovers above the stop threshold is not speech.
                    Some(r) if r.loud > 0 || r.samples < ONSET_LOOKBACK_SAMPLES => r,
                    _ => {
                        let mut r = Run {
                            frame: index,
                            sample: first_sample,
                            samples: 0,
                            loud: 0,
                            crossings: 0,
                            peak: 0.0,
                            dipped: false,
                            floor: self.floor,
                        };
                        // A first syllable too short to start speech, just
                        // before: the speech began there.
                        if let Some(p) = prior
                            && first_sample.saturating_sub(p.end_sample) <= ONSET_MERGE_SAMPLES
                        {
                            (r.frame, r.sample) = (p.frame, p.sample);
                        }
                        r
                    }
                };
                run.samples = run.samples.saturating_add(len);
                run.crossings = run.crossings.saturating_add(crossings);
                if run.peak > 0.0 && energy * energy <= run.peak * self.floor {
                    run.dipped = true;
                }
                if loud || run.peak > 0.0 {
                    run.peak = run.peak.max(energy);
                }
                if loud {
                    run.loud = run.loud.saturating_add(len);
                }
                if run.loud >= self.min_speech_samples && (run.dipped || self.unlike_noise(&run)) {
                    self.state = State::Speech {
                        start: run,
                        quiet: None,
                    };
                    Some(VadEvent::SpeechStarted {
                        at_frame: run.frame,
                    })
                } else {
                    self.state = State::Silence {
                        onset: Some(run),
                        prior,
                    };
                    None
                }
            }
            State::Speech { start, quiet } => {
                if active {
                    self.state = State::Speech { start, quiet: None };
                    return None;
                }
                let quiet = self.quiet_step(quiet, index, first_sample, energy, len);
                if quiet.samples >= self.hangover_samples {
                    self.state = State::Silence {
                        onset: None,
                        prior: None,
                    };
                    // `at_frame` names a frame already seen: a fade that lasts
                    // the whole hangover ends the speech at its last frame.
                    let (end_frame, end_sample) = if quiet.end_frame > index {
                        (index, first_sample)
                    } else {
                        (quiet.end_frame, quiet.end_sample)
                    };
                    let samples = end_sample.saturating_sub(start.sample);
                    Some(VadEvent::SpeechEnded {
                        at_frame: end_frame,
                        duration: samples_to_duration(samples),
                    })
                } else {
                    self.state = State::Speech {
                        start,
                        quiet: Some(quiet),
                    };
                    None
                }
            }
        }
    }

    /// Whether a run's zero-crossing rate differs from the noise's: a sound
    /// with another spectrum than the noise it rose from. A noise that only
    /// grew louder keeps its rate. Before any quiet frame there is nothing to
    /// compare with, and anything differs.
    fn unlike_noise(&self, run: &Run) -> bool {
        let Some(noise) = self.noise_zcr else {
            return true;
        };
        let rate = run.crossings as f64 * FRAME_SAMPLES as f64 / run.samples.max(1) as f64;
        (rate - noise).abs() > ZCR_DIFFERS * rate.max(noise) + 1.0
    }

    /// Adds one frame that is not active to the quiet after speech.
    fn quiet_step(
        &self,
        quiet: Option<Quiet>,
        index: u64,
        first_sample: u64,
        energy: f64,
        len: u64,
    ) -> Quiet {
        let faint = energy >= self.min_energy && energy >= self.floor * self.faint_ratio;
        let mut quiet = quiet.unwrap_or(Quiet {
            samples: 0,
            end_frame: index,
            end_sample: first_sample,
            fading: true,
        });
        // The decay of the last sound (a fricative, a vowel dying away)
        // sits just above the noise: frames that follow on without a
        // break below the faint threshold still belong to the speech. Over
        // real noise (a floor above the absolute minimum) the decay goes on
        // under it, so the first frame below the faint threshold counts too.
        let was_fading = quiet.fading;
        quiet.fading &= faint;
        if quiet.fading || (was_fading && self.floor > self.floor_min) {
            quiet.end_frame = index.saturating_add(1);
            quiet.end_sample = self.sample;
        }
        quiet.samples = quiet.samples.saturating_add(len);
        quiet
    }

    /// Whether speech is in progress: true from `SpeechStarted` until
    /// `SpeechEnded`.
    #[must_use]
    pub fn is_speech(&self) -> bool {
        matches!(self.state, State::Speech { .. })
    }

    /// The earliest frame the start of the current turn is dated to, or a
    /// start not yet reported could be: in speech, the frame
    /// [`VadEvent::SpeechStarted`] named; in silence, the first frame of the
    /// run the detector is watching, or of a short run just before it that
    /// a start would take in. `None` when nothing is pending (a start would
    /// then date to a frame not yet seen). Audio kept from that frame on
    /// holds the start of the turn.
    #[must_use]
    pub fn earliest_start_frame(&self) -> Option<u64> {
        let (onset, prior) = match &self.state {
            State::Speech { start, .. } => return Some(start.frame),
            State::Silence { onset, prior } => (onset, prior),
        };
        let prior = prior
            .filter(|p| self.sample.saturating_sub(p.end_sample) <= ONSET_MERGE_SAMPLES)
            .map(|p| p.frame);
        match (onset.map(|r| r.frame), prior) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Forgets everything (noise floor, speech state, frame count) but keeps
    /// the configuration, as if newly created. Speech in progress ends without
    /// an event.
    pub fn reset(&mut self) {
        *self = Vad::new(self.config);
    }

    /// Frames processed since creation or [`reset`](Vad::reset): the index the
    /// next frame will have.
    #[must_use]
    pub fn frames(&self) -> u64 {
        self.frame
    }

    /// The current noise floor in dBFS, for diagnostics and metrics: `-inf`
    /// before the first non-empty frame, and never below
    /// `min_level_dbfs - start_db` (where the absolute level decides anyway).
    #[must_use]
    pub fn noise_floor_dbfs(&self) -> f64 {
        if self.floor.is_finite() {
            10.0 * (self.floor / FULL_SCALE).log10()
        } else {
            f64::NEG_INFINITY
        }
    }

    /// Folds one frame's energy into the floor: four-frame average, then the
    /// minimum over the block window.
    /// Returns whether the flat check raised the floor to a new level.
    fn track_floor(&mut self, energy: f64, len: u64) -> bool {
        let mut raised = false;
        if let Some(slot) = self.recent.get_mut(self.recent_next) {
            *slot = energy;
        }
        self.recent_next = (self.recent_next + 1) % SMOOTH_FRAMES;
        self.recent_len = (self.recent_len + 1).min(SMOOTH_FRAMES);
        let smoothed =
            self.recent.iter().take(self.recent_len).sum::<f64>() / self.recent_len as f64;

        self.block_min = self.block_min.min(smoothed.max(self.floor_min));
        self.floor = self.blocks.iter().fold(self.block_min, |m, &b| m.min(b));

        // A level that has held flat for `FLAT_FRAMES` is noise, not speech:
        // it becomes the floor now rather than when the window forgets the
        // old one. Blocks that remember the old, lower level are raised too.
        self.pool_energy += energy * len as f64;
        self.pool_samples = self.pool_samples.saturating_add(len);
        if self.pool_samples >= FRAME_SAMPLES as u64 {
            if let Some(slot) = self.flat.get_mut(self.flat_next) {
                *slot = self.pool_energy / self.pool_samples as f64;
            }
            self.pool_energy = 0.0;
            self.pool_samples = 0;
            self.flat_next = (self.flat_next + 1) % FLAT_FRAMES;
            self.flat_len = (self.flat_len + 1).min(FLAT_FRAMES);
        }
        if self.flat_len == FLAT_FRAMES && self.pool_samples == 0 {
            let (lo, hi) = self
                .flat
                .iter()
                .fold((f64::INFINITY, 0f64), |(lo, hi), &e| (lo.min(e), hi.max(e)));
            let lo = lo.max(self.floor_min);
            if hi <= lo * FLAT_RATIO && lo > self.floor {
                self.floor = lo;
                self.block_min = self.block_min.max(lo);
                for b in &mut self.blocks {
                    *b = b.max(lo);
                }
                raised = true;
            }
        }

        self.block_fill = self.block_fill.saturating_add(len);
        if self.block_fill >= self.block_samples {
            if let Some(slot) = self.blocks.get_mut(self.blocks_next) {
                *slot = self.block_min;
            }
            self.blocks_next = (self.blocks_next + 1) % FLOOR_BLOCKS;
            self.block_min = f64::INFINITY;
            self.block_fill = 0;
        }
        raised
    }
}

/// A second-order Butterworth high-pass at 200 Hz (RBJ cookbook biquad,
/// Q = 1/√2, for 8 kHz), run before the energy is measured. It runs in
/// integers, so every platform filters bit for bit alike: coefficients in Q30
/// (`round(c × 2³⁰)` of 0.894858606, -1.789717212, -1.778631778, 0.800802647),
/// the output kept with 8 fractional bits. Both poles sit at radius 0.895,
/// so the filter is stable, and the sum of its impulse response's magnitudes
/// is 2.23: no output exceeds 2.23 × 32768 (2²⁵ in 1/256ths) and no
/// intermediate exceeds 2⁵⁷.
#[derive(Debug, Clone, Copy, Default)]
struct HighPass {
    x1: i64,
    x2: i64,
    /// The last two outputs, in 1/256ths of a sample unit.
    y1: i64,
    y2: i64,
}

impl HighPass {
    const B0: i64 = 960_847_112;
    const B1: i64 = -1_921_694_224;
    const A1: i64 = -1_909_791_329;
    const A2: i64 = 859_855_294;
    /// Fractional bits of the coefficients.
    const Q: u32 = 30;
    /// Fractional bits of the input and output.
    const FRAC: u32 = 8;

    /// Filters `frame` and returns the mean square per sample of the output,
    /// in sample units squared, and how many times the output changed sign.
    fn measure(&mut self, frame: &[i16]) -> (f64, u64) {
        let Self {
            mut x1,
            mut x2,
            mut y1,
            mut y2,
        } = *self;
        let mut sum = 0.0;
        let mut crossings = 0u64;
        for &s in frame {
            let x0 = i64::from(s) << Self::FRAC;
            // Only the last multiply and subtract wait for the previous
            // output, which keeps the loop's dependency chain short.
            let y0 =
                (Self::B0 * (x0 + x2) + Self::B1 * x1 - Self::A2 * y2 - Self::A1 * y1) >> Self::Q;
            // At most 2⁵⁰ each: exact in f64, and summed in a fixed order.
            let y = y0 as f64;
            sum += y * y;
            crossings += u64::from((y0 < 0) != (y1 < 0));
            (x2, x1, y2, y1) = (x1, x0, y1, y0);
        }
        *self = Self { x1, x2, y1, y2 };
        let energy = sum / (f64::from(1u32 << (2 * Self::FRAC)) * frame.len() as f64);
        (energy, crossings)
    }
}

fn samples_to_duration(samples: u64) -> Duration {
    let rate = u64::from(SAMPLE_RATE);
    Duration::from_secs(samples / rate)
        + Duration::from_nanos((samples % rate) * 1_000_000_000 / rate)
}

/// One 20 ms frame, the unit the defaults were tuned on.
const _: () = assert!(FRAME_SAMPLES as u64 == 20 * SAMPLES_PER_MS);

#[cfg(test)]
mod tests {
    use super::*;

    /// A 400 Hz square wave of amplitude `a`: a stand-in for a voice.
    fn tone(a: i16, len: usize) -> Vec<i16> {
        (0..len).map(|i| if i % 20 < 10 { a } else { -a }).collect()
    }

    /// Feeds `frames` (true = loud tone, false = digital silence) and returns
    /// each event with the index of the frame that produced it.
    ///
    /// Where the tone stops dead, the high-pass filter's decay (about 17 dB
    /// down) falls in the next frame, so that frame is still speech: real
    /// voices do not stop within a sample.
    fn run(vad: &mut Vad, frames: &[bool]) -> Vec<(usize, VadEvent)> {
        let loud = tone(5000, FRAME_SAMPLES);
        let quiet = [0i16; FRAME_SAMPLES];
        frames
            .iter()
            .enumerate()
            .filter_map(|(i, &l)| {
                vad.handle_frame(if l { &loud } else { &quiet })
                    .map(|e| (i, e))
            })
            .collect()
    }

    fn pattern(spec: &[(bool, usize)]) -> Vec<bool> {
        spec.iter()
            .flat_map(|&(l, n)| std::iter::repeat_n(l, n))
            .collect()
    }

    #[test]
    fn events_are_dated_back_to_the_true_start_and_end() {
        let mut vad = Vad::new(VadConfig::default());
        let got = run(&mut vad, &pattern(&[(false, 10), (true, 20), (false, 30)]));
        assert_eq!(
            got,
            [
                // Reported when the third loud frame completes 60 ms.
                (12, VadEvent::SpeechStarted { at_frame: 10 }),
                // Reported when 300 ms of quiet complete the hangover; the
                // filter's decay makes frame 30 the last of the speech.
                (
                    45,
                    VadEvent::SpeechEnded {
                        at_frame: 31,
                        duration: Duration::from_millis(420)
                    }
                ),
            ]
        );
        assert!(!vad.is_speech());
        assert_eq!(vad.frames(), 60);
    }

    /// Events for 10 frames of digital silence, 20 of a tone of amplitude
    /// `a` (its RMS level), 30 of silence.
    fn level_run(config: VadConfig, a: i16) -> Vec<VadEvent> {
        let mut vad = Vad::new(config);
        let loud = tone(a, FRAME_SAMPLES);
        let quiet = [0i16; FRAME_SAMPLES];
        (0..60)
            .filter_map(|i| vad.handle_frame(if (10..30).contains(&i) { &loud } else { &quiet }))
            .collect()
    }

    #[test]
    fn sensitivity_moves_the_level_that_counts_as_speech() {
        let d = VadConfig::default();
        assert_eq!(d.with_sensitivity(0.5), d);
        assert_eq!(d.with_sensitivity(f32::NAN), d);
        assert_eq!(d.with_sensitivity(7.0), d.with_sensitivity(1.0));
        let deaf = d.with_sensitivity(0.0);
        assert_eq!(
            (deaf.start_db, deaf.stop_db, deaf.min_level_dbfs),
            (15.0, 5.0, -35.0)
        );
        let keen = d.with_sensitivity(1.0);
        assert_eq!(
            (keen.start_db, keen.stop_db, keen.min_level_dbfs),
            (5.0, 2.5, -55.0)
        );
        let q = d.with_sensitivity(0.25);
        assert_eq!((q.start_db, q.min_level_dbfs), (12.0, -40.0));
        // A voice at -50 dBFS (amplitude 104): under the default's -45 dBFS
        // gate, heard at full sensitivity.
        assert!(level_run(d, 104).is_empty());
        assert_eq!(level_run(keen, 104).len(), 2);
        // A voice at -40 dBFS (amplitude 328): heard by default, not at 0.
        assert_eq!(level_run(d, 328).len(), 2);
        assert!(level_run(deaf, 328).is_empty());
    }

    #[test]
    fn the_earliest_start_names_the_frame_a_start_will_be_dated_to() {
        let mut vad = Vad::new(VadConfig::default());
        let loud = tone(5000, FRAME_SAMPLES);
        let quiet = [0i16; FRAME_SAMPLES];
        for _ in 0..10 {
            let _ = vad.handle_frame(&quiet);
        }
        assert_eq!(vad.earliest_start_frame(), None);
        // Frames 10 and 11 loud: a run the detector watches, from 10.
        let _ = vad.handle_frame(&loud);
        let _ = vad.handle_frame(&loud);
        assert_eq!(vad.earliest_start_frame(), Some(10));
        // The third loud frame starts speech, dated to that same frame.
        assert_eq!(
            vad.handle_frame(&loud),
            Some(VadEvent::SpeechStarted { at_frame: 10 })
        );
        assert_eq!(vad.earliest_start_frame(), Some(10));
        // The turn ends: nothing pending.
        for _ in 0..20 {
            let _ = vad.handle_frame(&quiet);
        }
        assert!(!vad.is_speech());
        assert_eq!(vad.earliest_start_frame(), None);
    }

    #[test]
    fn a_burst_shorter_than_min_speech_is_not_speech() {
        let mut vad = Vad::new(VadConfig::default());
        // One loud frame at a time (40 ms with the filter's decay), never more.
        let frames = pattern(&[(false, 5), (true, 1), (false, 5), (true, 1), (false, 5)]);
        assert_eq!(run(&mut vad, &frames), []);
        // With min_speech_ms at 40 the same bursts are speech.
        let mut vad = Vad::new(VadConfig {
            min_speech_ms: 40,
            ..VadConfig::default()
        });
        let got = run(&mut vad, &frames);
        assert_eq!(
            got.first(),
            Some(&(6, VadEvent::SpeechStarted { at_frame: 5 }))
        );
    }

    #[test]
    fn a_pause_shorter_than_the_hangover_is_bridged() {
        let mut vad = Vad::new(VadConfig::default());
        // The first frame of each pause holds the filter's decay: 300 ms of
        // pause bridges, 320 ms splits.
        let one = pattern(&[(false, 5), (true, 10), (false, 15), (true, 10), (false, 20)]);
        let got = run(&mut vad, &one);
        assert_eq!(got.len(), 2, "{got:?}");
        let mut vad = Vad::new(VadConfig::default());
        let two = pattern(&[(false, 5), (true, 10), (false, 16), (true, 10), (false, 20)]);
        let got = run(&mut vad, &two);
        assert_eq!(got.len(), 4, "{got:?}");
        assert_eq!(
            got[1].1,
            VadEvent::SpeechEnded {
                at_frame: 16,
                duration: Duration::from_millis(220)
            }
        );
        assert_eq!(got[2].1, VadEvent::SpeechStarted { at_frame: 31 });
    }

    #[test]
    fn the_absolute_minimum_holds_whatever_the_floor() {
        // -56 dBFS tone after digital silence: far above the floor, below
        // min_level_dbfs (-45).
        let mut vad = Vad::new(VadConfig::default());
        let faint = tone(50, FRAME_SAMPLES);
        for _ in 0..10 {
            assert_eq!(vad.handle_frame(&[0; FRAME_SAMPLES]), None);
        }
        for _ in 0..100 {
            assert_eq!(vad.handle_frame(&faint), None);
        }
        // Lower the minimum and the same tone is speech.
        let mut vad = Vad::new(VadConfig {
            min_level_dbfs: -70.0,
            ..VadConfig::default()
        });
        let got: Vec<_> = (0..10)
            .map(|_| [0i16; FRAME_SAMPLES])
            .chain((0..10).map(|_| [0; FRAME_SAMPLES]).map(|_| {
                let mut f = [0i16; FRAME_SAMPLES];
                f.copy_from_slice(&faint);
                f
            }))
            .filter_map(|f| vad.handle_frame(&f))
            .collect();
        assert_eq!(got, [VadEvent::SpeechStarted { at_frame: 10 }]);
    }

    #[test]
    fn frame_length_changes_granularity_not_timing() {
        // The same audio in 10 ms frames: frame indices double, durations hold.
        let mut vad = Vad::new(VadConfig::default());
        let loud = tone(5000, 80);
        let quiet = [0i16; 80];
        let mut got = Vec::new();
        for i in 0..120 {
            let f: &[i16] = if (20..60).contains(&i) { &loud } else { &quiet };
            got.extend(vad.handle_frame(f));
        }
        assert_eq!(
            got,
            [
                VadEvent::SpeechStarted { at_frame: 20 },
                VadEvent::SpeechEnded {
                    at_frame: 61,
                    duration: Duration::from_millis(410)
                },
            ]
        );
    }

    #[test]
    fn an_empty_frame_only_advances_the_index() {
        let mut a = Vad::new(VadConfig::default());
        let mut b = Vad::new(VadConfig::default());
        let frames = pattern(&[(false, 10), (true, 20), (false, 30)]);
        let loud = tone(5000, FRAME_SAMPLES);
        let mut with_empty = Vec::new();
        for &l in &frames {
            assert_eq!(a.handle_frame(&[]), None);
            with_empty.extend(a.handle_frame(if l { &loud } else { &[0; FRAME_SAMPLES] }));
        }
        let plain: Vec<_> = run(&mut b, &frames).into_iter().map(|(_, e)| e).collect();
        assert_eq!(with_empty.len(), plain.len());
        // Indices count the empty frames too; durations do not.
        assert_eq!(with_empty[0], VadEvent::SpeechStarted { at_frame: 21 });
        assert_eq!(
            with_empty[1],
            VadEvent::SpeechEnded {
                at_frame: 63,
                duration: Duration::from_millis(420)
            }
        );
    }

    #[test]
    fn reset_forgets_everything() {
        let frames = pattern(&[(false, 10), (true, 20), (false, 5)]);
        let mut vad = Vad::new(VadConfig::default());
        let first = run(&mut vad, &frames);
        assert!(vad.is_speech());
        vad.reset();
        assert!(!vad.is_speech());
        assert_eq!(vad.frames(), 0);
        assert_eq!(vad.noise_floor_dbfs(), f64::NEG_INFINITY);
        assert_eq!(run(&mut vad, &frames), first);
    }

    #[test]
    fn config_is_clamped_into_range() {
        let d = VadConfig::default();
        let wild = VadConfig {
            start_db: f32::NAN,
            stop_db: 50.0,
            min_level_dbfs: 30.0,
            min_speech_ms: u32::MAX,
            hangover_ms: u32::MAX,
            floor_window_ms: 0,
        };
        let c = wild.clamped();
        assert_eq!(c.start_db, d.start_db);
        assert_eq!(c.stop_db, d.start_db, "stop never above start");
        assert_eq!(c.min_level_dbfs, 0.0);
        assert_eq!((c.min_speech_ms, c.hangover_ms), (60_000, 60_000));
        assert_eq!(c.floor_window_ms, 80);
        assert_eq!(Vad::new(wild).config(), &c);
        assert_eq!(d.clamped(), d, "the defaults are in range");
        let c = VadConfig {
            start_db: 6.0,
            stop_db: f32::NAN,
            ..d
        }
        .clamped();
        assert_eq!(c.stop_db, 3.5);
        let c = VadConfig {
            start_db: 3.0,
            stop_db: f32::NAN,
            ..d
        }
        .clamped();
        assert_eq!(c.stop_db, 3.0);
    }

    #[test]
    fn zero_durations_still_need_one_loud_frame() {
        let mut vad = Vad::new(VadConfig {
            min_speech_ms: 0,
            hangover_ms: 0,
            ..VadConfig::default()
        });
        let got = run(&mut vad, &pattern(&[(false, 3), (true, 1), (false, 2)]));
        assert_eq!(
            got,
            [
                (3, VadEvent::SpeechStarted { at_frame: 3 }),
                (
                    5,
                    VadEvent::SpeechEnded {
                        at_frame: 5,
                        duration: Duration::from_millis(40)
                    }
                ),
            ]
        );
    }

    #[test]
    fn the_floor_follows_noise_down_at_once_and_up_within_a_window() {
        let mut vad = Vad::new(VadConfig::default());
        // Steady tones at -21 and -41 dBFS, both above the floor's lower clamp.
        let loud = tone(3000, FRAME_SAMPLES);
        let soft = tone(300, FRAME_SAMPLES);
        for _ in 0..200 {
            let _ = vad.handle_frame(&loud);
        }
        let high = vad.noise_floor_dbfs();
        // Four frames fill the average; one more for the filter's decay.
        for _ in 0..5 {
            let _ = vad.handle_frame(&soft);
        }
        let low = vad.noise_floor_dbfs();
        assert!((high - low - 20.0).abs() < 0.5, "{high} -> {low}");
        // A steady level is learned once it has held flat for FLAT_FRAMES.
        for _ in 1..FLAT_FRAMES {
            let _ = vad.handle_frame(&loud);
        }
        assert_eq!(vad.noise_floor_dbfs(), low, "not yet flat for long enough");
        // One more for the unit, one for the filter's step at the change.
        for _ in 0..2 {
            let _ = vad.handle_frame(&loud);
        }
        assert!(
            (vad.noise_floor_dbfs() - high).abs() < 0.01,
            "learned when flat"
        );
    }

    /// Frames of the same pseudo-random noise, scaled frame by frame by
    /// `gain(frame)`.
    fn noise(frames: usize, gain: impl Fn(usize) -> f64) -> Vec<Vec<i16>> {
        let mut seed = 7u32;
        (0..frames)
            .map(|f| {
                (0..FRAME_SAMPLES)
                    .map(|_| {
                        seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
                        let s = f64::from((seed >> 16) as i16 >> 4);
                        (s * gain(f)) as i16
                    })
                    .collect()
            })
            .collect()
    }

    #[test]
    fn a_louder_copy_of_the_noise_is_speech_only_if_it_swings() {
        // Noise at about -30 dBFS for 1 s, then the same noise 15 dB up: held flat it
        // is the noise grown louder, never speech; swinging on and off every
        // 100 ms, like syllables, it is speech from its first frame.
        let step = |f: usize| if f < 50 { 1.0 } else { 5.62 };
        let syllables = |f: usize| {
            if f >= 50 && (f / 5).is_multiple_of(2) {
                5.62
            } else {
                1.0
            }
        };
        let mut vad = Vad::new(VadConfig::default());
        let got: Vec<_> = noise(150, step)
            .iter()
            .filter_map(|f| vad.handle_frame(f))
            .collect();
        assert_eq!(got, []);
        assert!(vad.noise_floor_dbfs() > -20.0, "the new level is the floor");
        let mut vad = Vad::new(VadConfig::default());
        let got: Vec<_> = noise(150, syllables)
            .iter()
            .enumerate()
            .filter_map(|(i, f)| vad.handle_frame(f).map(|e| (i, e)))
            .collect();
        // Decided on the first frame back down at the noise, dated to the
        // first loud frame.
        assert_eq!(
            got.first(),
            Some(&(55, VadEvent::SpeechStarted { at_frame: 50 }))
        );
    }

    #[test]
    fn the_filter_cannot_overflow_on_its_worst_input() {
        // The input that drives the output highest is full scale with the
        // signs of the impulse response, reversed. Overflow would panic here
        // (tests build with overflow checks).
        let mut impulse = HighPass::default();
        let mut signs = Vec::new();
        for n in 0..400 {
            impulse.measure(&[if n == 0 { 32767 } else { 0 }]);
            signs.push(impulse.y1 >= 0);
        }
        let worst: Vec<i16> = signs
            .iter()
            .rev()
            .map(|&p| if p { i16::MAX } else { i16::MIN })
            .collect();
        let mut filter = HighPass::default();
        filter.measure(&worst);
        let peak = filter.y1.abs() as f64 / 256.0 / 32768.0;
        assert!((2.2..2.25).contains(&peak), "peak gain {peak}");
        for _ in 0..100 {
            filter.measure(&worst);
        }
    }

    #[test]
    fn durations_convert_exactly() {
        assert_eq!(samples_to_duration(0), Duration::ZERO);
        assert_eq!(samples_to_duration(1), Duration::from_nanos(125_000));
        assert_eq!(samples_to_duration(8160), Duration::from_millis(1020));
        assert_eq!(
            samples_to_duration(u64::MAX),
            Duration::from_secs(u64::MAX / 8000)
                + Duration::from_nanos((u64::MAX % 8000) * 125_000)
        );
    }

    #[test]
    fn full_scale_input_is_finite() {
        let mut vad = Vad::new(VadConfig::default());
        let max: Vec<i16> = (0..FRAME_SAMPLES)
            .map(|i| if i % 2 == 0 { i16::MIN } else { i16::MAX })
            .collect();
        for _ in 0..10 {
            let _ = vad.handle_frame(&max);
        }
        assert!(vad.noise_floor_dbfs().is_finite());
        assert!(vad.noise_floor_dbfs() <= 6.1);
    }
}
