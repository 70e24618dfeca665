//! `Connection::hot_memory` names the memory the next input touches: a few
//! bounded regions, in every phase of a connection's life, and once a call
//! echoes, named before a frame arrives, the buffer its echo goes out in.
use std::sync::Arc;
use std::time::{Duration, Instant};

use callstream_core::call::CallConfig;
use callstream_core::connection::{Config, Connection, Output};
use callstream_core::handler;
use callstream_twilio::frame::text_frame;
use callstream_twilio::message::Stream;
use callstream_twilio::upgrade::Upgrade;

/// The regions `conn` names, as (start address, length).
fn regions(conn: &Connection) -> Vec<(usize, usize)> {
    let mut seen = Vec::new();
    conn.hot_memory(|start, len| seen.push((start as usize, len)));
    seen
}

/// What a prefetcher may be asked to do: few regions, none empty or huge.
fn assert_bounded(regions: &[(usize, usize)]) {
    assert!(!regions.is_empty() && regions.len() <= 16, "{regions:?}");
    for &(start, len) in regions {
        assert!(start != 0 && len > 0 && len <= 4096, "{regions:?}");
    }
    // Cache lines, counting the partial ones at either end.
    let lines: usize = regions
        .iter()
        .map(|(start, len)| (start % 64 + len).div_ceil(64))
        .sum();
    assert!(lines <= 80, "{lines} lines: {regions:?}");
}

/// Handles output up to `now`, leaving the bytes to send in place.
fn step(conn: &mut Connection, now: Instant) -> bool {
    loop {
        match conn.poll_output() {
            Output::Event(_) => {}
            Output::Timeout(t) if t <= now => conn.handle_timeout(now),
            Output::Timeout(_) => return true,
            Output::Close => return false,
        }
    }
}

#[test]
fn names_the_parser_then_the_call_and_where_its_echo_goes() {
    let config = Arc::new(Config {
        session: Some(handler::session_factory(
            CallConfig::default(),
            handler::by_name("echo").expect("echo"),
        )),
        routes: callstream_core::connection::Routes::new().route(
            "/ws/twilio-media",
            callstream_core::connection::Route::MediaStream,
        ),
        ..Config::unsigned()
    });
    let mut now = Instant::now();
    let mut conn = Connection::new(config, now);
    let http = regions(&conn);
    assert_eq!(http.len(), 1, "the request parser: {http:?}");
    assert_bounded(&http);

    let stream = Stream::default();
    let upgrade = Upgrade::new("x.example", "/ws/twilio-media", None, 1).to_bytes();
    conn.handle_receive(now, &upgrade);
    assert!(step(&mut conn, now));
    conn.consume_transmit(conn.transmit().len());
    conn.handle_receive(now, &text_frame(&stream.start(&[])));
    assert!(step(&mut conn, now));
    let started = regions(&conn);
    assert_bounded(&started);
    assert!(
        started.len() > http.len(),
        "a call has more state: {started:?}"
    );

    let mut echoed = 0;
    for n in 1..=60u64 {
        now += Duration::from_millis(20);
        let frame = text_frame(&stream.media(n + 1, n, (n - 1) * 20, &[0x7e; 160]));
        let named = regions(&conn);
        assert_bounded(&named);
        conn.handle_receive(now, &frame);
        assert!(step(&mut conn, now));
        let out = conn.transmit();
        // Once the call runs steadily, the echo went out in a buffer named
        // before its frame arrived.
        if !out.is_empty() && n > 5 {
            let (at, end) = (out.as_ptr() as usize, out.as_ptr() as usize + out.len());
            assert!(
                named.iter().any(|&(s, len)| s <= at && end <= s + len),
                "frame {n}: echo at {at:#x}..{end:#x}, named before {named:?}"
            );
            echoed += 1;
        }
        conn.consume_transmit(out.len());
    }
    assert!(echoed >= 45, "the call echoed: {echoed} frames");

    // Ending: still bounded, never a panic, up to the close.
    conn.handle_receive(now, &text_frame(&stream.stop(62)));
    let mut open = step(&mut conn, now);
    assert_bounded(&regions(&conn));
    conn.handle_eof(now);
    for _ in 0..10 {
        if !open {
            break;
        }
        now += Duration::from_secs(1);
        conn.consume_transmit(conn.transmit().len());
        open = step(&mut conn, now);
        let _ = regions(&conn);
    }
    assert!(!open, "the connection closed");
    let _ = regions(&conn);
}
