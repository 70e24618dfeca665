//! Limits an unauthenticated or idle peer could otherwise exhaust, driven
//! through the engine in simulated time: a stream that never starts, a
//! started stream kept "alive" by pings alone, shedding, and the memory a
//! parked request holds.

mod connection_support;

use std::time::Duration;

use callstream_core::call::CallConfig;
use callstream_core::connection::{CloseReason, Config};
use callstream_core::handler;
use connection_support::{Peer, client_frame, server_frames, text_frame};

const SID: &str = "MZ18ad3ab5a668481ce02b83e7395059f0";
const CONNECTED: &str = r#"{"event":"connected","protocol":"Call","version":"1.0.0"}"#;

fn start() -> String {
    format!(
        r#"{{"event":"start","sequenceNumber":"1","streamSid":"{SID}","start":{{"accountSid":"AC11111111111111111111111111111111","streamSid":"{SID}","callSid":"CA33333333333333333333333333333333","tracks":["inbound"],"customParameters":{{}},"mediaFormat":{{"encoding":"audio/x-mulaw","sampleRate":8000,"channels":1}}}}}}"#
    )
}

fn media(n: u64) -> String {
    format!(
        r#"{{"event":"media","sequenceNumber":"{}","streamSid":"{SID}","media":{{"track":"inbound","chunk":"{n}","timestamp":"{}","payload":"//////////8="}}}}"#,
        n + 1,
        (n - 1) * 20
    )
}

const UPGRADE: &[u8] = b"GET /ws/twilio-media HTTP/1.1\r\nHost: voice.example.com\r\nConnection: Upgrade\r\n\
Upgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";

fn stream(config: Config) -> Peer {
    let mut peer = Peer::new(config);
    peer.send(UPGRADE);
    assert!(peer.conn.is_stream());
    peer.take_wire();
    peer
}

fn with_session() -> Config {
    Config {
        session: Some(handler::session_factory(
            CallConfig::default(),
            handler::by_name("silent").unwrap(),
        )),
        ..connection_support::unsigned()
    }
}

/// The close code of the close frame the server sent, if any.
fn close_code(wire: &[u8]) -> Option<u16> {
    server_frames(wire)
        .into_iter()
        .find(|(op, _)| *op == 8)
        .and_then(|(_, p)| Some(u16::from_be_bytes([*p.first()?, *p.get(1)?])))
}

#[test]
fn a_stream_without_start_is_closed_at_the_start_timeout() {
    for config in [connection_support::unsigned(), with_session()] {
        let limit = config.stream_start_timeout;
        assert_eq!(limit, Duration::from_secs(10));
        let mut peer = stream(config);
        peer.send(&text_frame(CONNECTED));
        assert_eq!(peer.deadline, Some(peer.start + limit));
        // Messages other than `start` do not count.
        peer.wait(limit / 2).send(&text_frame(CONNECTED));
        peer.wait(limit / 2 - Duration::from_millis(1));
        assert!(!peer.closed);
        peer.wait(Duration::from_millis(1));
        assert!(peer.closed);
        assert_eq!(peer.close_reason(), Some(CloseReason::StartTimeout));
        assert_eq!(close_code(&peer.take_wire()), Some(1008));
    }
}

#[test]
fn a_started_call_outlives_the_start_timeout() {
    for config in [connection_support::unsigned(), with_session()] {
        let mut peer = stream(config);
        peer.send(&text_frame(CONNECTED))
            .send(&text_frame(&start()));
        // 30 s of media, one frame every 20 ms.
        for n in 1..=1500 {
            peer.wait(Duration::from_millis(20))
                .send(&text_frame(&media(n)));
        }
        assert!(!peer.closed, "{:?}", peer.close_reason());
    }
}

#[test]
fn pings_alone_do_not_keep_a_started_stream_open() {
    let config = connection_support::unsigned();
    let idle = config.stream_idle_timeout;
    let mut peer = stream(config);
    peer.send(&text_frame(CONNECTED))
        .send(&text_frame(&start()));
    let last_message = peer.now;
    while peer.now + Duration::from_secs(1) < last_message + idle {
        peer.wait(Duration::from_secs(1));
        peer.send(&client_frame(0x89, b"still here"));
        assert!(!peer.closed, "{:?}", peer.close_reason());
    }
    peer.wait(last_message + idle - peer.now);
    assert!(peer.closed);
    assert_eq!(peer.close_reason(), Some(CloseReason::StreamIdle));
}

#[test]
fn a_frame_dribbled_byte_by_byte_does_not_keep_a_stream_open() {
    let config = connection_support::unsigned();
    let idle = config.stream_idle_timeout;
    let mut peer = stream(config);
    peer.send(&text_frame(CONNECTED))
        .send(&text_frame(&start()));
    let last_message = peer.now;
    // One byte a second of a frame longer than the idle limit in seconds.
    let frame = text_frame(&media(1));
    assert!(frame.len() as u64 > idle.as_secs());
    for b in frame.iter().take(idle.as_secs() as usize - 1) {
        peer.wait(Duration::from_secs(1)).send(&[*b]);
        assert!(!peer.closed, "{:?}", peer.close_reason());
    }
    peer.wait(last_message + idle - peer.now);
    assert!(peer.closed);
    assert_eq!(peer.close_reason(), Some(CloseReason::StreamIdle));
}

#[test]
fn shedding_answers_a_request_in_progress_with_503() {
    let mut peer = Peer::new(connection_support::unsigned());
    peer.send(b"POST /webhook/call_status HTTP/1.1\r\nHost: a.example\r\nContent-Le");
    peer.conn.shed(peer.now);
    peer.drain();
    let text = peer.take_text();
    assert!(text.starts_with("HTTP/1.1 503 "), "{text}");
    assert!(text.contains("Retry-After: 1"), "{text}");
    assert!(peer.closed);
    assert_eq!(peer.close_reason(), Some(CloseReason::Shed));
    // The parser's buffers are gone; only the written answer's remains.
    assert!(peer.conn.request_buffer_bytes() < 1024);
}

#[test]
fn shedding_closes_an_idle_connection_quietly_and_never_a_stream() {
    let mut peer = Peer::new(connection_support::unsigned());
    peer.send(b"GET /healthz HTTP/1.1\r\nHost: a.example\r\n\r\n");
    assert!(peer.take_text().starts_with("HTTP/1.1 200"));
    peer.conn.shed(peer.now);
    peer.drain();
    assert!(peer.take_wire().is_empty());
    assert_eq!(peer.close_reason(), Some(CloseReason::Shed));

    let mut call = stream(connection_support::unsigned());
    call.send(&text_frame(CONNECTED))
        .send(&text_frame(&start()));
    call.conn.shed(call.now);
    call.drain();
    assert!(!call.closed);
    assert_eq!(call.conn.request_buffer_bytes(), 0);
}

#[test]
fn a_parked_body_holds_what_arrived_not_what_was_announced() {
    let mut peer = Peer::new(connection_support::unsigned());
    let head = "POST /webhook/call_status HTTP/1.1\r\nHost: a.example\r\n\
Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 65000\r\n\r\n";
    peer.send(head.as_bytes()).send(b"CallSid=CA");
    assert!(!peer.closed);
    let held = peer.conn.request_buffer_bytes();
    // The head's buffer and a few bytes of body, not 65,000.
    assert!(held < 8 * 1024, "{held} bytes held");
}

#[test]
fn buffers_shrink_back_between_requests() {
    let mut peer = Peer::new(connection_support::unsigned());
    let body = "x".repeat(60_000);
    let request = format!(
        "POST /webhook/nowhere HTTP/1.1\r\nHost: a.example\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    peer.send(request.as_bytes());
    assert!(peer.take_text().starts_with("HTTP/1.1 404"));
    assert!(!peer.closed);
    let held = peer.conn.request_buffer_bytes();
    assert!(held <= 2 * 16 * 1024, "{held} bytes held while idle");
}
