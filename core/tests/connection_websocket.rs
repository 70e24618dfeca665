//! The WebSocket upgrade and the media stream through `Connection`: Twilio's
//! real upgrade request, every handshake variant, and the frame rules.

mod connection_support;

use std::time::Duration;

use callstream_core::connection::{CloseReason, Config, Event, Route};
use callstream_core::message::{self, Inbound};
use callstream_core::public_url::PublicBase;
use callstream_core::websocket::{Initiator, WsError};
use connection_support::{Peer, TOKEN, client_frame, text_frame};

/// RFC 6455 §1.3's example key and its accept value: an independent vector.
const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
const ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

const HOST: &str = "voice.example.com";

const CONNECTED: &str = r#"{"event":"connected","protocol":"Call","version":"1.0.0"}"#;
const MEDIA: &str = concat!(
    r#"{"event":"media","sequenceNumber":"3","streamSid":"MZ18ad3ab5a668481ce02b83e7395059f0","#,
    r#""media":{"track":"inbound","chunk":"2","timestamp":"40","payload":"//////////8="}}"#
);

const START_OTHER_ACCOUNT: &str = concat!(
    r#"{"event":"start","sequenceNumber":"1","streamSid":"MZ18ad3ab5a668481ce02b83e7395059f0","#,
    r#""start":{"accountSid":"AC22222222222222222222222222222222","#,
    r#""streamSid":"MZ18ad3ab5a668481ce02b83e7395059f0","callSid":"CA33333333333333333333333333333333","#,
    r#""tracks":["inbound"],"customParameters":{},"#,
    r#""mediaFormat":{"encoding":"audio/x-mulaw","sampleRate":8000,"channels":1}}}"#
);

fn parsed(text: &str) -> Inbound<'static> {
    message::parse(text).unwrap().into_owned()
}

fn base() -> PublicBase {
    PublicBase::parse(&format!("https://{HOST}")).unwrap()
}

fn signed() -> Config {
    Config {
        auth_tokens: vec![TOKEN.to_owned()],
        public_base_url: Some(base()),
        ..connection_support::unsigned()
    }
}

/// Twilio's upgrade request (the model's), behind a proxy that adds
/// `x-forwarded-for` and `x-forwarded-proto`, signed over `signed_url`.
fn twilio_upgrade(path: &str, signed_url: &str) -> Vec<u8> {
    let mut up = callstream_twilio::Upgrade::new(HOST, path, Some(TOKEN), 0);
    up.key = *b"the sample nonce"; // KEY, in base64
    up.stream_url = Some(signed_url.to_owned());
    up.forwarded = Some(callstream_twilio::Forwarded {
        for_: Some("54.172.60.1".into()),
        proto: Some("https".into()),
        host: None,
    });
    up.to_bytes()
}

fn upgraded_peer() -> Peer {
    let mut peer = Peer::new(signed());
    peer.send(&twilio_upgrade(
        "/ws/twilio-media",
        &format!("wss://{HOST}/ws/twilio-media"),
    ));
    assert!(peer.conn.is_stream());
    peer.take_wire();
    peer.take_events();
    peer
}

fn count(haystack: &str, needle: &str) -> usize {
    haystack
        .to_ascii_lowercase()
        .matches(&needle.to_ascii_lowercase())
        .count()
}

#[test]
fn twilios_real_upgrade_request_is_accepted() {
    let mut peer = Peer::new(signed());
    peer.send(&twilio_upgrade(
        "/ws/twilio-media",
        &format!("wss://{HOST}/ws/twilio-media"),
    ));
    let text = peer.take_text();
    assert_eq!(
        text,
        format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Accept: {ACCEPT}\r\n\r\n"
        )
    );
    for header in ["upgrade:", "connection:", "sec-websocket-accept:"] {
        assert_eq!(count(&text, header), 1, "{header} exactly once");
    }
    assert_eq!(
        count(&text, "sec-websocket-protocol"),
        0,
        "nothing offered, nothing echoed"
    );
    let events = peer.take_app_events();
    assert!(
        events.contains(&Event::Upgraded { subprotocol: None }),
        "{events:?}"
    );
    assert!(peer.statuses().is_empty() || peer.statuses() == [101]);
    assert!(peer.conn.is_stream());
    assert!(!peer.closed);

    // Then frames: a media message comes out parsed.
    peer.send(&text_frame(CONNECTED)).send(&text_frame(MEDIA));
    let events = peer.take_events();
    assert_eq!(events.len(), 2, "{events:?}");
    assert!(matches!(&events[0], Event::StreamMessage(m) if *m == parsed(CONNECTED)));
    assert!(matches!(&events[1], Event::StreamMessage(m) if *m == parsed(MEDIA)));
    assert!(peer.take_wire().is_empty());
}

#[test]
fn upgrade_event_order_is_request_then_upgraded() {
    let mut peer = Peer::new(signed());
    peer.send(&twilio_upgrade(
        "/ws/twilio-media",
        &format!("wss://{HOST}/ws/twilio-media"),
    ));
    let events = peer.take_events();
    assert!(
        matches!(
            &events[..],
            [
                Event::FrontDetected { .. },
                Event::Request {
                    route: Route::MediaStream,
                    status: 101,
                    ..
                },
                Event::Upgraded { subprotocol: None }
            ]
        ),
        "{events:?}"
    );
}

#[test]
fn trailing_slash_path_is_served_and_either_url_may_be_signed() {
    let slash = format!("wss://{HOST}/ws/twilio-media/");
    let plain = format!("wss://{HOST}/ws/twilio-media");
    for (path, url) in [
        ("/ws/twilio-media/", &slash),
        ("/ws/twilio-media/", &plain),
        ("/ws/twilio-media", &slash),
    ] {
        let mut peer = Peer::new(signed());
        peer.send(&twilio_upgrade(path, url));
        assert!(
            peer.take_text().starts_with("HTTP/1.1 101 "),
            "{path} signed over {url}"
        );
    }
}

#[test]
fn upgrade_signature_from_host_and_trusted_forwarded_proto() {
    let config = Config {
        auth_tokens: vec![TOKEN.to_owned()],
        trust_forwarded: true,
        ..connection_support::unsigned()
    };
    let mut peer = Peer::new(config);
    peer.send(&twilio_upgrade(
        "/ws/twilio-media",
        &format!("wss://{HOST}/ws/twilio-media"),
    ));
    assert!(peer.take_text().starts_with("HTTP/1.1 101 "));

    // Untrusted, TLS in front is unknown: wss:// and ws:// are both tried.
    let config = Config {
        auth_tokens: vec![TOKEN.to_owned()],
        ..connection_support::unsigned()
    };
    let mut peer = Peer::new(config);
    peer.send(&twilio_upgrade(
        "/ws/twilio-media",
        &format!("wss://{HOST}/ws/twilio-media"),
    ));
    assert!(peer.take_text().starts_with("HTTP/1.1 101 "));

    // Trusted and saying http: only ws://, which Twilio did not sign.
    let config = Config {
        auth_tokens: vec![TOKEN.to_owned()],
        trust_forwarded: true,
        ..connection_support::unsigned()
    };
    let mut peer = Peer::new(config);
    let request = String::from_utf8(twilio_upgrade(
        "/ws/twilio-media",
        &format!("wss://{HOST}/ws/twilio-media"),
    ))
    .unwrap()
    .replace("x-forwarded-proto: https", "x-forwarded-proto: http");
    peer.send(request.as_bytes());
    assert!(peer.take_text().starts_with("HTTP/1.1 403 "));
}

#[test]
fn wrong_or_missing_upgrade_signature_is_403_and_close() {
    let mut peer = Peer::new(signed());
    peer.send(&twilio_upgrade(
        "/ws/twilio-media",
        "wss://elsewhere.example.com/ws/twilio-media",
    ));
    let text = peer.take_text();
    assert!(text.starts_with("HTTP/1.1 403 Forbidden\r\n"), "{text}");
    assert!(text.contains("Connection: close\r\n"));
    assert!(peer.closed);
    let events = peer.take_app_events();
    assert!(
        events.iter().any(
            |e| matches!(e, Event::SignatureRejected { route: Route::MediaStream, urls_tried, .. }
            if urls_tried.contains(&format!("wss://{HOST}/ws/twilio-media")))
        ),
        "{events:?}"
    );
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::HandshakeRejected { status: 403, .. }))
    );

    let mut peer = Peer::new(signed());
    let request = String::from_utf8(twilio_upgrade("/ws/twilio-media", "x")).unwrap();
    let start = request.find("x-twilio-signature").unwrap();
    let end = start + request[start..].find("\r\n").unwrap() + 2;
    peer.send(format!("{}{}", &request[..start], &request[end..]).as_bytes());
    assert!(peer.take_text().starts_with("HTTP/1.1 403 "));
}

#[test]
fn no_tokens_accepts_unsigned_upgrades_and_says_so() {
    let mut peer = Peer::new(connection_support::unsigned());
    peer.send(
        format!(
            "GET /ws/twilio-media HTTP/1.1\r\nHost: {HOST}\r\nConnection: Upgrade\r\n\
             Upgrade: websocket\r\nSec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        .as_bytes(),
    );
    assert!(peer.take_text().starts_with("HTTP/1.1 101 "));
    assert!(peer.take_app_events().contains(&Event::SignaturesOff));
}

fn upgrade_with(extra: &str, version: &str) -> Vec<u8> {
    format!(
        "GET /ws/twilio-media HTTP/1.1\r\nHost: {HOST}\r\nConnection: keep-alive, Upgrade\r\n\
         Upgrade: websocket\r\nSec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: {version}\r\n{extra}\r\n"
    )
    .into_bytes()
}

#[test]
fn offered_subprotocol_is_echoed_as_spelled() {
    for (offer, echoed) in [
        (
            "Sec-WebSocket-Protocol: audio.twilio.com\r\n",
            "audio.twilio.com",
        ),
        (
            "Sec-WebSocket-Protocol: chat, Audio.Twilio.Com\r\n",
            "Audio.Twilio.Com",
        ),
        (
            "Sec-WebSocket-Protocol: chat\r\nSec-WebSocket-Protocol: audio.twilio.com\r\n",
            "audio.twilio.com",
        ),
    ] {
        let mut peer = Peer::new(connection_support::unsigned());
        peer.send(&upgrade_with(offer, "13"));
        let text = peer.take_text();
        assert!(text.starts_with("HTTP/1.1 101 "), "{text}");
        assert_eq!(count(&text, "sec-websocket-protocol:"), 1, "{text}");
        assert!(
            text.contains(&format!("Sec-WebSocket-Protocol: {echoed}\r\n")),
            "{text}"
        );
        assert!(peer.take_app_events().contains(&Event::Upgraded {
            subprotocol: Some(echoed.to_owned())
        }));
    }
    // Another subprotocol alone: accepted, nothing named (never required).
    let mut peer = Peer::new(connection_support::unsigned());
    peer.send(&upgrade_with("Sec-WebSocket-Protocol: chat\r\n", "13"));
    let text = peer.take_text();
    assert!(text.starts_with("HTTP/1.1 101 "), "{text}");
    assert_eq!(count(&text, "sec-websocket-protocol"), 0);
}

#[test]
fn extensions_are_not_negotiated() {
    let mut peer = Peer::new(connection_support::unsigned());
    peer.send(&upgrade_with(
        "Sec-WebSocket-Extensions: permessage-deflate\r\n",
        "13",
    ));
    let text = peer.take_text();
    assert!(text.starts_with("HTTP/1.1 101 "));
    assert_eq!(count(&text, "sec-websocket-extensions"), 0);
}

#[test]
fn wrong_version_is_426_with_the_supported_version() {
    let mut peer = Peer::new(connection_support::unsigned());
    peer.send(&upgrade_with("", "8"));
    let text = peer.take_text();
    assert!(
        text.starts_with("HTTP/1.1 426 Upgrade Required\r\n"),
        "{text}"
    );
    assert!(text.contains("Sec-WebSocket-Version: 13\r\n"));
    assert!(peer.closed);
    assert!(
        peer.events
            .iter()
            .any(|e| matches!(e, Event::HandshakeRejected { status: 426, .. }))
    );
}

#[test]
fn invalid_upgrades_are_400_with_a_reason() {
    let requests = [
        // Not an upgrade at all.
        format!("GET /ws/twilio-media HTTP/1.1\r\nHost: {HOST}\r\n\r\n"),
        // Key of 15 bytes.
        format!(
            "GET /ws/twilio-media HTTP/1.1\r\nHost: {HOST}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
             Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAA\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ),
        // Upgrade to something else.
        format!(
            "GET /ws/twilio-media HTTP/1.1\r\nHost: {HOST}\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\
             Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ),
        // Connection lacks upgrade.
        format!(
            "GET /ws/twilio-media HTTP/1.1\r\nHost: {HOST}\r\nConnection: keep-alive\r\nUpgrade: websocket\r\n\
             Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ),
        // HTTP/1.0.
        format!(
            "GET /ws/twilio-media HTTP/1.0\r\nHost: {HOST}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
             Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ),
    ];
    for request in requests {
        let mut peer = Peer::new(connection_support::unsigned());
        peer.send(request.as_bytes());
        let text = peer.take_text();
        assert!(
            text.starts_with("HTTP/1.1 400 Bad Request\r\n"),
            "{request}\n->\n{text}"
        );
        let body = &text[text.find("\r\n\r\n").unwrap() + 4..];
        assert!(!body.trim().is_empty(), "a reason in the body");
        assert!(peer.closed);
        assert!(
            peer.events.iter().any(|e| matches!(e, Event::HandshakeRejected { status: 400, reason } if !reason.is_empty())),
            "{:?}",
            peer.events
        );
    }
}

#[test]
fn frames_sent_right_behind_the_upgrade_are_not_lost() {
    let mut peer = Peer::new(signed());
    let mut bytes = twilio_upgrade("/ws/twilio-media", &format!("wss://{HOST}/ws/twilio-media"));
    bytes.extend(text_frame(CONNECTED));
    peer.send(&bytes);
    assert!(peer.take_text().starts_with("HTTP/1.1 101 "));
    assert!(
        peer.events
            .iter()
            .any(|e| matches!(e, Event::StreamMessage(m) if *m == parsed(CONNECTED)))
    );
}

#[test]
fn ping_gets_pong() {
    let mut peer = upgraded_peer();
    peer.send(&client_frame(0x89, b"beat"));
    assert_eq!(peer.take_wire(), b"\x8a\x04beat");
    assert_eq!(peer.take_events(), []);
}

#[test]
fn fragmented_text_is_reassembled() {
    let mut peer = upgraded_peer();
    let (a, b) = MEDIA.split_at(40);
    let mut bytes = client_frame(0x01, a.as_bytes());
    bytes.extend(client_frame(0x80, b.as_bytes()));
    peer.send(&bytes);
    let events = peer.take_events();
    assert!(
        matches!(&events[..], [Event::StreamMessage(m)] if *m == parsed(MEDIA)),
        "{events:?}"
    );
}

#[test]
fn binary_is_dropped_and_counted() {
    let mut peer = upgraded_peer();
    peer.send(&client_frame(0x82, &[1, 2, 3]));
    assert_eq!(peer.take_events(), [Event::BinaryDropped { len: 3 }]);
    assert_eq!(peer.conn.binary_dropped(), 1);
    assert!(!peer.closed);
}

#[test]
fn message_over_64_kib_closes_with_1009() {
    let mut peer = upgraded_peer();
    let big = "a".repeat(64 * 1024 + 1);
    peer.send(&text_frame(&big));
    assert_eq!(peer.take_wire(), b"\x88\x11\x03\xf1message too big");
    assert!(peer.closed);
    assert!(matches!(
        peer.close_reason(),
        Some(CloseReason::WebSocketFailed(WsError::MessageTooBig {
            size: 65537,
            limit: 65536
        }))
    ));
}

#[test]
fn protocol_error_closes_with_1002() {
    let mut peer = upgraded_peer();
    peer.send(b"\x81\x02hi"); // unmasked
    assert_eq!(peer.take_wire(), b"\x88\x10\x03\xeaprotocol error");
    assert!(peer.closed);
}

#[test]
fn close_from_twilio_is_answered() {
    let mut peer = upgraded_peer();
    peer.send(&client_frame(0x88, b"\x03\xe8"));
    assert_eq!(peer.take_wire(), b"\x88\x02\x03\xe8");
    assert!(peer.closed);
    assert_eq!(
        peer.close_reason(),
        Some(CloseReason::WebSocketClosed {
            code: Some(1000),
            initiator: Initiator::Peer
        })
    );
}

#[test]
fn shutdown_sends_1001_and_waits_for_the_answer() {
    let mut peer = upgraded_peer();
    peer.shutdown();
    assert_eq!(peer.take_wire(), b"\x88\x16\x03\xe9server shutting down");
    assert!(!peer.closed);
    peer.send(&client_frame(0x88, b"\x03\xe9"));
    assert!(peer.closed);
    assert_eq!(
        peer.close_reason(),
        Some(CloseReason::WebSocketClosed {
            code: Some(1001),
            initiator: Initiator::Local
        })
    );
    assert!(peer.take_wire().is_empty(), "no second close frame");
}

#[test]
fn shutdown_gives_up_after_the_close_timeout() {
    let mut peer = upgraded_peer();
    peer.shutdown();
    let timeout = connection_support::unsigned().close_timeout;
    assert_eq!(peer.deadline, Some(peer.now + timeout));
    peer.wait(timeout - Duration::from_millis(1));
    assert!(!peer.closed);
    peer.wait(Duration::from_millis(1));
    assert!(peer.closed);
    assert_eq!(peer.close_reason(), Some(CloseReason::CloseTimeout));
}

#[test]
fn silent_stream_is_closed_after_the_idle_limit() {
    let mut peer = upgraded_peer();
    // A started call (one that never starts is closed sooner).
    peer.send(&text_frame(START_OTHER_ACCOUNT));
    let idle = connection_support::unsigned().stream_idle_timeout;
    peer.wait(idle / 2);
    peer.send(&text_frame(CONNECTED));
    peer.wait(idle - Duration::from_millis(1));
    assert!(!peer.closed);
    peer.wait(Duration::from_millis(1));
    assert!(peer.closed);
    assert_eq!(peer.close_reason(), Some(CloseReason::StreamIdle));
}

#[test]
fn eof_on_a_stream_closes() {
    let mut peer = upgraded_peer();
    peer.eof();
    assert!(peer.closed);
    assert_eq!(peer.close_reason(), Some(CloseReason::PeerClosed));
}

/// tungstenite's client role as the peer, over byte buffers: an
/// independent implementation of the framing.
#[test]
fn tungstenite_client_talks_to_the_engine() {
    use std::io::{self, Read, Write};
    use tungstenite::Message;
    use tungstenite::protocol::{Role, WebSocket};

    #[derive(Default)]
    struct Buffers {
        inbound: Vec<u8>,
        outbound: Vec<u8>,
    }
    impl Read for Buffers {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.inbound.is_empty() {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            let n = buf.len().min(self.inbound.len());
            buf[..n].copy_from_slice(&self.inbound[..n]);
            self.inbound.drain(..n);
            Ok(n)
        }
    }
    impl Write for Buffers {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.outbound.extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    let mut peer = upgraded_peer();
    let mut client = WebSocket::from_raw_socket(Buffers::default(), Role::Client, None);
    client.send(Message::text(CONNECTED)).unwrap();
    client.send(Message::text(MEDIA)).unwrap();
    client.send(Message::Ping(b"x".to_vec().into())).unwrap();
    let bytes = std::mem::take(&mut client.get_mut().outbound);
    peer.send(&bytes);
    let events = peer.take_events();
    assert!(
        matches!(&events[..], [Event::StreamMessage(a), Event::StreamMessage(b)]
        if *a == parsed(CONNECTED) && *b == parsed(MEDIA)),
        "{events:?}"
    );
    client.get_mut().inbound = peer.take_wire();
    assert!(matches!(client.read(), Ok(Message::Pong(p)) if p.as_ref() == b"x"));

    peer.shutdown();
    client.get_mut().inbound = peer.take_wire();
    assert!(matches!(client.read(), Ok(Message::Close(Some(f))) if u16::from(f.code) == 1001));
    let _ = client.flush();
    let answer = std::mem::take(&mut client.get_mut().outbound);
    peer.send(&answer);
    assert!(peer.closed);
    assert_eq!(
        peer.close_reason(),
        Some(CloseReason::WebSocketClosed {
            code: Some(1001),
            initiator: Initiator::Local
        })
    );
}

#[test]
fn invalid_twilio_message_is_reported_and_dropped() {
    let mut peer = upgraded_peer();
    peer.send(&text_frame("{\"event\":\"nonsense\""))
        .send(&text_frame(CONNECTED));
    let events = peer.take_events();
    assert!(
        matches!(
            &events[..],
            [Event::InvalidStreamMessage { .. }, Event::StreamMessage(_)]
        ),
        "{events:?}"
    );
    assert!(!peer.closed);
}

#[test]
fn stream_for_another_account_is_closed_with_1008() {
    let mut config = signed();
    config.account_sid = Some(
        callstream_core::sid::AccountSid::parse("AC11111111111111111111111111111111").unwrap(),
    );
    let mut peer = Peer::new(config);
    peer.send(&twilio_upgrade(
        "/ws/twilio-media",
        &format!("wss://{HOST}/ws/twilio-media"),
    ));
    peer.take_wire();
    peer.take_events();
    peer.send(&text_frame(START_OTHER_ACCOUNT));
    assert_eq!(peer.take_wire(), b"\x88\x15\x03\xf0account not allowed");
    assert!(peer.take_events().iter().any(|e| matches!(
        e,
        Event::AccountRejected {
            route: Route::MediaStream,
            ..
        }
    )));
}
