//! The call machine per 20 ms frame: an inbound media message to its Audio
//! event, and played audio to paced media messages; plus a whole 10-minute
//! echo call through a Session.

use std::hint::black_box;
use std::time::{Duration, Instant};

use base64::Engine;
use callstream_core::call::{Call, CallConfig, CallEvent, CallOutput};
use callstream_core::handler::{Echo, Session};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

const SID: &str = "MZ0123456789abcdef0123456789abcdef";
const FRAME: Duration = Duration::from_millis(20);

fn start() -> String {
    format!(
        r#"{{"event":"start","sequenceNumber":"1","streamSid":"{SID}","start":{{"accountSid":"AC0123456789abcdef0123456789abcdef","streamSid":"{SID}","callSid":"CA0123456789abcdef0123456789abcdef","tracks":["inbound"],"customParameters":{{}},"mediaFormat":{{"encoding":"audio/x-mulaw","sampleRate":8000,"channels":1}}}}}}"#
    )
}

/// `n` consecutive media messages carrying a quiet, varying signal.
fn media(n: usize) -> Vec<String> {
    (0..n)
        .map(|k| {
            let ulaw: Vec<u8> = (0..160).map(|i| 0xF0 | ((i + k) % 16) as u8).collect();
            format!(
                r#"{{"event":"media","sequenceNumber":"{}","streamSid":"{SID}","media":{{"track":"inbound","chunk":"{}","timestamp":"{}","payload":"{}"}}}}"#,
                k + 2,
                k + 1,
                k * 20,
                base64::engine::general_purpose::STANDARD.encode(ulaw)
            )
        })
        .collect()
}

fn started(config: CallConfig, t0: Instant) -> Call {
    let mut call = Call::new(config, t0);
    call.handle_text(t0, &start());
    while !matches!(call.poll_output(), CallOutput::Timeout(_)) {}
    call
}

fn inbound(c: &mut Criterion) {
    let msgs = media(3000);
    let mut g = c.benchmark_group("call");
    g.throughput(Throughput::Elements(1));
    for (name, config) in [
        ("media_message_to_audio_event", CallConfig::default()),
        (
            "media_message_to_audio_event_without_vad",
            CallConfig {
                vad: None,
                ..CallConfig::default()
            },
        ),
    ] {
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                let mut left = iters as usize;
                while left > 0 {
                    let n = left.min(msgs.len());
                    let t0 = Instant::now();
                    let mut call = started(config.clone(), t0);
                    let mut now = t0;
                    let clock = Instant::now();
                    for m in &msgs[..n] {
                        call.handle_text(now, m);
                        loop {
                            match call.poll_output() {
                                CallOutput::Event(CallEvent::Audio(f)) => {
                                    black_box(&f);
                                }
                                CallOutput::Timeout(_) => break,
                                other => {
                                    black_box(other);
                                }
                            }
                        }
                        now += FRAME;
                    }
                    total += clock.elapsed();
                    left -= n;
                }
                total
            })
        });
    }
    g.finish();
}

fn outbound(c: &mut Criterion) {
    let frame = [1000i16; 160];
    let mut g = c.benchmark_group("call");
    g.throughput(Throughput::Elements(1));
    // One frame played every 20 ms, paced out (the echo path).
    g.bench_function("play_frame_to_paced_media_message", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            let mut left = iters;
            while left > 0 {
                let n = left.min(30_000);
                let t0 = Instant::now();
                let mut call = started(CallConfig::default(), t0);
                let mut now = t0;
                let clock = Instant::now();
                for _ in 0..n {
                    let _ = call.play_pcm(now, &frame);
                    now += FRAME;
                    call.handle_timeout(now);
                    while let CallOutput::Send(text) = call.poll_output() {
                        black_box(text);
                    }
                }
                total += clock.elapsed();
                left -= n;
            }
            total
        })
    });
    // A minute of audio queued at once, then paced out frame by frame.
    g.bench_function("play_minute_paced_per_frame", |b| {
        let minute = vec![1000i16; 60 * 8000];
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            let mut left = iters;
            while left > 0 {
                let t0 = Instant::now();
                let mut call = started(CallConfig::default(), t0);
                let clock = Instant::now();
                let _ = call.play_pcm(t0, &minute);
                let mut sent = 0u64;
                while sent < 3000 && left > 0 {
                    match call.poll_output() {
                        CallOutput::Send(text) => {
                            black_box(text);
                            sent += 1;
                            left -= 1;
                        }
                        CallOutput::Timeout(t) => call.handle_timeout(t),
                        other => {
                            black_box(other);
                        }
                    }
                }
                total += clock.elapsed();
            }
            total
        })
    });
    g.finish();
}

fn whole_call(c: &mut Criterion) {
    let msgs = media(30_000);
    let mut g = c.benchmark_group("call");
    g.sample_size(10);
    g.throughput(Throughput::Elements(msgs.len() as u64));
    g.bench_function("ten_minute_echo_call", |b| {
        b.iter(|| {
            let t0 = Instant::now();
            let mut s = Session::new(Call::new(CallConfig::default(), t0), Box::new(Echo), None);
            s.handle_text(t0, &start());
            let mut now = t0;
            let mut sent = 0u64;
            for m in &msgs {
                s.handle_text(now, m);
                loop {
                    match s.poll_output() {
                        CallOutput::Send(text) => {
                            black_box(text);
                            sent += 1;
                        }
                        CallOutput::Timeout(_) => break,
                        other => {
                            black_box(other);
                        }
                    }
                }
                now += FRAME;
            }
            sent
        })
    });
    g.finish();
}

criterion_group!(benches, inbound, outbound, whole_call);
criterion_main!(benches);
