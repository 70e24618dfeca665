//! The call machine on a wire format other than Twilio's: a provider is a
//! module implementing `Wire`, with no change to the machine. The wire here
//! is a made-up line protocol (`start ID`, `audio CHUNK MS HEX`, `mark NAME`,
//! `dtmf D`, `stop`; out: `media HEX`, `mark NAME`, `clear`).
use callstream_core::call::{Call, CallConfig, CallEvent, CallOutput, MarkOutcome, Warning};
use callstream_core::wire::twilio::TwilioWire;
use callstream_core::wire::{Fact, MediaFormat, Message, StreamStart, Wire};
use std::fmt::Write as _;
use std::time::{Duration, Instant};

#[derive(Default)]
struct LineWire {
    started: bool,
}

fn start(id: &str) -> StreamStart {
    StreamStart {
        stream_id: id.to_string(),
        call_id: format!("call-{id}"),
        account_id: String::new(),
        tracks: vec!["inbound".into()],
        parameters: vec![("lang".into(), "fr".into())],
        format: MediaFormat {
            encoding: "audio/x-mulaw".into(),
            sample_rate: 8000,
            channels: 1,
        },
    }
}

impl Wire for LineWire {
    fn read<'a>(&'a mut self, text: &'a str, scratch: &'a mut [u8]) -> Result<Fact<'a>, Warning> {
        let bad = || Warning::Malformed {
            error: format!("not a line message: {text}"),
        };
        let mut words = text.split(' ');
        Ok(match (words.next(), words.next()) {
            (Some("start"), Some(id)) => {
                self.started = true;
                Fact::Start(start(id))
            }
            _ if !self.started => return Err(Warning::BeforeStart),
            (Some("audio"), Some(chunk)) => {
                let ms = words.next().ok_or_else(bad)?;
                let hex = words.next().ok_or_else(bad)?;
                let n = hex.len() / 2;
                let out = scratch.get_mut(..n).ok_or_else(bad)?;
                for (i, b) in out.iter_mut().enumerate() {
                    *b = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).map_err(|_| bad())?;
                }
                Fact::Audio {
                    chunk: chunk.parse().map_err(|_| bad())?,
                    timestamp_ms: ms.parse().map_err(|_| bad())?,
                    ulaw: out,
                }
            }
            (Some("mark"), Some(name)) => Fact::Mark(name.to_string()),
            (Some("dtmf"), Some(d)) => Fact::Dtmf(d.chars().next().ok_or_else(bad)?),
            (Some("stop"), _) => Fact::Stop,
            _ => return Err(bad()),
        })
    }

    fn write(&self, message: Message<'_>, out: &mut String) {
        match message {
            Message::Media(ulaw) => {
                out.push_str("media ");
                for b in ulaw {
                    let _ = write!(out, "{b:02x}");
                }
            }
            Message::Mark(name) => {
                let _ = write!(out, "mark {name}");
            }
            Message::Clear => out.push_str("clear"),
        }
    }
}

fn drain(call: &mut Call) -> (Vec<String>, Vec<CallEvent>, Option<u16>) {
    let (mut sent, mut events, mut close) = (Vec::new(), Vec::new(), None);
    loop {
        match call.poll_output() {
            CallOutput::Send(text) => sent.push(text),
            CallOutput::Event(e) => events.push(e),
            CallOutput::Close { code, .. } => {
                close = Some(code);
                break;
            }
            CallOutput::Timeout(_) => break,
        }
    }
    (sent, events, close)
}

fn hex(ulaw: &[u8]) -> String {
    ulaw.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn a_call_runs_on_a_wire_of_another_provider() {
    let t0 = Instant::now();
    let mut call = Call::with_wire(CallConfig::default(), Box::new(LineWire::default()), t0);

    call.handle_text(t0, "audio 1 0 ff");
    let (_, events, _) = drain(&mut call);
    assert_eq!(events, [CallEvent::Warning(Warning::BeforeStart)]);

    call.handle_text(t0, "start S1");
    let (sent, events, _) = drain(&mut call);
    assert!(sent.is_empty());
    let [CallEvent::Started(s)] = &events[..] else {
        panic!("{events:?}")
    };
    assert_eq!(
        (s.stream_id.as_str(), s.parameter("lang")),
        ("S1", Some("fr"))
    );
    assert_eq!(call.stream_id(), Some("S1"));

    // Caller audio comes out as 20 ms frames, decoded from μ-law.
    let frame = [0x7fu8; 160];
    for i in 0..5u64 {
        let at = t0 + Duration::from_millis(20 * i);
        call.handle_text(at, &format!("audio {} {} {}", i + 1, 20 * i, hex(&frame)));
    }
    call.handle_timeout(t0 + Duration::from_millis(300));
    let (_, events, _) = drain(&mut call);
    let frames = events
        .iter()
        .filter(|e| matches!(e, CallEvent::Audio(_)))
        .count();
    assert!(frames >= 4, "{events:?}");

    // Audio, then a mark, go out in the wire's words.
    let t1 = t0 + Duration::from_millis(300);
    call.play_ulaw(t1, &[0x55; 160]).unwrap();
    call.mark(t1, "m1").unwrap();
    let (sent, _, _) = drain(&mut call);
    assert_eq!(
        sent,
        [format!("media {}", hex(&[0x55; 160])), "mark m1".into()]
    );

    // The echo resolves the mark once; a key comes out as a key.
    call.handle_text(t1 + Duration::from_millis(25), "mark m1");
    call.handle_text(t1 + Duration::from_millis(25), "dtmf 7");
    let (_, events, _) = drain(&mut call);
    assert!(events.contains(&CallEvent::MarkDone {
        name: "m1".into(),
        outcome: MarkOutcome::Played
    }));
    assert!(events.contains(&CallEvent::Dtmf { digit: '7' }));

    // A clear is the wire's clear.
    let t2 = t1 + Duration::from_millis(40);
    call.play_ulaw(t2, &[0x55; 1600]).unwrap();
    let _ = drain(&mut call);
    call.clear(t2);
    let (sent, _, _) = drain(&mut call);
    assert_eq!(sent, ["clear"]);

    call.handle_text(t2, "stop");
    let (_, events, close) = drain(&mut call);
    assert!(
        events
            .iter()
            .any(|e| matches!(e, CallEvent::Stopped { .. }))
    );
    assert_eq!(close, Some(1000));
}

#[test]
fn facts_drive_a_call_without_any_wire_messages() {
    let t0 = Instant::now();
    let mut call = Call::new(CallConfig::default(), t0);
    call.handle_fact(t0, Fact::Dtmf('1'));
    call.handle_fact(t0, Fact::Start(start("F1")));
    call.handle_fact(t0, Fact::Dtmf('2'));
    let (_, events, _) = drain(&mut call);
    assert_eq!(events[0], CallEvent::Warning(Warning::BeforeStart));
    assert!(matches!(&events[1], CallEvent::Started(s) if s.stream_id == "F1"));
    assert_eq!(events[2], CallEvent::Dtmf { digit: '2' });
}

const SID: &str = "MZ00000000000000000000000000000001";
const OTHER: &str = "MZ00000000000000000000000000000002";

fn twilio_start(sid: &str) -> String {
    format!(
        r#"{{"event":"start","sequenceNumber":"1","streamSid":"{sid}","start":{{"accountSid":"AC00000000000000000000000000000001","streamSid":"{sid}","callSid":"CA00000000000000000000000000000001","tracks":["inbound"],"customParameters":{{"from":"+15550100000"}},"mediaFormat":{{"encoding":"audio/x-mulaw","sampleRate":8000,"channels":1}}}}}}"#
    )
}

#[test]
fn the_twilio_wire_keeps_to_its_stream() {
    let mut wire = TwilioWire::new();
    let mut scratch = [0u8; 640];
    let mut out = String::new();
    wire.write(Message::Clear, &mut out);
    assert!(
        out.is_empty(),
        "nothing is written before start names the stream"
    );

    let media = |sid: &str| {
        format!(
            r#"{{"event":"media","sequenceNumber":"2","streamSid":"{sid}","media":{{"track":"inbound","chunk":"1","timestamp":"0","payload":"/w=="}}}}"#
        )
    };
    assert_eq!(
        wire.read(&media(SID), &mut scratch),
        Err(Warning::BeforeStart)
    );
    let Ok(Fact::Start(s)) = wire.read(&twilio_start(SID), &mut scratch) else {
        panic!("start")
    };
    assert_eq!(
        (s.stream_id.as_str(), s.parameter("from")),
        (SID, Some("+15550100000"))
    );
    // A second start does not move the stream.
    let _ = wire.read(&twilio_start(OTHER), &mut scratch);
    assert_eq!(wire.stream_sid().map(|s| s.to_string()), Some(SID.into()));
    assert!(matches!(
        wire.read(&media(OTHER), &mut scratch),
        Err(Warning::WrongStreamSid { .. })
    ));
    assert_eq!(
        wire.read(&media(SID), &mut scratch),
        Ok(Fact::Audio {
            chunk: 1,
            timestamp_ms: 0,
            ulaw: &[0xff][..]
        })
    );
    wire.write(Message::Mark("m"), &mut out);
    assert_eq!(
        out,
        format!(r#"{{"event":"mark","streamSid":"{SID}","mark":{{"name":"m"}}}}"#)
    );
}

/// The speech events of the VAD fixture's first utterance through a call;
/// `retune` is applied at frame 25, before the speech.
fn speech_events(retune: impl Fn(&mut Call)) -> Vec<CallEvent> {
    let speech = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/vad/clean.ulaw"
    ))
    .expect("fixture");
    let t0 = Instant::now();
    let mut call = Call::new(CallConfig::default(), t0);
    call.handle_fact(t0, Fact::Start(start("V1")));
    let mut events = Vec::new();
    for (i, frame) in speech[..26_000].chunks(160).enumerate() {
        if i == 25 {
            retune(&mut call);
        }
        let at = t0 + Duration::from_millis(20 * i as u64);
        call.handle_fact(
            at,
            Fact::Audio {
                chunk: i as u64 + 1,
                timestamp_ms: 20 * i as u64,
                ulaw: frame,
            },
        );
        call.handle_timeout(at + Duration::from_millis(100));
        let (_, out, _) = drain(&mut call);
        events.extend(out.into_iter().filter(|e| {
            matches!(
                e,
                CallEvent::SpeechStarted { .. } | CallEvent::SpeechEnded { .. }
            )
        }));
    }
    events
}

#[test]
fn a_detector_set_mid_call_dates_its_events_in_stream_time() {
    let plain = speech_events(|_| {});
    assert!(
        matches!(plain.first(), Some(CallEvent::SpeechStarted { at_ms, .. }) if *at_ms > 500),
        "{plain:?}"
    );
    // Retuned in place with the same tuning: the same events, same times.
    let retuned = speech_events(|call| {
        let same = call.vad_config().cloned();
        call.set_vad(same);
    });
    assert_eq!(retuned, plain);
    // Off, then on again from frame 25: the speech (after it) is dated as
    // the stream has it, not from the detector's own start.
    let restarted = speech_events(|call| {
        let config = call.vad_config().cloned();
        call.set_vad(None);
        call.set_vad(config);
    });
    let start = |events: &[CallEvent]| match events.first() {
        Some(CallEvent::SpeechStarted { at_ms, .. }) => *at_ms,
        other => panic!("{other:?}"),
    };
    let (a, b) = (start(&plain), start(&restarted));
    assert!(a.abs_diff(b) <= 40, "{a} ms and {b} ms");
}
