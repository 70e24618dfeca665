//! Properties of the VAD over arbitrary input: it never panics, whatever the
//! frames and the configuration; its events always alternate, name frames it
//! has seen in order, and agree with `is_speech`; it is deterministic.

use std::time::Duration;

use callstream_core::vad::{Vad, VadConfig, VadEvent};
use proptest::prelude::*;

/// Frames of arbitrary length (0 to 400 samples, 0 to 50 ms) and level: the
/// samples are shifted right by 0 to 15 bits so quiet, loud and silent frames
/// all occur, and runs of similar frames let speech start and end.
fn frames() -> impl Strategy<Value = Vec<Vec<i16>>> {
    let frame = (prop::collection::vec(any::<i16>(), 0..400), 0u32..16)
        .prop_map(|(samples, shift)| samples.into_iter().map(|s| s >> shift).collect::<Vec<_>>());
    let run = (frame, 1usize..30).prop_map(|(f, n)| vec![f; n]);
    prop::collection::vec(run, 1..20).prop_map(|runs| runs.concat())
}

fn db() -> impl Strategy<Value = f32> {
    prop_oneof![any::<f32>(), -120.0f32..80.0]
}

fn ms() -> impl Strategy<Value = u32> {
    prop_oneof![any::<u32>(), 0u32..1000]
}

fn config() -> impl Strategy<Value = VadConfig> {
    prop_oneof![
        Just(VadConfig::default()),
        (db(), db(), db(), ms(), ms(), ms()).prop_map(|(a, b, c, d, e, f)| VadConfig {
            start_db: a,
            stop_db: b,
            min_level_dbfs: c,
            min_speech_ms: d,
            hangover_ms: e,
            floor_window_ms: f,
        }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn events_alternate_and_name_frames_in_order(config in config(), frames in frames()) {
        let mut vad = Vad::new(config);
        let mut started: Option<u64> = None;
        let mut last_event_frame: Option<u64> = None;
        // Samples before each frame index, to check durations.
        let mut offsets = vec![0u64];
        for (i, frame) in frames.iter().enumerate() {
            let i = i as u64;
            let event = vad.handle_frame(frame);
            offsets.push(offsets[offsets.len() - 1] + frame.len() as u64);
            match event {
                Some(VadEvent::SpeechStarted { at_frame }) => {
                    prop_assert!(started.is_none(), "start while speaking");
                    prop_assert!(at_frame <= i, "start {} named before frame {} seen", at_frame, i);
                    if let Some(prev) = last_event_frame {
                        prop_assert!(at_frame > prev, "start {} not after the last end at {}", at_frame, prev);
                    }
                    started = Some(at_frame);
                    last_event_frame = Some(i);
                }
                Some(VadEvent::SpeechEnded { at_frame, duration }) => {
                    let start = started.take();
                    prop_assert!(start.is_some(), "end without a start");
                    let start = start.unwrap_or_default();
                    prop_assert!(at_frame > start && at_frame <= i, "end {} outside ({}, {}]", at_frame, start, i);
                    let samples = offsets[at_frame as usize] - offsets[start as usize];
                    prop_assert_eq!(duration, Duration::from_nanos(samples * 125_000));
                    last_event_frame = Some(i);
                }
                Some(other) => prop_assert!(false, "unknown event {:?}", other),
                None => {}
            }
            prop_assert_eq!(vad.is_speech(), started.is_some());
            prop_assert_eq!(vad.frames(), i + 1);
        }
    }

    #[test]
    fn the_same_frames_give_the_same_events(config in config(), frames in frames()) {
        let mut a = Vad::new(config);
        let run = |vad: &mut Vad| frames.iter().map(|f| vad.handle_frame(f)).collect::<Vec<_>>();
        let first = run(&mut a);
        let mut b = Vad::new(config);
        prop_assert_eq!(&run(&mut b), &first);
        a.reset();
        prop_assert_eq!(&run(&mut a), &first);
    }
}
