//! Speech detection and barge-in during playback, in simulated time.

mod call_support;

use std::time::{Duration, Instant};

use call_support::*;
use callstream_core::call::{Call, CallConfig, CallEvent, MarkOutcome};

fn sim_with(config: CallConfig) -> Sim<Call> {
    let t0 = Instant::now();
    Sim::new(Call::new(config, t0), t0)
}

fn kinds(sim: &Sim<Call>) -> Vec<String> {
    sim.notable()
        .iter()
        .filter(|e| !matches!(e, CallEvent::Connected | CallEvent::Started(_)))
        .map(|e| match e {
            CallEvent::SpeechStarted { at_ms, .. } => format!("speech@{at_ms}"),
            // The detector dates an end within a frame or two of the truth (its
            // own tests pin that down): round to 100 ms here.
            CallEvent::SpeechEnded { at_ms, .. } => format!("end@{}", at_ms / 100 * 100),
            CallEvent::BargeIn => "barge-in".into(),
            CallEvent::MarkDone { name, outcome } => format!("{name}:{outcome:?}"),
            other => format!("{other:?}"),
        })
        .collect()
}

#[test]
fn speech_is_detected_and_dated_in_stream_time() {
    let mut sim = sim_with(CallConfig::default());
    let mut voice = Script::new(&[(1000, 1600), (3000, 3400)]);
    sim.run(sim.t0 + Duration::from_secs(5), &mut voice);
    assert_eq!(
        kinds(&sim),
        ["speech@1000", "end@1600", "speech@3000", "end@3400"]
    );
    let ended: Vec<Duration> = sim
        .notable()
        .iter()
        .filter_map(|e| match e {
            CallEvent::SpeechEnded { duration, .. } => Some(*duration),
            _ => None,
        })
        .collect();
    assert_eq!(ended.len(), 2);
    assert!(ended[0] >= 600 * MS && ended[0] <= 640 * MS, "{ended:?}");
    assert!(ended[1] >= 400 * MS && ended[1] <= 440 * MS, "{ended:?}");
}

#[test]
fn caller_speaking_over_playback_clears_it() {
    let mut sim = sim_with(CallConfig::default());
    let t0 = sim.t0;
    for name in ["one", "two", "three"] {
        sim.m.play_pcm(t0, &[800; 8000]).unwrap(); // 1 s each
        sim.m.mark(t0, name).unwrap();
    }
    sim.drain();
    let mut voice = Script::new(&[(1500, 2000)]);
    sim.run(t0 + Duration::from_secs(4), &mut voice);
    // Speech from 1500 ms is decided on the third loud frame, at 1540 ms.
    assert_eq!(
        kinds(&sim),
        [
            "one:Played",
            "speech@1500",
            "barge-in",
            "two:Cleared",
            "three:Cleared",
            "end@2000"
        ]
    );
    let (at, _) = sim
        .events
        .iter()
        .find(|(_, e)| *e == CallEvent::BargeIn)
        .unwrap();
    assert_eq!(*at - t0, 1540 * MS);
    assert_eq!(sim.twilio.playout.clears(), 1);
    assert_eq!(sim.twilio.playout.buffered(sim.now), Duration::ZERO);
    // The caller heard up to the barge-in, and the machine knows it.
    assert_eq!(sim.m.played_ms(), 1540);
    assert_eq!(sim.twilio.playout.played_ms(sim.now), 1540);
    assert_eq!(sim.m.stats().barge_ins, 1);
    // Nothing else was sent after the clear.
    assert_eq!(sim.twilio.received.last(), Some(&ServerMessage::Clear));
}

#[test]
fn barge_in_also_clears_audio_twilio_still_holds() {
    // Everything was handed to Twilio at once: only `clear` can stop it.
    let mut sim = sim_with(CallConfig {
        pacer: callstream_core::pacer::PacerConfig::unpaced(),
        ..CallConfig::default()
    });
    let t0 = sim.t0;
    sim.m.play_pcm(t0, &[800; 24_000]).unwrap();
    sim.m.mark(t0, "reply").unwrap();
    sim.drain();
    assert_eq!(sim.m.queued_ms(), 0);
    let mut voice = Script::new(&[(1000, 1300)]);
    sim.run(t0 + Duration::from_secs(4), &mut voice);
    assert_eq!(sim.twilio.playout.clears(), 1);
    assert_eq!(
        sim.mark_dones(),
        [("reply".to_string(), MarkOutcome::Cleared)]
    );
    assert_eq!(sim.twilio.playout.played_ms(sim.now), 1040);
}

#[test]
fn no_barge_in_when_nothing_plays() {
    let mut sim = sim_with(CallConfig::default());
    let t0 = sim.t0;
    sim.m.play_pcm(t0, &[800; 4000]).unwrap(); // done by 500 ms
    sim.drain();
    let mut voice = Script::new(&[(1000, 1300)]);
    sim.run(t0 + Duration::from_secs(2), &mut voice);
    assert_eq!(kinds(&sim), ["speech@1000", "end@1300"]);
    assert_eq!(sim.twilio.playout.clears(), 0);
}

#[test]
fn barge_in_can_be_turned_off() {
    let mut sim = sim_with(CallConfig {
        barge_in: false,
        ..CallConfig::default()
    });
    let t0 = sim.t0;
    sim.m.play_pcm(t0, &[800; 24_000]).unwrap();
    sim.drain();
    let mut voice = Script::new(&[(1000, 1300)]);
    sim.run(t0 + Duration::from_secs(4), &mut voice);
    assert_eq!(kinds(&sim), ["speech@1000", "end@1300"]);
    assert_eq!(sim.twilio.playout.clears(), 0);
    assert_eq!(sim.twilio.media_bytes().len(), 24_000);
    // And on again.
    sim.m.set_barge_in(true);
    sim.m.play_pcm(sim.now, &[800; 8000]).unwrap();
    sim.drain();
    let mut voice = Script::new(&[(4200, 4500)]);
    sim.run(t0 + Duration::from_secs(5), &mut voice);
    assert_eq!(sim.twilio.playout.clears(), 1);
}

#[test]
fn without_a_detector_there_is_no_speech_and_no_barge_in() {
    let mut sim = sim_with(CallConfig {
        vad: None,
        ..CallConfig::default()
    });
    let t0 = sim.t0;
    sim.m.play_pcm(t0, &[800; 24_000]).unwrap();
    sim.drain();
    let mut voice = Script::new(&[(1000, 1300)]);
    sim.run(t0 + Duration::from_secs(4), &mut voice);
    assert_eq!(kinds(&sim), Vec::<String>::new());
    assert_eq!(sim.twilio.playout.clears(), 0);
    assert_eq!(sim.audio().len(), 201);
}

/// The caller's line plays a recorded file, 20 ms a frame, then silence.
struct Recording(Vec<u8>);

impl Voice for Recording {
    fn frame(&mut self, ms: u64) -> Vec<u8> {
        let at = (ms / 20) as usize * 160;
        (at..at + 160)
            .map(|i| self.0.get(i).copied().unwrap_or(0xFF))
            .collect()
    }
}

#[test]
fn a_step_up_in_the_callers_noise_does_not_barge_in() {
    // Pink noise at -45 dBFS for 6 s, then at -30 dBFS (no speech): the line
    // got louder, nobody spoke, so what we play goes on.
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/vad/step_up_15db.ulaw"
    );
    let noise = std::fs::read(path).expect("step_up_15db.ulaw");
    let mut sim = sim_with(CallConfig::default());
    let t0 = sim.t0;
    sim.m.play_pcm(t0, &[800; 8000 * 14]).unwrap(); // 14 s, past the recording
    sim.m.mark(t0, "reply").unwrap();
    sim.drain();
    let mut line = Recording(noise);
    sim.run(t0 + Duration::from_secs(13), &mut line);
    assert!(sim.m.is_playing(), "still playing at the end");
    assert_eq!(kinds(&sim), Vec::<String>::new());
    assert_eq!(sim.m.stats().barge_ins, 0);
    assert_eq!(sim.twilio.playout.clears(), 0);
    assert!(
        !sim.twilio.received.contains(&ServerMessage::Clear),
        "no clear sent"
    );
}
