#![no_main]
//! Arbitrary bytes through the request parser and the upgrade checks: never
//! panics; an accepted upgrade always yields a well-formed 101 that names
//! only `audio.twilio.com` as a subprotocol; a refusal is 400 or 426.
use callstream_core::handshake;
use callstream_core::http::{Limits, RequestParser};
use libfuzzer_sys::fuzz_target;
use std::time::Instant;

fuzz_target!(|data: &[u8]| {
    let now = Instant::now();
    let mut parser = RequestParser::new(Limits::default(), now);
    parser.handle_receive(now, data);
    while let Ok(Some(request)) = parser.poll_request() {
        let _ = handshake::is_upgrade_request(&request);
        match handshake::check_upgrade(&request) {
            Ok(upgrade) => {
                let wire = handshake::response_101(&upgrade);
                assert!(wire.starts_with(b"HTTP/1.1 101 Switching Protocols\r\n"));
                assert!(wire.ends_with(b"\r\n\r\n"));
                if let Some(p) = &upgrade.subprotocol {
                    assert!(p.eq_ignore_ascii_case(handshake::TWILIO_SUBPROTOCOL));
                }
            }
            Err(e) => {
                assert!(e.status() == 400 || e.status() == 426);
                let _ = e.response().to_bytes();
            }
        }
    }
});
