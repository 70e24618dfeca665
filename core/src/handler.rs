//! The application interface: a synchronous, I/O-free [`Handler`] sees each
//! event of a call and answers through a [`Control`]; a [`Session`] wires a
//! [`Call`] to a handler for the connection engine (or any driver).
//!
//! # Writing a handler
//!
//! [`Handler::on_event`] is called for every [`CallEvent`], in order, with a
//! [`Control`] to play audio, place marks, clear and hang up. It runs on the
//! driver's thread, between two socket reads: it must return quickly and
//! never block. Work that takes time (speech recognition, speech synthesis,
//! a language model) belongs on the handler's own thread or task, which
//! sends its results back through a [`RemoteControl`] (from
//! [`Control::remote`]): `Clone + Send + Sync`, usable from any thread. Each
//! remote command wakes the driver through the session's [`Waker`]; the
//! driver then calls [`Session::handle_timeout`] (any `handle_*` will do),
//! which applies the commands in the order they were given, and drains
//! [`Session::poll_output`] as the crate's [run loop](crate#run-loop) says.
//!
//! A complete handler: it greets the caller, answers each utterance with a
//! tone computed on a worker thread, and hangs up when the caller presses `#`.
//!
//! ```
//! use callstream_core::call::{Call, CallConfig, CallEvent, CallOutput, MarkOutcome};
//! use callstream_core::handler::{Control, Handler, RemoteControl, Session};
//! use std::sync::mpsc;
//! use std::time::Instant;
//!
//! struct ToneBot {
//!     /// Jobs for the worker thread: (how long the tone lasts, where to send it).
//!     jobs: mpsc::Sender<(u64, RemoteControl)>,
//! }
//!
//! impl Handler for ToneBot {
//!     fn on_event(&mut self, event: &CallEvent, control: &mut Control<'_>) {
//!         match event {
//!             CallEvent::Started(_) => {
//!                 // Quick work is fine here: 200 ms of silence as a "greeting".
//!                 let _ = control.play_pcm(&[0; 1600]);
//!                 let _ = control.mark("greeting");
//!             }
//!             CallEvent::SpeechEnded { duration, .. } => {
//!                 // Slow work goes to the worker, with a handle to answer through.
//!                 let _ = self.jobs.send((duration.as_millis() as u64, control.remote()));
//!             }
//!             CallEvent::Dtmf { digit: '#' } => control.hangup(),
//!             CallEvent::MarkDone { name, outcome: MarkOutcome::Cleared } => {
//!                 // The caller spoke over `name`: it was cut short.
//!                 let _ = name;
//!             }
//!             _ => {}
//!         }
//!     }
//! }
//!
//! // The worker: "synthesises" a tone as long as the utterance and sends it back.
//! let (jobs, inbox) = mpsc::channel::<(u64, RemoteControl)>();
//! let worker = std::thread::spawn(move || {
//!     for (ms, remote) in inbox {
//!         let tone: Vec<i16> = (0..ms * 8).map(|i| if i % 16 < 8 { 3000 } else { -3000 }).collect();
//!         if remote.play_pcm(&tone).is_err() {
//!             break; // the call is over
//!         }
//!         let _ = remote.mark("answer");
//!     }
//! });
//!
//! // Driving a session by hand (the connection engine does this for real calls).
//! let t0 = Instant::now();
//! let mut session = Session::new(
//!     Call::new(CallConfig::default(), t0),
//!     Box::new(ToneBot { jobs }),
//!     None,
//! );
//! let sid = "MZ00000000000000000000000000000001";
//! session.handle_text(t0, &format!(
//!     r#"{{"event":"start","sequenceNumber":"1","streamSid":"{sid}","start":{{"accountSid":"AC00000000000000000000000000000001","streamSid":"{sid}","callSid":"CA00000000000000000000000000000001","tracks":["inbound"],"customParameters":{{}},"mediaFormat":{{"encoding":"audio/x-mulaw","sampleRate":8000,"channels":1}}}}}}"#
//! ));
//! let mut sent = 0;
//! loop {
//!     match session.poll_output() {
//!         CallOutput::Send(_) => sent += 1,
//!         CallOutput::Timeout(_) => break,
//!         _ => {}
//!     }
//! }
//! assert!(sent > 0); // the greeting's first frames went out at once
//! drop(session); // the worker's handle now reports the call over
//! worker.join().unwrap();
//! ```
//!
//! # Shipped handlers
//!
//! [`by_name`] knows `echo` ([`Echo`]), `parrot` ([`Parrot`]) and `silent`
//! ([`Silent`]).

use std::cell::Cell;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use crate::call::{
    Call, CallConfig, CallEvent, CallOutput, CallStats, CommandError, MAX_MARK_NAME, Warning,
};
use crate::wire::StreamStart;

mod shipped;
pub use shipped::{Echo, Parrot, ParrotConfig, Silent};

/// Wakes the driver of a session from another thread (for example by
/// signalling the event loop that owns the socket).
///
/// The session looks for remote commands on every input without a lock,
/// through a flag the sender sets before it calls the waker. A waker that
/// folds repeated wake-ups into one (a "wake pending" flag of its own) must
/// clear that flag with a read-modify-write (`swap(false, AcqRel)`), not a
/// plain store, before it feeds the session: otherwise a command sent in
/// between may wait for the next input.
pub type Waker = Arc<dyn Fn() + Send + Sync>;

/// Makes the handler for a call when its `start` arrives, from the call's
/// context: SIDs, tracks and the TwiML `<Parameter>`s
/// ([`StreamStart::parameter`]). A handler that
/// runs a program or opens a connection per call starts it here, knowing
/// whose call it is.
pub type HandlerFactory = Arc<dyn Fn(&StreamStart) -> Box<dyn Handler> + Send + Sync>;

/// Makes the [`Session`] for a new media stream, given the time and the
/// driver's waker. The connection engine calls it when a stream opens.
pub type SessionFactory = Arc<dyn Fn(Instant, Option<Waker>) -> Session + Send + Sync>;

/// An application: sees each event of a call, answers through [`Control`].
/// Must return quickly and never block (see the module docs).
pub trait Handler: Send {
    /// Called for every event of the call, in order.
    fn on_event(&mut self, event: &CallEvent, control: &mut Control<'_>);

    /// Called when another thread asked for the handler
    /// ([`RemoteControl::wake`]), after the commands queued before were
    /// applied: a handler that feeds the call from a queue of its own (audio
    /// in order with marks, say) does it here, at once rather than at the
    /// next event. Default: nothing.
    fn on_wake(&mut self, control: &mut Control<'_>) {
        let _ = control;
    }
}

/// Most commands waiting from other threads at once.
pub const REMOTE_MAX_COMMANDS: usize = 1024;
/// Most audio waiting from other threads at once, in samples (60 s).
pub const REMOTE_MAX_SAMPLES: usize = 60 * 8000;

/// The handler's hold on its call during [`Handler::on_event`].
pub struct Control<'a> {
    call: &'a mut Call,
    shared: &'a Arc<Shared>,
    remotes: &'a Cell<bool>,
}

impl Control<'_> {
    /// The time of the event being handled.
    pub fn now(&self) -> Instant {
        self.call.now()
    }

    /// Queues 16-bit PCM at 8 kHz for the caller.
    pub fn play_pcm(&mut self, pcm: &[i16]) -> Result<(), CommandError> {
        let now = self.call.now();
        self.call.play_pcm(now, pcm)
    }

    /// Queues μ-law bytes (8 kHz) for the caller.
    pub fn play_ulaw(&mut self, ulaw: &[u8]) -> Result<(), CommandError> {
        let now = self.call.now();
        self.call.play_ulaw(now, ulaw)
    }

    /// Queues a mark after the audio queued so far.
    pub fn mark(&mut self, name: &str) -> Result<(), CommandError> {
        let now = self.call.now();
        self.call.mark(now, name)
    }

    /// Drops queued audio and tells Twilio to stop playing.
    pub fn clear(&mut self) {
        let now = self.call.now();
        self.call.clear(now);
    }

    /// Hangs up once queued audio has played (see [`Call::hangup`]).
    pub fn hangup(&mut self) {
        let now = self.call.now();
        self.call.hangup(now);
    }

    /// Listens with the detector `config` from now on (see
    /// [`Call::set_vad`]).
    pub fn set_vad(&mut self, config: Option<crate::vad::VadConfig>) {
        self.call.set_vad(config);
    }

    /// The detector's tuning, when one listens.
    pub fn vad_config(&self) -> Option<&crate::vad::VadConfig> {
        self.call.vad_config()
    }

    /// See [`Call::earliest_speech_start_ms`].
    pub fn earliest_speech_start_ms(&self) -> Option<u64> {
        self.call.earliest_speech_start_ms()
    }

    /// Turns barge-in on or off.
    pub fn set_barge_in(&mut self, on: bool) {
        self.call.set_barge_in(on);
    }

    /// Milliseconds of our audio the caller has heard, by the schedule.
    pub fn played_ms(&self) -> u64 {
        self.call.played_ms()
    }

    /// Milliseconds of audio queued, not yet sent.
    pub fn queued_ms(&self) -> u64 {
        self.call.queued_ms()
    }

    /// Asks for [`CallEvent::QueueLow`] once the audio queued falls below
    /// `ms` (see [`Call::notify_queue_below`]).
    pub fn notify_queue_below(&mut self, ms: u64) {
        self.call.notify_queue_below(ms);
    }

    /// Clears so far (the application's and barge-ins): a handler that
    /// keeps audio of its own for the call tells from it that the call
    /// dropped what it held.
    pub fn clears(&self) -> u64 {
        self.call.stats().clears
    }

    /// Whether our audio is queued or still playing.
    pub fn is_playing(&self) -> bool {
        self.call.is_playing()
    }

    /// The call's counters.
    pub fn stats(&self) -> &CallStats {
        self.call.stats()
    }

    /// A handle for other threads (see the module docs).
    pub fn remote(&self) -> RemoteControl {
        self.remotes.set(true);
        RemoteControl {
            shared: Arc::clone(self.shared),
        }
    }
}

enum Command {
    PlayPcm(Vec<i16>),
    PlayUlaw(Vec<u8>),
    Mark(String),
    Clear,
    Hangup,
}

impl Command {
    fn samples(&self) -> usize {
        match self {
            Command::PlayPcm(s) => s.len(),
            Command::PlayUlaw(b) => b.len(),
            _ => 0,
        }
    }
}

#[derive(Default)]
struct Inbox {
    commands: VecDeque<Command>,
    samples: usize,
}

struct Shared {
    inbox: Mutex<Inbox>,
    /// Commands wait in the inbox: set with the lock held by a sender,
    /// cleared with it held by the session, so the frame path of a call
    /// nobody steers from outside reads one flag and takes no lock.
    queued: AtomicBool,
    /// [`RemoteControl::wake`] asked for the handler.
    woken: AtomicBool,
    ended: AtomicBool,
    waker: Option<Waker>,
}

impl Shared {
    fn inbox(&self) -> MutexGuard<'_, Inbox> {
        // A thread that panicked while holding the lock left the queue whole
        // (every change is a single push or drain), so carry on.
        self.inbox.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Why a command from another thread was refused.
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RemoteError {
    /// The call has ended; stop working for it.
    Ended,
    /// Too many commands or too much audio waiting for the driver
    /// ([`REMOTE_MAX_COMMANDS`], [`REMOTE_MAX_SAMPLES`]).
    Full,
    /// A mark name longer than [`MAX_MARK_NAME`].
    MarkNameTooLong,
}

impl std::fmt::Display for RemoteError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RemoteError::Ended => f.write_str("the call has ended"),
            RemoteError::Full => f.write_str("too many commands waiting for the call"),
            RemoteError::MarkNameTooLong => f.write_str("mark name too long"),
        }
    }
}

impl std::error::Error for RemoteError {}

/// Controls a call from any thread: commands are queued, the driver is
/// woken, and the session applies them in order at its next `handle_*`.
/// Errors that arise when they are applied (a full outbound queue) come out
/// of the session as [`Warning::Command`].
#[derive(Clone)]
pub struct RemoteControl {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for RemoteControl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteControl")
            .field("ended", &self.is_ended())
            .finish()
    }
}

impl RemoteControl {
    /// Queues 16-bit PCM at 8 kHz for the caller.
    pub fn play_pcm(&self, pcm: &[i16]) -> Result<(), RemoteError> {
        self.send(Command::PlayPcm(pcm.to_vec()))
    }

    /// Queues μ-law bytes (8 kHz) for the caller.
    pub fn play_ulaw(&self, ulaw: &[u8]) -> Result<(), RemoteError> {
        self.send(Command::PlayUlaw(ulaw.to_vec()))
    }

    /// Queues a mark after the audio queued so far.
    pub fn mark(&self, name: &str) -> Result<(), RemoteError> {
        if name.len() > MAX_MARK_NAME {
            return Err(RemoteError::MarkNameTooLong);
        }
        self.send(Command::Mark(name.to_string()))
    }

    /// Clears queued audio.
    pub fn clear(&self) -> Result<(), RemoteError> {
        self.send(Command::Clear)
    }

    /// Hangs up once queued audio has played.
    pub fn hangup(&self) -> Result<(), RemoteError> {
        self.send(Command::Hangup)
    }

    /// Has the session call [`Handler::on_wake`] at its next wake, after the
    /// commands queued before. Several wakes before it runs are one.
    pub fn wake(&self) {
        if self.is_ended() || self.shared.woken.swap(true, Ordering::AcqRel) {
            return;
        }
        if let Some(wake) = &self.shared.waker {
            wake();
        }
    }

    /// Whether the call has ended (further commands fail with `Ended`).
    pub fn is_ended(&self) -> bool {
        self.shared.ended.load(Ordering::Acquire)
    }

    fn send(&self, command: Command) -> Result<(), RemoteError> {
        if self.is_ended() {
            return Err(RemoteError::Ended);
        }
        {
            let mut inbox = self.shared.inbox();
            let samples = command.samples();
            if inbox.commands.len() >= REMOTE_MAX_COMMANDS
                || inbox.samples + samples > REMOTE_MAX_SAMPLES
            {
                return Err(RemoteError::Full);
            }
            inbox.samples += samples;
            inbox.commands.push_back(command);
            self.shared.queued.store(true, Ordering::Release);
        }
        if let Some(wake) = &self.shared.waker {
            wake();
        }
        Ok(())
    }
}

/// A [`Call`] wired to a [`Handler`]: the unit the connection engine runs
/// per media stream. It keeps the crate's [run loop](crate#run-loop) as
/// [`Call`] does; a wake is handled like a timeout.
pub struct Session {
    call: Call,
    handler: Slot,
    shared: Arc<Shared>,
    /// Whether a [`RemoteControl`] was ever handed out: until then no
    /// command can be waiting, and the shared flag (a line of memory no
    /// frame otherwise touches) is not looked at.
    remotes: Cell<bool>,
    tap: bool,
    warnings: VecDeque<Warning>,
}

impl Session {
    /// See [`Connection::hot_memory`](crate::connection::Connection::hot_memory).
    pub(crate) fn hot_memory(&self, visit: crate::hot::Visit<'_>) {
        // The inbox is looked at only once a remote control exists.
        if self.remotes.get() {
            visit(Arc::as_ptr(&self.shared).cast(), size_of::<Shared>());
        }
        self.call.hot_memory(visit);
    }

    /// Wires `call` to `handler`; `waker` is called when another thread
    /// gives a command.
    pub fn new(call: Call, handler: Box<dyn Handler>, waker: Option<Waker>) -> Self {
        Self::with_slot(call, Slot::Ready(handler), waker)
    }

    /// Wires `call` to the handler `factory` makes from the call's `start`.
    /// Events before `start` (`Connected`) reach no handler; the first event
    /// the handler sees is `Started`.
    pub fn on_start(call: Call, factory: HandlerFactory, waker: Option<Waker>) -> Self {
        Self::with_slot(call, Slot::Pending(factory), waker)
    }

    fn with_slot(call: Call, handler: Slot, waker: Option<Waker>) -> Self {
        Session {
            tap: call.config().tap,
            call,
            handler,
            shared: Arc::new(Shared {
                inbox: Mutex::new(Inbox::default()),
                queued: AtomicBool::new(false),
                woken: AtomicBool::new(false),
                ended: AtomicBool::new(false),
                waker,
            }),
            remotes: Cell::new(false),
            warnings: VecDeque::new(),
        }
    }

    /// One text frame from Twilio, received at `now`.
    pub fn handle_text(&mut self, now: Instant, text: &str) {
        self.handle_text_if(now, text, |_| true);
    }

    /// [`Session::handle_text`] with a look at the parsed message first
    /// (see [`Call::handle_text_if`]).
    pub fn handle_text_if(
        &mut self,
        now: Instant,
        text: &str,
        admit: impl FnOnce(&crate::wire::Fact<'_>) -> bool,
    ) {
        self.apply_remote(now);
        self.call.handle_text_if(now, text, admit);
    }

    /// The socket closed at `now`.
    pub fn handle_closed(&mut self, now: Instant) {
        self.apply_remote(now);
        self.call.handle_closed(now);
    }

    /// The transport failed at `now`.
    pub fn handle_error(&mut self, now: Instant, error: &str) {
        self.apply_remote(now);
        self.call.handle_error(now, error);
    }

    /// The deadline passed, or the waker fired: applies commands from other
    /// threads and lets time advance.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.apply_remote(now);
        self.call.handle_timeout(now);
        if self.remotes.get() && self.shared.woken.swap(false, Ordering::AcqRel) {
            self.wake_handler();
        }
    }

    /// [`Handler::on_wake`], unless the call ended.
    fn wake_handler(&mut self) {
        if self.call.is_ended() {
            return;
        }
        if let Slot::Ready(handler) = &mut self.handler {
            let mut control = Control {
                call: &mut self.call,
                shared: &self.shared,
                remotes: &self.remotes,
            };
            handler.on_wake(&mut control);
        }
    }

    /// The next thing to do, the call's own outputs after the handler saw each
    /// event (`Audio` and `AudioOut` are passed on only with
    /// [`CallConfig::tap`]). Drain until [`CallOutput::Timeout`].
    #[must_use]
    pub fn poll_output(&mut self) -> CallOutput {
        loop {
            if let Some(w) = self.warnings.pop_front() {
                return CallOutput::Event(CallEvent::Warning(w));
            }
            match self.call.poll_output() {
                out @ (CallOutput::Send(_) | CallOutput::Close { .. } | CallOutput::Timeout(_)) => {
                    return out;
                }
                CallOutput::Event(event) => {
                    if matches!(event, CallEvent::Stopped { .. }) {
                        self.shared.ended.store(true, Ordering::Release);
                    }
                    let mut control = Control {
                        call: &mut self.call,
                        shared: &self.shared,
                        remotes: &self.remotes,
                    };
                    if let (Slot::Pending(factory), CallEvent::Started(start)) =
                        (&self.handler, &event)
                    {
                        self.handler = Slot::Ready(factory(start));
                    }
                    if let Slot::Ready(handler) = &mut self.handler {
                        handler.on_event(&event, &mut control);
                    }
                    if self.tap || !matches!(event, CallEvent::Audio(_) | CallEvent::AudioOut(_)) {
                        return CallOutput::Event(event);
                    }
                }
            }
        }
    }

    /// Hands back the text of a [`CallOutput::Send`] once written (see
    /// [`Call::recycle`]).
    pub fn recycle(&mut self, text: String) {
        self.call.recycle(text);
    }

    /// The call's counters.
    pub fn stats(&self) -> &CallStats {
        self.call.stats()
    }

    /// The call.
    pub fn call(&self) -> &Call {
        &self.call
    }

    /// A handle to control the call from another thread.
    pub fn remote(&self) -> RemoteControl {
        self.remotes.set(true);
        RemoteControl {
            shared: Arc::clone(&self.shared),
        }
    }

    fn apply_remote(&mut self, now: Instant) {
        if !self.remotes.get() || !self.shared.queued.load(Ordering::Acquire) {
            return;
        }
        let commands: VecDeque<Command> = {
            let mut inbox = self.shared.inbox();
            self.shared.queued.store(false, Ordering::Relaxed);
            inbox.samples = 0;
            std::mem::take(&mut inbox.commands)
        };
        // Commands that raced the end of the call are moot: `Stopped` is the
        // last event, so they are dropped without a warning.
        if self.call.is_ended() {
            return;
        }
        for command in commands {
            let result = match command {
                Command::PlayPcm(pcm) => self.call.play_pcm(now, &pcm),
                Command::PlayUlaw(ulaw) => self.call.play_ulaw(now, &ulaw),
                Command::Mark(name) => self.call.mark(now, &name),
                Command::Clear => {
                    self.call.clear(now);
                    Ok(())
                }
                Command::Hangup => {
                    self.call.hangup(now);
                    Ok(())
                }
            };
            if let Err(e) = result {
                self.warnings.push_back(Warning::Command(e));
            }
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        // Remote handles outlive the session: tell their threads to stop.
        self.shared.ended.store(true, Ordering::Release);
    }
}

/// The handler of a [`Session`]: made already, or made at `start`.
enum Slot {
    Ready(Box<dyn Handler>),
    Pending(HandlerFactory),
}

/// A factory for sessions whose handler `handlers` makes at each call's
/// `start`, with `config`.
pub fn session_factory(config: CallConfig, handlers: HandlerFactory) -> SessionFactory {
    Arc::new(move |now, waker| {
        Session::on_start(Call::new(config.clone(), now), handlers.clone(), waker)
    })
}

/// The shipped handler called `name`: `"echo"`, `"parrot"` or `"silent"`.
pub fn by_name(name: &str) -> Option<HandlerFactory> {
    match name {
        "echo" => Some(Arc::new(|_: &StreamStart| {
            Box::new(Echo) as Box<dyn Handler>
        })),
        "parrot" => Some(Arc::new(|_: &StreamStart| {
            Box::new(Parrot::default()) as Box<dyn Handler>
        })),
        "silent" => Some(Arc::new(|_: &StreamStart| {
            Box::new(Silent) as Box<dyn Handler>
        })),
        _ => None,
    }
}

/// The names [`by_name`] knows.
pub const NAMES: [&str; 3] = ["echo", "parrot", "silent"];
