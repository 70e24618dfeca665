//! The HTTP layer under the connection engine: a Twilio status webhook parsed
//! (head, body, form decode) and answered with 204, and a WebSocket upgrade
//! checked and answered with 101. Requests per second on one core.

use callstream_core::http::{Limits, RequestParser, Response};
use callstream_core::{form, handshake};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;
use std::time::Instant;

const WEBHOOK: &[u8] = b"POST /webhook/stream_status HTTP/1.1\r\n\
Host: callstream.example.com\r\n\
User-Agent: TwilioProxy/1.1\r\n\
Content-Type: application/x-www-form-urlencoded; charset=utf-8\r\n\
X-Twilio-Signature: RSOYDt4T1cUTdK1PDd93/VVr8B8=\r\n\
I-Twilio-Idempotency-Token: 2f1d2f5c-52a4-4e1f-9a35-2d6f1b0f6a11\r\n\
Accept: */*\r\n\
Content-Length: 215\r\n\
\r\n\
AccountSid=AC00000000000000000000000000000000&CallSid=CA11111111111111111111111111111111\
&StreamSid=MZ22222222222222222222222222222222&StreamName=MZ22&StreamEvent=stream-started\
&Timestamp=2024-05-01T12%3A00%3A00.000Z";

const UPGRADE: &[u8] = b"GET /ws/twilio-media HTTP/1.1\r\n\
host: callstream.example.com\r\n\
user-agent: Twilio.TmeWs/1.0\r\n\
connection: Upgrade\r\n\
upgrade: websocket\r\n\
sec-websocket-key: x3JJHMbDL1EzLkh9GBhXDw==\r\n\
sec-websocket-version: 13\r\n\
x-twilio-signature: 3d2S3wRJ0dJsqRcDa+8VCqkpnLI=\r\n\
accept-encoding: gzip\r\n\
x-forwarded-proto: https\r\n\
\r\n";

fn bench(c: &mut Criterion) {
    let now = Instant::now();
    let mut group = c.benchmark_group("http");
    group.throughput(Throughput::Elements(1));

    // Keep-alive: one parser, one request per iteration, as on a connection.
    let mut parser = RequestParser::new(Limits::default(), now);
    let mut out = Vec::with_capacity(256);
    group.bench_function("status_webhook_parse_form_204", |b| {
        b.iter(|| {
            parser.handle_receive(now, black_box(WEBHOOK));
            let request = parser.poll_request().unwrap().unwrap();
            let params = form::parse(&request.body).unwrap();
            out.clear();
            Response::no_content().write_to(&mut out);
            black_box((params.len(), out.len()))
        })
    });

    let mut parser = RequestParser::new(Limits::default(), now);
    group.bench_function("webhook_parse_only", |b| {
        b.iter(|| {
            parser.handle_receive(now, black_box(WEBHOOK));
            black_box(parser.poll_request().unwrap().unwrap().body.len())
        })
    });

    group.bench_function("webhook_one_byte_at_a_time", |b| {
        b.iter(|| {
            let mut parser = RequestParser::new(Limits::default(), now);
            for byte in WEBHOOK.chunks(1) {
                parser.handle_receive(now, byte);
                if let Some(r) = parser.poll_request().unwrap() {
                    return black_box(r.body.len());
                }
            }
            0
        })
    });

    group.bench_function("upgrade_check_and_101", |b| {
        b.iter(|| {
            let mut parser = RequestParser::new(Limits::default(), now);
            parser.handle_receive(now, black_box(UPGRADE));
            let request = parser.poll_request().unwrap().unwrap();
            let upgrade = handshake::check_upgrade(&request).unwrap();
            black_box(handshake::response_101(&upgrade).len())
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
