//! μ-law throughput in samples per second: one 20 ms frame (160 samples) and
//! one second (8000 samples), encode and decode into caller buffers.

use callstream_core::codec;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;

fn pcm(n: usize) -> Vec<i16> {
    // A deterministic spread over the whole 16-bit range, so every segment of
    // the encoder is exercised and no branch predictor learns a pattern.
    let mut x: u32 = 0x1234_5678;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as i16
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("ulaw");
    for n in [160usize, 8000] {
        let samples = pcm(n);
        let mut ulaw = vec![0u8; n];
        codec::encode_into(&samples, &mut ulaw);
        let mut out = vec![0i16; n];
        let mut out_ulaw = vec![0u8; n];
        group.throughput(Throughput::Elements(n as u64));
        group.bench_with_input(BenchmarkId::new("encode_into", n), &samples, |b, s| {
            b.iter(|| codec::encode_into(black_box(s), black_box(&mut out_ulaw)))
        });
        group.bench_with_input(BenchmarkId::new("decode_into", n), &ulaw, |b, u| {
            b.iter(|| codec::decode_into(black_box(u), black_box(&mut out)))
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
