//! The per-request cost of trust and answers: validating `X-Twilio-Signature`
//! on a typical voice webhook and on the WebSocket upgrade, rebuilding the
//! signed URL, and writing the incoming-call TwiML.

use callstream_core::public_url::{PublicBase, RequestParts, signed_urls};
use callstream_core::signature::{Validator, compute, compute_url};
use callstream_core::twiml::{Connect, Response, Stream};
use criterion::{Criterion, criterion_group, criterion_main};
use std::hint::black_box;

/// The fields of a real incoming-call webhook (Twilio's documented set).
const PARAMS: [(&str, &str); 19] = [
    ("AccountSid", "AC0123456789abcdef0123456789abcdef"),
    ("ApiVersion", "2010-04-01"),
    ("CallSid", "CA0123456789abcdef0123456789abcdef"),
    ("CallStatus", "ringing"),
    ("Called", "+14155550199"),
    ("CalledCity", "SAN FRANCISCO"),
    ("CalledCountry", "US"),
    ("CalledState", "CA"),
    ("CalledZip", "94105"),
    ("Caller", "+14155550100"),
    ("CallerCity", "OAKLAND"),
    ("CallerCountry", "US"),
    ("CallerState", "CA"),
    ("CallerZip", "94612"),
    ("Direction", "inbound"),
    ("From", "+14155550100"),
    ("FromCountry", "US"),
    ("To", "+14155550199"),
    ("ToCountry", "US"),
];

fn bench(c: &mut Criterion) {
    let token = "0123456789abcdef0123456789abcdef";
    let hook = "https://voice.example.com/webhook/incoming_call";
    let ws = "wss://voice.example.com/ws/twilio-media";
    let hook_sig = compute(token, hook, &PARAMS);
    let ws_sig = compute_url(token, ws);
    let one = Validator::new(vec![token.into()]);
    let two = Validator::new(vec![
        "fedcba9876543210fedcba9876543210".into(),
        token.into(),
    ]);
    let none: [(&str, &str); 0] = [];

    let mut g = c.benchmark_group("signature");
    g.bench_function("compute_webhook_19_params", |b| {
        b.iter(|| compute(black_box(token), black_box(hook), black_box(&PARAMS)))
    });
    g.bench_function("validate_webhook_first_try", |b| {
        b.iter(|| {
            one.validate(
                black_box(&[hook]),
                black_box(&PARAMS),
                black_box(hook_sig.as_str()),
            )
        })
    });
    g.bench_function("validate_upgrade_first_try", |b| {
        b.iter(|| {
            one.validate(
                black_box(&[ws]),
                black_box(&none),
                black_box(ws_sig.as_str()),
            )
        })
    });
    // Worst case: a wrong signature, two URLs (trailing slash) with port
    // variants, two tokens: 8 HMACs.
    let urls = [ws, "wss://voice.example.com/ws/twilio-media/"];
    g.bench_function("reject_upgrade_8_hmacs", |b| {
        b.iter(|| {
            two.validate(
                black_box(&urls),
                black_box(&none),
                black_box(hook_sig.as_str()),
            )
        })
    });
    g.finish();

    let base = PublicBase::parse("https://voice.example.com").unwrap();
    let req = RequestParts {
        path_and_query: "/ws/twilio-media",
        host: Some("10.0.0.5:8080"),
        forwarded_proto: Some("https"),
        forwarded_host: None,
        forwarded: None,
        websocket: true,
    };
    let mut g = c.benchmark_group("twiml");
    g.bench_function("signed_urls_upgrade", |b| {
        b.iter(|| signed_urls(black_box(Some(&base)), black_box(&req), false))
    });
    g.bench_function("incoming_call_to_xml", |b| {
        b.iter(|| {
            let stream = Stream::new(base.ws_url("/ws/twilio-media"))
                .unwrap()
                .status_callback(base.http_url("/webhook/stream_status"))
                .parameter("call_sid", black_box(PARAMS[2].1))
                .unwrap()
                .parameter("From", black_box(PARAMS[15].1))
                .unwrap()
                .parameter("To", black_box(PARAMS[17].1))
                .unwrap();
            Response::new()
                .say("Connecting you now.")
                .connect(
                    Connect::new()
                        .action(base.http_url("/webhook/stream_ended"))
                        .stream(stream),
                )
                .to_xml()
                .unwrap()
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
