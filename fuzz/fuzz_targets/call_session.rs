//! Arbitrary sequences of Twilio text messages, timeouts, socket closes and
//! commands from another thread into a Session running the parrot handler.
//! The session must never panic, always come back to a Timeout after the
//! current time, and never send after closing, stop twice, or emit anything after Stopped.
//! Every message it sends must be one Twilio accepts (`callstream_twilio::check_text`),
//! on the stream that started, and only after `Started` (at most one).
//! (core/tests/handler_session_fuzz.rs runs the same interpreter under proptest.)
#![no_main]

use std::time::{Duration, Instant};

use callstream_core::call::{Call, CallConfig, CallEvent, CallOutput};
use callstream_core::handler::{Parrot, Session};
use libfuzzer_sys::fuzz_target;

const SIDS: [&str; 2] = [
    "MZ0123456789abcdef0123456789abcdef",
    "MZ00000000000000000000000000000000",
];

struct Bytes<'a>(&'a [u8]);

impl Bytes<'_> {
    fn byte(&mut self) -> u8 {
        match self.0.split_first() {
            Some((b, rest)) => {
                self.0 = rest;
                *b
            }
            None => 0,
        }
    }
    fn take(&mut self, n: usize) -> &[u8] {
        let n = n.min(self.0.len());
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        a
    }
    fn u64(&mut self) -> u64 {
        match self.byte() {
            0 => u64::MAX,
            1 => u64::from(self.byte()) << 40,
            b => u64::from(b) * 20 + u64::from(self.byte() % 4),
        }
    }
}

/// Standard base64 (the fuzz crate keeps to callstream-core's dependencies).
fn b64(bytes: &[u8]) -> String {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for c in bytes.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= c.len() {
                out.push(char::from(ABC[(n >> (18 - 6 * i)) as usize & 63]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let t0 = Instant::now();
    let mut session = Session::new(
        Call::new(CallConfig::default(), t0),
        Box::new(Parrot::default()),
        None,
    );
    let remote = session.remote();
    let mut now = t0;
    let mut input = Bytes(data);
    let mut stopped = false;
    let mut closed = false;
    let mut seq = 0u64;
    let mut started: Option<String> = None;
    while !input.0.is_empty() {
        seq += 1;
        let sid = SIDS[usize::from(input.byte() & 1)];
        let text = match input.byte() % 12 {
            0 => r#"{"event":"connected","protocol":"Call","version":"1.0.0"}"#.to_string(),
            1 => format!(
                r#"{{"event":"start","sequenceNumber":"{seq}","streamSid":"{sid}","start":{{"accountSid":"AC0123456789abcdef0123456789abcdef","streamSid":"{sid}","callSid":"CA0123456789abcdef0123456789abcdef","tracks":["inbound"],"customParameters":{{"a":"b"}},"mediaFormat":{{"encoding":"audio/x-mulaw","sampleRate":8000,"channels":1}}}}}}"#
            ),
            2..=5 => {
                let chunk = input.u64();
                let ts = input.u64();
                let len = usize::from(input.byte()) * 2;
                let fill = input.byte();
                format!(
                    r#"{{"event":"media","sequenceNumber":"{seq}","streamSid":"{sid}","media":{{"track":"inbound","chunk":"{chunk}","timestamp":"{ts}","payload":"{}"}}}}"#,
                    b64(&vec![fill; len])
                )
            }
            6 => format!(
                r#"{{"event":"mark","sequenceNumber":"{seq}","streamSid":"{sid}","mark":{{"name":"parrot-{}"}}}}"#,
                input.byte() % 4
            ),
            7 => format!(
                r#"{{"event":"dtmf","sequenceNumber":"{seq}","streamSid":"{sid}","dtmf":{{"track":"inbound_track","digit":"{}"}}}}"#,
                input.byte() % 10
            ),
            8 => format!(
                r#"{{"event":"stop","sequenceNumber":"{seq}","streamSid":"{sid}","stop":{{"accountSid":"AC0123456789abcdef0123456789abcdef","callSid":"CA0123456789abcdef0123456789abcdef"}}}}"#
            ),
            9 => {
                let n = usize::from(input.byte());
                String::from_utf8_lossy(input.take(n)).into_owned()
            }
            10 => {
                now += Duration::from_millis(u64::from(input.byte()) * 7);
                match input.byte() % 4 {
                    0 => drop(remote.play_pcm(&[1000; 800])),
                    1 => drop(remote.mark("remote")),
                    2 => drop(remote.clear()),
                    _ => {}
                }
                session.handle_timeout(now);
                String::new()
            }
            _ => {
                if input.byte() % 8 == 0 {
                    session.handle_closed(now);
                }
                String::new()
            }
        };
        if !text.is_empty() {
            session.handle_text(now, &text);
        }
        let mut n = 0;
        loop {
            n += 1;
            assert!(n < 100_000, "poll_output never reached Timeout");
            match session.poll_output() {
                CallOutput::Send(text) => {
                    assert!(!closed, "sent after close");
                    let Some(sid) = &started else {
                        panic!("sent before start: {text:?}");
                    };
                    if let Err(w) = callstream_twilio::check_text(&text, Some(sid.as_str())) {
                        panic!("Twilio would refuse {text:?} (sent on another stream?): {w}");
                    }
                }
                CallOutput::Event(CallEvent::Started(start)) => {
                    assert!(started.is_none(), "started twice");
                    assert!(!stopped, "event after Stopped");
                    started = Some(start.stream_id);
                }
                CallOutput::Close { .. } => {
                    assert!(!closed, "closed twice");
                    closed = true;
                }
                CallOutput::Event(CallEvent::Stopped { .. }) => {
                    assert!(!stopped, "stopped twice");
                    stopped = true;
                }
                CallOutput::Event(_) => assert!(!stopped, "event after Stopped"),
                CallOutput::Timeout(t) => {
                    assert!(t > now);
                    break;
                }
            }
        }
        if input.byte() % 3 == 0 {
            now += Duration::from_millis(20);
            session.handle_timeout(now);
        }
    }
});
