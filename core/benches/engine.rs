//! The connection engine under load: a status webhook through the engine, and
//! Twilio media messages through a live WebSocket connection.
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use callstream_core::connection::{self, Config, Connection, Output, Route, Routes};
use callstream_core::public_url::PublicBase;
use callstream_core::signature;
use callstream_core::websocket::{Event, WebSocket};
use callstream_twilio::frame::text_frame;
use criterion::{Bencher, Criterion, Throughput, criterion_group, criterion_main};

/// CPU time of the calling thread. The benchmark machine is shared with
/// builds, so wall time measures the neighbours as much as the engine; the
/// thread's own CPU time is what "per core" means.
fn thread_cpu_time() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `clock_gettime` only writes the `timespec` we own.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "CLOCK_THREAD_CPUTIME_ID unavailable");
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// `b.iter(f)`, timed by this thread's CPU time instead of the wall clock.
fn iter_cpu(b: &mut Bencher<'_>, mut f: impl FnMut()) {
    b.iter_custom(|iters| {
        let start = thread_cpu_time();
        for _ in 0..iters {
            f();
        }
        thread_cpu_time() - start
    });
}

const TOKEN: &str = "12345";

/// A `stream-started` status callback as Twilio sends it, signed.
fn status_webhook() -> Vec<u8> {
    let params = [
        ("AccountSid", "AC0123456789abcdef0123456789abcdef"),
        ("CallSid", "CA0123456789abcdef0123456789abcdef"),
        ("StreamSid", "MZ0123456789abcdef0123456789abcdef"),
        ("StreamName", "MZ0123456789abcdef0123456789abcdef"),
        ("StreamEvent", "stream-started"),
        ("Timestamp", "2024-05-01T12:00:00.000Z"),
    ];
    let body = callstream_core::form::encode(&params);
    let sig = signature::compute(
        TOKEN,
        "https://voice.example.com/webhook/stream_status",
        &params,
    );
    format!(
        "POST /webhook/stream_status HTTP/1.1\r\nHost: voice.example.com\r\n\
         User-Agent: TwilioProxy/1.1\r\nContent-Type: application/x-www-form-urlencoded\r\n\
         X-Twilio-Signature: {sig}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// The two paths these benchmarks request.
fn routes() -> Routes {
    Routes::new()
        .route("/webhook/stream_status", Route::StreamStatus)
        .route("/ws/twilio-media", Route::MediaStream)
}

fn config() -> Arc<Config> {
    Arc::new(Config {
        auth_tokens: vec![TOKEN.to_owned()],
        public_base_url: Some(PublicBase::parse("https://voice.example.com").unwrap()),
        routes: routes(),
        ..Config::unsigned()
    })
}

/// Drains like an adapter; returns how many events came out.
fn drain(conn: &mut Connection) -> usize {
    let mut events = 0;
    loop {
        match conn.poll_output() {
            Output::Event(e) => {
                black_box(&e);
                events += 1;
            }
            Output::Timeout(_) => break,
            Output::Close => panic!("closed"),
        }
    }
    let n = conn.transmit().len();
    black_box(conn.transmit());
    conn.consume_transmit(n);
    events
}

fn engine(c: &mut Criterion) {
    let mut group = c.benchmark_group("engine");
    group.throughput(Throughput::Elements(1));
    let now = Instant::now();

    let request = status_webhook();
    let mut conn = Connection::new(config(), now);
    group.bench_function("status_webhook_keep_alive", |b| {
        iter_cpu(b, || {
            conn.handle_receive(now, black_box(&request));
            assert_eq!(drain(&mut conn), 2); // Webhook, Request
        })
    });

    let config = config();
    group.bench_function("status_webhook_new_connection", |b| {
        iter_cpu(b, || {
            let mut conn = Connection::new(config.clone(), now);
            conn.handle_receive(now, black_box(&request));
            assert_eq!(drain(&mut conn), 2);
        })
    });

    let upgrade = format!(
        "GET /ws/twilio-media HTTP/1.1\r\nhost: voice.example.com\r\nconnection: Upgrade\r\n\
         upgrade: websocket\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         sec-websocket-version: 13\r\nx-twilio-signature: {}\r\n\r\n",
        signature::compute(
            TOKEN,
            "wss://voice.example.com/ws/twilio-media",
            &[] as &[(&str, &str)]
        )
    );
    let mut conn = Connection::new(config.clone(), now);
    conn.handle_receive(now, upgrade.as_bytes());
    drain(&mut conn);
    assert!(conn.is_stream());
    let frame = text_frame(MEDIA);
    group.bench_function("media_message_live_connection", |b| {
        iter_cpu(b, || {
            conn.handle_receive(now, black_box(&frame));
            match conn.poll_output() {
                Output::Event(connection::Event::StreamMessage(message)) => {
                    black_box(message);
                }
                other => panic!("{other:?}"),
            }
            assert!(matches!(conn.poll_output(), Output::Timeout(_)));
        })
    });
    group.finish();
}

/// One 20 ms media message from Twilio, masked as a client frame.
fn media_frame(n: u64) -> Vec<u8> {
    let text = format!(
        r#"{{"event":"media","sequenceNumber":"{}","streamSid":"MZ18ad3ab5a668481ce02b83e7395059f0","media":{{"track":"inbound","chunk":"{n}","timestamp":"{}","payload":"{PAYLOAD}"}}}}"#,
        n + 1,
        (n - 1) * 20
    );
    text_frame(&text)
}

/// 160 bytes of μ-law (a quiet tone), base64.
const PAYLOAD: &str = "fn5+fn5+fn5+fn5+fn5+fn5+fn5+fn5+fn5+fn5+fn5+fn5+fn5+fn5+fn5+fn5+fn5+fn5+fn5+fn5+fn5+fn5+fn5+fn5+fn5+fn5+fn5+fn5+fn5+fn5+fn5+fn5+fn5+fn5+fn5+fn5+fn5+fn5+fn5+fn5+fn5+fn5+fn5+fn5+fn5+fn5+fn5+fn5+fn5+fn5+fn5+fn5+fn5+fg==";

/// A whole call through the engine with the echo handler: each iteration is
/// one inbound frame (frame → parse → jitter → handler) and the echoed frame
/// going out (pacer → JSON → frame), 20 ms of simulated time apart.
fn echo_call(c: &mut Criterion) {
    use callstream_core::call::CallConfig;
    use callstream_core::handler;

    let mut group = c.benchmark_group("engine");
    group.throughput(Throughput::Elements(1));
    let config = Arc::new(Config {
        session: Some(handler::session_factory(
            CallConfig::default(),
            handler::by_name("echo").unwrap(),
        )),
        routes: routes(),
        ..Config::unsigned()
    });
    group.bench_function("echo_call_frame_in_and_out", |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            let mut t = start;
            let mut conn = open_call(&config, t);
            let frames: Vec<Vec<u8>> = (1..=iters).map(media_frame).collect();
            let mut deadline = t;
            let cpu = thread_cpu_time();
            for frame in &frames {
                t += std::time::Duration::from_millis(20);
                conn.handle_receive(t, frame);
                deadline = drain_until(&mut conn, deadline, t);
            }
            let spent = thread_cpu_time() - cpu;
            let stats = conn.call_stats().unwrap();
            assert!(stats.frames_sent + 10 >= iters, "{stats:?} after {iters}");
            spent
        })
    });

    // The same, with CALLS calls open and their frames taken in turn, as a
    // server sees them: each call's state is cold in the cache by the time
    // its next frame comes. The gap to the one-call figure is what the
    // working set costs.
    const CALLS: usize = 200;
    group.bench_function("echo_call_frame_200_calls_in_turn", |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            let mut conns: Vec<(Connection, Instant)> = (0..CALLS)
                .map(|_| (open_call(&config, start), start))
                .collect();
            let rounds = iters.div_ceil(CALLS as u64);
            let frames: Vec<Vec<u8>> = (1..=rounds).map(media_frame).collect();
            let mut t = start;
            let cpu = thread_cpu_time();
            for frame in &frames {
                t += Duration::from_millis(20);
                for (conn, deadline) in &mut conns {
                    conn.handle_receive(t, frame);
                    *deadline = drain_until(conn, *deadline, t);
                }
            }
            let spent = thread_cpu_time() - cpu;
            let stats = conns[0].0.call_stats().unwrap();
            assert!(stats.frames_sent + 10 >= rounds, "{stats:?} after {rounds}");
            // Per frame, whatever `iters` rounded up to.
            spent.mul_f64(iters as f64 / (rounds * CALLS as u64) as f64)
        })
    });
    group.finish();
}

/// An unsigned call with the echo handler, upgraded and started at `t`.
fn open_call(config: &Arc<Config>, t: Instant) -> Connection {
    let mut conn = Connection::new(config.clone(), t);
    conn.handle_receive(t, UPGRADE);
    drain(&mut conn);
    conn.handle_receive(t, &text_frame(START));
    drain(&mut conn);
    conn
}

const UPGRADE: &[u8] =
    b"GET /ws/twilio-media HTTP/1.1\r\nHost: x.example\r\nConnection: Upgrade\r\n\
    Upgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
    Sec-WebSocket-Version: 13\r\n\r\n";

/// Drains, firing the deadline while it is not after `now`; returns the
/// next deadline.
fn drain_until(conn: &mut Connection, _last: Instant, now: Instant) -> Instant {
    loop {
        let next = loop {
            match conn.poll_output() {
                Output::Event(e) => {
                    black_box(&e);
                }
                Output::Timeout(t) => break t,
                Output::Close => panic!("closed"),
            }
        };
        let n = conn.transmit().len();
        black_box(conn.transmit());
        conn.consume_transmit(n);
        if next > now {
            return next;
        }
        conn.handle_timeout(now);
    }
}

const START: &str = r#"{"event":"start","sequenceNumber":"1","streamSid":"MZ18ad3ab5a668481ce02b83e7395059f0","start":{"accountSid":"AC11111111111111111111111111111111","streamSid":"MZ18ad3ab5a668481ce02b83e7395059f0","callSid":"CA33333333333333333333333333333333","tracks":["inbound"],"customParameters":{},"mediaFormat":{"encoding":"audio/x-mulaw","sampleRate":8000,"channels":1}}}"#;

const MEDIA: &str = concat!(
    r#"{"event":"media","sequenceNumber":"3","streamSid":"MZ18ad3ab5a668481ce02b83e7395059f0","#,
    r#""media":{"track":"inbound","chunk":"2","timestamp":"40","payload":""#,
    "//////////////////////////////////////////////////////////////////////////////////////////",
    "//////////////////////////////////////////////////////////////////////////////////////////",
    "////////////////////////////////////",
    r#""}}"#
);

fn websocket(c: &mut Criterion) {
    let frame = text_frame(MEDIA);
    let mut group = c.benchmark_group("websocket");
    group.throughput(Throughput::Elements(1));
    let mut ws = WebSocket::accept(Vec::new(), Vec::new());
    group.bench_function("media_frame_to_text", |b| {
        iter_cpu(b, || {
            ws.handle_receive(black_box(&frame));
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

criterion_group!(benches, engine, echo_call, websocket);
criterion_main!(benches);
