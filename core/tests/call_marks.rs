//! Marks, clear, the outbound queue and hangup, against a simulated Twilio.

mod call_support;

use std::time::{Duration, Instant};

use call_support::*;
use callstream_core::call::{
    Call, CallConfig, CallEvent, CommandError, MAX_MARK_NAME, MarkOutcome, StopReason, Warning,
};
use callstream_core::pacer::PacerConfig;

use MarkOutcome::{Cleared, Played};

fn sim() -> Sim<Call> {
    sim_with(CallConfig::default())
}

fn sim_with(config: CallConfig) -> Sim<Call> {
    let t0 = Instant::now();
    Sim::new(Call::new(config, t0), t0)
}

fn quiet() -> Script {
    Script::new(&[])
}

fn done(name: &str, outcome: MarkOutcome) -> (String, MarkOutcome) {
    (name.to_string(), outcome)
}

#[test]
fn mark_with_nothing_queued_resolves_at_once() {
    let mut sim = sim();
    sim.m.mark(sim.now, "now").unwrap();
    sim.drain();
    assert_eq!(sim.twilio.received, [ServerMessage::Mark("now".into())]);
    let t = sim.now;
    sim.run(t, &mut quiet());
    assert_eq!(sim.mark_dones(), [done("now", Played)]);
}

#[test]
fn marks_go_out_after_their_audio_and_resolve_when_played() {
    let mut sim = sim();
    let t0 = sim.t0;
    sim.m.play_pcm(t0, &[100; 1600]).unwrap(); // 200 ms
    sim.m.mark(t0, "a").unwrap();
    sim.m.play_pcm(t0, &[100; 800]).unwrap(); // 100 ms
    sim.m.mark(t0, "b").unwrap();
    sim.drain();
    sim.run(t0 + Duration::from_secs(1), &mut quiet());
    // Each mark follows exactly the audio queued before it.
    let mut bytes = 0;
    let mut at = Vec::new();
    for s in &sim.twilio.received {
        match s {
            ServerMessage::Media(b) => bytes += b.len(),
            ServerMessage::Mark(name) => at.push((name.clone(), bytes)),
            ServerMessage::Clear => panic!("no clear"),
        }
    }
    assert_eq!(at, [("a".to_string(), 1600), ("b".to_string(), 2400)]);
    assert_eq!(sim.mark_dones(), [done("a", Played), done("b", Played)]);
    let when = |name: &str| {
        sim.events
            .iter()
            .find(|(_, e)| matches!(e, CallEvent::MarkDone { name: n, .. } if n == name))
            .map(|(t, _)| *t - t0)
            .unwrap()
    };
    assert_eq!(when("a"), 200 * MS);
    assert_eq!(when("b"), 300 * MS);
    assert_eq!(sim.m.played_ms(), 300);
    assert_eq!(sim.m.stats().marks_played, 2);
}

#[test]
fn clear_resolves_each_mark_once_though_twilio_echoes_it() {
    let mut sim = sim();
    sim.twilio.playout.echo_delay = 30 * MS;
    let t0 = sim.t0;
    sim.m.play_pcm(t0, &[100; 800]).unwrap(); // 100 ms: all within the lead
    sim.m.mark(t0, "a").unwrap(); // so "a" goes to Twilio at once
    sim.m.play_pcm(t0, &[100; 8000]).unwrap();
    sim.m.mark(t0, "b").unwrap(); // queued here
    sim.drain();
    assert!(
        sim.twilio
            .received
            .contains(&ServerMessage::Mark("a".into()))
    );
    sim.run(t0 + 50 * MS, &mut quiet());
    sim.m.clear(sim.now);
    // The same name again, after the clear.
    sim.m.play_pcm(sim.now, &[100; 400]).unwrap();
    sim.m.mark(sim.now, "a").unwrap();
    sim.drain();
    assert_eq!(sim.twilio.playout.clears(), 1);
    assert_eq!(sim.m.queued_ms(), 0);
    sim.run(t0 + Duration::from_secs(1), &mut quiet());
    // Twilio echoed the cleared "a" at 80 ms and the new "a" at 130 ms:
    // the first echo is swallowed, the second resolves the new mark.
    assert_eq!(
        sim.mark_dones(),
        [done("a", Cleared), done("b", Cleared), done("a", Played)]
    );
    assert_eq!(sim.count(|e| matches!(e, CallEvent::Warning(_))), 0);
    let s = sim.m.stats();
    assert_eq!(
        (s.marks, s.marks_played, s.marks_cleared, s.clears),
        (3, 1, 2, 1)
    );
}

#[test]
fn mark_whose_audio_played_resolves_played_at_a_clear() {
    let mut sim = sim();
    sim.twilio.playout.echo_delay = 30 * MS;
    let t0 = sim.t0;
    sim.m.play_pcm(t0, &[100; 320]).unwrap(); // 40 ms
    sim.m.mark(t0, "short").unwrap();
    sim.drain();
    // At 45 ms the audio has played; Twilio's echo is still on its way.
    sim.run(t0 + 45 * MS, &mut quiet());
    assert!(sim.mark_dones().is_empty());
    sim.m.clear(sim.now);
    sim.drain();
    sim.run(t0 + 200 * MS, &mut quiet());
    assert_eq!(sim.mark_dones(), [done("short", Played)]);
    assert_eq!(sim.count(|e| matches!(e, CallEvent::Warning(_))), 0);
}

#[test]
fn clear_empties_our_queue_and_twilios_buffer() {
    let mut sim = sim();
    let t0 = sim.t0;
    sim.m.play_pcm(t0, &[100; 80_000]).unwrap(); // 10 s
    sim.drain();
    sim.run(t0 + 2500 * MS, &mut quiet());
    assert!(sim.m.queued_ms() > 7000);
    sim.m.clear(sim.now);
    sim.drain();
    assert_eq!(sim.m.queued_ms(), 0);
    assert!(!sim.m.is_playing());
    assert_eq!(sim.twilio.playout.buffered(sim.now), Duration::ZERO);
    let sent_before = sim.twilio.media_bytes().len();
    sim.run(t0 + 5 * Duration::from_secs(1), &mut quiet());
    assert_eq!(
        sim.twilio.media_bytes().len(),
        sent_before,
        "nothing after the clear"
    );
    // Played time stopped at the clear, and Twilio agrees.
    assert_eq!(sim.m.played_ms(), 2500);
    assert_eq!(sim.twilio.playout.played_ms(sim.now), 2500);
}

#[test]
fn twilio_never_holds_more_than_the_lead() {
    let mut sim = sim();
    let t0 = sim.t0;
    sim.m.play_pcm(t0, &[100; 40_000]).unwrap();
    sim.drain();
    sim.run(t0 + Duration::from_secs(6), &mut quiet());
    assert_eq!(
        sim.twilio.playout.max_buffered(),
        120 * MS,
        "lead 100 ms + one 20 ms chunk"
    );
    assert_eq!(sim.twilio.media_bytes().len(), 40_000);
    assert_eq!(sim.m.stats().frames_sent, 250);
}

#[test]
fn unpaced_sends_everything_at_once() {
    let mut sim = sim_with(CallConfig {
        pacer: PacerConfig::unpaced(),
        ..CallConfig::default()
    });
    sim.m.play_pcm(sim.now, &[100; 40_000]).unwrap();
    sim.drain();
    assert_eq!(sim.twilio.media_bytes().len(), 40_000);
}

#[test]
fn played_ms_follows_twilio() {
    let mut sim = sim();
    let t0 = sim.t0;
    sim.m.play_pcm(t0, &[100; 4000]).unwrap(); // 500 ms
    sim.drain();
    for ms in [0u64, 100, 333, 499, 500, 800] {
        sim.run(t0 + MS * ms as u32, &mut quiet());
        // played_ms is as of the last time given.
        sim.m.handle_timeout(sim.now);
        assert_eq!(sim.m.played_ms(), ms.min(500));
        assert_eq!(sim.twilio.playout.played_ms(sim.now), ms.min(500));
    }
}

#[test]
fn mark_limits() {
    let mut sim = sim_with(CallConfig {
        pacer: PacerConfig {
            max_marks: 3,
            ..PacerConfig::default()
        },
        ..CallConfig::default()
    });
    let now = sim.now;
    sim.twilio.playout.echo_delay = Duration::from_secs(3600); // echoes never come back
    sim.m.mark(now, "1").unwrap();
    sim.drain(); // sent, waiting for the echo: still open
    sim.m.mark(now, "2").unwrap();
    sim.m.mark(now, "3").unwrap();
    assert_eq!(sim.m.mark(now, "4"), Err(CommandError::TooManyMarks));
    let long = "x".repeat(MAX_MARK_NAME + 1);
    sim.m.clear(now);
    assert_eq!(
        sim.m.mark(now, &long),
        Err(CommandError::MarkNameTooLong {
            len: MAX_MARK_NAME + 1
        })
    );
    sim.m.mark(now, &long[1..]).unwrap();
    sim.drain();
    assert_eq!(sim.mark_dones().len(), 3);
}

#[test]
fn audio_queue_limit_keeps_the_start() {
    let mut sim = sim_with(CallConfig {
        pacer: PacerConfig {
            max_queued: Duration::from_secs(1),
            ..PacerConfig::default()
        },
        ..CallConfig::default()
    });
    let now = sim.now;
    assert_eq!(
        sim.m.play_pcm(now, &[100; 12_000]),
        Err(CommandError::QueueFull { dropped_ms: 500 })
    );
    assert_eq!(sim.m.queued_ms(), 1000);
    assert_eq!(
        sim.m.play_ulaw(now, &[0xFF; 8]),
        Err(CommandError::QueueFull { dropped_ms: 1 })
    );
    sim.drain(); // the lead's worth goes out, making room
    assert_eq!(sim.m.play_ulaw(now, &[0xFF; 800]), Ok(()));
}

#[test]
fn hangup_waits_for_audio_and_marks_then_closes_normally() {
    let mut sim = sim();
    sim.twilio.playout.echo_delay = 25 * MS;
    let t0 = sim.t0;
    sim.m.play_pcm(t0, &[100; 4000]).unwrap(); // 500 ms goodbye
    sim.m.mark(t0, "bye").unwrap();
    sim.m.hangup(t0);
    assert_eq!(sim.m.play_pcm(t0, &[0; 10]), Err(CommandError::Ended));
    assert_eq!(sim.m.mark(t0, "x"), Err(CommandError::Ended));
    sim.drain();
    sim.run(t0 + 524 * MS, &mut quiet());
    assert_eq!(sim.close, None);
    sim.run(t0 + Duration::from_secs(2), &mut quiet());
    assert_eq!(sim.close, Some((1000, "hangup".to_string())));
    let (closed_at, _) = sim
        .events
        .iter()
        .find(|(_, e)| matches!(e, CallEvent::Stopped { .. }))
        .unwrap();
    assert_eq!(*closed_at - t0, 525 * MS, "when the echo came back");
    assert_eq!(sim.mark_dones(), [done("bye", Played)]);
    assert!(matches!(
        sim.notable().last(),
        Some(CallEvent::Stopped {
            reason: StopReason::Hangup,
            ..
        })
    ));
    assert_eq!(sim.twilio.media_bytes().len(), 4000);
}

#[test]
fn hangup_gives_up_after_the_timeout() {
    let mut sim = sim_with(CallConfig {
        hangup_timeout: Duration::from_secs(2),
        ..CallConfig::default()
    });
    sim.twilio.playout.echo_delay = Duration::from_secs(3600);
    let t0 = sim.t0;
    sim.m.play_pcm(t0, &[100; 800]).unwrap();
    sim.m.mark(t0, "lost").unwrap();
    sim.m.hangup(t0);
    sim.drain();
    sim.run(t0 + Duration::from_secs(10), &mut quiet());
    let (at, _) = sim
        .events
        .iter()
        .find(|(_, e)| matches!(e, CallEvent::Stopped { .. }))
        .unwrap();
    assert_eq!(*at - t0, Duration::from_secs(2));
    // Its audio had played by the schedule: played, though never echoed.
    assert_eq!(sim.mark_dones(), [done("lost", Played)]);
    assert_eq!(sim.close, Some((1000, "hangup".to_string())));
}

#[test]
fn hangup_with_nothing_queued_closes_at_once() {
    let mut sim = sim();
    sim.run(sim.t0 + 100 * MS, &mut quiet());
    sim.m.hangup(sim.now);
    sim.drain();
    assert_eq!(sim.close, Some((1000, "hangup".to_string())));
    let stopped = sim.notable().last().cloned().cloned();
    assert!(matches!(stopped, Some(CallEvent::Stopped { .. })));
}

#[test]
fn clear_during_hangup_shortens_it() {
    let mut sim = sim();
    let t0 = sim.t0;
    sim.m.play_pcm(t0, &[100; 80_000]).unwrap();
    sim.m.hangup(t0);
    sim.drain();
    sim.run(t0 + 300 * MS, &mut quiet());
    assert_eq!(sim.close, None);
    sim.m.clear(sim.now);
    sim.drain();
    assert_eq!(sim.close, Some((1000, "hangup".to_string())));
}

/// When each mark resolved, in ms since the call began.
fn mark_times(sim: &Sim<Call>) -> Vec<(String, MarkOutcome, u64)> {
    sim.events
        .iter()
        .filter_map(|(t, e)| match e {
            CallEvent::MarkDone { name, outcome } => {
                Some((name.clone(), *outcome, (*t - sim.t0).as_millis() as u64))
            }
            _ => None,
        })
        .collect()
}

#[test]
fn a_reused_name_is_not_swallowed_when_a_cleared_echo_goes_missing() {
    // The application names every reply "answer". The first is cleared and
    // Twilio's echo of it is lost; the echoes of the later replies must still
    // resolve them as they play, not be taken for the lost one.
    let mut sim = sim();
    let t0 = sim.t0;
    sim.twilio.playout.lose.insert(0); // the cleared mark's echo
    sim.m.play_pcm(t0, &[100; 800]).unwrap(); // 100 ms, within the lead
    sim.m.mark(t0, "answer").unwrap();
    sim.m.play_pcm(t0, &[100; 8000]).unwrap();
    sim.drain();
    sim.run(t0 + 50 * MS, &mut quiet());
    sim.m.clear(sim.now);
    sim.m.play_pcm(sim.now, &[100; 4000]).unwrap(); // 500 ms
    sim.m.mark(sim.now, "answer").unwrap();
    sim.drain();
    sim.run(t0 + 1000 * MS, &mut quiet());
    sim.m.play_pcm(sim.now, &[100; 2400]).unwrap(); // 300 ms
    sim.m.mark(sim.now, "answer").unwrap();
    sim.drain();
    sim.run(t0 + 2000 * MS, &mut quiet());
    assert_eq!(sim.twilio.playout.echoed, 3);
    // Each resolves when its own audio has played: 50 + 500, 1000 + 300.
    assert_eq!(
        mark_times(&sim),
        [
            ("answer".into(), Cleared, 50),
            ("answer".into(), Played, 550),
            ("answer".into(), Played, 1300),
        ]
    );
    assert_eq!(sim.count(|e| matches!(e, CallEvent::Warning(_))), 0);
}

#[test]
fn a_reused_name_keeps_step_when_an_open_marks_echo_goes_missing() {
    // No clear: the echo of the second "answer" is lost. The third one's echo
    // resolves both (its audio played after theirs), and the fourth still
    // resolves on its own echo.
    let mut sim = sim();
    let t0 = sim.t0;
    sim.twilio.playout.lose.insert(1);
    for k in 0..4u32 {
        let at = t0 + 1000 * MS * k;
        sim.run(at, &mut quiet());
        sim.m.play_pcm(at, &[100; 1600]).unwrap(); // 200 ms
        sim.m.mark(at, "answer").unwrap();
        sim.drain();
    }
    sim.run(t0 + 5000 * MS, &mut quiet());
    assert_eq!(
        mark_times(&sim),
        [
            ("answer".into(), Played, 200),
            ("answer".into(), Played, 2200),
            ("answer".into(), Played, 2200),
            ("answer".into(), Played, 3200),
        ]
    );
    assert_eq!(sim.count(|e| matches!(e, CallEvent::Warning(_))), 0);
}

#[test]
fn cleared_echoes_are_swallowed_in_order_before_a_reused_name() {
    // Two cleared marks and then the same names again: Twilio's echoes of the
    // cleared ones come first (at once) and are swallowed; the later marks
    // resolve on their own echoes, each once.
    let mut sim = sim();
    sim.twilio.playout.echo_delay = 30 * MS;
    let t0 = sim.t0;
    sim.m.mark(t0, "x").unwrap(); // echoed at once: nothing queued
    sim.m.play_pcm(t0, &[100; 400]).unwrap();
    sim.m.mark(t0, "y").unwrap();
    sim.m.play_pcm(t0, &[100; 400]).unwrap();
    sim.m.mark(t0, "x").unwrap();
    sim.m.play_pcm(t0, &[100; 8000]).unwrap();
    sim.drain();
    sim.run(t0 + 20 * MS, &mut quiet());
    sim.m.clear(sim.now);
    for name in ["y", "x"] {
        sim.m.play_pcm(sim.now, &[100; 1600]).unwrap();
        sim.m.mark(sim.now, name).unwrap();
    }
    sim.drain();
    sim.run(t0 + 2000 * MS, &mut quiet());
    assert_eq!(
        mark_times(&sim),
        [
            // Its audio (none) had played: Played, though resolved by the clear.
            ("x".into(), Played, 20),
            ("y".into(), Cleared, 20),
            ("x".into(), Cleared, 20),
            ("y".into(), Played, 250),
            ("x".into(), Played, 450),
        ]
    );
    // The first "x" was echoed at 30 ms, after the clear: swallowed with the
    // others.
    assert_eq!(sim.count(|e| matches!(e, CallEvent::Warning(_))), 0);
    assert_eq!(sim.m.stats().marks_cleared, 2);
}

#[test]
fn echoes_of_unknown_names_warn_and_change_nothing() {
    let mut sim = sim();
    let t0 = sim.t0;
    sim.m.play_pcm(t0, &[100; 2400]).unwrap(); // 300 ms
    sim.m.mark(t0, "a").unwrap();
    sim.drain();
    sim.run(t0 + 100 * MS, &mut quiet());
    // A name never sent: a warning, and the open mark is untouched.
    let seq = sim.next_seq();
    sim.send(&mark_echo(seq, "never-sent"));
    assert_eq!(
        sim.notable()
            .iter()
            .filter_map(|e| match e {
                CallEvent::Warning(Warning::UnknownMark { name }) => Some(name.as_str()),
                _ => None,
            })
            .collect::<Vec<_>>(),
        ["never-sent"]
    );
    assert!(sim.mark_dones().is_empty());
    sim.run(t0 + 1000 * MS, &mut quiet());
    assert_eq!(mark_times(&sim), [("a".into(), Played, 300)]);
    // Its real echo came and went; a second copy is unknown again.
    let seq = sim.next_seq();
    sim.send(&mark_echo(seq, "a"));
    assert_eq!(sim.m.stats().warnings, 2);
    assert_eq!(sim.mark_dones().len(), 1);
}
