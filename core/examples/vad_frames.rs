//! callstream's voice activity detector over a recording, for benchmarks
//! that compare it with other detectors on the same audio
//! (`scripts/turn-bench/`).
//!
//! ```sh
//! cargo run --release -p callstream-core --example vad_frames -- call.ulaw [SENSITIVITY [END_OF_TURN_MS [MIN_SPEECH_MS]]]
//! ```
//!
//! Reads raw 8 kHz μ-law (as Twilio carries it), feeds it in 20 ms frames
//! and prints one JSON line per frame: `{"frame":N,"speech":true|false}`
//! (whether the detector is in speech after that frame), and one per event:
//! `{"frame":N,"event":"start","at_frame":M}` or
//! `{"frame":N,"event":"end","at_frame":M}` (`frame`: where it was
//! reported; `at_frame`: where the detector dates it). Defaults: the
//! server's (sensitivity 0.5, 300 ms, 60 ms).
use callstream_core::codec::{self, FRAME_SAMPLES};
use callstream_core::vad::{Vad, VadConfig, VadEvent};
use std::io::Write;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(path) = args.first() else {
        eprintln!("usage: vad_frames FILE.ulaw [SENSITIVITY [END_OF_TURN_MS [MIN_SPEECH_MS]]]");
        std::process::exit(2);
    };
    let arg = |i: usize| args.get(i).map(|v| v.parse::<f64>().expect("a number"));
    let mut config = VadConfig::default();
    if let Some(ms) = arg(2) {
        config.hangover_ms = ms as u32;
    }
    if let Some(ms) = arg(3) {
        config.min_speech_ms = ms as u32;
    }
    let config = config.with_sensitivity(arg(1).map_or(0.5, |s| s as f32));
    let ulaw = std::fs::read(path).expect("the recording");
    let mut vad = Vad::new(config);
    let mut pcm = [0i16; FRAME_SAMPLES];
    let out = std::io::stdout();
    let mut out = std::io::BufWriter::new(out.lock());
    for (n, frame) in ulaw.chunks_exact(FRAME_SAMPLES).enumerate() {
        codec::decode_into(frame, &mut pcm);
        match vad.handle_frame(&pcm) {
            Some(VadEvent::SpeechStarted { at_frame }) => {
                let _ = writeln!(
                    out,
                    r#"{{"frame":{n},"event":"start","at_frame":{at_frame}}}"#
                );
            }
            Some(VadEvent::SpeechEnded { at_frame, .. }) => {
                let _ = writeln!(
                    out,
                    r#"{{"frame":{n},"event":"end","at_frame":{at_frame}}}"#
                );
            }
            _ => {}
        }
        let _ = writeln!(out, r#"{{"frame":{n},"speech":{}}}"#, vad.is_speech());
    }
}
