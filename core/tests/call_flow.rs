//! Whole calls in simulated time: the happy path, DTMF, stop, warnings.

mod call_support;

use std::time::{Duration, Instant};

use call_support::*;
use callstream_core::call::{
    Call, CallConfig, CallEvent, CallOutput, CommandError, MarkOutcome, StopReason, Warning,
};
use callstream_core::codec;

fn call() -> (Call, Instant) {
    let t0 = Instant::now();
    (Call::new(CallConfig::default(), t0), t0)
}

#[test]
fn start_reports_sids_and_parameters_in_order() {
    let (mut call, t0) = call();
    call.handle_text(t0, &connected());
    call.handle_text(
        t0,
        &start(&[("zeta", "1"), ("alpha", "two words"), ("mid", "")]),
    );
    let mut events = Vec::new();
    while let CallOutput::Event(e) = call.poll_output() {
        events.push(e);
    }
    assert_eq!(events[0], CallEvent::Connected);
    let CallEvent::Started(s) = &events[1] else {
        panic!("{events:?}")
    };
    assert_eq!(s.stream_id, SID);
    assert_eq!(s.call_id, CALL);
    assert_eq!(s.account_id, ACCOUNT);
    let names: Vec<&str> = s.parameters.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(names, ["zeta", "alpha", "mid"]);
    assert_eq!(call.stream_id(), Some(SID));
}

#[test]
fn media_becomes_audio_on_a_steady_cadence() {
    let (call, t0) = call();
    let mut sim = Sim::new(call, t0);
    sim.run(t0 + Duration::from_secs(2), &mut Script::new(&[]));
    let audio = sim.audio();
    assert_eq!(audio.len(), 101); // chunks at 0, 20, … 2000 ms
    for (k, f) in audio.iter().enumerate() {
        assert_eq!(f.timestamp_ms, 20 * k as u64);
        assert!(!f.concealed);
    }
    assert_eq!(sim.m.stats().frames_in, 101);
    assert_eq!(sim.m.stats().received, 101);
}

#[test]
fn audio_samples_are_the_decoded_payload() {
    let (mut call, t0) = call();
    call.handle_text(t0, &start(&[]));
    let ulaw: Vec<u8> = (0..160).map(|i| i as u8).collect();
    call.handle_text(t0, &media(2, 1, 0, &ulaw));
    let mut frame = None;
    loop {
        match call.poll_output() {
            CallOutput::Event(CallEvent::Audio(f)) => frame = Some(f),
            CallOutput::Timeout(_) => break,
            _ => {}
        }
    }
    let frame = frame.expect("one frame");
    for (i, s) in frame.samples.iter().enumerate() {
        assert_eq!(*s, codec::decode(i as u8));
    }
}

#[test]
fn dtmf_and_stop() {
    let (call, t0) = call();
    let mut sim = Sim::new(call, t0);
    sim.run(t0 + 100 * MS, &mut Script::new(&[]));
    let seq = sim.next_seq();
    sim.send(&dtmf(seq, "7"));
    let seq = sim.next_seq();
    sim.send(&stop(seq));
    let notable = sim.notable();
    assert!(notable.contains(&&CallEvent::Dtmf { digit: '7' }));
    let Some(CallEvent::Stopped { reason, stats }) = notable.last() else {
        panic!("{notable:?}")
    };
    assert_eq!(*reason, StopReason::Stop);
    assert_eq!(stats.dtmf, 1);
    assert_eq!(stats.frames_in, 6);
    assert_eq!(sim.close, Some((1000, "stream stopped".to_string())));
    // Nothing after the end; commands are refused.
    sim.send(&media(99, 99, 2000, &[0xFF; 160]));
    assert_eq!(sim.m.play_pcm(sim.now, &[0; 160]), Err(CommandError::Ended));
    assert!(sim.m.is_ended());
    let n = sim.events.len();
    sim.drain();
    assert_eq!(sim.events.len(), n);
}

#[test]
fn socket_close_without_stop() {
    let (call, t0) = call();
    let mut sim = Sim::new(call, t0);
    sim.m.play_pcm(t0, &[0; 8000]).unwrap();
    sim.m.mark(t0, "never").unwrap();
    sim.drain();
    sim.run(t0 + 50 * MS, &mut Script::new(&[]));
    sim.m.handle_closed(sim.now);
    sim.drain();
    assert_eq!(
        sim.mark_dones(),
        [("never".to_string(), MarkOutcome::Cleared)]
    );
    assert!(matches!(
        sim.notable().last(),
        Some(CallEvent::Stopped {
            reason: StopReason::Closed,
            ..
        })
    ));
    assert_eq!(sim.close, None, "no close frame on a closed socket");
}

#[test]
fn transport_error_ends_the_call() {
    let (mut call, t0) = call();
    call.handle_text(t0, &start(&[]));
    call.handle_error(t0, "connection reset");
    let mut stopped = None;
    loop {
        match call.poll_output() {
            CallOutput::Event(CallEvent::Stopped { reason, .. }) => stopped = Some(reason),
            CallOutput::Close { .. } => panic!("no close after an error"),
            CallOutput::Timeout(_) => break,
            _ => {}
        }
    }
    assert_eq!(stopped, Some(StopReason::Error("connection reset".into())));
}

#[test]
fn buffered_audio_comes_out_before_stopped() {
    let (mut call, t0) = call();
    call.handle_text(t0, &start(&[]));
    call.handle_text(t0, &media(2, 1, 0, &[0xFF; 100]));
    call.handle_text(t0, &media(3, 3, 40, &[0xFF; 160])); // chunk 2 missing, held
    call.handle_text(t0, &stop(4));
    let mut kinds = Vec::new();
    loop {
        match call.poll_output() {
            CallOutput::Event(CallEvent::Audio(f)) => {
                kinds.push(format!("audio {}", f.timestamp_ms))
            }
            CallOutput::Event(CallEvent::Stopped { .. }) => kinds.push("stopped".into()),
            CallOutput::Event(_) => {}
            CallOutput::Close { .. } => kinds.push("close".into()),
            CallOutput::Timeout(_) => break,
            _ => {}
        }
    }
    // 100 samples, 220 of gap (rounded to whole frames from 100 to 320), 160: three frames.
    assert_eq!(
        kinds,
        ["audio 0", "audio 20", "audio 40", "stopped", "close"]
    );
}

#[test]
fn protocol_warnings_do_not_end_the_call() {
    let (mut call, t0) = call();
    let other = "MZ00000000000000000000000000000000";
    type Check = Option<fn(&Warning) -> bool>;
    let cases: Vec<(String, Check)> = vec![
        (
            media(1, 1, 0, &[0xFF; 160]),
            Some(|w| *w == Warning::BeforeStart),
        ),
        (dtmf(2, "1"), Some(|w| *w == Warning::BeforeStart)),
        (
            "not json".into(),
            Some(|w| matches!(w, Warning::Malformed { .. })),
        ),
        (
            r#"{"event":"media"}"#.into(),
            Some(|w| matches!(w, Warning::Malformed { .. })),
        ),
        (start(&[]), None),
        (start(&[]), Some(|w| *w == Warning::DuplicateStart)),
        (connected(), None),
        (connected(), Some(|w| *w == Warning::DuplicateConnected)),
        (
            media_for(other, 5, 1, 0, &[0xFF; 160]),
            Some(|w| matches!(w, Warning::WrongStreamSid { .. })),
        ),
        (
            mark_echo(6, "nobody"),
            Some(|w| matches!(w, Warning::UnknownMark { name } if name == "nobody")),
        ),
        (
            media(7, 1, 0, &[0xFF; 160]).replace("\"payload\":\"", "\"payload\":\"!!!!"),
            Some(|w| matches!(w, Warning::Malformed { .. })),
        ),
        (
            "x".repeat(64 * 1024 + 1),
            Some(|w| *w == Warning::TooLong { len: 64 * 1024 + 1 }),
        ),
    ];
    let mut warnings = 0;
    for (text, check) in &cases {
        call.handle_text(t0, text);
        let mut got = None;
        loop {
            match call.poll_output() {
                CallOutput::Event(CallEvent::Warning(w)) => got = Some(w),
                CallOutput::Event(CallEvent::Stopped { .. }) => panic!("call ended on {text}"),
                CallOutput::Timeout(_) => break,
                _ => {}
            }
        }
        match (got, check) {
            (Some(w), Some(check)) => {
                warnings += 1;
                assert!(check(&w), "{text:.80}: {w:?}");
                assert!(!w.to_string().is_empty());
            }
            (None, None) => {}
            (got, _) => panic!("{text:.80}: unexpected {got:?}"),
        }
    }
    assert_eq!(call.stats().warnings, warnings);
    // Still working.
    call.handle_text(t0, &media(8, 1, 0, &[0xFF; 160]));
    assert!(matches!(
        call.poll_output(),
        CallOutput::Event(CallEvent::Audio(_))
    ));
}

#[test]
fn outbound_track_media_is_ignored() {
    let (mut call, t0) = call();
    call.handle_text(t0, &start(&[]));
    let text = media(2, 1, 0, &[0xFF; 160]).replace("\"inbound\"", "\"outbound\"");
    call.handle_text(t0, &text);
    while let CallOutput::Event(e) = call.poll_output() {
        assert!(
            !matches!(e, CallEvent::Audio(_) | CallEvent::Warning(_)),
            "{e:?}"
        );
    }
}

#[test]
fn nothing_is_sent_before_start() {
    let (mut call, t0) = call();
    call.play_pcm(t0, &[0; 1600]).unwrap();
    call.mark(t0, "early").unwrap();
    assert!(matches!(call.poll_output(), CallOutput::Timeout(_)));
    call.handle_text(t0 + 5 * MS, &start(&[]));
    let mut sent = Vec::new();
    loop {
        match call.poll_output() {
            CallOutput::Send(t) => sent.push(check_outbound(&t)),
            CallOutput::Timeout(_) => break,
            _ => {}
        }
    }
    assert_eq!(sent.len(), 6, "the lead's worth at once: {sent:?}");
}

#[test]
fn idle_deadline_is_in_the_future() {
    let (mut call, t0) = call();
    let CallOutput::Timeout(t) = call.poll_output() else {
        panic!()
    };
    assert!(t > t0);
    // Time passed backwards is ignored.
    call.handle_timeout(t0 - Duration::from_secs(1));
    assert_eq!(call.now(), t0);
}

#[test]
fn unexpected_media_format_is_a_warning() {
    let (mut call, t0) = call();
    call.handle_text(
        t0,
        &start(&[]).replace(r#""sampleRate":8000"#, r#""sampleRate":16000"#),
    );
    let mut events = Vec::new();
    while let CallOutput::Event(e) = call.poll_output() {
        events.push(e);
    }
    assert!(
        matches!(&events[0], CallEvent::Warning(Warning::UnsupportedFormat { format }) if format.contains("16000"))
    );
    assert!(matches!(&events[1], CallEvent::Started(_)));
    call.handle_text(t0, &media(2, 1, 0, &[0xFF; 160]));
    assert!(matches!(
        call.poll_output(),
        CallOutput::Event(CallEvent::Audio(_))
    ));
}
