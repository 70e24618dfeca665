//! Twilio media messages per second: parse + base64 + μ-law decode of a
//! typical 20 ms `media` message (160 bytes of audio), and the writers.

use callstream_core::codec::{self, FRAME_SAMPLES};
use callstream_core::message::{self, Inbound};
use callstream_core::sid::StreamSid;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;

const SID: &str = "MZ18ad3ab5a668481ce02b83e7395059f0";

fn frame() -> Vec<u8> {
    (0..FRAME_SAMPLES).map(|i| (i * 37 % 256) as u8).collect()
}

/// The message exactly as Twilio writes it (the Twilio model's writer).
fn media_text() -> String {
    callstream_twilio::Stream {
        stream_sid: SID.to_owned(),
        ..callstream_twilio::Stream::default()
    }
    .media(1234, 1233, 24640, &frame())
}

fn bench(c: &mut Criterion) {
    let text = media_text();
    // A field the fast path does not handle (a non-string value) sends the
    // same message through the general serde_json parser.
    let general = text.replacen('{', r#"{"n":0,"#, 1);
    let mut g = c.benchmark_group("media_20ms");
    g.throughput(Throughput::Elements(1));

    g.bench_function("parse+base64+ulaw (decode_samples)", |b| {
        let mut pcm = [0i16; FRAME_SAMPLES];
        b.iter(|| {
            let Ok(Inbound::Media(m)) = message::parse(black_box(&text)) else {
                panic!()
            };
            m.decode_samples(black_box(&mut pcm)).unwrap()
        })
    });
    g.bench_function("parse+base64+ulaw (decode_payload, decode_into)", |b| {
        let mut ulaw = [0u8; FRAME_SAMPLES];
        let mut pcm = [0i16; FRAME_SAMPLES];
        b.iter(|| {
            let Ok(Inbound::Media(m)) = message::parse(black_box(&text)) else {
                panic!()
            };
            let n = m.decode_payload(&mut ulaw).unwrap();
            codec::decode_into(&ulaw[..n], black_box(&mut pcm))
        })
    });
    g.bench_function("parse only", |b| {
        b.iter(|| message::parse(black_box(&text)).is_ok())
    });
    g.bench_function("general parser: parse+base64+ulaw", |b| {
        let mut pcm = [0i16; FRAME_SAMPLES];
        b.iter(|| {
            let Ok(Inbound::Media(m)) = message::parse(black_box(&general)) else {
                panic!()
            };
            m.decode_samples(black_box(&mut pcm)).unwrap()
        })
    });
    g.bench_function("general parser: parse only", |b| {
        b.iter(|| message::parse(black_box(&general)).is_ok())
    });

    let sid = StreamSid::parse(SID).unwrap();
    let ulaw = frame();
    let pcm: Vec<i16> = ulaw.iter().map(|&u| codec::decode(u)).collect();
    let mut out = String::with_capacity(512);
    g.bench_function("write_media (160 bytes)", |b| {
        b.iter(|| {
            out.clear();
            message::write_media(&mut out, &sid, black_box(&ulaw));
            out.len()
        })
    });
    g.bench_function("write_media_pcm (160 samples)", |b| {
        b.iter(|| {
            out.clear();
            message::write_media_pcm(&mut out, &sid, black_box(&pcm));
            out.len()
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
