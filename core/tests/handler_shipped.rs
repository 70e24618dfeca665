//! The shipped handlers, each in a whole simulated call through a Session.

mod call_support;

use std::time::{Duration, Instant};

use call_support::*;
use callstream_core::call::{Call, CallConfig, CallEvent, MarkOutcome};
use callstream_core::handler::{self, Session};

/// Records every inbound payload so the test can compare.
struct Recorder<V: Voice> {
    inner: V,
    sent: Vec<u8>,
}

impl<V: Voice> Voice for Recorder<V> {
    fn frame(&mut self, ms: u64) -> Vec<u8> {
        let f = self.inner.frame(ms);
        self.sent.extend_from_slice(&f);
        f
    }
}

fn session(name: &str, config: CallConfig) -> Sim<Session> {
    let t0 = Instant::now();
    let make = handler::by_name(name).expect("shipped handler");
    let session = Session::on_start(Call::new(config, t0), make, None);
    Sim::new(session, t0)
}

#[test]
fn by_name_knows_the_shipped_handlers() {
    for name in handler::NAMES {
        assert!(handler::by_name(name).is_some(), "{name}");
    }
    assert!(handler::by_name("Parrot").is_none());
    assert!(handler::by_name("").is_none());
}

#[test]
fn echo_plays_every_frame_straight_back() {
    let mut sim = session("echo", CallConfig::default());
    let mut voice = Recorder {
        inner: Script::new(&[(1000, 2000), (3000, 3500)]),
        sent: Vec::new(),
    };
    sim.run(sim.t0 + Duration::from_secs(5), &mut voice);
    // Bit for bit: μ-law → PCM → μ-law is exact for every byte but 0x7F,
    // which the codec never produces.
    assert_eq!(sim.twilio.media_bytes(), voice.sent);
    // Caller speech over the echo does not clear it.
    assert_eq!(sim.twilio.playout.clears(), 0);
    // Each frame goes out as it comes in: Twilio holds one frame at most.
    assert!(
        sim.twilio.playout.max_buffered() <= 40 * MS,
        "{:?}",
        sim.twilio.playout.max_buffered()
    );
}

#[test]
fn silent_sends_nothing() {
    let mut sim = session("silent", CallConfig::default());
    sim.run(
        sim.t0 + Duration::from_secs(3),
        &mut Script::new(&[(500, 1500)]),
    );
    assert!(sim.twilio.received.is_empty());
    assert_eq!(sim.m.stats().frames_in, 151);
    // Audio events are for the handler, not the driver (no tap).
    assert_eq!(sim.audio().len(), 0);
}

#[test]
fn parrot_plays_back_what_the_caller_said_then_a_mark() {
    let mut sim = session("parrot", CallConfig::default());
    let mut voice = Recorder {
        inner: Script::new(&[(1000, 1800)]),
        sent: Vec::new(),
    };
    sim.run(sim.t0 + Duration::from_secs(5), &mut voice);
    let played = sim.twilio.media_bytes();
    // 800 ms of speech plus up to 100 ms of tail, starting where speech began.
    assert!(
        (800 * 8..=920 * 8).contains(&played.len()),
        "{}",
        played.len()
    );
    let spoken = &voice.sent[1000 * 8..1000 * 8 + played.len()];
    assert_eq!(played, spoken);
    assert_eq!(
        sim.mark_dones(),
        [("parrot-1".to_string(), MarkOutcome::Played)]
    );
    assert!(matches!(sim.twilio.received.last(), Some(ServerMessage::Mark(m)) if m == "parrot-1"));
}

#[test]
fn speaking_over_the_parrot_interrupts_it() {
    let mut sim = session("parrot", CallConfig::default());
    // 2 s of speech, replayed from about 2.1 s; the caller cuts in at 2.5 s.
    let mut voice = Script::new(&[(100, 2100), (2500, 2900)]);
    sim.run(sim.t0 + Duration::from_secs(6), &mut voice);
    let notable: Vec<String> = sim
        .notable()
        .iter()
        .filter_map(|e| match e {
            CallEvent::BargeIn => Some("barge-in".to_string()),
            CallEvent::MarkDone { name, outcome } => Some(format!("{name}:{outcome:?}")),
            _ => None,
        })
        .collect();
    assert_eq!(notable, ["barge-in", "parrot-1:Cleared", "parrot-2:Played"]);
    assert_eq!(sim.twilio.playout.clears(), 1);
}

#[test]
fn tap_reports_both_directions() {
    let mut sim = session(
        "echo",
        CallConfig {
            tap: true,
            ..CallConfig::default()
        },
    );
    sim.run(sim.t0 + Duration::from_secs(1), &mut Script::new(&[]));
    let outs: Vec<(u64, usize)> = sim
        .events
        .iter()
        .filter_map(|(_, e)| match e {
            CallEvent::AudioOut(o) => Some((o.play_at_ms, o.samples.len())),
            _ => None,
        })
        .collect();
    assert_eq!(sim.audio().len(), 51);
    assert_eq!(outs.len(), 51);
    // Echoed frame k plays at k × 20 ms: the echo adds no delay at all here.
    for (k, (at, n)) in outs.iter().enumerate() {
        assert_eq!((*at, *n), (20 * k as u64, 160));
    }
}
