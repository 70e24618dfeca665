//! Simulated Twilio for whole-call tests: builds Twilio's messages (docs/protocol.md
//! §2 format), checks every message we send, and models Twilio's playback
//! buffer (plays in order at 8 kHz, echoes a mark when the audio before it has
//! played or when a clear flushed it).
#![allow(dead_code)]

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use base64::Engine;
use callstream_core::call::{Call, CallEvent, CallOutput};
use callstream_core::codec;
use callstream_core::handler::Session;
use serde_json::Value;

pub const SID: &str = "MZ0123456789abcdef0123456789abcdef";
pub const CALL: &str = "CA0123456789abcdef0123456789abcdef";
pub const ACCOUNT: &str = "AC0123456789abcdef0123456789abcdef";
pub const MS: Duration = Duration::from_millis(1);

pub fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

pub fn connected() -> String {
    r#"{"event":"connected","protocol":"Call","version":"1.0.0"}"#.to_string()
}

pub fn start(params: &[(&str, &str)]) -> String {
    let custom: Vec<String> = params
        .iter()
        .map(|(k, v)| format!("{}:{}", Value::from(*k), Value::from(*v)))
        .collect();
    format!(
        r#"{{"event":"start","sequenceNumber":"1","streamSid":"{SID}","start":{{"accountSid":"{ACCOUNT}","streamSid":"{SID}","callSid":"{CALL}","tracks":["inbound"],"customParameters":{{{}}},"mediaFormat":{{"encoding":"audio/x-mulaw","sampleRate":8000,"channels":1}}}}}}"#,
        custom.join(",")
    )
}

pub fn media(seq: u64, chunk: u64, timestamp: u64, ulaw: &[u8]) -> String {
    media_for(SID, seq, chunk, timestamp, ulaw)
}

pub fn media_for(sid: &str, seq: u64, chunk: u64, timestamp: u64, ulaw: &[u8]) -> String {
    format!(
        r#"{{"event":"media","sequenceNumber":"{seq}","streamSid":"{sid}","media":{{"track":"inbound","chunk":"{chunk}","timestamp":"{timestamp}","payload":"{}"}}}}"#,
        b64(ulaw)
    )
}

pub fn dtmf(seq: u64, digit: &str) -> String {
    format!(
        r#"{{"event":"dtmf","sequenceNumber":"{seq}","streamSid":"{SID}","dtmf":{{"track":"inbound_track","digit":"{digit}"}}}}"#
    )
}

pub fn mark_echo(seq: u64, name: &str) -> String {
    format!(
        r#"{{"event":"mark","sequenceNumber":"{seq}","streamSid":"{SID}","mark":{{"name":{}}}}}"#,
        Value::from(name)
    )
}

pub fn stop(seq: u64) -> String {
    format!(
        r#"{{"event":"stop","sequenceNumber":"{seq}","streamSid":"{SID}","stop":{{"accountSid":"{ACCOUNT}","callSid":"{CALL}"}}}}"#
    )
}

/// What we sent, parsed and checked against docs/protocol.md §2.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Sent {
    Media(Vec<u8>),
    Mark(String),
    Clear,
}

/// Parses one outbound text, panicking on anything Twilio would reject
/// (warning 31951: extra or missing fields, unknown event, wrong streamSid).
pub fn check_outbound(text: &str) -> Sent {
    let v: Value = serde_json::from_str(text).expect("outbound is JSON");
    let obj = v.as_object().expect("outbound is an object");
    assert_eq!(
        obj.get("streamSid").and_then(Value::as_str),
        Some(SID),
        "{text}"
    );
    fn keys(o: &serde_json::Map<String, Value>) -> Vec<&str> {
        let mut k: Vec<&str> = o.keys().map(String::as_str).collect();
        k.sort();
        k
    }
    match obj.get("event").and_then(Value::as_str) {
        Some("media") => {
            assert_eq!(keys(obj), ["event", "media", "streamSid"], "{text}");
            let m = obj["media"].as_object().expect("media object");
            assert_eq!(keys(m), ["payload"], "{text}");
            let payload = m["payload"].as_str().expect("payload string");
            Sent::Media(
                base64::engine::general_purpose::STANDARD
                    .decode(payload)
                    .expect("payload is standard base64"),
            )
        }
        Some("mark") => {
            assert_eq!(keys(obj), ["event", "mark", "streamSid"], "{text}");
            let m = obj["mark"].as_object().expect("mark object");
            assert_eq!(keys(m), ["name"], "{text}");
            Sent::Mark(m["name"].as_str().expect("name").to_string())
        }
        Some("clear") => {
            assert_eq!(keys(obj), ["event", "streamSid"], "{text}");
            Sent::Clear
        }
        other => panic!("unknown outbound event {other:?}: {text}"),
    }
}

/// Twilio's side of the outbound audio: a playback buffer at 8 kHz.
#[derive(Debug)]
pub struct Player {
    /// When the buffered audio will have played.
    buffer_end: Option<Instant>,
    /// Marks waiting for their audio: (due, name).
    marks: VecDeque<(Instant, String)>,
    /// Echoes to deliver: (at, name).
    pub echoes: VecDeque<(Instant, String)>,
    /// Network delay for echoes.
    pub latency: Duration,
    /// Played audio: (start, bytes); truncated at a clear.
    pub segments: Vec<(Instant, Vec<u8>)>,
    /// Most audio buffered at Twilio at once.
    pub max_buffered: Duration,
    pub sent: Vec<Sent>,
    pub clears: usize,
    /// Echoes Twilio loses, by their 0-based index among all echoes.
    pub lose: std::collections::BTreeSet<usize>,
    /// Echoes produced so far, lost ones included.
    pub echoed: usize,
}

impl Player {
    pub fn new() -> Self {
        Player {
            buffer_end: None,
            marks: VecDeque::new(),
            echoes: VecDeque::new(),
            latency: Duration::ZERO,
            segments: Vec::new(),
            max_buffered: Duration::ZERO,
            sent: Vec::new(),
            clears: 0,
            lose: std::collections::BTreeSet::new(),
            echoed: 0,
        }
    }

    pub fn receive(&mut self, now: Instant, text: &str) {
        let sent = check_outbound(text);
        self.release_marks(now);
        match &sent {
            Sent::Media(bytes) => {
                let start = self.buffer_end.filter(|e| *e > now).unwrap_or(now);
                let end = start + Duration::from_micros(bytes.len() as u64 * 125);
                self.buffer_end = Some(end);
                self.max_buffered = self.max_buffered.max(end - now);
                self.segments.push((start, bytes.clone()));
            }
            Sent::Mark(name) => {
                let due = self.buffer_end.filter(|e| *e > now).unwrap_or(now);
                self.marks.push_back((due, name.clone()));
            }
            Sent::Clear => {
                self.clears += 1;
                // Twilio echoes cleared marks too, at once.
                let cleared: Vec<String> = self.marks.drain(..).map(|(_, n)| n).collect();
                for name in cleared {
                    self.echo(now + self.latency, name);
                }
                // Truncate what had not played.
                for (start, bytes) in &mut self.segments {
                    if *start >= now {
                        bytes.clear();
                    } else {
                        let played = ((now - *start).as_micros() / 125) as usize;
                        bytes.truncate(played);
                    }
                }
                self.buffer_end = None;
            }
        }
        self.release_marks(now);
        self.sent.push(sent);
    }

    fn release_marks(&mut self, now: Instant) {
        while let Some((due, _)) = self.marks.front() {
            if *due > now {
                break;
            }
            let (due, name) = self.marks.pop_front().unwrap();
            self.echo(due + self.latency, name);
        }
    }

    fn echo(&mut self, at: Instant, name: String) {
        if !self.lose.contains(&self.echoed) {
            self.echoes.push_back((at, name));
        }
        self.echoed += 1;
    }

    /// Marks Twilio holds whose audio has not played by `now`.
    pub fn holding(&mut self, now: Instant) -> usize {
        self.release_marks(now);
        self.marks.len()
    }

    /// The next time something happens at Twilio's side.
    pub fn next_event(&self) -> Option<Instant> {
        let m = self.marks.front().map(|(d, _)| *d);
        let e = self.echoes.front().map(|(d, _)| *d);
        match (m, e) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Echoes due by `now`.
    pub fn due_echoes(&mut self, now: Instant) -> Vec<String> {
        self.release_marks(now);
        let mut out = Vec::new();
        while let Some((at, _)) = self.echoes.front() {
            if *at > now {
                break;
            }
            out.push(self.echoes.pop_front().unwrap().1);
        }
        out
    }

    /// Milliseconds of our audio played by `now`.
    pub fn played_ms(&self, now: Instant) -> u64 {
        let mut bytes = 0u64;
        for (start, b) in &self.segments {
            if *start < now {
                let n = ((now - *start).as_micros() / 125) as usize;
                bytes += b.len().min(n) as u64;
            }
        }
        bytes / 8
    }

    pub fn buffered(&self, now: Instant) -> Duration {
        self.buffer_end
            .map_or(Duration::ZERO, |e| e.saturating_duration_since(now))
    }

    pub fn media_bytes(&self) -> Vec<u8> {
        self.sent
            .iter()
            .filter_map(|s| match s {
                Sent::Media(b) => Some(b.as_slice()),
                _ => None,
            })
            .flatten()
            .copied()
            .collect()
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
                let a = if (ms / 100) % 2 == 0 { 6000 } else { 2400 };
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
    pub player: Player,
    pub events: Vec<(Instant, CallEvent)>,
    pub close: Option<(u16, String)>,
    pub seq: u64,
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
            player: Player::new(),
            events: Vec::new(),
            close: None,
            seq: 1,
            next_chunk: 1,
            deadline: None,
            media_on: true,
        };
        sim.send(&connected());
        sim.send(&start(&[]));
        sim
    }

    pub fn send(&mut self, text: &str) {
        self.m.text(self.now, text);
        self.drain();
    }

    pub fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    pub fn drain(&mut self) {
        loop {
            match self.m.poll() {
                Out::Send(text) => self.player.receive(self.now, &text),
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
            if let Some(t) = self.player.next_event() {
                next = next.min(t.max(self.now));
            }
            if let Some(d) = self.deadline {
                next = next.min(d);
            }
            if next > until {
                break;
            }
            self.now = next.max(self.now);
            for name in self.player.due_echoes(self.now) {
                let seq = self.next_seq();
                self.send(&mark_echo(seq, &name));
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
