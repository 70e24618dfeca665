//! A call's link to its program, shared by the pump thread (the handler) and
//! the transport's threads: what each program message does to the call
//! (applied through the session's `RemoteControl`, which wakes the
//! connection), how outbound messages are written, and what a failure does.
use std::io::Read as _;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use callstream_core::handler::{Control, RemoteControl, RemoteError};

use super::after::{After, Next};
use super::outbox::{Outbound, Outbox};
use super::protocol::{self, FromProgram, LineError, ToProgram};
use super::{OnFailure, metrics};
use callstream_core::resample::{self, Resampler};

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
    /// The caller's raw audio on its way to the program, converted as one
    /// stream (frame after frame without a seam at their edges), at the
    /// rate it was made for.
    to_program: Mutex<Option<Resampler>>,
    /// Converters for whole messages (`play`, `utterance`), kept so that
    /// their tables are made once per call and rate pair, newest last.
    converters: Mutex<Vec<Resampler>>,
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
    /// Bumped at every clear of the call's audio (a barge-in, the program's
    /// `clear`, a failure or the end): a `play` still feeding audio from
    /// before it stops, since what it holds is the reply that was cut.
    clear_generation: AtomicU64,
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
            to_program: Mutex::new(None),
            converters: Mutex::new(Vec::new()),
            first_seen: AtomicBool::new(false),
            queued_ms: AtomicU64::new(0),
            epoch: AtomicU64::new(0),
            unconfirmed_ms: AtomicU64::new(0),
            pushed_at: AtomicU64::new(0),
            clear_generation: AtomicU64::new(0),
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

    /// The handler's view of the call after an event (pump thread).
    pub fn publish(&self, queued_ms: u64) {
        self.queued_ms.store(queued_ms, Ordering::Relaxed);
        self.epoch.fetch_add(1, Ordering::Release);
    }

    /// The call's audio was cleared (a barge-in, pump thread): a `play`
    /// under way stops feeding the rest of its reply.
    pub fn cleared(&self) {
        self.clear_generation.fetch_add(1, Ordering::AcqRel);
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
        self.cleared();
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
            FromProgram::Play { rate, pcm } => self.play(&self.convert(&pcm, rate, CALL_RATE)),
            FromProgram::PlayWav { path } if !self.wav_allowed => self.garbage(
                "wav over ws",
                &format!("{path}: a service plays pcm; wav names a file on callstream's machine, for local programs"),
            ),
            FromProgram::PlayWav { path } => match read_wav(&path) {
                Ok((rate, pcm)) => self.play(&self.convert(&pcm, rate, CALL_RATE)),
                Err(e) => self.garbage("bad wav", &format!("{path}: {e}")),
            },
            FromProgram::Mark { name } => {
                if let Err(e) = self.remote.mark(&name) {
                    self.command_refused("mark", &e);
                }
            }
            FromProgram::Clear => self.clear_call(true),
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
    /// A clear while it waits (the caller talked over the reply) ends it:
    /// the rest of the reply is not pushed after the clear.
    fn play(&self, pcm: &[i16]) {
        let generation = self.clear_generation.load(Ordering::Acquire);
        // Only the reading thread plays: the counters are its own, kept
        // across messages (a flood is many small plays).
        let mut unconfirmed_ms = self.unconfirmed_ms.load(Ordering::Relaxed);
        let mut pushed_at = self.pushed_at.load(Ordering::Relaxed);
        for chunk in pcm.chunks(PLAY_CHUNK) {
            loop {
                if self.remote.is_ended()
                    || self.expects_end()
                    || self.clear_generation.load(Ordering::Acquire) != generation
                {
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
        // The reading thread may wait for room: after this, nothing it reads
        // matters.
        self.clear_call(true);
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
            Outbound::Audio(samples) => {
                let pcm = self.stream_to_program(&samples, rate);
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
