//! The echo path allocates nothing per frame in steady state: a media frame
//! in (WebSocket frame, JSON, base64, μ-law, jitter buffer, handler) and its
//! echo out (pacer, JSON, base64, WebSocket frame) through the connection
//! engine, counted by a global allocator that counts.
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use callstream_core::call::CallConfig;
use callstream_core::connection::{Config, Connection, Output};
use callstream_core::handler;

struct Counting;

static COUNTING: AtomicBool = AtomicBool::new(false);
static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

// SAFETY: every call is forwarded to the system allocator unchanged; the
// counter is a side effect only.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: forwarded as is.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded as is.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: forwarded as is.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const SID: &str = "MZ18ad3ab5a668481ce02b83e7395059f0";

fn media_frame(n: u64) -> Vec<u8> {
    use base64::Engine as _;
    // A tone: the VAD hears speech, and the echo goes out.
    let ulaw: Vec<u8> = (0..160)
        .map(|i| callstream_core::codec::encode(if (i / 10) % 2 == 0 { 3000 } else { -3000 }))
        .collect();
    let payload = base64::engine::general_purpose::STANDARD.encode(ulaw);
    let text = format!(
        r#"{{"event":"media","sequenceNumber":"{}","streamSid":"{SID}","media":{{"track":"inbound","chunk":"{n}","timestamp":"{}","payload":"{payload}"}}}}"#,
        n + 1,
        (n - 1) * 20
    );
    callstream_twilio::frame::text_frame(&text)
}

/// Drains as an adapter does, firing deadlines up to `now`; returns the
/// bytes written.
fn drain(conn: &mut Connection, now: Instant) -> usize {
    let mut written = 0;
    loop {
        let next = loop {
            match conn.poll_output() {
                Output::Event(e) => drop(e),
                Output::Timeout(t) => break t,
                Output::Close => panic!("closed"),
            }
        };
        let n = conn.transmit().len();
        written += n;
        conn.consume_transmit(n);
        if next > now {
            return written;
        }
        conn.handle_timeout(now);
    }
}

#[test]
fn an_echoed_frame_allocates_nothing_in_steady_state() {
    let config = Arc::new(Config {
        session: Some(handler::session_factory(
            CallConfig::default(),
            handler::by_name("echo").unwrap(),
        )),
        ..Config::unsigned()
    });
    let mut t = Instant::now();
    let mut conn = Connection::new(config, t);
    conn.handle_receive(
        t,
        b"GET /ws/twilio-media HTTP/1.1\r\nHost: x.example\r\nConnection: Upgrade\r\n\
          Upgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
          Sec-WebSocket-Version: 13\r\n\r\n",
    );
    drain(&mut conn, t);
    let start = format!(
        r#"{{"event":"start","sequenceNumber":"1","streamSid":"{SID}","start":{{"accountSid":"AC11111111111111111111111111111111","streamSid":"{SID}","callSid":"CA33333333333333333333333333333333","tracks":["inbound"],"customParameters":{{}},"mediaFormat":{{"encoding":"audio/x-mulaw","sampleRate":8000,"channels":1}}}}}}"#
    );
    conn.handle_receive(t, &callstream_twilio::frame::text_frame(&start));
    drain(&mut conn, t);
    let frames: Vec<Vec<u8>> = (1..=1500).map(media_frame).collect();
    let mut out = 0;
    // Warm up: buffers grow to their working size.
    for frame in &frames[..500] {
        t += Duration::from_millis(20);
        conn.handle_receive(t, frame);
        out += drain(&mut conn, t);
    }
    let sent_before = conn.call_stats().unwrap().frames_sent;
    ALLOCATIONS.store(0, Ordering::Relaxed);
    COUNTING.store(true, Ordering::Relaxed);
    for frame in &frames[500..] {
        t += Duration::from_millis(20);
        conn.handle_receive(t, frame);
        out += drain(&mut conn, t);
    }
    COUNTING.store(false, Ordering::Relaxed);
    let allocations = ALLOCATIONS.load(Ordering::Relaxed);
    let sent = conn.call_stats().unwrap().frames_sent - sent_before;
    assert!(out > 0);
    assert!(sent >= 990, "{sent} frames echoed over the 1000 counted");
    assert_eq!(allocations, 0, "allocations over 1000 echoed frames");
}
