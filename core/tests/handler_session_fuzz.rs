//! Arbitrary sequences of text messages, timeouts and commands into a Session
//! running the parrot never panic, never loop, and keep the driver contract.
//! (The same interpreter drives fuzz/fuzz_targets/call_session.rs.)

use std::time::{Duration, Instant};

use base64::Engine;
use callstream_core::call::CallOutput;
use callstream_core::call::{Call, CallConfig, CallEvent};
use callstream_core::handler::{Parrot, Session};
use proptest::prelude::*;

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

fn drive(data: &[u8]) {
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
                let payload = vec![fill; len];
                format!(
                    r#"{{"event":"media","sequenceNumber":"{seq}","streamSid":"{sid}","media":{{"track":"inbound","chunk":"{chunk}","timestamp":"{ts}","payload":"{}"}}}}"#,
                    base64::engine::general_purpose::STANDARD.encode(payload)
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
                // Time passes; sometimes a command arrives from another thread.
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
        // Drain: it must end in a Timeout after the current time, soon.
        let mut n = 0;
        loop {
            n += 1;
            assert!(n < 100_000, "poll_output never reached Timeout");
            match session.poll_output() {
                CallOutput::Send(_) => assert!(!closed, "sent after close"),
                CallOutput::Close { code, .. } => {
                    assert_eq!(code, 1000);
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
        // Follow the deadline sometimes, as a driver would.
        if input.byte() % 3 == 0 {
            now += Duration::from_millis(20);
            session.handle_timeout(now);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn session_never_panics(data in proptest::collection::vec(any::<u8>(), 0..1000)) {
        drive(&data);
    }

    /// Mostly well-formed traffic, so the parrot gets to record and reply.
    #[test]
    fn session_never_panics_on_plausible_calls(
        ops in proptest::collection::vec((1u8..2, prop_oneof![Just(2u8), Just(10u8), Just(6u8)], 0u8..255, 0u8..255, 0u8..255, 0u8..255), 0..300)
    ) {
        let mut data = vec![0, 1, 0, 1];
        for (sid, op, a, b, c, d) in ops {
            data.extend([sid - 1, op, a, b, 80, d, c]);
        }
        drive(&data);
    }
}
