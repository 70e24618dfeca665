//! A call's link to its program, shared by the pump thread (the handler) and
//! the transport's threads: what each program message does to the call
//! (applied through the session's `RemoteControl`, which wakes the
//! connection), how outbound messages are written, and what a failure does.
use std::collections::VecDeque;
use std::io::Read as _;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use callstream_core::handler::{Control, RemoteControl, RemoteError};

use super::after::{After, Goodbye, Next, Transfer};
use super::outbox::{Outbound, Outbox};
use super::protocol::{self, FromProgram, LineError, ToProgram};
use super::{OnFailure, metrics};
use callstream_core::resample::{self, Resampler};

/// The call's audio rate.
const CALL_RATE: u32 = 8000;
/// Audio kept in one piece of the link's queue (1 s).
const PLAY_CHUNK: usize = 8000;
/// Audio the pump keeps queued in the call ahead of what plays; the rest
/// waits in the link's queue, in order with the marks.
const FEED_AHEAD_MS: u64 = 1000;
/// Audio the program may have waiting in the link's queue (2 minutes at
/// 8 kHz, 1.9 MB); a `play` past it is refused with an `error`.
pub const MAX_PENDING_MS: u64 = 120_000;
/// Pieces (audio chunks, marks, clears) that may wait in the link's queue:
/// a program that writes marks in a loop is refused past it.
pub const MAX_PENDING_ITEMS: usize = 1024;
/// Below this much queued audio, with nothing more waiting, the call is
/// about to fall silent: the tail of the resampled stream goes out.
const DRY_MS: u64 = 40;
/// How often a thread that must not lose a clear or hangup looks again for
/// room in the call's command queue.
const PLAY_POLL: Duration = Duration::from_millis(10);
/// Longest WAV file `play` reads (the same as a `play` line).
pub const MAX_WAV_BYTES: u64 = 16 * 1024 * 1024;
/// Longest text from a program put in one log line, in characters.
const MAX_LOGGED: usize = 2000;

/// The stderr lines kept for the report of a crash.
pub const STDERR_TAIL: usize = 5;

/// Rate pairs whose converter (its table of weights) a call keeps.
const KEPT_CONVERTERS: usize = 4;

/// Cuts program text for the log (at [`MAX_LOGGED`] characters).
pub fn cut(s: &str) -> String {
    callstream_core::excerpt::cut(s, MAX_LOGGED).into_owned()
}

/// Audio and marks from the program, in its order, waiting for the call:
/// the pump moves them into the call ([`Link::feed`]) while less than
/// [`FEED_AHEAD_MS`] is queued there, so no line the program writes waits
/// behind its audio.
#[derive(Default)]
struct Pending {
    items: VecDeque<Item>,
    /// 8 kHz samples waiting.
    samples: usize,
    /// Audio came since the program's last mark.
    since_mark: bool,
    /// A barge-in cut that audio: the mark that follows it, with no audio
    /// in between, marks audio the caller did not hear.
    cut: bool,
}

enum Item {
    /// 8 kHz samples, how many of them went to the call already, and for
    /// the first chunk of a `play`, when the line was read.
    Audio(Vec<i16>, usize, Option<Instant>),
    Mark(String),
    /// A mark after audio a barge-in cut: it resolves `cleared`, as the
    /// marks the barge-in took did.
    Cut(String),
    /// The program's clear: the call drops what it holds. What waited here
    /// before it is gone already; these are its marks, which resolve
    /// `cleared`.
    Clear(Vec<String>),
}

/// The program's `play`s at one rate, converted as one stream: chunks of
/// any size join without a seam, and no sample is lost.
#[derive(Default)]
struct PlayStream {
    resampler: Option<Resampler>,
    /// The clear generation the stream belongs to: after a clear, what the
    /// resampler holds is of the reply that was cut.
    generation: u64,
}

impl PlayStream {
    /// Ends the stream: the samples its resampler still holds, appended to
    /// `out` (none when no resampler runs).
    fn finish_into(&mut self, out: &mut Vec<i16>) {
        if let Some(mut r) = self.resampler.take() {
            r.flush_i16(out);
        }
    }
}

/// The link.
pub struct Link {
    /// The call, for every log line.
    pub call_sid: String,
    /// Messages to the program.
    pub outbox: Outbox,
    remote: RemoteControl,
    on_failure: OnFailure,
    after: Arc<After>,
    /// The rate the program asked for (`config`).
    rate: AtomicU32,
    /// Whether it asked for raw audio.
    pub audio: AtomicBool,
    /// Whether it wants whole turns (`utterance`).
    pub utterances: AtomicBool,
    /// Turn-taking it asked for, until the pump applies it.
    turn: Mutex<Option<protocol::Turn>>,
    /// The caller's raw audio on its way to the program, converted as one
    /// stream (frame after frame without a seam at their edges), at the
    /// rate it was made for.
    to_program: Mutex<Option<Resampler>>,
    /// Converters for whole utterances, kept so that their tables are made
    /// once per call and rate pair, newest last.
    converters: Mutex<Vec<Resampler>>,
    /// The program's audio on its way to the call (lock it before
    /// `pending`).
    play_stream: Mutex<PlayStream>,
    /// What waits for the call, in the program's order.
    pending: Mutex<Pending>,
    /// Whether a line has been read (config is only taken first).
    first_seen: AtomicBool,
    /// The protocol version the program speaks (it may say in `config`).
    version: AtomicU32,
    /// Bumped at every clear of the call's audio (a barge-in, the program's
    /// `clear`, a failure or the end): what the play stream holds from
    /// before it is dropped.
    clear_generation: AtomicU64,
    /// The call's clears the pump has seen ([`Control::clears`]).
    clears_seen: AtomicU64,
    /// A clear or hangup that found the call's command queue full (1024
    /// commands: a program can fill it with marks) from a thread that must
    /// not wait: the handler applies it at its next event.
    clear_wanted: AtomicBool,
    hangup_wanted: AtomicBool,
    /// The program asked to end the call (hangup, transfer, end).
    finished: AtomicBool,
    /// The call has ended.
    stopped: AtomicBool,
    /// The bridge failed.
    failed: AtomicBool,
    /// Whether `play` may name a file (exec: the program is local; a ws
    /// service is not, and must not read the server's files).
    wav_allowed: bool,
    /// Kinds of bad lines already logged.
    warned: Mutex<Vec<&'static str>>,
    /// The last lines the program wrote to stderr.
    pub stderr_tail: Mutex<std::collections::VecDeque<String>>,
}

impl Link {
    /// A link for the call `call_sid`, commanding it through `remote`.
    pub fn new(
        call_sid: String,
        remote: RemoteControl,
        on_failure: OnFailure,
        after: Arc<After>,
    ) -> Link {
        Link {
            call_sid,
            outbox: Outbox::default(),
            remote,
            on_failure,
            after,
            rate: AtomicU32::new(protocol::DEFAULT_RATE),
            audio: AtomicBool::new(false),
            utterances: AtomicBool::new(true),
            turn: Mutex::new(None),
            to_program: Mutex::new(None),
            converters: Mutex::new(Vec::new()),
            play_stream: Mutex::default(),
            pending: Mutex::default(),
            first_seen: AtomicBool::new(false),
            version: AtomicU32::new(protocol::VERSION),
            clear_generation: AtomicU64::new(0),
            clears_seen: AtomicU64::new(0),
            clear_wanted: AtomicBool::new(false),
            hangup_wanted: AtomicBool::new(false),
            finished: AtomicBool::new(false),
            stopped: AtomicBool::new(false),
            failed: AtomicBool::new(false),
            wav_allowed: true,
            warned: Mutex::new(Vec::new()),
            stderr_tail: Mutex::new(std::collections::VecDeque::new()),
        }
    }

    /// The link with `play` by `wav` allowed or refused.
    #[must_use]
    pub fn with_wav(mut self, allowed: bool) -> Link {
        self.wav_allowed = allowed;
        self
    }

    /// The program's rate for utterances and raw audio.
    pub fn rate(&self) -> u32 {
        self.rate.load(Ordering::Relaxed)
    }

    /// The call's audio is cleared: what waits for the call is dropped, and
    /// the play stream starts again. Returns the names of the marks dropped,
    /// in order: they resolve `cleared`.
    pub fn cleared(&self) -> Vec<String> {
        let mut p = self.pending();
        self.clear_generation.fetch_add(1, Ordering::AcqRel);
        if std::mem::take(&mut p.since_mark) {
            p.cut = true;
        }
        Self::drain(&mut p)
    }

    /// Empties `p`; the names of the marks it held.
    fn drain(p: &mut Pending) -> Vec<String> {
        p.samples = 0;
        let mut names = Vec::new();
        for item in p.items.drain(..) {
            match item {
                Item::Mark(name) | Item::Cut(name) => names.push(name),
                Item::Clear(marks) => names.extend(marks),
                Item::Audio(..) => {}
            }
        }
        names
    }

    fn pending(&self) -> MutexGuard<'_, Pending> {
        // Every change is whole under the lock: a panic elsewhere left it so.
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn play_stream(&self) -> MutexGuard<'_, PlayStream> {
        self.play_stream.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Moves what waits into the call while less than [`FEED_AHEAD_MS`] is
    /// queued there, audio and marks in the program's order (pump thread, at
    /// every event and wake). When the call is about to fall silent with
    /// nothing more waiting, the tail the play stream's resampler holds goes
    /// out too.
    ///
    /// When the call was cleared since the last feed (a barge-in, the
    /// program's clear), what waits was of the reply that was cut: it is
    /// dropped, and the names of its marks returned (they resolve
    /// `cleared`).
    pub fn feed(&self, control: &mut Control<'_>) -> Vec<String> {
        if self.expects_end() {
            // The call is ending: nothing more goes into it, and `stop` is
            // the program's last message (queued marks do not resolve).
            let mut p = self.pending();
            p.items.clear();
            p.samples = 0;
            return Vec::new();
        }
        self.apply_turn(control);
        let clears = control.clears();
        let mut dropped = if self.clears_seen.swap(clears, Ordering::AcqRel) == clears {
            Vec::new()
        } else {
            self.cleared()
        };
        self.feed_pending(control, &mut dropped);
        dropped
    }

    /// The program's turn-taking, once (pump thread): barge-in on or off,
    /// the detector's sensitivity, end-of-turn silence and least speech.
    fn apply_turn(&self, control: &mut Control<'_>) {
        let Some(turn) = self.turn.try_lock().ok().and_then(|mut t| t.take()) else {
            return;
        };
        if let Some(on) = turn.barge_in {
            control.set_barge_in(on);
        }
        if turn.end_of_turn_ms.is_some()
            || turn.min_speech_ms.is_some()
            || turn.sensitivity.is_some()
        {
            let mut vad = control.vad_config().cloned().unwrap_or_default();
            if let Some(s) = turn.sensitivity {
                vad = vad.with_sensitivity(s);
            }
            if let Some(ms) = turn.end_of_turn_ms {
                vad.hangover_ms = ms;
            }
            if let Some(ms) = turn.min_speech_ms {
                vad.min_speech_ms = ms;
            }
            control.set_vad(Some(vad));
        }
    }

    fn feed_pending(&self, control: &mut Control<'_>, dropped: &mut Vec<String>) {
        let mut p = self.pending();
        while let Some(item) = p.items.front_mut() {
            match item {
                Item::Clear(marks) => {
                    dropped.append(marks);
                    p.items.pop_front();
                    control.clear();
                    self.clears_seen.store(control.clears(), Ordering::Release);
                }
                Item::Mark(name) => {
                    let name = std::mem::take(name);
                    p.items.pop_front();
                    if let Err(e) = control.mark(&name) {
                        self.refused_on_pump("mark", &e.to_string());
                    }
                }
                Item::Cut(name) => {
                    dropped.push(std::mem::take(name));
                    p.items.pop_front();
                }
                Item::Audio(pcm, sent, read_at) => {
                    let queued = control.queued_ms();
                    if queued >= FEED_AHEAD_MS {
                        // Woken to top it up, whatever else the call does.
                        control.notify_queue_below(FEED_AHEAD_MS / 2);
                        return;
                    }
                    let room = ((FEED_AHEAD_MS - queued) * u64::from(CALL_RATE) / 1000) as usize;
                    let n = room.clamp(160, PLAY_CHUNK).min(pcm.len() - *sent);
                    if let Err(e) = control.play_pcm(&pcm[*sent..*sent + n]) {
                        self.refused_on_pump("play", &e.to_string());
                    }
                    if let Some(at) = read_at.take().filter(|_| queued == 0) {
                        metrics::PLAY_LATENCY.observe(at.elapsed());
                    }
                    *sent += n;
                    if *sent == pcm.len() {
                        p.items.pop_front();
                    }
                    p.samples = p.samples.saturating_sub(n);
                }
            }
        }
        drop(p);
        // Not while the reading thread converts: it is about to queue more.
        // (The stream before the queue: the reader's order.)
        let Ok(mut stream) = self.play_stream.try_lock() else {
            return;
        };
        self.fresh_stream(&mut stream);
        if stream.resampler.is_none() || !self.pending().items.is_empty() {
            return;
        }
        if control.queued_ms() >= DRY_MS {
            control.notify_queue_below(DRY_MS);
        } else {
            let mut tail = Vec::new();
            stream.finish_into(&mut tail);
            let _ = control.play_pcm(&tail);
        }
    }

    /// The call has ended (pump thread): the program's exit is expected now.
    pub fn stopped(&self, reason: String) {
        self.stopped.store(true, Ordering::Release);
        self.outbox.close_with_stop(reason);
    }

    /// Whether the program ended the call itself (hangup, transfer, end).
    pub fn is_finished(&self) -> bool {
        self.finished.load(Ordering::Acquire)
    }

    /// Whether the program's exit or disconnection is expected now.
    pub fn expects_end(&self) -> bool {
        self.is_finished()
            || self.stopped.load(Ordering::Acquire)
            || self.failed.load(Ordering::Acquire)
    }

    /// The bridge failed: logged with the call SID, counted, and the call
    /// goes on in silence or ends, as configured. Once per call; nothing
    /// after the call ended or the program ended it is a failure. For the
    /// transport's threads: waits for room in the call's command queue.
    pub fn fail(&self, why: &str) {
        self.fail_with(why, true);
    }

    /// [`Link::fail`] on the pump thread, which never waits: what does not
    /// fit in the call's command queue is applied by the handler
    /// ([`Link::apply_pending`]) once it has handled the event.
    pub fn fail_on_pump(&self, why: &str) {
        self.fail_with(why, false);
    }

    fn fail_with(&self, why: &str, wait: bool) {
        if self.stopped.load(Ordering::Acquire) || self.is_finished() {
            return;
        }
        if self.failed.swap(true, Ordering::AcqRel) {
            return;
        }
        metrics::FAILURES.fetch_add(1, Ordering::Relaxed);
        let tail: Vec<String> = self
            .stderr_tail
            .lock()
            .map(|t| t.iter().cloned().collect())
            .unwrap_or_default();
        let then = match self.on_failure {
            OnFailure::Hangup => "ending the call",
            OnFailure::Continue => "the call goes on in silence",
        };
        tracing::error!(call_sid = %self.call_sid, reason = %why, stderr_tail = %tail.join(" | "), then, "BRIDGE_FAILED");
        self.outbox.abandon();
        self.clear_call(wait);
        if self.on_failure == OnFailure::Hangup {
            self.hangup_call(wait);
        }
    }

    /// Clears the call's audio. Never lost: with the call's command queue
    /// full, waits for room (`wait`) or leaves it to the handler.
    fn clear_call(&self, wait: bool) {
        // Ending: the queue is dropped; its marks do not resolve (`stop` is
        // the program's last message).
        let _ = self.cleared();
        if !self.deliver(RemoteControl::clear, wait) {
            self.clear_wanted.store(true, Ordering::Release);
        }
    }

    /// Ends the call, the same way.
    fn hangup_call(&self, wait: bool) {
        if !self.deliver(RemoteControl::hangup, wait) {
            self.hangup_wanted.store(true, Ordering::Release);
        }
    }

    /// Sends a command; `false` when the queue was full and `wait` is not
    /// set. The session empties the queue at every wake, so room comes soon;
    /// an ended call needs nothing more.
    fn deliver(&self, send: fn(&RemoteControl) -> Result<(), RemoteError>, wait: bool) -> bool {
        loop {
            match send(&self.remote) {
                Err(RemoteError::Full) if !wait => return false,
                Err(RemoteError::Full) if !self.stopped.load(Ordering::Acquire) => {
                    std::thread::sleep(PLAY_POLL);
                }
                _ => return true,
            }
        }
    }

    /// Applies a clear or hangup that found the command queue full (pump
    /// thread, after every event).
    pub fn apply_pending(&self, control: &mut Control<'_>) {
        if self.clear_wanted.swap(false, Ordering::AcqRel) {
            control.clear();
        }
        if self.hangup_wanted.swap(false, Ordering::AcqRel) {
            control.hangup();
        }
    }

    /// The program is gone (exited, closed its output, disconnected): a
    /// failure unless the call ended or the program ended it.
    pub fn gone(&self, how: &str) {
        if !self.expects_end() {
            self.fail(&format!("program gone before the call ended: {how}"));
        }
    }

    /// A line the program sent that could not be used: logged once per kind
    /// of problem per call, counted always, and answered with an `error`
    /// naming the line's type (`of`) and why.
    pub fn garbage(&self, kind: &'static str, detail: &str) {
        self.refuse(None, kind, detail);
    }

    fn refuse(&self, of: Option<&str>, kind: &'static str, detail: &str) {
        metrics::BAD_LINES.fetch_add(1, Ordering::Relaxed);
        if self.warn_once(kind) {
            tracing::warn!(call_sid = %self.call_sid, kind, of = of.unwrap_or("-"), detail = %cut(detail), "BRIDGE_BAD_LINE dropped (further lines of this kind are counted, not logged)");
        }
        self.tell_error(of, &format!("{kind}: {detail}"));
    }

    /// Whether `kind` is new for this call (then it is remembered).
    fn warn_once(&self, kind: &'static str) -> bool {
        let mut w = self.warned.lock().unwrap_or_else(|p| p.into_inner());
        if w.contains(&kind) || w.len() >= 64 {
            return false;
        }
        w.push(kind);
        true
    }

    /// An `error` to a program that speaks version 2.
    fn tell_error(&self, of: Option<&str>, reason: &str) {
        if self.version.load(Ordering::Relaxed) < 2 {
            return;
        }
        let reason = callstream_core::excerpt::cut(reason, 200);
        let line = ToProgram::Error {
            of,
            reason: &reason,
        }
        .to_line();
        // Best effort: a program that does not read its errors loses them,
        // never the call.
        let _ = self
            .outbox
            .push_best_effort(super::outbox::Outbound::Line(line));
    }

    /// A command the pump could not apply (the call's queue is full, a mark
    /// over its limit): the program hears of it.
    fn refused_on_pump(&self, of: &'static str, why: &str) {
        self.refuse(Some(of), "command refused", why);
    }

    /// One line (or text frame) from the program. Never waits on the call:
    /// audio and marks go to the link's queue, which the pump empties into
    /// the call; a clear, hangup, transfer or end acts at once.
    pub fn handle_line(&self, line: &[u8]) {
        if line.iter().all(u8::is_ascii_whitespace) {
            return;
        }
        let read_at = Instant::now();
        let first = !self.first_seen.swap(true, Ordering::AcqRel);
        match protocol::parse_with_fields(line) {
            Ok((msg, unknown)) => {
                if !unknown.is_empty() && self.warn_once("unknown field") {
                    tracing::warn!(call_sid = %self.call_sid, fields = %unknown.join(","), "BRIDGE unknown fields ignored (logged once per call)");
                }
                self.apply(msg, first, read_at);
            }
            Err(e) => {
                let detail = match &e {
                    LineError::NotJson => {
                        String::from_utf8_lossy(&line[..line.len().min(80)]).into_owned()
                    }
                    other => other.to_string(),
                };
                let of = protocol::type_of(line);
                self.refuse(of.as_deref(), e.kind(), &detail);
            }
        }
    }

    /// `read_at`: when the line was read (a play's latency counts from it).
    fn apply(&self, msg: FromProgram, first: bool, read_at: Instant) {
        let sid = self.call_sid.as_str();
        match msg {
            FromProgram::Config {
                rate,
                audio,
                version,
                utterances,
                turn,
            } => {
                if first {
                    self.rate.store(rate, Ordering::Relaxed);
                    self.audio.store(audio, Ordering::Release);
                    self.utterances.store(utterances, Ordering::Release);
                    if let Some(v) = version {
                        self.version.store(v, Ordering::Relaxed);
                    }
                    if turn != protocol::Turn::default() {
                        *self.turn.lock().unwrap_or_else(|p| p.into_inner()) = Some(turn);
                        self.remote.wake();
                    }
                    tracing::debug!(call_sid = sid, rate, audio, utterances, version = ?version, turn = ?turn, "BRIDGE_CONFIG");
                } else {
                    self.refuse(
                        Some("config"),
                        "config not first",
                        "config is only taken as the first line",
                    );
                }
            }
            FromProgram::Play { rate, pcm } => self.queue_audio(&pcm, rate, "play", read_at),
            FromProgram::PlayWav { path } if !self.wav_allowed => self.refuse(
                Some("play"),
                "wav over ws",
                &format!("{path}: a service plays pcm; wav names a file on callstream's machine, for local programs"),
            ),
            FromProgram::PlayWav { path } => match read_wav(&path) {
                Ok((rate, pcm)) => self.queue_audio(&pcm, rate, "play", read_at),
                Err(e) => self.refuse(Some("play"), "bad wav", &format!("{path}: {e}")),
            },
            FromProgram::SendDigits { digits } => match callstream_core::dtmf::tones(&digits) {
                Ok(tones) => self.queue_audio(&tones, CALL_RATE, "send_digits", read_at),
                Err(e) => self.refuse(Some("send_digits"), "bad digits", &e.to_string()),
            },
            FromProgram::Mark { name } => {
                if name.len() > callstream_core::call::MAX_MARK_NAME {
                    self.refuse(
                        Some("mark"),
                        "mark name too long",
                        &format!("{} bytes", name.len()),
                    );
                } else {
                    // The audio before the mark plays before it: the tail
                    // the play stream holds goes first (unless a clear
                    // since made it a cut reply's).
                    let mut stream = self.play_stream();
                    let generation = self.fresh_stream(&mut stream);
                    let mut tail = Vec::new();
                    stream.finish_into(&mut tail);
                    let samples = tail.len();
                    let mut items = Vec::with_capacity(2);
                    if samples > 0 {
                        items.push(Item::Audio(tail, 0, None));
                    }
                    items.push(Item::Mark(name));
                    self.enqueue(items, samples, generation, "mark");
                }
            }
            FromProgram::Clear => {
                // In order: what waits before the clear is dropped now, what
                // comes after it plays.
                {
                    let mut p = self.pending();
                    self.clear_generation.fetch_add(1, Ordering::AcqRel);
                    let marks = Self::drain(&mut p);
                    p.items.push_back(Item::Clear(marks));
                }
                self.remote.wake();
            }
            FromProgram::Transcript { text } => {
                tracing::info!(call_sid = sid, text = %cut(&text), "ASR_TEXT");
            }
            FromProgram::Reply { text } => {
                tracing::info!(call_sid = sid, text = %cut(&text), "TTS_TEXT");
            }
            FromProgram::Log { level, message } => {
                let message = cut(&message);
                match level.as_str() {
                    "debug" => tracing::debug!(call_sid = sid, text = %message, "BRIDGE_LOG"),
                    "warn" | "warning" => tracing::warn!(call_sid = sid, text = %message, "BRIDGE_LOG"),
                    "error" => tracing::error!(call_sid = sid, text = %message, "BRIDGE_LOG"),
                    _ => tracing::info!(call_sid = sid, text = %message, "BRIDGE_LOG"),
                }
            }
            FromProgram::Hangup => self.finish(Next::Hangup),
            FromProgram::Transfer {
                to,
                caller_id,
                timeout,
            } => {
                let next = Next::Dial(Transfer {
                    to,
                    caller_id,
                    timeout,
                });
                match next.twiml() {
                    Ok(_) => self.finish(next),
                    Err(e) => self.refuse(Some("transfer"), "bad transfer", &e.to_string()),
                }
            }
            FromProgram::End {
                say,
                voice,
                language,
            } => {
                if say.is_none() && (voice.is_some() || language.is_some()) {
                    return self.refuse(
                        Some("end"),
                        "bad end",
                        "voice and language are for say: there is nothing to say",
                    );
                }
                let next = Next::Say(Goodbye {
                    say,
                    voice,
                    language,
                });
                match next.twiml() {
                    Ok(_) => self.finish(next),
                    Err(e) => self.refuse(Some("end"), "bad end", &e.to_string()),
                }
            }
            FromProgram::Unknown { kind } => {
                if self.warn_once("unknown type") {
                    tracing::warn!(call_sid = sid, kind = %cut(&kind), "BRIDGE unknown message type ignored (logged once per call)");
                }
                metrics::BAD_LINES.fetch_add(1, Ordering::Relaxed);
                self.tell_error(Some(&kind), "unknown message type: ignored");
            }
            #[allow(unreachable_patterns)]
            _ => {}
        }
    }

    /// The program's audio at `rate`, converted to the call's rate as part
    /// of one stream, into the link's queue (whole, or refused whole).
    fn queue_audio(&self, samples: &[i16], rate: u32, of: &'static str, read_at: Instant) {
        if self.expects_end() {
            return;
        }
        let mut stream = self.play_stream();
        let generation = self.fresh_stream(&mut stream);
        let mut out = Vec::with_capacity(samples.len() * CALL_RATE as usize / rate as usize + 64);
        if stream.resampler.as_ref().map(Resampler::from_rate) != Some(rate) {
            // A new rate: the old stream's tail first.
            stream.finish_into(&mut out);
            if rate != CALL_RATE {
                stream.resampler = Resampler::new(rate, CALL_RATE).ok();
            }
        }
        match stream.resampler.as_mut() {
            Some(r) => r.process_i16(samples, &mut out),
            None => out.extend_from_slice(samples),
        }
        // Queued with the stream locked: the pump's flush of the tail cannot
        // get ahead of this audio.
        let n = out.len();
        let mut read_at = Some(read_at);
        let items = out
            .chunks(PLAY_CHUNK)
            .map(|c| Item::Audio(c.to_vec(), 0, read_at.take()))
            .collect();
        if self.enqueue(items, n, generation, of) {
            metrics::PLAYS.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The play stream's clear generation, after starting it afresh if a
    /// clear since made what it holds a cut reply's.
    fn fresh_stream(&self, stream: &mut PlayStream) -> u64 {
        let generation = self.clear_generation.load(Ordering::Acquire);
        if stream.generation != generation {
            stream.resampler = None;
            stream.generation = generation;
        }
        generation
    }

    /// Puts `items` (`samples` of audio among them) in the link's queue and
    /// wakes the pump to feed them. Refused whole, with an `error` naming
    /// `of`, when the queue holds [`MAX_PENDING_MS`] of audio or
    /// [`MAX_PENDING_ITEMS`] pieces; dropped when a clear came since the
    /// audio was converted (`generation`: it belongs to the cut reply).
    fn enqueue(
        &self,
        mut items: Vec<Item>,
        mut samples: usize,
        generation: u64,
        of: &'static str,
    ) -> bool {
        {
            let mut p = self.pending();
            if self.clear_generation.load(Ordering::Acquire) != generation {
                // A clear came since this line's audio was converted: the
                // audio was the cut reply's and goes; a mark still resolves,
                // `cleared`, never silently lost.
                items.retain(|i| !matches!(i, Item::Audio(..)));
                for i in &mut items {
                    if let Item::Mark(name) = i {
                        *i = Item::Cut(std::mem::take(name));
                    }
                }
                if items.is_empty() {
                    return false;
                }
                samples = 0;
            }
            let limit = (MAX_PENDING_MS * u64::from(CALL_RATE) / 1000) as usize;
            let why = if p.samples + samples > limit {
                Some(format!(
                    "{} s of audio already wait for the call",
                    MAX_PENDING_MS / 1000
                ))
            } else if p.items.len() + items.len() > MAX_PENDING_ITEMS {
                Some(format!(
                    "{MAX_PENDING_ITEMS} lines already wait for the call"
                ))
            } else {
                None
            };
            if let Some(why) = why {
                drop(p);
                self.refuse(Some(of), "queue full", &why);
                return false;
            }
            p.samples += samples;
            for item in items {
                let item = match item {
                    Item::Audio(..) => {
                        p.since_mark = true;
                        item
                    }
                    Item::Mark(name) => {
                        let cut = std::mem::take(&mut p.cut) && !p.since_mark;
                        p.since_mark = false;
                        if cut {
                            Item::Cut(name)
                        } else {
                            Item::Mark(name)
                        }
                    }
                    Item::Cut(name) => {
                        (p.cut, p.since_mark) = (false, false);
                        Item::Cut(name)
                    }
                    other => other,
                };
                p.items.push_back(item);
            }
        }
        self.remote.wake();
        true
    }

    /// hangup, transfer or end: the first one decides what the call does
    /// after the stream. The audio stops at once (what is queued is not
    /// played: docs/bridge.md says to wait for the last mark); a REST
    /// redirect, which may take seconds, follows on a call already silent;
    /// then the stream closes.
    fn finish(&self, next: Next) {
        if self.finished.swap(true, Ordering::AcqRel) {
            return;
        }
        tracing::info!(call_sid = %self.call_sid, next = %next, "BRIDGE_END");
        // The reading thread may wait for room: after this, nothing it reads
        // matters.
        self.clear_call(true);
        self.after.decide(&self.call_sid, next);
        self.hangup_call(true);
    }

    /// `samples` converted from `from` to `to` Hz as a whole. Both rates were
    /// checked when the program named them (`protocol`, [`read_wav`]): a
    /// rate out of range cannot reach here, and would give silence.
    fn convert(&self, samples: &[i16], from: u32, to: u32) -> Vec<i16> {
        let mut kept = self.converters.lock().unwrap_or_else(|p| p.into_inner());
        let found = kept
            .iter()
            .position(|r| r.from_rate() == from && r.to_rate() == to);
        let mut r = match found {
            Some(i) => kept.remove(i),
            None => match Resampler::new(from, to) {
                Ok(r) => r,
                Err(_) => return Vec::new(),
            },
        };
        let mut out = Vec::with_capacity(samples.len() * to as usize / from as usize + 1);
        r.process_i16(samples, &mut out);
        r.flush_i16(&mut out);
        if kept.len() >= KEPT_CONVERTERS {
            kept.remove(0);
        }
        kept.push(r);
        out
    }

    /// The caller's next frame at the program's `rate`, continuing the
    /// stream of frames before it.
    fn stream_to_program(&self, samples: &[i16], rate: u32) -> Vec<i16> {
        let mut r = self.to_program.lock().unwrap_or_else(|p| p.into_inner());
        if r.as_ref().map(Resampler::to_rate) != Some(rate) {
            *r = Resampler::new(CALL_RATE, rate).ok();
        }
        let mut out = Vec::with_capacity(samples.len() * rate as usize / CALL_RATE as usize + 64);
        match r.as_mut() {
            Some(r) => r.process_i16(samples, &mut out),
            None => out.extend_from_slice(samples),
        }
        out
    }

    /// An outbound message as a line (transport thread).
    pub fn line_for(&self, o: Outbound) -> (String, Option<Instant>) {
        let rate = self.rate();
        match o {
            Outbound::Line(l) => (l, None),
            Outbound::Utterance(samples, at) => {
                let pcm = self.convert(&samples, CALL_RATE, rate);
                let duration_ms = pcm.len() as u64 * 1000 / u64::from(rate);
                let line = ToProgram::Utterance {
                    rate,
                    pcm: protocol::encode_pcm(&pcm),
                    duration_ms,
                }
                .to_line();
                (line, Some(at))
            }
            Outbound::Audio(samples, seq, dropped) => {
                let pcm = self.stream_to_program(&samples, rate);
                let line = ToProgram::Audio {
                    rate,
                    pcm: protocol::encode_pcm(&pcm),
                    seq,
                    dropped,
                }
                .to_line();
                (line, None)
            }
            Outbound::Stop(reason) => (ToProgram::Stop { reason: &reason }.to_line(), None),
        }
    }

    /// An utterance that ended at `at` was written (transport thread).
    pub fn utterance_written(&self, at: Instant) {
        let us = at.elapsed().as_micros() as u64;
        metrics::UTTERANCES.fetch_add(1, Ordering::Relaxed);
        metrics::UTTERANCE_US.fetch_add(us, Ordering::Relaxed);
        metrics::UTTERANCE_US_MAX.fetch_max(us, Ordering::Relaxed);
        metrics::UTTERANCE_LATENCY.observe(at.elapsed());
        tracing::debug!(call_sid = %self.call_sid, latency_us = us, "BRIDGE_UTTERANCE written");
    }
}

/// A 16-bit PCM WAV file: its rate and its first channel. Only a regular
/// file: a FIFO or a device would block the reading thread or never end.
fn read_wav(path: &str) -> Result<(u32, Vec<i16>), String> {
    use std::os::unix::fs::OpenOptionsExt;
    // Opened without blocking (a FIFO's open waits for a writer), then
    // checked on the open file itself, so it cannot be swapped in between.
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| e.to_string())?;
    let meta = file.metadata().map_err(|e| e.to_string())?;
    if !meta.is_file() {
        return Err("not a regular file".to_owned());
    }
    if meta.len() > MAX_WAV_BYTES {
        return Err(format!("{} bytes is over {MAX_WAV_BYTES}", meta.len()));
    }
    let r = hound::WavReader::new(std::io::BufReader::new(file.take(MAX_WAV_BYTES)))
        .map_err(|e| e.to_string())?;
    let spec = r.spec();
    if spec.bits_per_sample != 16 || spec.sample_format != hound::SampleFormat::Int {
        return Err("not 16-bit PCM".to_owned());
    }
    if !(resample::MIN_RATE..=resample::MAX_RATE).contains(&spec.sample_rate) {
        return Err(format!("rate {} not allowed", spec.sample_rate));
    }
    let channels = usize::from(spec.channels.max(1));
    let samples: Result<Vec<i16>, _> = r.into_samples::<i16>().step_by(channels).collect();
    Ok((spec.sample_rate, samples.map_err(|e| e.to_string())?))
}

#[cfg(test)]
mod tests {
    //! The call's command queue is emptied by the pump at every wake, so
    //! filling it through the real server is a race between threads; here a
    //! real session's queue is filled and emptied by hand.
    use super::*;
    use callstream_core::call::{Call, CallConfig, CallEvent, CallOutput};
    use callstream_core::handler::{Handler, REMOTE_MAX_COMMANDS, Session};
    use std::sync::OnceLock;

    const SID: &str = "MZ00000000000000000000000000000001";

    /// Does what the bridge's handler does after every event.
    struct Pending(Arc<OnceLock<Arc<Link>>>);

    impl Handler for Pending {
        fn on_event(&mut self, _: &CallEvent, control: &mut Control<'_>) {
            if let Some(link) = self.0.get() {
                link.apply_pending(control);
            }
        }
    }

    /// A started call whose command queue is full, and its link.
    fn full_call(on_failure: OnFailure) -> (Session, Arc<Link>, Instant) {
        let t0 = Instant::now();
        let slot = Arc::new(OnceLock::new());
        let mut session = Session::new(
            Call::new(CallConfig::default(), t0),
            Box::new(Pending(slot.clone())),
            None,
        );
        session.handle_text(
            t0,
            r#"{"event":"connected","protocol":"Call","version":"1.0.0"}"#,
        );
        session.handle_text(t0, &format!(
            r#"{{"event":"start","sequenceNumber":"1","streamSid":"{SID}","start":{{"accountSid":"AC00000000000000000000000000000001","streamSid":"{SID}","callSid":"CA00000000000000000000000000000001","tracks":["inbound"],"customParameters":{{}},"mediaFormat":{{"encoding":"audio/x-mulaw","sampleRate":8000,"channels":1}}}}}}"#
        ));
        assert!(!closes(&mut session));
        let link = Arc::new(Link::new(
            "CA1".to_owned(),
            session.remote(),
            on_failure,
            Arc::new(After::new(None)),
        ));
        let _ = slot.set(link.clone());
        let remote = session.remote();
        for _ in 0..REMOTE_MAX_COMMANDS {
            remote.mark("m").unwrap();
        }
        assert_eq!(remote.mark("m"), Err(RemoteError::Full));
        (session, link, t0)
    }

    /// Drains the session; whether it closed the stream.
    fn closes(session: &mut Session) -> bool {
        loop {
            match session.poll_output() {
                CallOutput::Close { .. } => return true,
                CallOutput::Timeout(_) => return false,
                _ => {}
            }
        }
    }

    /// Waits until `link` has begun ending the call, and a little more so
    /// that its first try meets the full queue, before the queue is emptied.
    fn ending(link: &Link) {
        while !link.expects_end() {
            std::thread::yield_now();
        }
        std::thread::sleep(Duration::from_millis(50));
    }

    /// Wakes the session (as the driver does) until it closes the stream.
    fn closes_soon(session: &mut Session, t0: Instant) -> bool {
        for i in 0..500u64 {
            // Past the hangup's wait for the marks' echoes.
            session.handle_timeout(t0 + Duration::from_secs(i * 10));
            if closes(session) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        false
    }

    /// A started call and a link on it (nothing fills its queue).
    fn started_call() -> (Session, Arc<Link>) {
        let (session, link, _) = {
            let t0 = Instant::now();
            let slot = Arc::new(OnceLock::new());
            let mut session = Session::new(
                Call::new(CallConfig::default(), t0),
                Box::new(Pending(slot.clone())),
                None,
            );
            session.handle_text(t0, &format!(
                r#"{{"event":"start","sequenceNumber":"1","streamSid":"{SID}","start":{{"accountSid":"AC00000000000000000000000000000001","streamSid":"{SID}","callSid":"CA00000000000000000000000000000001","tracks":["inbound"],"customParameters":{{}},"mediaFormat":{{"encoding":"audio/x-mulaw","sampleRate":8000,"channels":1}}}}}}"#
            ));
            let link = Arc::new(Link::new(
                "CA1".to_owned(),
                session.remote(),
                OnFailure::Continue,
                Arc::new(After::new(None)),
            ));
            let _ = slot.set(link.clone());
            (session, link, t0)
        };
        (session, link)
    }

    /// What waits in the link: its audio, and where each mark stands in it.
    fn waiting(link: &Link) -> (Vec<i16>, Vec<(String, usize)>) {
        let p = link.pending();
        let (mut audio, mut marks) = (Vec::new(), Vec::new());
        for item in &p.items {
            match item {
                Item::Audio(pcm, sent, _) => audio.extend_from_slice(&pcm[*sent..]),
                Item::Mark(name) | Item::Cut(name) => marks.push((name.clone(), audio.len())),
                Item::Clear(_) => marks.push(("<clear>".into(), audio.len())),
            }
        }
        (audio, marks)
    }

    fn play_line(pcm: &[i16], rate: u32) -> Vec<u8> {
        format!(
            r#"{{"type":"play","rate":{rate},"pcm":"{}"}}"#,
            protocol::encode_pcm(pcm)
        )
        .into_bytes()
    }

    /// Signal to noise of `got` against `want`, in dB.
    fn snr_db(want: &[i16], got: &[i16]) -> f64 {
        let n = want.len().min(got.len());
        let signal: f64 = want[..n].iter().map(|&v| f64::from(v).powi(2)).sum();
        let noise: f64 = want[..n]
            .iter()
            .zip(&got[..n])
            .map(|(&a, &b)| (f64::from(a) - f64::from(b)).powi(2))
            .sum();
        10.0 * (signal / noise.max(1e-9)).log10()
    }

    #[test]
    fn plays_streamed_in_chunks_join_as_the_whole_stream_and_a_mark_follows_all_of_it() {
        for rate in [16_000u32, 24_000] {
            // Two seconds of a sweep with speech-like level changes.
            let n = rate as usize * 2;
            let signal: Vec<i16> = (0..n)
                .map(|i| {
                    let t = i as f64 / f64::from(rate);
                    let f = 200.0 + 1500.0 * t;
                    let level = 6000.0 + 4000.0 * (t * 7.0).sin();
                    (level * (std::f64::consts::TAU * f * t).sin()) as i16
                })
                .collect();
            let whole = resample::resample_i16(&signal, rate, CALL_RATE).unwrap();
            let (_session, link) = started_call();
            // Chunks of odd, uneven sizes, as a streaming TTS writes them.
            let mut at = 0;
            for size in [333usize, 1000, 47, 4096, 1, 2500].iter().cycle() {
                if at >= n {
                    break;
                }
                let end = (at + size).min(n);
                link.handle_line(&play_line(&signal[at..end], rate));
                at = end;
            }
            link.handle_line(br#"{"type":"mark","name":"end"}"#);
            let (streamed, marks) = waiting(&link);
            assert_eq!(streamed, whole, "{rate} Hz: the chunks join as one stream");
            assert_eq!(marks, [("end".to_owned(), whole.len())], "{rate} Hz");
            // What resampling each chunk on its own gives, for contrast.
            let mut apart = Vec::new();
            let mut at = 0;
            for size in [333usize, 1000, 47, 4096, 1, 2500].iter().cycle() {
                if at >= n {
                    break;
                }
                let end = (at + size).min(n);
                apart.extend(resample::resample_i16(&signal[at..end], rate, CALL_RATE).unwrap());
                at = end;
            }
            assert!(
                snr_db(&whole, &apart) < 45.0,
                "{rate} Hz: chunks resampled apart are audibly worse"
            );
        }
    }

    #[test]
    fn a_clear_drops_what_waits_before_it_and_keeps_what_follows() {
        let (_session, link) = started_call();
        link.handle_line(&play_line(&[100; 800], 8000));
        link.handle_line(br#"{"type":"mark","name":"a"}"#);
        link.handle_line(br#"{"type":"clear"}"#);
        link.handle_line(&play_line(&[200; 160], 8000));
        link.handle_line(br#"{"type":"mark","name":"b"}"#);
        let (audio, marks) = waiting(&link);
        assert_eq!(audio, vec![200; 160]);
        assert_eq!(marks, [("<clear>".to_owned(), 0), ("b".to_owned(), 160)]);
        let p = link.pending();
        let Some(Item::Clear(dropped)) = p.items.front() else {
            panic!("the clear leads")
        };
        assert_eq!(dropped, &["a".to_owned()]);
    }

    #[test]
    fn refused_lines_are_answered_with_an_error_unless_the_program_speaks_version_1() {
        let (_session, link) = started_call();
        link.handle_line(br#"{"type":"transfer","to":"12"}"#);
        link.handle_line(br#"{"type":"hang_up"}"#);
        link.handle_line(br#"{"type":"play","rate":3,"pcm":""}"#);
        let mut lines = Vec::new();
        while let Ok(Some(o)) = link.outbox.pop(Some(Duration::ZERO)) {
            lines.push(link.line_for(o).0);
        }
        assert_eq!(lines.len(), 3, "{lines:?}");
        assert!(lines[0].starts_with(r#"{"type":"error","of":"transfer","reason":"bad transfer: <Dial><Number> \"12\" is not an E.164 number"#), "{}", lines[0]);
        assert_eq!(
            lines[1],
            r#"{"type":"error","of":"hang_up","reason":"unknown message type: ignored"}"#
        );
        assert!(
            lines[2].starts_with(r#"{"type":"error","of":"play","reason":"bad rate"#),
            "{}",
            lines[2]
        );

        let (_session, old) = started_call();
        old.handle_line(br#"{"type":"config","version":1}"#);
        old.handle_line(br#"{"type":"hang_up"}"#);
        assert!(
            matches!(old.outbox.pop(Some(Duration::ZERO)), Ok(None)),
            "version 1: no error"
        );
    }

    #[test]
    fn the_queue_is_bounded_in_lines_and_refuses_a_play_whole() {
        let (_session, link) = started_call();
        // A blank line first does not use up the config's place.
        link.handle_line(b"  ");
        link.handle_line(br#"{"type":"config","version":2}"#);
        assert!(link.warned.lock().unwrap().is_empty(), "config taken");
        for i in 0..MAX_PENDING_ITEMS {
            link.handle_line(format!(r#"{{"type":"mark","name":"m{i}"}}"#).as_bytes());
        }
        link.handle_line(br#"{"type":"mark","name":"one-too-many"}"#);
        let (_, marks) = waiting(&link);
        assert_eq!(marks.len(), MAX_PENDING_ITEMS);
        assert!(!marks.iter().any(|(n, _)| n == "one-too-many"));

        let (_session, link) = started_call();
        let limit = (MAX_PENDING_MS * 8) as usize;
        link.handle_line(&play_line(&vec![1; limit - 100], 8000));
        // 200 samples do not fit: the whole play is refused, none of it waits.
        link.handle_line(&play_line(&[2; 200], 8000));
        let (audio, _) = waiting(&link);
        assert_eq!(audio.len(), limit - 100);
        assert!(!audio.contains(&2));
        // Errors never take more than half of the program's queue.
        for _ in 0..100 {
            link.handle_line(br#"{"type":"nope"}"#);
        }
        let mut errors = 0;
        while let Ok(Some(_)) = link.outbox.pop(Some(Duration::ZERO)) {
            errors += 1;
        }
        assert_eq!(errors, crate::outbox::MAX_EVENTS / 2);
    }

    #[test]
    fn a_clear_leaves_no_tail_of_the_cut_reply() {
        let (_session, link) = started_call();
        let tone: Vec<i16> = (0..1600)
            .map(|i| ((i % 40) * 500 - 10_000) as i16)
            .collect();
        link.handle_line(&play_line(&tone, 16_000));
        link.handle_line(br#"{"type":"clear"}"#);
        link.handle_line(br#"{"type":"mark","name":"after"}"#);
        let (audio, marks) = waiting(&link);
        assert!(
            audio.is_empty(),
            "{} samples of the cut reply's tail",
            audio.len()
        );
        assert_eq!(marks, [("<clear>".to_owned(), 0), ("after".to_owned(), 0)]);
    }

    #[test]
    fn a_mark_that_races_a_barge_in_is_cut_not_lost() {
        // The mark's line read its clear generation, then a barge-in's
        // clear came before it reached the queue: its audio (the cut
        // reply's tail) goes, the mark stays, to resolve `cleared`.
        let (_session, link) = started_call();
        let stale = link.clear_generation.load(Ordering::Acquire);
        let _ = link.cleared();
        link.enqueue(
            vec![Item::Audio(vec![7; 80], 0, None), Item::Mark("late".into())],
            80,
            stale,
            "mark",
        );
        let p = link.pending();
        assert_eq!(p.items.len(), 1, "only the mark");
        assert!(matches!(p.items.front(), Some(Item::Cut(n)) if n == "late"));
        assert_eq!(p.samples, 0);
        drop(p);
        // A play that raced the same way is dropped whole, as before.
        assert!(!link.enqueue(vec![Item::Audio(vec![7; 80], 0, None)], 80, stale, "play"));
    }

    #[test]
    fn a_hangup_behind_a_full_command_queue_still_ends_the_call() {
        let (mut session, link, t0) = full_call(OnFailure::Hangup);
        let reader = std::thread::spawn({
            let link = link.clone();
            move || link.handle_line(br#"{"type":"hangup"}"#)
        });
        ending(&link);
        assert!(closes_soon(&mut session, t0), "the hangup was lost");
        reader.join().unwrap();
    }

    #[test]
    fn a_failure_on_a_transport_thread_behind_a_full_queue_still_hangs_up() {
        let (mut session, link, t0) = full_call(OnFailure::Hangup);
        let reader = std::thread::spawn({
            let link = link.clone();
            move || link.fail("test")
        });
        ending(&link);
        assert!(closes_soon(&mut session, t0), "the hangup was lost");
        reader.join().unwrap();
    }

    #[test]
    fn a_failure_on_the_pump_thread_is_applied_by_the_handler() {
        let (mut session, link, t0) = full_call(OnFailure::Hangup);
        // Never waits: the queue is still full.
        link.fail_on_pump("test");
        // The next event (a digit) has the handler apply the hangup.
        session.handle_text(
            t0,
            &format!(
                r#"{{"event":"dtmf","sequenceNumber":"2","streamSid":"{SID}","dtmf":{{"track":"inbound_track","digit":"1"}}}}"#
            ),
        );
        assert!(closes_soon(&mut session, t0), "the hangup was lost");
    }
}
