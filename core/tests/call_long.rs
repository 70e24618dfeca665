//! A 10-minute call in simulated time: the parrot answering 60 utterances.

mod call_support;

use std::time::{Duration, Instant};

use call_support::*;
use callstream_core::call::{Call, CallConfig, CallEvent, MarkOutcome};
use callstream_core::handler::{Parrot, Session};

#[test]
fn ten_minute_call() {
    let t0 = Instant::now();
    let session = Session::new(
        Call::new(
            CallConfig {
                tap: true,
                ..CallConfig::default()
            },
            t0,
        ),
        Box::new(Parrot::default()),
        None,
    );
    let mut sim = Sim::new(session, t0);
    sim.twilio.playout.echo_delay = 40 * MS;
    // The caller talks 1.5 s at the start of every 10 s.
    let talk: Vec<(u64, u64)> = (0..60)
        .map(|i| (i * 10_000 + 500, i * 10_000 + 2000))
        .collect();
    sim.run(t0 + Duration::from_secs(600), &mut Script::new(&talk));
    let seq = sim.next_seq();
    sim.send(&stop(seq));

    let audio = sim.audio();
    assert_eq!(audio.len(), 30_001);
    for (k, f) in audio.iter().enumerate() {
        assert_eq!(f.timestamp_ms, 20 * k as u64);
        assert!(!f.concealed);
    }
    let marks = sim.mark_dones();
    assert_eq!(marks.len(), 60);
    for (i, (name, outcome)) in marks.iter().enumerate() {
        assert_eq!(name, &format!("parrot-{}", i + 1));
        assert_eq!(*outcome, MarkOutcome::Played);
    }
    assert_eq!(
        sim.count(|e| matches!(e, CallEvent::SpeechStarted { .. })),
        60
    );
    assert_eq!(sim.count(|e| matches!(e, CallEvent::BargeIn)), 0);
    assert_eq!(sim.count(|e| matches!(e, CallEvent::Warning(_))), 0);
    assert_eq!(sim.twilio.playout.max_buffered(), 120 * MS);
    // Outbound frames play back to back within each reply, on 20 ms steps.
    let outs: Vec<u64> = sim
        .events
        .iter()
        .filter_map(|(_, e)| match e {
            CallEvent::AudioOut(o) => Some(o.play_at_ms),
            _ => None,
        })
        .collect();
    assert!(outs.windows(2).all(|w| w[1] >= w[0] + 20));
    let stats = *sim.m.stats();
    assert_eq!(stats.frames_sent as usize, outs.len());
    assert_eq!(stats.played_ms, sim.twilio.playout.played_ms(sim.now));
    assert!(matches!(
        sim.notable().last(),
        Some(CallEvent::Stopped { .. })
    ));
}
