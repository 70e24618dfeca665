//! Whole-call tests in simulated time: the machine under test (`Call` or
//! `Session`) against Twilio as `callstream-twilio` models it (its messages,
//! its strict check of ours, its playout and mark echoes). This file only
//! drives the two; what Twilio does lives in the model.
#![allow(dead_code)]

use std::time::{Duration, Instant};

use callstream_core::call::{Call, CallEvent, CallOutput};
use callstream_core::codec;
use callstream_core::handler::Session;
pub use callstream_twilio::ServerMessage;
use callstream_twilio::{Stream, Twilio};

/// The SIDs of `Stream::default()`, the stream every test call uses.
pub const SID: &str = "MZ0123456789abcdef0123456789abcdef";
pub const CALL: &str = "CA0123456789abcdef0123456789abcdef";
pub const ACCOUNT: &str = "AC0123456789abcdef0123456789abcdef";
pub const MS: Duration = Duration::from_millis(1);

fn stream() -> Stream {
    Stream::default()
}

pub fn connected() -> String {
    callstream_twilio::connected()
}

pub fn start(params: &[(&str, &str)]) -> String {
    stream().start(params)
}

pub fn media(seq: u64, chunk: u64, timestamp: u64, ulaw: &[u8]) -> String {
    stream().media(seq, chunk, timestamp, ulaw)
}

pub fn media_for(sid: &str, seq: u64, chunk: u64, timestamp: u64, ulaw: &[u8]) -> String {
    Stream {
        stream_sid: sid.to_owned(),
        ..stream()
    }
    .media(seq, chunk, timestamp, ulaw)
}

pub fn dtmf(seq: u64, digit: &str) -> String {
    stream().dtmf(seq, digit)
}

pub fn mark_echo(seq: u64, name: &str) -> String {
    stream().mark(seq, name)
}

pub fn stop(seq: u64) -> String {
    stream().stop(seq)
}

/// Reads what we sent as Twilio does, failing the test on anything Twilio
/// would refuse (warning 31951).
pub fn check_outbound(text: &str) -> ServerMessage {
    match callstream_twilio::check_text(text, Some(SID)) {
        Ok(m) => m,
        Err(w) => panic!("Twilio would refuse it: {w}"),
    }
}

/// One output of a machine under test, Call or Session alike.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)]
pub enum Out {
    Send(String),
    Event(CallEvent),
    Close(u16, String),
    Timeout(Instant),
}

pub trait Machine {
    fn text(&mut self, now: Instant, text: &str);
    fn timeout(&mut self, now: Instant);
    fn closed(&mut self, now: Instant);
    fn poll(&mut self) -> Out;
}

impl Machine for Call {
    fn text(&mut self, now: Instant, text: &str) {
        self.handle_text(now, text)
    }
    fn timeout(&mut self, now: Instant) {
        self.handle_timeout(now)
    }
    fn closed(&mut self, now: Instant) {
        self.handle_closed(now)
    }
    fn poll(&mut self) -> Out {
        match self.poll_output() {
            CallOutput::Send(s) => Out::Send(s),
            CallOutput::Event(e) => Out::Event(e),
            CallOutput::Close { code, reason } => Out::Close(code, reason),
            CallOutput::Timeout(t) => Out::Timeout(t),
        }
    }
}

impl Machine for Session {
    fn text(&mut self, now: Instant, text: &str) {
        self.handle_text(now, text)
    }
    fn timeout(&mut self, now: Instant) {
        self.handle_timeout(now)
    }
    fn closed(&mut self, now: Instant) {
        self.handle_closed(now)
    }
    fn poll(&mut self) -> Out {
        match self.poll_output() {
            CallOutput::Send(s) => Out::Send(s),
            CallOutput::Event(e) => Out::Event(e),
            CallOutput::Close { code, reason } => Out::Close(code, reason),
            CallOutput::Timeout(t) => Out::Timeout(t),
        }
    }
}

/// What the caller's line carries, 20 ms at a time.
pub trait Voice {
    /// The μ-law of the frame that starts at stream time `ms`.
    fn frame(&mut self, ms: u64) -> Vec<u8>;
}

/// Quiet line noise, with speech (a loud buzz, modulated) in the given intervals (ms).
pub struct Script {
    pub talk: Vec<(u64, u64)>,
    seed: u32,
}

impl Script {
    pub fn new(talk: &[(u64, u64)]) -> Self {
        Script {
            talk: talk.to_vec(),
            seed: 12345,
        }
    }
}

impl Voice for Script {
    fn frame(&mut self, ms: u64) -> Vec<u8> {
        let talking = self.talk.iter().any(|(a, b)| ms >= *a && ms < *b);
        (0..160)
            .map(|i| {
                self.seed = self.seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
                let noise = ((self.seed >> 16) % 41) as i16 - 20;
                // Syllables: the buzz swings 8 dB every 100 ms, as speech
                // does; an unmodulated buzz held for half a second is, to the
                // detector, a new noise level.
                let a = if (ms / 100).is_multiple_of(2) {
                    6000
                } else {
                    2400
                };
                let s = if talking {
                    if (i / 10) % 2 == 0 { a } else { -a }
                } else {
                    noise
                };
                codec::encode(s)
            })
            .collect()
    }
}

/// A whole call in simulated time: a caller sending 20 ms media on Twilio's
/// clock, the machine under test, and Twilio's playback.
pub struct Sim<M: Machine> {
    pub m: M,
    pub t0: Instant,
    pub now: Instant,
    /// Twilio's side: what we sent it, its playout, its mark echoes.
    pub twilio: Twilio,
    pub events: Vec<(Instant, CallEvent)>,
    pub close: Option<(u16, String)>,
    /// Next inbound chunk (1-based) and when it is due.
    pub next_chunk: u64,
    pub deadline: Option<Instant>,
    pub media_on: bool,
}

impl<M: Machine> Sim<M> {
    /// Starts a call: `connected` and `start` at t0.
    pub fn new(m: M, t0: Instant) -> Self {
        let mut sim = Sim {
            m,
            t0,
            now: t0,
            twilio: Twilio::new(Stream::default()),
            events: Vec::new(),
            close: None,
            next_chunk: 1,
            deadline: None,
            media_on: true,
        };
        let connected = sim.twilio.connected();
        sim.send(&connected);
        let start = sim.twilio.start(&[]);
        sim.send(&start);
        sim
    }

    pub fn send(&mut self, text: &str) {
        self.m.text(self.now, text);
        self.drain();
    }

    pub fn next_seq(&mut self) -> u64 {
        self.twilio.next_seq()
    }

    pub fn drain(&mut self) {
        loop {
            match self.m.poll() {
                Out::Send(text) => {
                    if let Err(w) = self.twilio.handle_text(self.now, &text) {
                        panic!("Twilio would refuse it: {w}");
                    }
                }
                Out::Event(e) => self.events.push((self.now, e)),
                Out::Close(code, reason) => self.close = Some((code, reason)),
                Out::Timeout(t) => {
                    assert!(t > self.now, "deadline {t:?} not after now after draining");
                    self.deadline = Some(t);
                    break;
                }
            }
        }
    }

    /// Runs to `until`, sending the caller's audio from `voice` every 20 ms,
    /// delivering Twilio's mark echoes, and waking the machine at its deadlines.
    pub fn run(&mut self, until: Instant, voice: &mut dyn Voice) {
        loop {
            let media_at = self.t0 + 20 * MS * (self.next_chunk - 1) as u32;
            let mut next = until;
            if self.media_on {
                next = next.min(media_at);
            }
            if let Some(t) = self.twilio.poll_timeout() {
                next = next.min(t.max(self.now));
            }
            if let Some(d) = self.deadline {
                next = next.min(d);
            }
            if next > until {
                break;
            }
            self.now = next.max(self.now);
            self.twilio.handle_timeout(self.now);
            while let Some(echo) = self.twilio.poll_text() {
                self.send(&echo);
            }
            if self.media_on && media_at <= self.now {
                let ms = (self.next_chunk - 1) * 20;
                let ulaw = voice.frame(ms);
                let seq = self.next_seq();
                let chunk = self.next_chunk;
                self.send(&media(seq, chunk, ms, &ulaw));
                self.next_chunk += 1;
            }
            if self.deadline.is_some_and(|d| d <= self.now) {
                self.m.timeout(self.now);
                self.drain();
            }
            if self.now >= until {
                break;
            }
        }
    }

    pub fn audio(&self) -> Vec<&callstream_core::call::AudioFrame> {
        self.events
            .iter()
            .filter_map(|(_, e)| match e {
                CallEvent::Audio(f) => Some(f),
                _ => None,
            })
            .collect()
    }

    /// Events other than audio, for readable assertions.
    pub fn notable(&self) -> Vec<&CallEvent> {
        self.events
            .iter()
            .map(|(_, e)| e)
            .filter(|e| !matches!(e, CallEvent::Audio(_) | CallEvent::AudioOut(_)))
            .collect()
    }

    pub fn mark_dones(&self) -> Vec<(String, callstream_core::call::MarkOutcome)> {
        self.events
            .iter()
            .filter_map(|(_, e)| match e {
                CallEvent::MarkDone { name, outcome } => Some((name.clone(), *outcome)),
                _ => None,
            })
            .collect()
    }

    pub fn count(&self, f: impl Fn(&CallEvent) -> bool) -> usize {
        self.events.iter().filter(|(_, e)| f(e)).count()
    }
}
