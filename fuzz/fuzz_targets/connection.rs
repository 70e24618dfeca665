//! Arbitrary bytes in arbitrary chunks, with timeouts, EOF and shutdown in
//! between, into one `Connection`: it must never panic, never loop, and keep
//! its promises (`Close` is final; `transmit` stays bounded).
#![no_main]
use std::sync::Arc;
use std::time::{Duration, Instant};

use callstream_core::call::CallConfig;
use callstream_core::connection::{Config, Connection, Output};
use callstream_core::handler;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The first byte picks the configuration: signatures on or off, and a
    // call machine (the echo handler) behind the stream or none.
    let flags = data.first().copied().unwrap_or(0);
    let config = Arc::new(Config {
        auth_tokens: if flags & 1 == 1 {
            vec!["12345".to_owned()]
        } else {
            Vec::new()
        },
        session: (flags & 2 == 2).then(|| {
            handler::session_factory(CallConfig::default(), handler::by_name("echo").unwrap())
        }),
        ..Config::default()
    });
    let start = Instant::now();
    let mut now = start;
    let mut conn = Connection::new(config.clone(), now);
    // The input is a script: a control byte, then (for a chunk) a length
    // byte and that many bytes.
    let mut rest = data.get(1..).unwrap_or_default();
    let mut closed = false;
    while let Some((&op, tail)) = rest.split_first() {
        rest = tail;
        match op % 8 {
            0..=4 => {
                let len = rest.first().map_or(0, |&n| n as usize);
                let chunk = rest.get(1..1 + len).unwrap_or(rest.get(1..).unwrap_or_default());
                conn.handle_receive(now, chunk);
                rest = rest.get(1 + chunk.len()..).unwrap_or_default();
            }
            5 => {
                now += Duration::from_millis(u64::from(op) * 500);
                conn.handle_timeout(now);
            }
            6 => conn.handle_eof(now),
            _ => conn.shutdown(now),
        }
        for _ in 0..100_000 {
            match conn.poll_output() {
                Output::Event(_) => {}
                Output::Timeout(_) => break,
                Output::Close => {
                    closed = true;
                    break;
                }
            }
        }
        if closed {
            assert!(matches!(conn.poll_output(), Output::Close));
        }
        // Bounded: the peer in this script never reads.
        assert!(conn.transmit().len() <= config.max_transmit + 128 * 1024);
        let n = conn.transmit().len() / 2;
        conn.consume_transmit(n);
    }
});
