//! One simulated call as Twilio places it, sans-IO: the upgrade, `connected`,
//! `start`, media every 20 ms on absolute deadlines, DTMF, `stop`; and what
//! Twilio makes of the server's answer (the model's [`Twilio`]: every message
//! checked, audio played out in real time, marks echoed). It measures as it
//! goes. Bytes and time in, bytes out: the blocking pump (one call) and the
//! load pump (hundreds on one thread) drive the same machine.
//!
//! Contract (the core's run loop): after [`Call::new`] and after every
//! [`Call::handle_receive`], [`Call::handle_eof`] or [`Call::handle_timeout`],
//! send what [`Call::poll_transmit`] gives and come back at
//! [`Call::poll_timeout`]; `None` there means the call is over.

use std::sync::Arc;
use std::time::{Duration, Instant};

use callstream_core::codec::{FRAME_MS, FRAME_SAMPLES, SILENCE};
use callstream_twilio::frame::{self, client_frame, text_frame};
use callstream_twilio::{ServerMessage, Stream, Twilio, Upgrade, response};

/// One 20 ms frame.
const FRAME: Duration = Duration::from_millis(FRAME_MS);
/// How long an answer to the upgrade may take before Twilio gives up.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long to wait for the server's close after Twilio's.
const CLOSE_WAIT: Duration = Duration::from_secs(2);
/// The most bytes buffered from a server that sends no whole frame.
const MAX_PENDING: usize = 1 << 20;
/// Between the digits of one `--dtmf` entry.
const DTMF_GAP: Duration = Duration::from_millis(200);

/// What the caller does on one call.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    /// The caller's audio, 8 kHz μ-law; silence follows it.
    pub audio: Vec<u8>,
    /// Where the caller's speech ends, from the start of the stream.
    pub speech_end: Duration,
    /// Media is sent until this point of the stream.
    pub duration: Duration,
    /// Quiet after the last frame before `stop`, so the answer to the last
    /// frames can arrive.
    pub linger: Duration,
    /// Digits pressed, each at its point in the stream.
    pub dtmf: Vec<(Duration, String)>,
    /// The `<Parameter>`s of `start`.
    pub params: Vec<(String, String)>,
}

impl Plan {
    /// The `k`th frame the caller sends.
    #[must_use]
    pub fn frame(&self, k: usize) -> [u8; FRAME_SAMPLES] {
        let mut out = [SILENCE; FRAME_SAMPLES];
        let start = k.saturating_mul(FRAME_SAMPLES);
        if let Some(src) = self.audio.get(start..) {
            let n = src.len().min(FRAME_SAMPLES);
            out[..n].copy_from_slice(&src[..n]);
        }
        out
    }

    /// How many frames are sent.
    #[must_use]
    pub fn frames(&self) -> usize {
        (self.duration.as_millis() as u64).div_ceil(FRAME_MS) as usize
    }
}

/// A failure that ends a call, with the Twilio error it would log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// Twilio's error code (31920 for the upgrade, 31924 for framing).
    pub code: u16,
    /// What happened.
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Handshake,
    Open,
    Closing(Instant),
    Done,
}

/// One call. See the module docs for the contract.
#[derive(Debug)]
pub struct Call {
    plan: Arc<Plan>,
    upgrade: Upgrade,
    /// Twilio's side of the stream: what it received, played and logged.
    pub twilio: Twilio,
    phase: Phase,
    opened: Instant,
    deadline: Instant,
    inbuf: Vec<u8>,
    out: Vec<u8>,
    t0: Option<Instant>,
    sent_at: Vec<Instant>,
    next_dtmf: usize,
    dtmf_sent: usize,
    received_bytes: usize,
    media_messages: usize,
    mismatched: usize,
    /// Per frame echoed: from sending it to its bytes coming back.
    pub echo: Vec<Duration>,
    /// Per frame sent: how long after its deadline it went (the
    /// simulator's own lag, which a loaded machine shows first, and on a
    /// grid the wait for the frame's tick).
    pub late: Vec<Duration>,
    /// Frames leave only at ticks of this grid (origin, tick), if set.
    grid: Option<(Instant, Duration)>,
    turn: Option<Duration>,
    handshake: Option<Duration>,
    subprotocol: Option<String>,
    failure: Option<Failure>,
    server_close: Option<Option<u16>>,
}

impl Call {
    /// A call opening at `now` with `upgrade` on `stream`.
    #[must_use]
    pub fn new(plan: Arc<Plan>, upgrade: Upgrade, stream: Stream, now: Instant) -> Call {
        let out = upgrade.to_bytes();
        Call {
            plan,
            upgrade,
            twilio: Twilio::new(stream),
            phase: Phase::Handshake,
            opened: now,
            deadline: now + HANDSHAKE_TIMEOUT,
            inbuf: Vec::new(),
            out,
            t0: None,
            sent_at: Vec::new(),
            next_dtmf: 0,
            dtmf_sent: 0,
            received_bytes: 0,
            media_messages: 0,
            mismatched: 0,
            echo: Vec::new(),
            late: Vec::new(),
            grid: None,
            turn: None,
            handshake: None,
            subprotocol: None,
            failure: None,
            server_close: None,
        }
    }

    /// Bytes from the server at `now`.
    pub fn handle_receive(&mut self, now: Instant, bytes: &[u8]) {
        if matches!(self.phase, Phase::Done) {
            return;
        }
        self.inbuf.extend_from_slice(bytes);
        if self.phase == Phase::Handshake {
            match response::parse_head(&self.inbuf) {
                Ok(None) if self.inbuf.len() <= MAX_PENDING => return,
                Ok(None) => return self.fail(31920, "answer head too long".into()),
                Err(e) => return self.fail(31920, e.to_string()),
                Ok(Some(head)) => match self.upgrade.check_answer(&head) {
                    Err(e) => {
                        let body =
                            String::from_utf8_lossy(self.inbuf.get(head.len..).unwrap_or_default())
                                .chars()
                                .take(200)
                                .collect::<String>();
                        let extra = match head.header("location") {
                            Some(loc) => format!(" (redirect to {loc})"),
                            None if body.trim().is_empty() => String::new(),
                            None => format!(" ({})", body.trim()),
                        };
                        return self.fail(31920, format!("{e}{extra}"));
                    }
                    Ok(protocol) => {
                        self.subprotocol = protocol;
                        self.inbuf.drain(..head.len.min(self.inbuf.len()));
                        self.handshake = Some(now - self.opened);
                        self.open(now);
                    }
                },
            }
        }
        self.read_frames(now);
        self.handle_timeout(now);
    }

    /// The server closed the connection (or it failed) at `now`.
    pub fn handle_eof(&mut self, now: Instant) {
        match self.phase {
            Phase::Handshake => self.fail(31920, "connection closed before a 101".into()),
            Phase::Open => {
                self.twilio.handle_timeout(now);
                self.server_close.get_or_insert(None);
                self.phase = Phase::Done;
            }
            Phase::Closing(_) | Phase::Done => self.phase = Phase::Done,
        }
    }

    /// Time passed to `now`: frames, digits and `stop` fall due, marks are
    /// echoed.
    pub fn handle_timeout(&mut self, now: Instant) {
        match self.phase {
            Phase::Handshake if now >= self.deadline => {
                self.fail(31920, "no answer to the upgrade within 10 s".into());
            }
            Phase::Closing(until) if now >= until => self.phase = Phase::Done,
            Phase::Open => self.stream(now),
            _ => {}
        }
    }

    /// Bytes to send to the server, if any.
    #[must_use]
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        if self.out.is_empty() {
            None
        } else {
            Some(std::mem::take(&mut self.out))
        }
    }

    /// When the call next has something to do (on a grid, at that time's
    /// tick); `None` once it is over.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        let due = match self.phase {
            Phase::Done => None,
            Phase::Handshake => Some(self.deadline),
            Phase::Closing(until) => Some(until),
            Phase::Open => {
                let t0 = self.t0?;
                let mut due = self.next_frame_due(t0);
                if let Some((at, _)) = self.plan.dtmf.get(self.next_dtmf) {
                    due = due.min(t0 + *at + DTMF_GAP * self.dtmf_sent as u32);
                }
                if let Some(t) = self.twilio.poll_timeout() {
                    due = due.min(t);
                }
                Some(due)
            }
        };
        due.map(|t| self.released(t))
    }

    /// Sends each frame at the first tick of `tick` after `origin` at or
    /// after its time, not before ([`on_tick`](super::load::on_tick)), times
    /// its echo from that tick, and names every deadline at its tick: the
    /// frames of a load generator on a timer wheel.
    pub fn set_grid(&mut self, origin: Instant, tick: Duration) {
        self.grid = (!tick.is_zero()).then_some((origin, tick));
    }

    /// When something due at `due` happens: then, or at its tick.
    fn released(&self, due: Instant) -> Instant {
        match self.grid {
            Some((origin, tick)) => super::load::on_tick(due, origin, tick),
            None => due,
        }
    }

    /// Whether the call is over.
    #[must_use]
    pub fn is_done(&self) -> bool {
        self.phase == Phase::Done
    }

    fn next_frame_due(&self, t0: Instant) -> Instant {
        let k = self.sent_at.len();
        if k < self.plan.frames() {
            t0 + FRAME * k as u32
        } else {
            t0 + FRAME * k as u32 + self.plan.linger
        }
    }

    fn open(&mut self, now: Instant) {
        self.phase = Phase::Open;
        self.t0 = Some(now);
        let params: Vec<(&str, &str)> = self
            .plan
            .params
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let connected = self.twilio.connected();
        let start = self.twilio.start(&params);
        self.send_text(&connected);
        self.send_text(&start);
    }

    fn stream(&mut self, now: Instant) {
        let Some(t0) = self.t0 else { return };
        self.twilio.handle_timeout(now);
        while let Some(echo) = self.twilio.poll_text() {
            self.send_text(&echo);
        }
        // Digits interleave with media in time order.
        loop {
            let frame_due = self.next_frame_due(t0);
            let release = self.released(frame_due);
            let dtmf_due = self
                .plan
                .dtmf
                .get(self.next_dtmf)
                .map(|(at, _)| t0 + *at + DTMF_GAP * self.dtmf_sent as u32);
            match dtmf_due {
                Some(d) if d <= now && d <= frame_due => self.send_digit(),
                _ if release <= now => {
                    let k = self.sent_at.len();
                    if k < self.plan.frames() {
                        let frame = self.plan.frame(k);
                        let text = self.twilio.media(&frame);
                        self.sent_at.push(release);
                        self.late.push(now.saturating_duration_since(frame_due));
                        self.send_text(&text);
                    } else {
                        let stop = self.twilio.stop();
                        self.send_text(&stop);
                        self.out
                            .extend_from_slice(&client_frame(0x88, &1000u16.to_be_bytes()));
                        self.phase = Phase::Closing(now + CLOSE_WAIT);
                        return;
                    }
                }
                _ => return,
            }
        }
    }

    fn send_digit(&mut self) {
        let plan = Arc::clone(&self.plan);
        let Some((_, digits)) = plan.dtmf.get(self.next_dtmf) else {
            return;
        };
        let digit = digits.chars().nth(self.dtmf_sent).map(String::from);
        let count = digits.chars().count();
        if let Some(d) = digit {
            let text = self.twilio.dtmf(&d);
            self.send_text(&text);
            self.dtmf_sent += 1;
        }
        if self.dtmf_sent >= count {
            self.next_dtmf += 1;
            self.dtmf_sent = 0;
        }
    }

    fn send_text(&mut self, text: &str) {
        self.out.extend_from_slice(&text_frame(text));
    }

    fn read_frames(&mut self, now: Instant) {
        loop {
            let (frame, used) = match frame::read_server_frame(&self.inbuf) {
                Ok(Some(f)) => f,
                Ok(None) if self.inbuf.len() > MAX_PENDING => {
                    return self.fail(31924, "a frame over 1 MiB".into());
                }
                Ok(None) => return,
                Err(e) => return self.fail(31924, format!("WebSocket protocol error: {e}")),
            };
            self.inbuf.drain(..used.min(self.inbuf.len()));
            match frame.opcode {
                0x1 => {
                    let text = String::from_utf8_lossy(&frame.payload);
                    if let Ok(ServerMessage::Media(bytes)) = self.twilio.handle_text(now, &text) {
                        self.on_media(now, &bytes);
                    }
                }
                0x2 => {
                    let _ = self.twilio.handle_binary(now);
                }
                0x8 => {
                    let code = frame
                        .payload
                        .first_chunk::<2>()
                        .map(|c| u16::from_be_bytes(*c));
                    self.server_close = Some(code);
                    if matches!(self.phase, Phase::Open) {
                        self.out
                            .extend_from_slice(&client_frame(0x88, &frame.payload));
                    }
                    self.phase = Phase::Done;
                    return;
                }
                0x9 => self
                    .out
                    .extend_from_slice(&client_frame(0x8A, &frame.payload)),
                _ => {}
            }
        }
    }

    fn on_media(&mut self, now: Instant, bytes: &[u8]) {
        let Some(t0) = self.t0 else { return };
        self.media_messages += 1;
        let speech_end = t0 + self.plan.speech_end;
        if self.turn.is_none() && now >= speech_end {
            self.turn = Some(now - speech_end);
        }
        // Compared with what the caller sent at the same offset: an echo
        // returns it byte for byte. One frame at a time.
        let mut i = 0;
        while i < bytes.len() {
            let at = self.received_bytes + i;
            let (k, off) = (at / FRAME_SAMPLES, at % FRAME_SAMPLES);
            let n = (FRAME_SAMPLES - off).min(bytes.len() - i);
            if off == 0
                && let Some(sent) = self.sent_at.get(k)
            {
                self.echo.push(now.saturating_duration_since(*sent));
            }
            let sent = self.plan.frame(k);
            let (want, got) = (sent.get(off..off + n), bytes.get(i..i + n));
            self.mismatched += match (want, got) {
                (Some(w), Some(g)) => w.iter().zip(g).filter(|(a, b)| a != b).count(),
                _ => n,
            };
            i += n;
        }
        self.received_bytes += bytes.len();
    }

    fn fail(&mut self, code: u16, message: String) {
        self.failure = Some(Failure { code, message });
        self.phase = Phase::Done;
    }

    /// What happened on the call so far.
    #[must_use]
    pub fn report(&self) -> CallReport {
        let t0 = self.t0.unwrap_or(self.opened);
        CallReport {
            handshake: self.handshake,
            subprotocol: self.subprotocol.clone(),
            frames_sent: self.sent_at.len(),
            media_received: self.media_messages,
            received_ms: self.received_bytes as u64 / 8,
            echoed_frames: self.echo.len(),
            echo_equal: self.received_bytes > 0 && self.mismatched == 0,
            echo: self.echo.clone(),
            late: self.late.clone(),
            speech_end: self.plan.speech_end,
            turn: self.turn,
            marks: self
                .twilio
                .received
                .iter()
                .filter(|m| matches!(m, ServerMessage::Mark(_)))
                .count(),
            marks_echoed: self.twilio.playout.echoed,
            clears: self.twilio.playout.clears(),
            dtmf_sent: self
                .plan
                .dtmf
                .iter()
                .take(self.next_dtmf)
                .map(|(_, d)| d.chars().count())
                .sum::<usize>()
                + self.dtmf_sent,
            warnings: self
                .twilio
                .warnings
                .iter()
                .map(|w| (w.code(), w.to_string()))
                .collect(),
            failure: self.failure.clone(),
            server_close: self.server_close,
            heard: self
                .twilio
                .playout
                .segments()
                .iter()
                .map(|(at, b)| (at.saturating_duration_since(t0), b.clone()))
                .collect(),
        }
    }
}

/// What one call measured.
#[derive(Debug, Clone, Default)]
pub struct CallReport {
    /// From the upgrade's first byte to the `101`.
    pub handshake: Option<Duration>,
    /// The subprotocol the server chose.
    pub subprotocol: Option<String>,
    /// Media messages sent.
    pub frames_sent: usize,
    /// Media messages received.
    pub media_received: usize,
    /// Milliseconds of audio received (cleared audio included).
    pub received_ms: u64,
    /// Frames whose bytes came back (an echo).
    pub echoed_frames: usize,
    /// Whether every byte received equals the byte sent at the same offset.
    pub echo_equal: bool,
    /// Per frame that came back: from sending it to its first byte's return.
    pub echo: Vec<Duration>,
    /// Per frame sent: how late after its deadline.
    pub late: Vec<Duration>,
    /// Where the caller's speech ended.
    pub speech_end: Duration,
    /// From the end of the caller's speech to the first audio after it.
    pub turn: Option<Duration>,
    /// Marks the server sent.
    pub marks: usize,
    /// Marks Twilio echoed (played or cleared).
    pub marks_echoed: usize,
    /// `clear`s the server sent.
    pub clears: usize,
    /// Digits sent.
    pub dtmf_sent: usize,
    /// Warnings Twilio logged (code, text).
    pub warnings: Vec<(u16, String)>,
    /// The failure that ended the call, if any.
    pub failure: Option<Failure>,
    /// The server closed: `Some(code)` with a close frame's code.
    pub server_close: Option<Option<u16>>,
    /// The audio as heard, each segment at its offset from the stream start.
    pub heard: Vec<(Duration, Vec<u8>)>,
}

impl CallReport {
    /// Whether Twilio would have logged nothing.
    #[must_use]
    pub fn clean(&self) -> bool {
        self.failure.is_none() && self.warnings.is_empty()
    }

    /// Echo latency of each frame that came back.
    #[must_use]
    pub fn echo_latencies(&self) -> Vec<Duration> {
        self.echo.clone()
    }

    /// Milliseconds of the server's audio heard (cleared audio cut).
    #[must_use]
    pub fn heard_ms(&self) -> u64 {
        self.heard.iter().map(|(_, b)| b.len() as u64).sum::<u64>() / 8
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use callstream_twilio::frame::read_server_frame;
    use callstream_twilio::upgrade::accept_key;

    const MS: Duration = Duration::from_millis(1);

    /// The client's frames in `bytes`, unmasked, as text.
    fn texts(bytes: &[u8]) -> Vec<String> {
        let mut out = Vec::new();
        let mut rest = bytes;
        while rest.len() >= 6 {
            let len = match rest[1] & 0x7f {
                126 => usize::from(u16::from_be_bytes([rest[2], rest[3]])),
                n => usize::from(n),
            };
            let at = if rest[1] & 0x7f == 126 { 4 } else { 2 };
            let mask = [rest[at], rest[at + 1], rest[at + 2], rest[at + 3]];
            let payload: Vec<u8> = rest[at + 4..at + 4 + len]
                .iter()
                .zip(mask.iter().cycle())
                .map(|(b, m)| b ^ m)
                .collect();
            out.push(String::from_utf8_lossy(&payload).into_owned());
            rest = &rest[at + 4 + len..];
        }
        out
    }

    fn server_text(text: &str) -> Vec<u8> {
        let mut f = vec![0x81];
        if text.len() < 126 {
            f.push(text.len() as u8);
        } else {
            f.push(126);
            f.extend_from_slice(&(text.len() as u16).to_be_bytes());
        }
        f.extend_from_slice(text.as_bytes());
        assert!(read_server_frame(&f).unwrap().is_some());
        f
    }

    fn opened(plan: Plan, t0: Instant) -> (Call, String) {
        let up = Upgrade::new("h", "/ws", Some("t"), 1);
        let head = format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n\r\n",
            accept_key(&up.key_base64())
        );
        let mut call = Call::new(Arc::new(plan), up, Stream::default(), t0);
        assert!(
            String::from_utf8(call.poll_transmit().unwrap())
                .unwrap()
                .starts_with("GET /ws HTTP/1.1")
        );
        assert_eq!(call.poll_timeout(), Some(t0 + HANDSHAKE_TIMEOUT));
        call.handle_receive(t0 + 5 * MS, head.as_bytes());
        let sid = call.twilio.stream.stream_sid.clone();
        (call, sid)
    }

    /// A whole call in simulated time: frames on their deadlines, digits
    /// between them, an echo measured, a mark echoed once played, `stop`
    /// after the linger, done when the server closes.
    #[test]
    fn a_call_in_simulated_time() {
        let t0 = Instant::now();
        let plan = Plan {
            audio: vec![0x11; 400],
            speech_end: 40 * MS,
            duration: 60 * MS,
            linger: 100 * MS,
            dtmf: vec![(20 * MS, "12".into())],
            params: vec![("k".into(), "v".into())],
        };
        let (mut call, sid) = opened(plan, t0);
        let first = texts(&call.poll_transmit().unwrap());
        assert_eq!(first.len(), 3, "connected, start, frame 0");
        assert!(first[1].contains(r#""customParameters":{"k":"v"}"#));
        let t1 = t0 + 5 * MS;
        assert_eq!(call.poll_timeout(), Some(t1 + 20 * MS));
        call.handle_timeout(t1 + 20 * MS);
        let sent = texts(&call.poll_transmit().unwrap());
        assert!(
            sent[0].contains(r#""digit":"1""#) && sent[1].contains(r#""chunk":"2""#),
            "{sent:?}"
        );
        // The server echoes frame 0 and marks it, 10 ms after frame 1 went.
        let payload = callstream_twilio_payload(&[0x11; 160]);
        let media =
            format!(r#"{{"event":"media","streamSid":"{sid}","media":{{"payload":"{payload}"}}}}"#);
        let mark = format!(r#"{{"event":"mark","streamSid":"{sid}","mark":{{"name":"m"}}}}"#);
        let mut bytes = server_text(&media);
        bytes.extend(server_text(&mark));
        call.handle_receive(t1 + 30 * MS, &bytes);
        assert_eq!(call.echo, [30 * MS]);
        assert!(
            call.poll_transmit().is_none(),
            "the mark waits for its audio"
        );
        call.handle_timeout(t1 + 40 * MS);
        let sent = texts(&call.poll_transmit().unwrap());
        assert!(sent[0].contains(r#""chunk":"3""#), "{sent:?}");
        call.handle_timeout(t1 + 50 * MS);
        let sent = texts(&call.poll_transmit().unwrap());
        assert!(sent[0].contains(r#""mark":{"name":"m"}"#), "{sent:?}");
        // The second digit, 200 ms after the first, falls after the linger:
        // stop comes first, the digit never.
        assert_eq!(call.poll_timeout(), Some(t1 + 160 * MS));
        call.handle_timeout(t1 + 160 * MS);
        let sent = texts(&call.poll_transmit().unwrap());
        assert!(sent[0].contains(r#""event":"stop""#), "{sent:?}");
        assert!(!call.is_done());
        call.handle_receive(t1 + 170 * MS, &[0x88, 2, 0x03, 0xE8]);
        assert!(call.is_done());
        assert_eq!(call.poll_timeout(), None);
        let r = call.report();
        assert_eq!((r.frames_sent, r.media_received, r.dtmf_sent), (3, 1, 1));
        assert!(r.echo_equal && r.clean());
        assert_eq!(
            (r.marks, r.marks_echoed, r.server_close),
            (1, 1, Some(Some(1000)))
        );
        assert_eq!(r.handshake, Some(5 * MS));
        assert_eq!(r.heard_ms(), 20);
        assert_eq!(r.turn, None, "the reply came before the speech ended");
    }

    fn callstream_twilio_payload(b: &[u8]) -> String {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(b)
    }

    #[test]
    fn failures_carry_twilio_codes() {
        let t0 = Instant::now();
        // No answer at all.
        let up = Upgrade::new("h", "/ws", None, 1);
        let mut call = Call::new(Arc::new(Plan::default()), up.clone(), Stream::default(), t0);
        call.handle_timeout(t0 + HANDSHAKE_TIMEOUT);
        assert_eq!(call.report().failure.map(|f| f.code), Some(31920));
        // A redirect names where it points.
        let mut call = Call::new(Arc::new(Plan::default()), up, Stream::default(), t0);
        call.handle_receive(
            t0,
            b"HTTP/1.1 301 Moved\r\nLocation: /ws/\r\nContent-Length: 0\r\n\r\n",
        );
        let f = call.report().failure.unwrap();
        assert_eq!(f.code, 31920);
        assert!(
            f.message.contains("301") && f.message.contains("/ws/"),
            "{}",
            f.message
        );
        // A frame that never ends, over the limit.
        let (mut call, _) = opened(
            Plan {
                duration: Duration::from_secs(1),
                ..Plan::default()
            },
            t0,
        );
        let mut huge = vec![0x81, 127];
        huge.extend_from_slice(&(1u64 << 40).to_be_bytes());
        call.handle_receive(t0 + 10 * MS, &huge);
        assert!(!call.is_done());
        call.handle_receive(t0 + 10 * MS, &vec![b'x'; MAX_PENDING]);
        assert_eq!(call.report().failure.map(|f| f.code), Some(31924));
        // A masked server frame is a protocol error.
        let (mut call, _) = opened(
            Plan {
                duration: Duration::from_secs(1),
                ..Plan::default()
            },
            t0,
        );
        call.handle_receive(t0 + 10 * MS, &[0x81, 0x81, 0, 0, 0, 0, b'x']);
        assert_eq!(call.report().failure.map(|f| f.code), Some(31924));
    }
}
