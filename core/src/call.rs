//! One state machine per media stream: audio and control in and out, in the
//! words of a provider's [wire format](crate::wire); events and a deadline
//! out.
//!
//! The machine speaks audio and control only (a stream started, caller
//! audio, a key, a mark acknowledged, the stream stopped; audio, marks and
//! clears going out). A [`Wire`] turns the provider's messages into those
//! facts and writes the machine's: Twilio's Media Streams JSON
//! ([`TwilioWire`]) unless [`Call::with_wire`] names another. An embedder
//! without a wire at all feeds facts with [`Call::handle_fact`].
//!
//! [`Call`] is usable on its own, behind any WebSocket server: feed it every
//! text frame the provider sends ([`Call::handle_text`]), tell it when the socket
//! closed ([`Call::handle_closed`]) and when its deadline passed
//! ([`Call::handle_timeout`]), give it commands ([`Call::play_pcm`],
//! [`Call::play_ulaw`], [`Call::mark`], [`Call::clear`], [`Call::hangup`]).
//!
//! # In the run loop
//!
//! A call keeps the crate's [run loop](crate#run-loop); commands count as
//! inputs. A drain of [`Call::poll_output`] ends at [`CallOutput::Timeout`];
//! each [`CallOutput::Send`] is a text frame for the peer, in order, and
//! [`CallOutput::Close`] closes the socket with its code. Time is only ever
//! the `now` passed in, so a whole call can run in a test in microseconds.
//!
//! # Inbound
//!
//! Media goes through the [jitter buffer](crate::jitter) and comes out as
//! [`CallEvent::Audio`]: 20 ms frames on a steady cadence in stream time,
//! concealed where Twilio's audio is missing. Each frame also feeds the
//! [voice activity detector](crate::vad) (unless [`CallConfig::vad`] is
//! `None`), whose decisions come out as
//! [`CallEvent::SpeechStarted`] and [`CallEvent::SpeechEnded`], right after
//! the frame that settled them, dated in stream time. Only the `inbound`
//! track is taken; media of other tracks (a one-way `both_tracks` stream) is
//! ignored.
//!
//! Messages that break the protocol do not end the call: they are dropped and
//! reported as [`CallEvent::Warning`] (malformed JSON, media before `start`, a
//! `streamSid` that is not this stream's, a second `start`, an echoed mark we
//! never sent, a message over [`CallConfig::max_text`]).
//!
//! # Outbound, marks and clear
//!
//! Audio is paced by the [pacer](crate::pacer); nothing is sent before
//! `start` names the stream (commands given earlier wait). A mark goes out
//! after the audio queued before it and resolves exactly once, as
//! [`CallEvent::MarkDone`]:
//!
//! - [`MarkOutcome::Played`] when Twilio echoes it (Twilio echoes a mark when
//!   the audio before it has played);
//! - on [`Call::clear`] (or barge-in), marks not yet sent resolve
//!   [`MarkOutcome::Cleared`] (Twilio never sees them), and marks Twilio holds
//!   resolve at once: `Played` if the schedule says their audio had played,
//!   else `Cleared`. Twilio echoes those marks too (it echoes cleared marks):
//!   the echoes are recognised and swallowed, never resolved twice;
//! - echoes are matched by the order marks were sent, not by name alone: an
//!   echo is of the first mark still owed one that bears its name. Should an
//!   echo go missing while a name is reused, that rule runs one mark behind
//!   for the name, so an echo also resolves the open marks of its name whose
//!   audio has played by the schedule (and those sent before them): no mark
//!   waits for an echo that already came;
//! - when the call ends, every mark still open resolves the same way.
//!
//! # Barge-in
//!
//! On by default ([`CallConfig::barge_in`], [`Call::set_barge_in`]): when the
//! caller starts speaking while our audio is queued or, by the schedule,
//! still playing at Twilio, the call clears, emits
//! `SpeechStarted`, then [`CallEvent::BargeIn`], then the marks' `MarkDone`.
//! The detector does not start speech for the caller's noise growing louder
//! (the same noise, neither sounding different nor swinging like syllables:
//! see [the VAD](crate::vad)), so a noisier line does not cut our audio off.
//!
//! # The end
//!
//! A call ends once, with [`CallEvent::Stopped`] and its [`StopReason`]:
//! Twilio's `stop` message, the socket closing, a transport error reported by
//! the driver ([`Call::handle_error`]), or [`Call::hangup`]. Audio still
//! buffered comes out first. After a `stop` or a hangup, `Stopped` is
//! followed by [`CallOutput::Close`] with code 1000 (normal closure), which
//! ends Twilio's `<Connect><Stream>`. `hangup` waits until everything queued
//! has played and every mark is echoed, or [`CallConfig::hangup_timeout`].
//!
//! ```
//! use callstream_core::call::{Call, CallConfig, CallEvent, CallOutput};
//! use std::time::Instant;
//!
//! let t0 = Instant::now();
//! let mut call = Call::new(CallConfig::default(), t0);
//! let sid = "MZ00000000000000000000000000000001";
//! call.handle_text(t0, r#"{"event":"connected","protocol":"Call","version":"1.0.0"}"#);
//! call.handle_text(t0, &format!(
//!     r#"{{"event":"start","sequenceNumber":"1","streamSid":"{sid}","start":{{"accountSid":"AC00000000000000000000000000000001","streamSid":"{sid}","callSid":"CA00000000000000000000000000000001","tracks":["inbound"],"customParameters":{{}},"mediaFormat":{{"encoding":"audio/x-mulaw","sampleRate":8000,"channels":1}}}}}}"#
//! ));
//! call.play_pcm(t0, &[0i16; 160]).unwrap();
//! call.mark(t0, "greeting").unwrap();
//! let mut sent = Vec::new();
//! loop {
//!     match call.poll_output() {
//!         CallOutput::Send(text) => sent.push(text),
//!         CallOutput::Event(_) => {}
//!         CallOutput::Close { .. } => break,
//!         CallOutput::Timeout(_) => break,
//!         _ => {}
//!     }
//! }
//! assert!(sent[0].contains(r#""event":"media""#));
//! assert!(sent[1].contains(r#""event":"mark""#));
//! ```

use std::collections::VecDeque;
use std::fmt;
use std::time::{Duration, Instant};

use crate::codec::{self, FRAME_MS};
pub use crate::jitter::AudioFrame;
use crate::jitter::{JitterBuffer, JitterConfig};
use crate::pacer::{Outgoing, Pacer, PacerConfig};
use crate::sid::StreamSid;
use crate::vad::{Vad, VadConfig, VadEvent};
use crate::wire::twilio::TwilioWire;
use crate::wire::{Fact, Message, StreamStart, Wire};

/// WebSocket close code for a normal closure (RFC 6455 §7.4.1).
pub const NORMAL_CLOSURE: u16 = 1000;
/// Longest mark name accepted, in bytes.
pub const MAX_MARK_NAME: usize = 256;
/// The deadline [`Call::poll_output`] names when nothing is pending: come
/// back then, or on input.
const IDLE: Duration = Duration::from_secs(60);

/// Payloads up to this many μ-law bytes (80 ms) are decoded on the stack.
const STACK_PAYLOAD: usize = 640;

/// Tuning of a [`Call`]. `Default` gives the documented defaults.
#[derive(Clone, Debug)]
pub struct CallConfig {
    /// The inbound jitter buffer.
    pub jitter: JitterConfig,
    /// The outbound pacer; its `max_marks` bounds the marks open at once
    /// (queued here or waiting for Twilio's echo).
    pub pacer: PacerConfig,
    /// The voice activity detector (default on). `None` turns speech
    /// detection off: no `SpeechStarted`/`SpeechEnded`, so no barge-in
    /// either, for applications that find turns themselves (their
    /// recogniser's endpointing) or only record.
    pub vad: Option<VadConfig>,
    /// Clear our audio when the caller starts speaking over it (default on).
    pub barge_in: bool,
    /// Report every outbound frame as [`CallEvent::AudioOut`] (default off).
    pub tap: bool,
    /// Longest a [`Call::hangup`] waits for queued audio and marks (default 5 s).
    pub hangup_timeout: Duration,
    /// Longest inbound text message accepted, in bytes (default 64 KiB);
    /// longer ones are dropped with [`Warning::TooLong`].
    pub max_text: usize,
}

impl Default for CallConfig {
    fn default() -> Self {
        CallConfig {
            jitter: JitterConfig::default(),
            pacer: PacerConfig::default(),
            vad: Some(VadConfig::default()),
            barge_in: true,
            tap: false,
            hangup_timeout: Duration::from_secs(5),
            max_text: 64 * 1024,
        }
    }
}

/// What the driver must do next, from [`Call::poll_output`].
#[derive(Clone, Debug, PartialEq)]
// An audio frame (336 bytes) travels by value: one move per 20 ms costs less
// than an allocation per frame.
#[allow(clippy::large_enum_variant)]
pub enum CallOutput {
    /// Send this text frame to Twilio.
    Send(String),
    /// Something happened on the call.
    Event(CallEvent),
    /// Close the WebSocket with this code and reason.
    Close {
        /// The close code (1000).
        code: u16,
        /// The close reason.
        reason: String,
    },
    /// Nothing more until this time (or new input): call
    /// [`Call::handle_timeout`] then.
    Timeout(Instant),
}

/// An empty text for the next message, a spare one when there is one, with
/// room for `len` bytes.
fn spare_text(spare: &mut Vec<String>, len: usize) -> String {
    let mut text = spare.pop().unwrap_or_default();
    text.clear();
    text.reserve(len);
    text
}

/// What [`Call::pump`] did.
#[allow(clippy::large_enum_variant)] // moved once, as `CallOutput` is
enum Pumped {
    /// Nothing is due.
    Idle,
    /// It queued output (or moved the call on): look again.
    Queued,
    /// This is next.
    Out(CallOutput),
}

/// How a mark resolved.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MarkOutcome {
    /// The audio before it played (Twilio echoed it, or the schedule says so).
    Played,
    /// It was cleared before its audio played.
    Cleared,
}

/// Why a call ended.
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StopReason {
    /// Twilio sent `stop`.
    Stop,
    /// The socket closed before a `stop`.
    Closed,
    /// We hung up ([`Call::hangup`]).
    Hangup,
    /// The driver reported a transport error ([`Call::handle_error`]).
    Error(String),
}

impl fmt::Display for StopReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StopReason::Stop => f.write_str("Twilio sent stop"),
            StopReason::Closed => f.write_str("socket closed"),
            StopReason::Hangup => f.write_str("hung up"),
            StopReason::Error(e) => write!(f, "transport error: {e}"),
        }
    }
}

/// A protocol problem that did not end the call: the message was dropped.
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Warning {
    /// Not a valid media-stream message (or a media payload that is not base64).
    Malformed {
        /// What was wrong.
        error: String,
    },
    /// A text message longer than [`CallConfig::max_text`].
    TooLong {
        /// Its length in bytes.
        len: usize,
    },
    /// Media, DTMF or a mark before `start` named the stream.
    BeforeStart,
    /// A message for another stream.
    WrongStreamSid {
        /// The `streamSid` it carried.
        got: StreamSid,
    },
    /// A second `start`.
    DuplicateStart,
    /// A second `connected`.
    DuplicateConnected,
    /// `start` announced a media format other than 8 kHz μ-law mono; the
    /// audio is treated as μ-law regardless.
    UnsupportedFormat {
        /// The format announced.
        format: String,
    },
    /// Twilio echoed a mark we have no record of.
    UnknownMark {
        /// The echoed name.
        name: String,
    },
    /// A command from the application failed (reported by
    /// [`Session`](crate::handler::Session) for commands from another thread).
    Command(CommandError),
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Warning::Malformed { error } => write!(f, "malformed message dropped: {error}"),
            Warning::TooLong { len } => write!(f, "message of {len} bytes dropped: too long"),
            Warning::BeforeStart => f.write_str("message before start dropped"),
            Warning::WrongStreamSid { got } => write!(f, "message for stream {got} dropped"),
            Warning::DuplicateStart => f.write_str("second start ignored"),
            Warning::DuplicateConnected => f.write_str("second connected ignored"),
            Warning::UnsupportedFormat { format } => {
                write!(
                    f,
                    "unsupported media format {format}, decoding as 8 kHz μ-law"
                )
            }
            Warning::UnknownMark { name } => write!(f, "echo of unknown mark {name:?} ignored"),
            Warning::Command(e) => write!(f, "command failed: {e}"),
        }
    }
}

/// Why a command was refused.
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CommandError {
    /// The outbound queue is full: the end of the audio, this long, was dropped.
    QueueFull {
        /// Milliseconds of audio not queued.
        dropped_ms: u64,
    },
    /// Too many marks open (queued or waiting for Twilio); this one was not queued.
    TooManyMarks,
    /// A mark name longer than [`MAX_MARK_NAME`].
    MarkNameTooLong {
        /// Its length in bytes.
        len: usize,
    },
    /// The call is ending or over.
    Ended,
}

impl fmt::Display for CommandError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CommandError::QueueFull { dropped_ms } => {
                write!(f, "outbound queue full: last {dropped_ms} ms dropped")
            }
            CommandError::TooManyMarks => f.write_str("too many marks open"),
            CommandError::MarkNameTooLong { len } => {
                write!(f, "mark name of {len} bytes is over {MAX_MARK_NAME}")
            }
            CommandError::Ended => f.write_str("the call has ended"),
        }
    }
}

impl std::error::Error for CommandError {}

/// An outbound frame as Twilio plays it (with [`CallConfig::tap`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AudioOut {
    /// When Twilio plays it, by the schedule, in ms since `start` arrived
    /// (close to the stream time of inbound frames).
    pub play_at_ms: u64,
    /// The audio, decoded from the μ-law sent.
    pub samples: Vec<i16>,
}

/// Counters of a call, all since it began.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CallStats {
    /// Inbound media messages, whatever became of them.
    pub received: u64,
    /// Inbound media that arrived out of order but in time.
    pub reordered: u64,
    /// Inbound media dropped as already received.
    pub duplicate: u64,
    /// Inbound media dropped as too late.
    pub late: u64,
    /// Inbound frames delivered as concealed silence.
    pub concealed: u64,
    /// Inbound frames delivered ([`CallEvent::Audio`]).
    pub frames_in: u64,
    /// Media messages sent to Twilio.
    pub frames_sent: u64,
    /// Milliseconds of audio Twilio has played, by the schedule.
    pub played_ms: u64,
    /// Marks accepted.
    pub marks: u64,
    /// Marks resolved as played.
    pub marks_played: u64,
    /// Marks resolved as cleared.
    pub marks_cleared: u64,
    /// Clears, by command or barge-in.
    pub clears: u64,
    /// Barge-ins.
    pub barge_ins: u64,
    /// DTMF digits received.
    pub dtmf: u64,
    /// Warnings raised.
    pub warnings: u64,
}

/// Something that happened on a call, from [`CallOutput::Event`].
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq)]
pub enum CallEvent {
    /// The provider's greeting (Twilio's `connected` message).
    Connected,
    /// The stream started: the call, stream and account ids, tracks, the
    /// answer document's parameters (in document order) and media format
    /// (Twilio's `start`).
    Started(StreamStart),
    /// 20 ms of the caller's audio.
    Audio(AudioFrame),
    /// The caller pressed a key.
    Dtmf {
        /// The key: `0`–`9`, `*`, `#`, or `A`–`D`.
        digit: char,
    },
    /// A mark resolved, exactly once.
    MarkDone {
        /// The mark's name.
        name: String,
        /// Played or cleared.
        outcome: MarkOutcome,
    },
    /// The caller started speaking.
    #[non_exhaustive]
    SpeechStarted {
        /// Stream time of the first frame of speech, in ms.
        at_ms: u64,
    },
    /// The caller stopped speaking.
    #[non_exhaustive]
    SpeechEnded {
        /// Stream time of the first frame after the speech, in ms.
        at_ms: u64,
        /// How long the speech lasted.
        duration: Duration,
    },
    /// The caller spoke over our audio: it was cleared.
    BargeIn,
    /// The call ended; nothing follows but perhaps [`CallOutput::Close`].
    Stopped {
        /// Why.
        reason: StopReason,
        /// Final counters.
        stats: CallStats,
    },
    /// A protocol problem; the call goes on.
    Warning(Warning),
    /// An outbound frame and when it plays (only with [`CallConfig::tap`]).
    AudioOut(AudioOut),
    /// The audio queued fell below what [`Call::notify_queue_below`] asked
    /// (once per ask): time to queue more.
    QueueLow {
        /// Milliseconds still queued.
        queued_ms: u64,
    },
}

/// A mark Twilio holds (or held): sent, its echo not yet seen.
struct SentMark {
    name: String,
    /// When its audio finishes playing, by the schedule.
    done_at: Instant,
    /// Already resolved (by a clear, or by the schedule after a lost echo):
    /// its echo is to be swallowed.
    resolved: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Phase {
    Open,
    HangingUp {
        deadline: Instant,
    },
    /// Ended: delivering the buffered audio, then `Stopped`.
    Ending(StopReason),
    Stopped,
}

/// The state machine of one media stream. See the module docs.
pub struct Call {
    config: CallConfig,
    barge_in: bool,
    now: Instant,
    phase: Phase,
    connected: bool,
    /// The provider's protocol; out only while it reads a message.
    wire: Option<Box<dyn Wire>>,
    /// The stream's id, once it started.
    stream_id: Option<String>,
    /// [`Call::notify_queue_below`]'s mark, until it is reached.
    low_water_ms: Option<u64>,
    /// Frames the stream had when the detector began to listen.
    vad_offset_frames: u64,
    started_at: Option<Instant>,
    /// Stream time of the first inbound frame.
    audio_origin_ms: Option<u64>,
    jitter: JitterBuffer,
    pacer: Pacer,
    vad: Option<Vad>,
    /// Marks sent to Twilio whose echo is still to come, in the order sent
    /// (Twilio echoes in this order), open or already resolved.
    sent_marks: VecDeque<SentMark>,
    out: VecDeque<CallOutput>,
    /// Text buffers handed back by the driver ([`Call::recycle`]), reused
    /// for the next messages out.
    spare: Vec<String>,
    stats: CallStats,
}

impl Call {
    /// The jitter buffer's and the pacer's queues, and the spare text the
    /// echo is written and framed in. See
    /// [`Connection::hot_memory`](crate::connection::Connection::hot_memory).
    pub(crate) fn hot_memory(&self, visit: crate::hot::Visit<'_>) {
        self.jitter.hot_memory(visit);
        self.pacer.hot_memory(visit);
        if let Some(text) = self.spare.last() {
            crate::hot::elements(visit, &self.spare);
            crate::hot::head(visit, text.as_ptr(), text.capacity());
        }
    }

    /// A call on Twilio's Media Streams that has seen nothing yet, at `now`.
    pub fn new(config: CallConfig, now: Instant) -> Self {
        Call::with_wire(config, Box::new(TwilioWire::new()), now)
    }

    /// A call on the provider `wire` speaks, that has seen nothing yet, at
    /// `now`.
    pub fn with_wire(config: CallConfig, wire: Box<dyn Wire>, now: Instant) -> Self {
        Call {
            barge_in: config.barge_in,
            now,
            phase: Phase::Open,
            connected: false,
            wire: Some(wire),
            stream_id: None,
            low_water_ms: None,
            vad_offset_frames: 0,
            started_at: None,
            audio_origin_ms: None,
            jitter: JitterBuffer::new(config.jitter.clone()),
            pacer: Pacer::new(config.pacer.clone()),
            vad: config.vad.map(Vad::new),
            sent_marks: VecDeque::new(),
            out: VecDeque::new(),
            spare: Vec::new(),
            stats: CallStats::default(),
            config,
        }
    }

    /// One text frame from the provider, received at `now`.
    pub fn handle_text(&mut self, now: Instant, text: &str) {
        self.handle_text_if(now, text, |_| true);
    }

    /// [`Call::handle_text`] with a look at what the message says first:
    /// when `admit` returns false the message is dropped unseen. The
    /// driver's own checks (the stream's account, say) read the one parse
    /// the call makes.
    pub fn handle_text_if(
        &mut self,
        now: Instant,
        text: &str,
        admit: impl FnOnce(&Fact<'_>) -> bool,
    ) {
        self.advance(now);
        if !self.accepts_input() {
            return;
        }
        if text.len() > self.config.max_text {
            self.warn(Warning::TooLong { len: text.len() });
            return;
        }
        let Some(mut wire) = self.wire.take() else {
            return;
        };
        // A usual payload decodes on the stack, which is warm, rather than
        // into this call's memory, which is not.
        let mut stack = [0u8; STACK_PAYLOAD];
        match wire.read(text, &mut stack) {
            Ok(fact) => {
                if admit(&fact) {
                    self.on_fact(fact);
                }
            }
            Err(warning) => self.warn(warning),
        }
        self.wire = Some(wire);
    }

    /// One fact of the stream, at `now`, from a driver that reads the
    /// provider's messages itself (or has no provider: a test, a relay).
    pub fn handle_fact(&mut self, now: Instant, fact: Fact<'_>) {
        self.advance(now);
        if self.accepts_input() {
            self.on_fact(fact);
        }
    }

    /// The socket closed (by Twilio, or after our close) at `now`.
    pub fn handle_closed(&mut self, now: Instant) {
        self.advance(now);
        self.end(StopReason::Closed);
    }

    /// The transport failed at `now` (the driver says how).
    pub fn handle_error(&mut self, now: Instant, error: &str) {
        self.advance(now);
        self.end(StopReason::Error(error.to_string()));
    }

    /// Time has passed: `now` is at or after the last deadline (earlier is harmless).
    pub fn handle_timeout(&mut self, now: Instant) {
        self.advance(now);
    }

    /// Queues 16-bit PCM at 8 kHz for Twilio. Past the queue limit the end is
    /// dropped ([`CommandError::QueueFull`]).
    pub fn play_pcm(&mut self, now: Instant, pcm: &[i16]) -> Result<(), CommandError> {
        self.advance(now);
        self.check_open()?;
        self.pacer.enqueue_pcm(pcm).map_err(queue_full)
    }

    /// Queues μ-law bytes (8 kHz) for Twilio. Past the queue limit the end is
    /// dropped ([`CommandError::QueueFull`]).
    pub fn play_ulaw(&mut self, now: Instant, ulaw: &[u8]) -> Result<(), CommandError> {
        self.advance(now);
        self.check_open()?;
        self.pacer.enqueue(ulaw).map_err(queue_full)
    }

    /// Queues a mark after the audio queued so far; it resolves exactly once
    /// as [`CallEvent::MarkDone`].
    pub fn mark(&mut self, now: Instant, name: &str) -> Result<(), CommandError> {
        self.advance(now);
        self.check_open()?;
        if name.len() > MAX_MARK_NAME {
            return Err(CommandError::MarkNameTooLong { len: name.len() });
        }
        if self.pacer.queued_marks() + self.open_at_twilio() >= self.config.pacer.max_marks {
            return Err(CommandError::TooManyMarks);
        }
        self.pacer
            .mark(name.to_string())
            .map_err(|_| CommandError::TooManyMarks)?;
        self.stats.marks += 1;
        Ok(())
    }

    /// Drops all queued audio, tells Twilio to drop what it holds, and
    /// resolves the open marks (see the module docs). A no-op once the call ended.
    pub fn clear(&mut self, now: Instant) {
        self.advance(now);
        if matches!(self.phase, Phase::Open | Phase::HangingUp { .. }) {
            self.do_clear();
        }
    }

    /// Ends the call once queued audio has played and marks are echoed, or
    /// after [`CallConfig::hangup_timeout`]: `Stopped { reason: Hangup }`,
    /// then `Close { code: 1000 }`. Play and mark are refused from now on.
    pub fn hangup(&mut self, now: Instant) {
        self.advance(now);
        if self.phase == Phase::Open {
            let deadline = now.checked_add(self.config.hangup_timeout).unwrap_or(now);
            self.phase = Phase::HangingUp { deadline };
        }
    }

    /// Emits [`CallEvent::QueueLow`] once, when the audio queued falls below
    /// `ms` (at once if it is already below): a driver that feeds the call
    /// from a queue of its own tops it up then, whatever else happens on
    /// the call. A later ask replaces an earlier one.
    pub fn notify_queue_below(&mut self, ms: u64) {
        self.low_water_ms = Some(ms);
        self.check_low_water();
    }

    fn check_low_water(&mut self) {
        if let Some(ms) = self.low_water_ms {
            let queued_ms = self.queued_ms();
            if queued_ms < ms {
                self.low_water_ms = None;
                self.emit(CallEvent::QueueLow { queued_ms });
            }
        }
    }

    /// Listens with the voice activity detector `config` from now on
    /// (`None`: no detection, so no speech events and no barge-in). A
    /// detector that listens already is retuned in place ([`Vad::retune`]):
    /// the noise it learnt and a turn under way carry over.
    pub fn set_vad(&mut self, config: Option<VadConfig>) {
        match (config, self.vad.as_mut()) {
            (Some(config), Some(vad)) => vad.retune(config),
            (Some(config), None) => {
                // Its frames count from now: its events are dated from here.
                self.vad_offset_frames = self.stats.frames_in;
                self.vad = Some(Vad::new(config));
            }
            (None, _) => self.vad = None,
        }
    }

    /// The detector's tuning, when one listens.
    pub fn vad_config(&self) -> Option<&VadConfig> {
        self.vad.as_ref().map(Vad::config)
    }

    /// The earliest stream time (ms, as frames' `timestamp_ms`) the current
    /// turn's [`CallEvent::SpeechStarted`] names, or one not yet reported
    /// could ([`Vad::earliest_start_frame`]): audio kept from there holds
    /// the start of the turn. `None` with nothing pending or no detector.
    pub fn earliest_speech_start_ms(&self) -> Option<u64> {
        let frame = self.vad.as_ref()?.earliest_start_frame()?;
        let origin = self.audio_origin_ms?;
        Some(
            origin.saturating_add(
                frame
                    .saturating_add(self.vad_offset_frames)
                    .saturating_mul(FRAME_MS),
            ),
        )
    }

    /// Turns barge-in on or off from now on.
    pub fn set_barge_in(&mut self, on: bool) {
        self.barge_in = on;
    }

    /// Whether barge-in is on.
    pub fn barge_in(&self) -> bool {
        self.barge_in
    }

    /// The next thing to do. Drain until [`CallOutput::Timeout`].
    #[must_use]
    pub fn poll_output(&mut self) -> CallOutput {
        loop {
            if let Some(o) = self.out.pop_front() {
                return o;
            }
            // An audio frame, the common case, skips the queue.
            if let Some(frame) = self.next_frame() {
                return frame;
            }
            // So does a frame to Twilio: one `CallOutput` is some 340 bytes,
            // and a trip through the queue writes and reads them again.
            match self.pump() {
                Pumped::Out(o) => return o,
                Pumped::Queued => {}
                Pumped::Idle => return CallOutput::Timeout(self.deadline()),
            }
        }
    }

    /// Hands back the text of a [`CallOutput::Send`] once it is written, so
    /// that the next message reuses its buffer: a driver that does so sends
    /// media without an allocation per frame. Optional.
    pub fn recycle(&mut self, text: String) {
        if self.spare.len() < 4 {
            self.spare.push(text);
        }
    }

    /// Counters so far.
    pub fn stats(&self) -> &CallStats {
        &self.stats
    }

    /// Milliseconds of our audio Twilio has played by the last time given,
    /// by the schedule (never decreases; stops at a clear).
    pub fn played_ms(&self) -> u64 {
        self.stats.played_ms
    }

    /// Milliseconds of audio queued, not yet sent.
    pub fn queued_ms(&self) -> u64 {
        self.pacer.queued_bytes() as u64 * 1000 / u64::from(codec::SAMPLE_RATE)
    }

    /// Whether our audio is queued or, by the schedule, still playing.
    pub fn is_playing(&self) -> bool {
        self.pacer.is_playing(self.now)
    }

    /// The stream's id, once it started (Twilio: its `streamSid`).
    pub fn stream_id(&self) -> Option<&str> {
        self.stream_id.as_deref()
    }

    /// The latest time given.
    pub fn now(&self) -> Instant {
        self.now
    }

    /// Whether the call has ended (`Stopped` was or is about to be emitted).
    pub fn is_ended(&self) -> bool {
        matches!(self.phase, Phase::Ending(_) | Phase::Stopped)
    }

    /// The tuning in use.
    pub fn config(&self) -> &CallConfig {
        &self.config
    }

    fn advance(&mut self, now: Instant) {
        // Time never runs backwards, whatever the driver passes.
        if now > self.now {
            self.now = now;
        }
        self.refresh_played();
    }

    fn refresh_played(&mut self) {
        let played = self.pacer.played_ms(self.now);
        if played > self.stats.played_ms {
            self.stats.played_ms = played;
        }
    }

    fn accepts_input(&self) -> bool {
        matches!(self.phase, Phase::Open | Phase::HangingUp { .. })
    }

    fn check_open(&self) -> Result<(), CommandError> {
        match self.phase {
            Phase::Open => Ok(()),
            _ => Err(CommandError::Ended),
        }
    }

    fn emit(&mut self, event: CallEvent) {
        self.out.push_back(CallOutput::Event(event));
    }

    fn warn(&mut self, warning: Warning) {
        self.stats.warnings += 1;
        self.emit(CallEvent::Warning(warning));
    }

    fn on_fact(&mut self, fact: Fact<'_>) {
        match fact {
            Fact::Connected => {
                if self.connected {
                    self.warn(Warning::DuplicateConnected);
                } else {
                    self.connected = true;
                    self.emit(CallEvent::Connected);
                }
            }
            Fact::Start(start) => {
                if self.stream_id.is_some() {
                    self.warn(Warning::DuplicateStart);
                } else {
                    // The machine hears 8 kHz μ-law mono; anything else would
                    // be decoded as such anyway, so say so once.
                    let f = &start.format;
                    if !f.is_ulaw_8k_mono() {
                        let format =
                            format!("{} {} Hz × {}", f.encoding, f.sample_rate, f.channels);
                        self.warn(Warning::UnsupportedFormat { format });
                    }
                    self.stream_id = Some(start.stream_id.clone());
                    self.started_at = Some(self.now);
                    self.emit(CallEvent::Started(start));
                }
            }
            // Facts of the stream before it started: a wire refuses them,
            // and so does the machine for a driver without one.
            Fact::Audio { .. } | Fact::Dtmf(_) | Fact::Mark(_) | Fact::Stop | Fact::OtherTrack
                if self.stream_id.is_none() =>
            {
                self.warn(Warning::BeforeStart);
            }
            Fact::Audio {
                chunk,
                timestamp_ms,
                ulaw,
            } => {
                let _ = self
                    .jitter
                    .handle_receive(self.now, chunk, timestamp_ms, ulaw);
                self.sync_jitter_stats();
            }
            Fact::OtherTrack => {}
            Fact::Dtmf(digit) => {
                self.stats.dtmf += 1;
                self.emit(CallEvent::Dtmf { digit });
            }
            Fact::Mark(name) => self.on_mark_echo(name),
            Fact::Stop => self.end(StopReason::Stop),
        }
    }

    /// Matches an echo to a mark by the order marks were sent, not by name
    /// alone (Twilio echoes every mark it was sent, cleared ones included,
    /// in the order sent; see `docs/protocol.md §2`).
    ///
    /// 1. The echo is of the first mark still owed an echo that bears its
    ///    name: marks sent before that one lost their echo, and the audio
    ///    before them played, so open ones resolve `Played`. One a clear
    ///    resolved was reported then: its echo is swallowed.
    /// 2. A lost echo makes rule 1 one mark behind for that name (the echo
    ///    of a later mark is taken for the lost one's). So the open marks of
    ///    this name whose audio has played by the schedule (which runs late,
    ///    never early: every late echo moves it back) resolve `Played` too,
    ///    with every open mark sent before them; they stay owed, so their own
    ///    echo, if it still comes, is swallowed by rule 1. A reused name thus
    ///    never leaves a mark waiting for an echo that already came.
    fn on_mark_echo(&mut self, name: String) {
        let now = self.now;
        let Some(first) = self.sent_marks.iter().position(|m| m.name == name) else {
            self.warn(Warning::UnknownMark { name });
            return;
        };
        let owed: Vec<SentMark> = self.sent_marks.drain(..=first).collect();
        let played = self
            .sent_marks
            .iter()
            .rposition(|m| !m.resolved && m.name == name && m.done_at <= now);
        // Twilio's progress, from the latest mark this echo may be: the one
        // rule 2 found, else rule 1's (earlier marks lost theirs).
        let confirmed = match played.and_then(|k| self.sent_marks.get(k)) {
            Some(m) => Some(m.done_at),
            None => owed.last().filter(|m| !m.resolved).map(|m| m.done_at),
        };
        if let Some(done_at) = confirmed {
            self.confirm(done_at);
        }
        for m in owed.into_iter().filter(|m| !m.resolved) {
            self.resolve(m.name, MarkOutcome::Played);
        }
        let mut done = Vec::new();
        if let Some(k) = played {
            for m in self
                .sent_marks
                .iter_mut()
                .take(k + 1)
                .filter(|m| !m.resolved)
            {
                m.resolved = true;
                done.push(m.name.clone());
            }
        }
        for name in done {
            self.resolve(name, MarkOutcome::Played);
        }
        self.trim_owed();
    }

    /// Tells the pacer Twilio has played what the schedule expected to end at
    /// `done_at`, and moves the open marks' expected ends with the schedule,
    /// so a later echo is measured against the schedule as it now stands, not
    /// counted late a second time.
    fn confirm(&mut self, done_at: Instant) {
        let before = self.pacer.end();
        self.pacer.confirm(self.now, done_at);
        if let (Some(before), Some(after)) = (before, self.pacer.end())
            && after > before
        {
            let shift = after - before;
            for m in self.sent_marks.iter_mut().filter(|m| !m.resolved) {
                m.done_at = m.done_at.checked_add(shift).unwrap_or(m.done_at);
            }
        }
    }

    /// Bounds the marks kept only to swallow their echo, like the marks
    /// themselves: the oldest are forgotten (their echo, if it comes, is a
    /// warning).
    fn trim_owed(&mut self) {
        let mut resolved = self.sent_marks.iter().filter(|m| m.resolved).count();
        while resolved > self.config.pacer.max_marks {
            match self.sent_marks.iter().position(|m| m.resolved) {
                Some(i) => {
                    self.sent_marks.remove(i);
                    resolved -= 1;
                }
                None => break,
            }
        }
    }

    /// Marks at Twilio not yet resolved.
    fn open_at_twilio(&self) -> usize {
        self.sent_marks.iter().filter(|m| !m.resolved).count()
    }

    fn resolve(&mut self, name: String, outcome: MarkOutcome) {
        match outcome {
            MarkOutcome::Played => self.stats.marks_played += 1,
            MarkOutcome::Cleared => self.stats.marks_cleared += 1,
        }
        self.emit(CallEvent::MarkDone { name, outcome });
    }

    /// Resolves every open mark: those at Twilio by the schedule (they stay
    /// in `sent_marks`, marked resolved, until Twilio echoes them), those
    /// queued as cleared.
    fn resolve_open_marks(&mut self) {
        let now = self.now;
        let mut done = Vec::new();
        for m in self.sent_marks.iter_mut().filter(|m| !m.resolved) {
            m.resolved = true;
            let outcome = if m.done_at <= now {
                MarkOutcome::Played
            } else {
                MarkOutcome::Cleared
            };
            done.push((m.name.clone(), outcome));
        }
        for (name, outcome) in done {
            self.resolve(name, outcome);
        }
        for name in self.pacer.clear(now) {
            self.resolve(name, MarkOutcome::Cleared);
        }
    }

    fn do_clear(&mut self) {
        self.refresh_played();
        self.resolve_open_marks();
        self.trim_owed();
        if self.stream_id.is_some() {
            self.send(Message::Clear);
        }
        self.stats.clears += 1;
    }

    fn end(&mut self, reason: StopReason) {
        if matches!(self.phase, Phase::Open | Phase::HangingUp { .. }) {
            self.jitter.flush();
            self.phase = Phase::Ending(reason);
        }
    }

    /// Produces the next piece of output, if any is due at `self.now`.
    /// The next inbound frame due, as an event; the events it settles
    /// (speech, barge-in) are queued behind it.
    fn next_frame(&mut self) -> Option<CallOutput> {
        if self.phase == Phase::Stopped {
            return None;
        }
        let frame = self.jitter.poll_frame(self.now)?;
        Some(CallOutput::Event(self.on_frame(frame)))
    }

    /// Produces output other than inbound frames, if any is due at `self.now`.
    fn pump(&mut self) -> Pumped {
        if self.phase == Phase::Stopped {
            return Pumped::Idle;
        }
        if let Phase::Ending(_) = self.phase {
            self.finish();
            return Pumped::Queued;
        }
        if let (Some(_), Some(wire)) = (&self.stream_id, &self.wire) {
            // The message is written from the pacer's own bytes: no copy of
            // them in this call's memory first.
            let (spare, tap) = (&mut self.spare, self.config.tap);
            let next = self.pacer.poll_transmit_with(self.now, |ulaw| {
                let media = Message::Media(ulaw);
                let mut text = spare_text(spare, wire.size_hint(media));
                wire.write(media, &mut text);
                let tapped = tap.then(|| ulaw.iter().map(|&b| codec::decode(b)).collect());
                (text, tapped)
            });
            if let Some((o, media)) = next {
                return Pumped::Out(self.on_outgoing(o, media));
            }
        }
        if let Phase::HangingUp { deadline } = self.phase
            && (self.now >= deadline || self.drained())
        {
            self.end(StopReason::Hangup);
            return Pumped::Queued;
        }
        Pumped::Idle
    }

    fn drained(&self) -> bool {
        self.pacer.queued_bytes() == 0
            && self.pacer.queued_marks() == 0
            && self.open_at_twilio() == 0
            && !self.pacer.is_playing(self.now)
    }

    fn on_frame(&mut self, frame: AudioFrame) -> CallEvent {
        self.sync_jitter_stats();
        self.stats.frames_in += 1;
        let origin = *self.audio_origin_ms.get_or_insert(frame.timestamp_ms);
        // Concealed frames are fed too, so the detector's frame count is the
        // stream's and its events map to stream time.
        let vad = self
            .vad
            .as_mut()
            .and_then(|v| v.handle_frame(&frame.samples));
        let offset = self.vad_offset_frames;
        let at_ms = |at_frame: u64| {
            origin.saturating_add(at_frame.saturating_add(offset).saturating_mul(FRAME_MS))
        };
        match vad {
            Some(VadEvent::SpeechStarted { at_frame }) => {
                self.emit(CallEvent::SpeechStarted {
                    at_ms: at_ms(at_frame),
                });
                if self.barge_in && self.pacer.is_playing(self.now) {
                    self.stats.barge_ins += 1;
                    self.emit(CallEvent::BargeIn);
                    self.do_clear();
                }
            }
            Some(VadEvent::SpeechEnded { at_frame, duration }) => {
                self.emit(CallEvent::SpeechEnded {
                    at_ms: at_ms(at_frame),
                    duration,
                });
            }
            _ => {}
        }
        CallEvent::Audio(frame)
    }

    /// The message for `o` (for media, its text and the tap's samples, made
    /// already); what follows it (the tap's copy) is queued.
    fn on_outgoing(
        &mut self,
        o: Outgoing,
        media: Option<(String, Option<Vec<i16>>)>,
    ) -> CallOutput {
        match o {
            Outgoing::Media { play_at } => {
                let (text, tapped) = media.unwrap_or_default();
                self.stats.frames_sent += 1;
                self.check_low_water();
                if let Some(samples) = tapped {
                    let play_at_ms = self.started_at.map_or(0, |s| {
                        play_at.saturating_duration_since(s).as_millis() as u64
                    });
                    self.emit(CallEvent::AudioOut(AudioOut {
                        play_at_ms,
                        samples,
                    }));
                }
                CallOutput::Send(text)
            }
            Outgoing::Mark { name, done_at } => {
                let text = self.written(Message::Mark(&name));
                self.sent_marks.push_back(SentMark {
                    name,
                    done_at,
                    resolved: false,
                });
                CallOutput::Send(text)
            }
        }
    }

    /// `message` in the provider's words, in a spare text buffer.
    fn written(&mut self, message: Message<'_>) -> String {
        let Some(wire) = &self.wire else {
            return String::new();
        };
        let mut text = spare_text(&mut self.spare, wire.size_hint(message));
        wire.write(message, &mut text);
        text
    }

    /// Queues `message` for the provider.
    fn send(&mut self, message: Message<'_>) {
        let text = self.written(message);
        self.out.push_back(CallOutput::Send(text));
    }

    fn finish(&mut self) {
        let Phase::Ending(reason) = std::mem::replace(&mut self.phase, Phase::Stopped) else {
            return;
        };
        self.refresh_played();
        self.resolve_open_marks();
        self.sent_marks.clear();
        self.sync_jitter_stats();
        let close = matches!(reason, StopReason::Stop | StopReason::Hangup);
        let reason_text = match reason {
            StopReason::Hangup => "hangup",
            _ => "stream stopped",
        };
        let stats = self.stats;
        self.emit(CallEvent::Stopped { reason, stats });
        if close {
            self.out.push_back(CallOutput::Close {
                code: NORMAL_CLOSURE,
                reason: reason_text.to_string(),
            });
        }
    }

    fn deadline(&self) -> Instant {
        let mut next: Option<Instant> = self.jitter.poll_timeout();
        let mut consider = |t: Option<Instant>| {
            if let Some(t) = t {
                next = Some(next.map_or(t, |n| n.min(t)));
            }
        };
        if self.stream_id.is_some() {
            consider(self.pacer.poll_timeout());
        }
        if let Phase::HangingUp { deadline } = self.phase {
            consider(Some(deadline));
            if self.pacer.is_playing(self.now) {
                consider(self.pacer.end());
            }
        }
        next.unwrap_or_else(|| self.now.checked_add(IDLE).unwrap_or(self.now))
    }

    fn sync_jitter_stats(&mut self) {
        let j = self.jitter.stats();
        self.stats.received = j.received;
        self.stats.reordered = j.reordered;
        self.stats.duplicate = j.duplicate;
        self.stats.late = j.late;
        self.stats.concealed = j.concealed;
    }
}

fn queue_full(e: crate::pacer::QueueFull) -> CommandError {
    CommandError::QueueFull {
        dropped_ms: e.dropped as u64 * 1000 / u64::from(codec::SAMPLE_RATE),
    }
}
