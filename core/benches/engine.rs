//! The connection engine under load: a status webhook through the engine, and
//! Twilio media messages through a live WebSocket connection.
use std::hint::black_box;

use callstream_core::websocket::{Event, WebSocket};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

const MEDIA: &str = concat!(
    r#"{"event":"media","sequenceNumber":"3","streamSid":"MZ18ad3ab5a668481ce02b83e7395059f0","#,
    r#""media":{"track":"inbound","chunk":"2","timestamp":"40","payload":""#,
    "//////////////////////////////////////////////////////////////////////////////////////////",
    "//////////////////////////////////////////////////////////////////////////////////////////",
    "////////////////////////////////////",
    r#""}}"#
);

/// A client frame masked with a fixed key (RFC 6455 §5.3).
fn client_frame(payload: &[u8]) -> Vec<u8> {
    let mask = [0x37, 0xfa, 0x21, 0x3d];
    let mut out = vec![0x81];
    if payload.len() < 126 {
        out.push(0x80 | payload.len() as u8);
    } else {
        out.push(0x80 | 126);
        out.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    }
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    out
}

fn websocket(c: &mut Criterion) {
    let frame = client_frame(MEDIA.as_bytes());
    let mut group = c.benchmark_group("websocket");
    group.throughput(Throughput::Elements(1));
    let mut ws = WebSocket::accept(Vec::new(), Vec::new());
    group.bench_function("media_frame_to_text", |b| {
        b.iter(|| {
            ws.receive(black_box(&frame));
            match ws.poll_event() {
                Some(Event::Text(t)) => {
                    black_box(t.len());
                }
                other => panic!("{other:?}"),
            }
            assert!(ws.poll_event().is_none());
        })
    });
    group.finish();
}

criterion_group!(benches, websocket);
criterion_main!(benches);
