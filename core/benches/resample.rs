//! Sample-rate conversion: what a bridged call costs per 20 ms frame on its
//! way to a program at 16 kHz (streamed, frame by frame), and what a
//! program's 24 kHz or a 22.05 kHz WAV costs per second of audio on its way
//! to the call's 8 kHz.

use callstream_core::resample::{Resampler, resample_i16};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;

fn tone(rate: u32, secs: u32) -> Vec<i16> {
    (0..rate * secs)
        .map(|i| ((i as f32 * 440.0 * std::f32::consts::TAU / rate as f32).sin() * 8000.0) as i16)
        .collect()
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("resample");
    let caller = tone(8000, 1);
    group.throughput(Throughput::Elements(caller.len() as u64));
    group.bench_function("8k_to_16k_streamed_20ms_frames_1s", |b| {
        let mut r = Resampler::new(8000, 16_000).unwrap();
        let mut out = Vec::with_capacity(400);
        b.iter(|| {
            for frame in caller.chunks(160) {
                out.clear();
                r.process_i16(black_box(frame), &mut out);
                black_box(&out);
            }
        })
    });
    for from in [24_000, 22_050] {
        let input = tone(from, 1);
        group.throughput(Throughput::Elements(input.len() as u64));
        group.bench_function(format!("{from}_to_8k_whole_1s"), |b| {
            b.iter(|| black_box(resample_i16(black_box(&input), from, 8000)))
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
