//! VAD cost per 20 ms frame: the detector runs on every inbound frame of every
//! call, so this is what it adds to the call machine's per-frame budget. The
//! input is the espeak-ng speech fixture (speech, pauses, digital silence), so
//! every state of the detector is visited.

use callstream_core::codec::{self, FRAME_SAMPLES};
use callstream_core::vad::{Vad, VadConfig};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;

static SPEECH: &[u8] = include_bytes!("../tests/fixtures/vad/white_10db.ulaw");

fn bench(c: &mut Criterion) {
    let pcm: Vec<i16> = SPEECH.iter().map(|&b| codec::decode(b)).collect();
    let frames: Vec<&[i16]> = pcm.chunks_exact(FRAME_SAMPLES).collect();
    let mut group = c.benchmark_group("vad");
    group.throughput(Throughput::Elements(frames.len() as u64));
    group.bench_function("process_20ms_frames", |b| {
        let mut vad = Vad::new(VadConfig::default());
        b.iter(|| {
            for frame in &frames {
                black_box(vad.handle_frame(black_box(frame)));
            }
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
