//! Properties of whole calls under random commands, echo latencies and
//! caller speech: every mark resolves exactly once, a clear always empties
//! the queue (ours and Twilio's), and the inbound cadence never drifts.

mod call_support;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use call_support::*;
use callstream_core::call::{Call, CallConfig, CallEvent, MarkOutcome, Warning};
use callstream_core::pacer::PacerConfig;
use proptest::prelude::*;

#[derive(Clone, Debug)]
enum Op {
    Play(u16),
    Mark,
    Clear,
    Wait(u16),
    Hangup,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (1u16..600).prop_map(Op::Play),
        3 => Just(Op::Mark),
        1 => Just(Op::Clear),
        4 => (0u16..400).prop_map(Op::Wait),
        1 => Just(Op::Hangup),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn marks_resolve_once_and_clear_empties(
        ops in proptest::collection::vec(op(), 1..40),
        latency in 0u64..120,
        talk_at in proptest::collection::vec(0u64..8000, 0..4),
        lead in prop_oneof![Just(None), (0u64..300).prop_map(Some)],
    ) {
        let t0 = Instant::now();
        let pacer = match lead {
            None => PacerConfig::unpaced(),
            Some(ms) => PacerConfig { lead: Duration::from_millis(ms), ..PacerConfig::default() },
        };
        let call = Call::new(CallConfig { pacer, ..CallConfig::default() }, t0);
        let mut sim = Sim::new(call, t0);
        sim.twilio.playout.echo_delay = Duration::from_millis(latency);
        let mut voice = Script::new(&talk_at.iter().map(|t| (*t, t + 400)).collect::<Vec<_>>());
        let mut accepted = Vec::new();
        let mut n = 0u32;
        for op in ops {
            let now = sim.now;
            match op {
                Op::Play(ms) => { let _ = sim.m.play_pcm(now, &vec![500; ms as usize * 8]); }
                Op::Mark => {
                    n += 1;
                    let name = format!("m{n}");
                    if sim.m.mark(now, &name).is_ok() {
                        accepted.push(name);
                    }
                }
                Op::Clear => {
                    let clears = sim.twilio.playout.clears();
                    sim.m.clear(now);
                    sim.drain();
                    if !sim.m.is_ended() {
                        prop_assert_eq!(sim.m.queued_ms(), 0);
                        prop_assert!(!sim.m.is_playing());
                        prop_assert_eq!(sim.twilio.playout.clears(), clears + 1);
                        prop_assert_eq!(sim.twilio.playout.buffered(sim.now), Duration::ZERO);
                    }
                }
                Op::Wait(ms) => {
                    let until = sim.now + Duration::from_millis(u64::from(ms));
                    sim.run(until, &mut voice);
                }
                Op::Hangup => sim.m.hangup(now),
            }
            sim.drain();
        }
        // Let everything settle (the caller quiet, so only the machine's own
        // deadlines and Twilio's echoes drive it), then end the call.
        sim.media_on = false;
        let until = sim.now + Duration::from_secs(70);
        sim.run(until, &mut voice);
        if !sim.m.is_ended() {
            let seq = sim.next_seq();
            sim.send(&stop(seq));
        }
        let mut resolved: HashMap<String, usize> = HashMap::new();
        for (name, _) in sim.mark_dones() {
            *resolved.entry(name).or_default() += 1;
        }
        for name in &accepted {
            prop_assert_eq!(resolved.get(name).copied(), Some(1), "mark {} resolved wrongly", name);
        }
        prop_assert_eq!(resolved.len(), accepted.len());
        let stray = sim.count(|e| matches!(e, CallEvent::Warning(Warning::UnknownMark { .. })));
        prop_assert_eq!(stray, 0, "an echo was not recognised");
        let s = sim.m.stats();
        prop_assert_eq!(s.marks_played + s.marks_cleared, accepted.len() as u64);
        prop_assert_eq!(sim.count(|e| matches!(e, CallEvent::Stopped { .. })), 1);
        // Inbound audio kept its cadence throughout.
        for (k, f) in sim.audio().iter().enumerate() {
            prop_assert_eq!(f.timestamp_ms, 20 * k as u64);
        }
    }

    /// Reused names, lost echoes and clears: every mark resolves exactly
    /// once and in the order it was queued; a clear resolves every mark still
    /// open, as `Cleared` where Twilio had not played its audio; and with one
    /// echo delivered at the end, no mark is left waiting for the call's end.
    #[test]
    fn reused_names_resolve_once_in_order_despite_lost_echoes(
        ops in proptest::collection::vec(op(), 1..40),
        names in proptest::collection::vec(prop_oneof![3 => Just("answer"), 1 => Just("hi")], 40),
        lose in proptest::collection::btree_set(0usize..30, 0..6),
        latency in 0u64..120,
    ) {
        let t0 = Instant::now();
        let mut sim = Sim::new(Call::new(CallConfig::default(), t0), t0);
        sim.twilio.playout.echo_delay = Duration::from_millis(latency);
        sim.twilio.playout.lose = lose;
        let mut voice = Script::new(&[]);
        let mut accepted: Vec<&str> = Vec::new();
        let mut names = names.into_iter().cycle();
        for op in ops {
            let now = sim.now;
            match op {
                Op::Play(ms) => { let _ = sim.m.play_pcm(now, &vec![500; ms as usize * 8]); }
                Op::Mark => {
                    let name = names.next().unwrap_or("answer");
                    if sim.m.mark(now, name).is_ok() {
                        accepted.push(name);
                    }
                }
                Op::Clear => {
                    sim.drain();
                    let holding = sim.twilio.playout.holding(sim.now);
                    let before = sim.mark_dones().len();
                    sim.m.clear(now);
                    sim.drain();
                    let by_clear = &sim.mark_dones()[before..];
                    prop_assert_eq!(sim.mark_dones().len(), accepted.len(), "a mark outlived a clear");
                    let cleared = by_clear.iter().filter(|(_, o)| *o == MarkOutcome::Cleared).count();
                    prop_assert!(cleared >= holding, "{} cleared, Twilio held {} unplayed", cleared, holding);
                }
                Op::Wait(ms) => {
                    let until = sim.now + Duration::from_millis(u64::from(ms));
                    sim.run(until, &mut voice);
                }
                // Hanging up would refuse the last mark below.
                Op::Hangup => {}
            }
            sim.drain();
        }
        // A last mark whose echo Twilio delivers: every echo before it came
        // or was lost, so nothing may wait for the end of the call.
        let sent = sim.twilio.received.iter().filter(|s| matches!(s, ServerMessage::Mark(_))).count();
        sim.twilio.playout.lose.retain(|&i| i < sent);
        let now = sim.now;
        let _ = sim.m.play_pcm(now, &[500; 160]);
        prop_assert!(sim.m.mark(now, "answer").is_ok());
        accepted.push("answer");
        sim.media_on = false;
        let until = sim.now + Duration::from_secs(70);
        sim.run(until, &mut voice);
        let dones = sim.mark_dones();
        let names_done: Vec<&str> = dones.iter().map(|(n, _)| n.as_str()).collect();
        prop_assert_eq!(&names_done, &accepted, "resolved out of order, twice or not yet");
        prop_assert_eq!(sim.count(|e| matches!(e, CallEvent::Warning(_))), 0);
        let seq = sim.next_seq();
        sim.send(&stop(seq));
        prop_assert_eq!(sim.mark_dones().len(), accepted.len(), "resolved again at the end");
    }
}
