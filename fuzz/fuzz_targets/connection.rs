//! Arbitrary bytes in arbitrary chunks, with timeouts, EOF and shutdown in
//! between, into one `Connection`: it must never panic, never loop, and keep
//! its promises (`Close` is final; `transmit` stays bounded), and everything
//! it writes must be what a peer can read: one well-framed HTTP/1.1 response
//! per `Request`/`Malformed` event with the status the event names (no body
//! after a `HEAD`), nothing after `Connection: close`, and after a `101` only
//! WebSocket frames a server may send, whose texts are messages Twilio
//! accepts (see `callstream_twilio::wire`).
//!
//! The first byte holds flags: bit 0 turns signatures on (so most requests
//! get 403), bit 1 puts a call machine (the echo handler) behind the stream,
//! bit 2 sets small HTTP limits and bit 3 a small transmit limit, so that
//! short inputs reach the 431/413 answers and the overflow close.
#![no_main]
use std::sync::Arc;
use std::time::{Duration, Instant};

use callstream_core::call::CallConfig;
use callstream_core::connection::{CloseReason, Config, Connection, Event, Output};
use callstream_core::handler;
use callstream_core::http::Limits;
use libfuzzer_sys::fuzz_target;

use callstream_twilio::wire::{Expect, Wire};

/// What the peer is owed for `event`, if anything.
fn owed(event: &Event) -> Option<Expect> {
    match event {
        Event::Request { status: 101, .. } => Some(Expect::Upgrade),
        Event::Request { method, status, .. } => Some(Expect::Response {
            status: *status,
            method: method.clone(),
        }),
        Event::Malformed { status, .. } => Some(Expect::Response {
            status: *status,
            method: String::new(),
        }),
        Event::Closed {
            reason: CloseReason::RequestTimeout,
        } => Some(Expect::Response {
            status: 408,
            method: String::new(),
        }),
        _ => None,
    }
}

/// Drains the connection as the contract says: the deadline it asked for,
/// or `None` once it closed.
fn drain(conn: &mut Connection, wire: &mut Wire, now: Instant) -> Option<Instant> {
    for _ in 0..100_000 {
        match conn.poll_output() {
            Output::Event(event) => {
                if let Some(e) = owed(&event) {
                    wire.expect(e);
                }
            }
            Output::Timeout(deadline) => {
                assert!(deadline > now, "a deadline that already passed: busy loop");
                return Some(deadline);
            }
            Output::Close => return None,
        }
    }
    panic!("poll_output never reached Timeout or Close");
}

fuzz_target!(|data: &[u8]| {
    // The first byte picks the configuration (see the module docs).
    let flags = data.first().copied().unwrap_or(0);
    let defaults = Config {
        routes: callstream_server::routes::table(),
        version: Some(callstream_server::routes::VERSION_JSON.to_owned()),
        ..Config::unsigned()
    };
    let config = Arc::new(Config {
        auth_tokens: if flags & 1 == 1 {
            vec!["12345".to_owned()]
        } else {
            Vec::new()
        },
        session: (flags & 2 == 2).then(|| {
            handler::session_factory(CallConfig::default(), handler::by_name("echo").unwrap())
        }),
        limits: if flags & 4 == 4 {
            Limits {
                max_head_bytes: 256,
                max_headers: 6,
                max_body_bytes: 128,
                ..Limits::default()
            }
        } else {
            Limits::default()
        },
        max_transmit: if flags & 8 == 8 {
            4096
        } else {
            defaults.max_transmit
        },
        ..defaults
    });
    let start = Instant::now();
    let mut now = start;
    let mut conn = Connection::new(config.clone(), now);
    // The input is a script: a control byte, then (for a chunk) a length
    // byte and that many bytes.
    let mut rest = data.get(1..).unwrap_or_default();
    let mut closed = false;
    let mut deadline = None;
    let mut wire = Wire::default();
    wire.twilio_text = true;
    while let Some((&op, tail)) = rest.split_first() {
        rest = tail;
        match op % 8 {
            0..=4 => {
                let len = rest.first().map_or(0, |&n| n as usize);
                let chunk = rest
                    .get(1..1 + len)
                    .unwrap_or(rest.get(1..).unwrap_or_default());
                conn.handle_receive(now, chunk);
                rest = rest.get(1 + chunk.len()..).unwrap_or_default();
            }
            5 => {
                // Time passes: to the deadline asked for (as an adapter
                // does), by 20 ms steps (the media clock), or by seconds
                // (past the idle and close timeouts).
                now = match op / 8 {
                    0 => deadline.unwrap_or(now),
                    k @ 1..16 => now + Duration::from_millis(u64::from(k) * 20),
                    k => now + Duration::from_secs(u64::from(k - 15) * 4),
                };
                conn.handle_timeout(now);
            }
            6 => conn.handle_eof(now),
            _ => conn.shutdown(now),
        }
        deadline = drain(&mut conn, &mut wire, now);
        closed |= deadline.is_none();
        if closed {
            assert!(matches!(conn.poll_output(), Output::Close));
        }
        // Bounded, though the peer reads only half of what waits each time.
        assert!(conn.transmit().len() <= config.max_transmit + 128 * 1024);
        let n = conn.transmit().len() / 2;
        wire.push(&conn.transmit()[..n])
            .unwrap_or_else(|e| panic!("{e}"));
        conn.consume_transmit(n);
    }
    // The adapter writes what is left, at the latest on `Close`.
    let _ = drain(&mut conn, &mut wire, now);
    wire.push(conn.transmit()).unwrap_or_else(|e| panic!("{e}"));
    wire.finish().unwrap_or_else(|e| panic!("{e}"));
});
