//! Whole calls over a bad network: reordered, duplicated, missing, late and
//! odd-sized media, driven through a Call in simulated time.

mod call_support;

use std::time::Instant;

use call_support::*;
use callstream_core::call::{AudioFrame, Call, CallConfig, CallEvent, CallOutput, CallStats};
use callstream_core::codec;

/// One media message and when it arrives.
#[derive(Clone, Debug)]
pub struct Arrival {
    pub at_ms: u64,
    pub chunk: u64,
    pub timestamp: u64,
    pub ulaw: Vec<u8>,
}

/// μ-law whose first two bytes name `id` (decodable back with `id_of`).
fn tagged(id: u64, len: usize) -> Vec<u8> {
    let mut v = vec![0xFF; len];
    if len >= 2 {
        v[0] = 0x80 | ((id >> 7) & 0x7F) as u8;
        v[1] = 0x80 | (id & 0x7F) as u8;
    }
    v
}

fn id_of(samples: &[i16]) -> u64 {
    let hi = u64::from(codec::encode(samples[0]) & 0x7F);
    let lo = u64::from(codec::encode(samples[1]) & 0x7F);
    hi << 7 | lo
}

/// Feeds the arrivals (sorted by time) into a fresh call after `start`,
/// honouring its deadlines, then runs 1 s past the last one and stops.
fn drive(arrivals: &[Arrival]) -> (Vec<AudioFrame>, CallStats) {
    let t0 = Instant::now();
    let mut call = Call::new(CallConfig::default(), t0);
    call.handle_text(t0, &start(&[]));
    let mut frames = Vec::new();
    let drain = |call: &mut Call, frames: &mut Vec<AudioFrame>| loop {
        match call.poll_output() {
            CallOutput::Event(CallEvent::Audio(f)) => frames.push(f),
            CallOutput::Event(CallEvent::Stopped { .. }) => {}
            CallOutput::Timeout(t) => return Some(t),
            _ => {}
        }
    };
    let mut deadline = drain(&mut call, &mut frames);
    let mut seq = 1;
    let last = arrivals.iter().map(|a| a.at_ms).max().unwrap_or(0);
    let mut i = 0;
    let end = t0 + MS * (last as u32 + 1000);
    loop {
        let next_arrival = arrivals.get(i).map(|a| t0 + MS * a.at_ms as u32);
        let next = match (next_arrival, deadline) {
            (Some(a), Some(d)) => a.min(d),
            (a, d) => a.or(d).unwrap(),
        };
        if next > end && next_arrival.is_none() {
            break;
        }
        if next_arrival == Some(next) {
            let a = &arrivals[i];
            seq += 1;
            call.handle_text(next, &media(seq, a.chunk, a.timestamp, &a.ulaw));
            i += 1;
        } else {
            call.handle_timeout(next);
        }
        deadline = drain(&mut call, &mut frames);
    }
    call.handle_text(end, &stop(seq + 1));
    drain(&mut call, &mut frames);
    (frames, *call.stats())
}

fn steady(n: u64) -> Vec<Arrival> {
    (0..n)
        .map(|k| Arrival {
            at_ms: k * 20,
            chunk: k + 1,
            timestamp: k * 20,
            ulaw: tagged(k + 1, 160),
        })
        .collect()
}

fn assert_cadence(frames: &[AudioFrame]) {
    for (k, f) in frames.iter().enumerate() {
        assert_eq!(f.timestamp_ms, 20 * k as u64, "frame {k}");
    }
}

#[test]
fn a_bad_network_still_gives_a_steady_stream() {
    let mut a = steady(40);
    // Chunk 6 arrives 10 ms after chunk 7 (reordered, in time).
    a[5].at_ms = 130;
    // Chunk 9 arrives twice.
    let dup = a[8].clone();
    a.push(Arrival { at_ms: 175, ..dup });
    // Chunk 13 never arrives.
    a.remove(12);
    // Chunk 16 arrives 200 ms late: its place was concealed.
    a.iter_mut().find(|x| x.chunk == 16).unwrap().at_ms = 500;
    a.sort_by_key(|x| x.at_ms);
    let (frames, stats) = drive(&a);
    assert_eq!(frames.len(), 40);
    assert_cadence(&frames);
    let concealed: Vec<u64> = frames
        .iter()
        .filter(|f| f.concealed)
        .map(|f| f.timestamp_ms)
        .collect();
    assert_eq!(concealed, [240, 300]);
    let ids: Vec<u64> = frames
        .iter()
        .filter(|f| !f.concealed)
        .map(|f| id_of(&f.samples))
        .collect();
    let expected: Vec<u64> = (1..=40).filter(|c| *c != 13 && *c != 16).collect();
    assert_eq!(ids, expected);
    assert_eq!(
        (
            stats.received,
            stats.reordered,
            stats.duplicate,
            stats.late,
            stats.concealed
        ),
        (40, 1, 1, 1, 2)
    );
}

#[test]
fn odd_sized_payloads_are_reframed_into_20_ms() {
    // 10 ms, 30 ms, 20 ms, 50 ms, 10 ms, 40 ms … as Twilio may send them.
    let sizes = [80usize, 240, 160, 400, 80, 320, 120, 40, 160];
    let mut arrivals = Vec::new();
    let mut ts = 0u64;
    for (i, n) in sizes.iter().enumerate() {
        arrivals.push(Arrival {
            at_ms: ts,
            chunk: i as u64 + 1,
            timestamp: ts,
            ulaw: vec![codec::encode(1000); *n],
        });
        ts += *n as u64 / 8;
    }
    let total: usize = sizes.iter().sum();
    let (frames, stats) = drive(&arrivals);
    assert_eq!(frames.len(), total / 160);
    assert_cadence(&frames);
    assert!(frames.iter().all(|f| !f.concealed));
    let level = codec::decode(codec::encode(1000));
    assert!(frames.iter().all(|f| f.samples.iter().all(|s| *s == level)));
    assert_eq!(stats.concealed, 0);
}

#[test]
fn a_stalled_connection_delivers_its_backlog() {
    // Nothing arrives from 200 ms to 1200 ms, then the backlog in one burst.
    let mut a = steady(100);
    for x in &mut a {
        if (200..1200).contains(&x.at_ms) {
            x.at_ms = 1200;
        }
    }
    a.sort_by_key(|x| x.at_ms);
    let (frames, stats) = drive(&a);
    assert_eq!(frames.len(), 100);
    assert_cadence(&frames);
    assert_eq!(stats.concealed, 0);
    assert_eq!(stats.late, 0);
}

#[test]
fn twilio_skipping_time_is_concealed() {
    // Chunks are consecutive but Twilio's timestamps jump 100 ms at chunk 11.
    let mut a = steady(20);
    for x in a.iter_mut().skip(10) {
        x.timestamp += 100;
    }
    let (frames, stats) = drive(&a);
    assert_eq!(frames.len(), 25);
    assert_cadence(&frames);
    assert_eq!(stats.concealed, 5);
    assert!(frames[10..15].iter().all(|f| f.concealed));
}

pub mod scramble {
    //! Property: whatever the network does, frames come out once each, in
    //! order, on the cadence.
    use super::*;
    use proptest::prelude::*;

    fn network() -> impl Strategy<Value = Vec<Arrival>> {
        (1u64..150).prop_flat_map(|n| {
            proptest::collection::vec((0u64..80, 0u8..20), n as usize).prop_map(move |fates| {
                let mut out = Vec::new();
                for (k, (delay, fate)) in fates.into_iter().enumerate() {
                    let k = k as u64;
                    let a = Arrival {
                        at_ms: k * 20 + delay,
                        chunk: k + 1,
                        timestamp: k * 20,
                        ulaw: tagged(k + 1, 160),
                    };
                    match fate {
                        0 => {}
                        1 => {
                            out.push(Arrival {
                                at_ms: a.at_ms + 37,
                                ..a.clone()
                            });
                            out.push(a);
                        }
                        _ => out.push(a),
                    }
                }
                out.sort_by_key(|x| x.at_ms);
                out
            })
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn no_frame_twice_and_no_drift(arrivals in network()) {
            let (frames, stats) = drive(&arrivals);
            for (k, f) in frames.iter().enumerate() {
                prop_assert_eq!(f.timestamp_ms, frames[0].timestamp_ms + 20 * k as u64);
            }
            let ids: Vec<u64> = frames.iter().filter(|f| !f.concealed).map(|f| id_of(&f.samples)).collect();
            prop_assert!(ids.windows(2).all(|w| w[0] < w[1]), "out of order or repeated: {:?}", ids);
            prop_assert_eq!(ids.len() as u64 + stats.duplicate + stats.late, stats.received);
            prop_assert_eq!(stats.received, arrivals.len() as u64);
            // Every frame up to the last chunk handed on is accounted for.
            if let Some(last) = ids.last() {
                let first = frames[0].timestamp_ms / 20 + 1;
                prop_assert_eq!(frames.len() as u64, last - first + 1);
            }
        }
    }
}

#[test]
fn deadline_drives_concealment_without_input() {
    let t0 = Instant::now();
    let mut call = Call::new(CallConfig::default(), t0);
    call.handle_text(t0, &start(&[]));
    call.handle_text(t0, &media(2, 1, 0, &[0xFF; 160]));
    call.handle_text(t0 + 20 * MS, &media(3, 3, 40, &[0xFF; 160]));
    let mut audio = 0;
    let deadline = loop {
        match call.poll_output() {
            CallOutput::Event(CallEvent::Audio(_)) => audio += 1,
            CallOutput::Timeout(t) => break t,
            _ => {}
        }
    };
    assert_eq!(audio, 1);
    assert_eq!(
        deadline,
        t0 + 60 * MS,
        "chunk 3 waits the 40 ms depth for chunk 2"
    );
    call.handle_timeout(deadline);
    let mut concealed = Vec::new();
    while let CallOutput::Event(e) = call.poll_output() {
        if let CallEvent::Audio(f) = e {
            concealed.push(f.concealed);
        }
    }
    assert_eq!(concealed, [true, false]);
}
