//! A call's link to its program, shared by the pump thread (the handler) and
//! the transport's threads: what each program message does to the call
//! (applied through the session's `RemoteControl`, which wakes the
//! connection), how outbound messages are written, and what a failure does.
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use callstream_core::handler::{RemoteControl, RemoteError};

use super::after::{After, Next};
use super::outbox::{Outbound, Outbox};
use super::protocol::{self, FromProgram, LineError, ToProgram};
use super::resample::resample;
use super::{OnFailure, metrics};

/// The call's audio rate.
const CALL_RATE: u32 = 8000;
/// Audio handed to the call at a time (1 s): bounded commands, and the first
/// second of a long reply starts playing while the rest is resampled.
const PLAY_CHUNK: usize = 8000;
/// Audio the program may have queued ahead of the caller before its `play`s
/// wait (the call's own queue holds 60 s): a flood slows the program.
const MAX_AHEAD_MS: u64 = 20_000;
/// How often a waiting `play` looks again.
const PLAY_POLL: Duration = Duration::from_millis(10);
/// Longest WAV file `play` reads (the same as a `play` line).
pub const MAX_WAV_BYTES: u64 = 16 * 1024 * 1024;
/// Longest text from a program put in one log line.
const MAX_LOGGED: usize = 2000;

/// The stderr lines kept for the report of a crash.
pub const STDERR_TAIL: usize = 5;

/// Cuts program text for the log.
pub fn cut(s: &str) -> String {
    if s.len() <= MAX_LOGGED {
        return s.to_owned();
    }
    let mut end = MAX_LOGGED;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
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
    /// Whether a line has been read (config is only taken first).
    first_seen: AtomicBool,
    /// Audio queued in the call, published by the handler at each event,
    /// with a count of the events (to tell when a `play` has landed).
    queued_ms: AtomicU64,
    epoch: AtomicU64,
    /// Audio pushed by `play` that the published queue may not include
    /// yet, and the epoch of the last push.
    unconfirmed_ms: AtomicU64,
    pushed_at: AtomicU64,
    /// The program asked to end the call (hangup, transfer, end).
    finished: AtomicBool,
    /// The call has ended.
    stopped: AtomicBool,
    /// The bridge failed.
    failed: AtomicBool,
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
            first_seen: AtomicBool::new(false),
            queued_ms: AtomicU64::new(0),
            epoch: AtomicU64::new(0),
            unconfirmed_ms: AtomicU64::new(0),
            pushed_at: AtomicU64::new(0),
            finished: AtomicBool::new(false),
            stopped: AtomicBool::new(false),
            failed: AtomicBool::new(false),
            warned: Mutex::new(Vec::new()),
            stderr_tail: Mutex::new(std::collections::VecDeque::new()),
        }
    }

    /// The program's rate for utterances and raw audio.
    pub fn rate(&self) -> u32 {
        self.rate.load(Ordering::Relaxed)
    }

    /// The handler's view of the call after an event (pump thread).
    pub fn publish(&self, queued_ms: u64) {
        self.queued_ms.store(queued_ms, Ordering::Relaxed);
        self.epoch.fetch_add(1, Ordering::Release);
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
    /// after the call ended or the program ended it is a failure.
    pub fn fail(&self, why: &str) {
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
        let _ = self.remote.clear();
        if self.on_failure == OnFailure::Hangup {
            let _ = self.remote.hangup();
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
    /// of problem per call, counted always.
    pub fn garbage(&self, kind: &'static str, detail: &str) {
        metrics::BAD_LINES.fetch_add(1, Ordering::Relaxed);
        let mut w = self.warned.lock().unwrap_or_else(|p| p.into_inner());
        if !w.contains(&kind) {
            w.push(kind);
            tracing::warn!(call_sid = %self.call_sid, kind, detail = %cut(detail), "BRIDGE_BAD_LINE dropped (further lines of this kind are counted, not logged)");
        }
    }

    /// One line (or text frame) from the program.
    pub fn handle_line(&self, line: &[u8]) {
        let first = !self.first_seen.swap(true, Ordering::AcqRel);
        if line.iter().all(u8::is_ascii_whitespace) {
            return;
        }
        match protocol::parse(line) {
            Ok(msg) => self.apply(msg, first),
            Err(e) => {
                let detail = match &e {
                    LineError::NotJson => {
                        String::from_utf8_lossy(&line[..line.len().min(80)]).into_owned()
                    }
                    other => other.to_string(),
                };
                self.garbage(e.kind(), &detail);
            }
        }
    }

    fn apply(&self, msg: FromProgram, first: bool) {
        let sid = self.call_sid.as_str();
        match msg {
            FromProgram::Config { rate, audio } => {
                if first {
                    self.rate.store(rate, Ordering::Relaxed);
                    self.audio.store(audio, Ordering::Release);
                    tracing::debug!(call_sid = sid, rate, audio, "BRIDGE_CONFIG");
                } else {
                    self.garbage("config not first", "config is only taken as the first line");
                }
            }
            FromProgram::Play { rate, pcm } => self.play(&resample(&pcm, rate, CALL_RATE)),
            FromProgram::PlayWav { path } => match read_wav(&path) {
                Ok((rate, pcm)) => self.play(&resample(&pcm, rate, CALL_RATE)),
                Err(e) => self.garbage("bad wav", &format!("{path}: {e}")),
            },
            FromProgram::Mark { name } => {
                if let Err(e) = self.remote.mark(&name) {
                    self.command_refused("mark", &e);
                }
            }
            FromProgram::Clear => {
                let _ = self.remote.clear();
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
                    "debug" => tracing::debug!(call_sid = sid, %message, "BRIDGE_LOG"),
                    "warn" | "warning" => tracing::warn!(call_sid = sid, %message, "BRIDGE_LOG"),
                    "error" => tracing::error!(call_sid = sid, %message, "BRIDGE_LOG"),
                    _ => tracing::info!(call_sid = sid, %message, "BRIDGE_LOG"),
                }
            }
            FromProgram::Hangup => self.finish(Next::Hangup),
            FromProgram::Transfer { to } => {
                if callstream_core::twiml::Dial::number(to.as_str()).is_err() {
                    self.garbage("bad transfer number", &format!("{to:?} is not E.164"));
                    return;
                }
                self.finish(Next::Dial(to));
            }
            FromProgram::End { say } => self.finish(Next::Say(say)),
            FromProgram::Unknown { kind } => {
                tracing::debug!(call_sid = sid, kind = %kind, "BRIDGE unknown message type ignored");
            }
            #[allow(unreachable_patterns)]
            _ => {}
        }
    }

    fn command_refused(&self, what: &str, e: &RemoteError) {
        if *e != RemoteError::Ended {
            self.garbage("command refused", &format!("{what}: {e}"));
        }
    }

    /// Queues 8 kHz audio in the call, a second at a time, waiting while the
    /// program is far ahead of the caller (so a flood slows the program).
    fn play(&self, pcm: &[i16]) {
        // Only the reading thread plays: the counters are its own, kept
        // across messages (a flood is many small plays).
        let mut unconfirmed_ms = self.unconfirmed_ms.load(Ordering::Relaxed);
        let mut pushed_at = self.pushed_at.load(Ordering::Relaxed);
        for chunk in pcm.chunks(PLAY_CHUNK) {
            loop {
                if self.remote.is_ended() || self.expects_end() {
                    return;
                }
                // Two events after a push, the session has applied it: the
                // published queue length includes it.
                if self.epoch.load(Ordering::Acquire) >= pushed_at + 2 {
                    unconfirmed_ms = 0;
                }
                let ahead = self.queued_ms.load(Ordering::Relaxed) + unconfirmed_ms;
                if ahead < MAX_AHEAD_MS {
                    match self.remote.play_pcm(chunk) {
                        Ok(()) => break,
                        Err(RemoteError::Full) => {}
                        Err(e) => return self.command_refused("play", &e),
                    }
                }
                std::thread::sleep(PLAY_POLL);
            }
            unconfirmed_ms += chunk.len() as u64 * 1000 / u64::from(CALL_RATE);
            pushed_at = self.epoch.load(Ordering::Acquire);
            self.unconfirmed_ms.store(unconfirmed_ms, Ordering::Relaxed);
            self.pushed_at.store(pushed_at, Ordering::Relaxed);
        }
        metrics::PLAYS.fetch_add(1, Ordering::Relaxed);
    }

    /// hangup, transfer or end: the first one decides what the call does
    /// after the stream; the stream is closed at once (audio still queued is
    /// not played: docs/bridge.md says to wait for the last mark).
    fn finish(&self, next: Next) {
        if self.finished.swap(true, Ordering::AcqRel) {
            return;
        }
        tracing::info!(call_sid = %self.call_sid, next = %next, "BRIDGE_END");
        self.after.decide(&self.call_sid, next);
        let _ = self.remote.clear();
        let _ = self.remote.hangup();
    }

    /// An outbound message as a line (transport thread).
    pub fn line_for(&self, o: Outbound) -> (String, Option<Instant>) {
        let rate = self.rate();
        match o {
            Outbound::Line(l) => (l, None),
            Outbound::Utterance(samples, at) => {
                let pcm = resample(&samples, CALL_RATE, rate);
                let duration_ms = pcm.len() as u64 * 1000 / u64::from(rate);
                let line = ToProgram::Utterance {
                    rate,
                    pcm: protocol::encode_pcm(&pcm),
                    duration_ms,
                }
                .to_line();
                (line, Some(at))
            }
            Outbound::Audio(samples) => {
                let pcm = resample(&samples, CALL_RATE, rate);
                let line = ToProgram::Audio {
                    rate,
                    pcm: protocol::encode_pcm(&pcm),
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
        tracing::debug!(call_sid = %self.call_sid, latency_us = us, "BRIDGE_UTTERANCE written");
    }
}

/// A 16-bit PCM WAV file: its rate and its first channel.
fn read_wav(path: &str) -> Result<(u32, Vec<i16>), String> {
    let meta = std::fs::metadata(path).map_err(|e| e.to_string())?;
    if meta.len() > MAX_WAV_BYTES {
        return Err(format!("{} bytes is over {MAX_WAV_BYTES}", meta.len()));
    }
    let r = hound::WavReader::open(path).map_err(|e| e.to_string())?;
    let spec = r.spec();
    if spec.bits_per_sample != 16 || spec.sample_format != hound::SampleFormat::Int {
        return Err("not 16-bit PCM".to_owned());
    }
    if !(super::resample::MIN_RATE..=super::resample::MAX_RATE).contains(&spec.sample_rate) {
        return Err(format!("rate {} not allowed", spec.sample_rate));
    }
    let channels = usize::from(spec.channels.max(1));
    let samples: Result<Vec<i16>, _> = r.into_samples::<i16>().step_by(channels).collect();
    Ok((spec.sample_rate, samples.map_err(|e| e.to_string())?))
}
