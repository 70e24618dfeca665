//! The echo path allocates nothing per frame in steady state: a media frame
//! in (WebSocket frame, JSON, base64, μ-law, jitter buffer, handler) and its
//! echo out (pacer, JSON, base64, WebSocket frame) through the connection
//! engine, counted by a global allocator that counts.
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::Arc;
use std::time::{Duration, Instant};

use callstream_core::call::CallConfig;
use callstream_core::connection::{Config, Connection, Output};
use callstream_core::handler;
use callstream_core::sid::AccountSid;

struct Counting;

thread_local! {
    /// This thread's allocations while counting (`None`: not counting), so
    /// the tests of this file can run side by side.
    static ALLOCATIONS: Cell<Option<u64>> = const { Cell::new(None) };
}

fn count_one() {
    // `try_with`: a thread being torn down has no counter, and that is fine.
    let _ = ALLOCATIONS.try_with(|n| {
        if let Some(k) = n.get() {
            n.set(Some(k + 1));
        }
    });
}

/// Allocations made by `f` on this thread.
fn allocations_in(f: impl FnOnce()) -> u64 {
    ALLOCATIONS.with(|n| n.set(Some(0)));
    f();
    ALLOCATIONS.with(|n| n.replace(None)).unwrap()
}

// SAFETY: every call is forwarded to the system allocator unchanged; the
// counter is a side effect only.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count_one();
        // SAFETY: forwarded as is.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded as is.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count_one();
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

const ACCOUNT: &str = "AC11111111111111111111111111111111";

/// An echo engine for `account_sid` (none: any account), upgraded to a
/// media stream at `t`.
fn upgraded(account_sid: Option<AccountSid>, t: Instant) -> Connection {
    let config = Arc::new(Config {
        session: Some(handler::session_factory(
            CallConfig::default(),
            handler::by_name("echo").unwrap(),
        )),
        account_sid,
        routes: callstream_core::connection::Routes::new().route(
            "/ws/twilio-media",
            callstream_core::connection::Route::MediaStream,
        ),
        ..Config::unsigned()
    });
    let mut conn = Connection::new(config, t);
    conn.handle_receive(
        t,
        b"GET /ws/twilio-media HTTP/1.1\r\nHost: x.example\r\nConnection: Upgrade\r\n\
          Upgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
          Sec-WebSocket-Version: 13\r\n\r\n",
    );
    drain(&mut conn, t);
    conn
}

/// Twilio's `start` for `account`, with two custom parameters.
fn start_frame(account: &str) -> Vec<u8> {
    let stream = callstream_twilio::Stream {
        account_sid: account.to_owned(),
        stream_sid: SID.to_owned(),
        ..callstream_twilio::Stream::default()
    };
    let start = stream.start(&[("caller", "+14155550100"), ("campaign", "spring")]);
    callstream_twilio::frame::text_frame(&start)
}

#[test]
fn an_echoed_frame_allocates_nothing_in_steady_state() {
    let mut t = Instant::now();
    let mut conn = upgraded(None, t);
    conn.handle_receive(t, &start_frame(ACCOUNT));
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
    let allocations = allocations_in(|| {
        for frame in &frames[500..] {
            t += Duration::from_millis(20);
            conn.handle_receive(t, frame);
            out += drain(&mut conn, t);
        }
    });
    let sent = conn.call_stats().unwrap().frames_sent - sent_before;
    assert!(out > 0);
    assert!(sent >= 990, "{sent} frames echoed over the 1000 counted");
    assert_eq!(allocations, 0, "allocations over 1000 echoed frames");
}

/// With an account configured, `start` is checked against it by reading the
/// call's own parse: taking it in costs exactly what it costs with no check
/// (a second parse would allocate the parameters and tracks again).
#[test]
fn start_is_parsed_once_when_the_account_is_checked() {
    let ours = AccountSid::parse(ACCOUNT).unwrap();
    let cost = |account_sid: Option<AccountSid>| {
        let t = Instant::now();
        let mut conn = upgraded(account_sid, t);
        let start = start_frame(ACCOUNT);
        let allocations = allocations_in(|| {
            conn.handle_receive(t, &start);
            drain(&mut conn, t);
        });
        assert!(conn.call_stats().is_some(), "the call started");
        allocations
    };
    // Warm up this thread (lazily made statics and the like).
    cost(None);
    let unchecked = cost(None);
    let checked = cost(Some(ours));
    assert!(unchecked > 0, "a start with parameters allocates");
    assert_eq!(checked, unchecked, "allocations for a checked start");

    // And the check still holds: a start for another account closes 1008.
    let t = Instant::now();
    let mut conn = upgraded(Some(ours), t);
    conn.handle_receive(t, &start_frame("AC22222222222222222222222222222222"));
    let mut rejected = false;
    while let Output::Event(e) = conn.poll_output() {
        rejected |= matches!(
            e,
            callstream_core::connection::Event::AccountRejected { .. }
        );
    }
    assert!(rejected, "a foreign account is rejected");
    let wire = conn.transmit().to_vec();
    // An unmasked close frame with code 1008 (0x03F0).
    assert!(
        wire.windows(4)
            .any(|w| w == [0x88, w[1], 0x03, 0xF0] && w[1] >= 2),
        "close 1008 on the wire: {wire:?}"
    );
}
