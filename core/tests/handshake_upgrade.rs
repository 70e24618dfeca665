//! The WebSocket upgrade: Twilio's real request, byte-exact 101 transcripts,
//! every refusal, and the subprotocol variants.

use callstream_core::handshake::{
    self, HandshakeError, Upgrade, accept_key, check_upgrade, response_101,
};
use callstream_core::http::{Limits, Request, RequestParser};
use proptest::prelude::*;
use std::time::Instant;

fn request(wire: &[u8]) -> Request {
    let now = Instant::now();
    let mut parser = RequestParser::new(Limits::default(), now);
    parser.handle_receive(now, wire);
    parser.poll_request().unwrap().expect("a complete request")
}

/// Twilio's upgrade as observed (docs/protocol.md §1), behind a proxy.
const TWILIO: &[u8] = b"GET /ws/twilio-media HTTP/1.1\r\n\
host: callstream.example.com\r\n\
user-agent: Twilio.TmeWs/1.0\r\n\
connection: Upgrade\r\n\
upgrade: websocket\r\n\
sec-websocket-key: x3JJHMbDL1EzLkh9GBhXDw==\r\n\
sec-websocket-version: 13\r\n\
x-twilio-signature: 3d2S3wRJ0dJsqRcDa+8VCqkpnLI=\r\n\
accept-encoding: gzip\r\n\
x-forwarded-for: 54.172.60.1\r\n\
x-forwarded-host: callstream.example.com\r\n\
x-forwarded-proto: https\r\n\
\r\n";

/// A valid upgrade with `extra` header lines inserted.
fn upgrade_with(extra: &str) -> Vec<u8> {
    format!(
        "GET /ws/twilio-media HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
    )
    .into_bytes()
}

#[test]
fn accept_keys_match_an_independent_implementation() {
    // Computed with Python's hashlib and base64, and RFC 6455 §1.3.
    let cases = [
        ("dGhlIHNhbXBsZSBub25jZQ==", "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="),
        ("AAAAAAAAAAAAAAAAAAAAAA==", "ICX+Yqv66kxgM0FcWaLWlFLwTAI="),
        ("/////////////////////w==", "XXpj4jYzLM2yUE0C7TIgMwTQh2g="),
        ("x3JJHMbDL1EzLkh9GBhXDw==", "HSmrc0sMlYUkAGmm5OPpG2HaGWk="),
    ];
    for (key, accept) in cases {
        assert_eq!(accept_key(key), accept, "{key}");
    }
}

#[test]
fn twilios_real_upgrade_is_accepted_byte_exact() {
    let upgrade = check_upgrade(&request(TWILIO)).unwrap();
    assert_eq!(
        upgrade,
        Upgrade {
            key: "x3JJHMbDL1EzLkh9GBhXDw==".into(),
            subprotocol: None
        }
    );
    assert_eq!(
        String::from_utf8(response_101(&upgrade)).unwrap(),
        "HTTP/1.1 101 Switching Protocols\r\n\
         Upgrade: websocket\r\n\
         Connection: Upgrade\r\n\
         Sec-WebSocket-Accept: HSmrc0sMlYUkAGmm5OPpG2HaGWk=\r\n\
         \r\n"
    );
}

#[test]
fn the_101_names_each_required_header_exactly_once() {
    let upgrade = check_upgrade(&request(&upgrade_with(
        "Sec-WebSocket-Protocol: audio.twilio.com\r\n",
    )))
    .unwrap();
    let wire = response_101(&upgrade);
    // Read it back as a client would.
    let mut headers = [httparse::EMPTY_HEADER; 8];
    let mut response = httparse::Response::new(&mut headers);
    assert_eq!(
        response.parse(&wire),
        Ok(httparse::Status::Complete(wire.len()))
    );
    assert_eq!(response.code, Some(101));
    for name in [
        "upgrade",
        "connection",
        "sec-websocket-accept",
        "sec-websocket-protocol",
    ] {
        let n = response
            .headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case(name))
            .count();
        assert_eq!(n, 1, "{name}");
    }
    assert!(
        !response
            .headers
            .iter()
            .any(|h| h.name.eq_ignore_ascii_case("sec-websocket-extensions"))
    );
}

#[test]
fn subprotocol_variants() {
    let cases: &[(&str, Option<&str>)] = &[
        ("", None),
        (
            "Sec-WebSocket-Protocol: audio.twilio.com\r\n",
            Some("audio.twilio.com"),
        ),
        (
            "Sec-WebSocket-Protocol: chat, audio.twilio.com\r\n",
            Some("audio.twilio.com"),
        ),
        (
            "Sec-WebSocket-Protocol: chat,audio.twilio.com,x\r\n",
            Some("audio.twilio.com"),
        ),
        (
            "Sec-WebSocket-Protocol: chat audio.twilio.com\r\n",
            Some("audio.twilio.com"),
        ),
        (
            "Sec-WebSocket-Protocol: chat\r\nsec-websocket-protocol: Audio.Twilio.COM\r\n",
            Some("Audio.Twilio.COM"),
        ),
        (
            "Sec-WebSocket-Protocol: AUDIO.TWILIO.COM\r\n",
            Some("AUDIO.TWILIO.COM"),
        ),
        ("Sec-WebSocket-Protocol: chat, superchat\r\n", None),
        ("Sec-WebSocket-Protocol: audio.twilio.com.evil\r\n", None),
        ("Sec-WebSocket-Protocol: audio.twilio\r\n", None),
        ("Sec-WebSocket-Protocol: \"audio.twilio.com\"\r\n", None),
        ("Sec-WebSocket-Protocol:\r\n", None),
    ];
    for (extra, want) in cases {
        let upgrade = check_upgrade(&request(&upgrade_with(extra))).unwrap();
        assert_eq!(upgrade.subprotocol.as_deref(), *want, "{extra:?}");
        let wire = String::from_utf8(response_101(&upgrade)).unwrap();
        match want {
            Some(p) => assert!(
                wire.ends_with(&format!(
                    "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\nSec-WebSocket-Protocol: {p}\r\n\r\n"
                )),
                "{wire}"
            ),
            None => assert!(!wire.contains("Sec-WebSocket-Protocol"), "{wire}"),
        }
    }
}

#[test]
fn extensions_are_never_negotiated() {
    let upgrade = check_upgrade(&request(&upgrade_with(
        "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n",
    )))
    .unwrap();
    assert!(
        !String::from_utf8(response_101(&upgrade))
            .unwrap()
            .contains("Extensions")
    );
}

#[test]
fn tolerant_where_the_rfc_allows() {
    let ok: &[&[u8]] = &[
        // Token lists, any case, over several lines.
        b"GET / HTTP/1.1\r\nHost: h\r\nConnection: keep-alive, Upgrade\r\nUpgrade: WebSocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: h\r\nConnection: keep-alive\r\nconnection: upgrade\r\nUpgrade: h2c\r\nupgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: h\r\nConnection: UPGRADE\r\nUpgrade: foo, websocket\r\nSec-WebSocket-Key:   dGhlIHNhbXBsZSBub25jZQ==  \r\nSec-WebSocket-Version:  13 \r\nOrigin: https://x\r\n\r\n",
    ];
    for wire in ok {
        let upgrade = check_upgrade(&request(wire));
        assert_eq!(
            upgrade.map(|u| u.accept()),
            Ok("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=".to_string()),
            "{}",
            String::from_utf8_lossy(wire)
        );
    }
}

#[test]
fn every_refusal() {
    let base = |method: &str, version: &str, lines: &str| {
        format!("{method} /ws/twilio-media {version}\r\nHost: h\r\n{lines}\r\n").into_bytes()
    };
    let good_key = "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";
    let good = format!(
        "Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n{good_key}"
    );
    let cases: Vec<(Vec<u8>, HandshakeError)> = vec![
        (base("POST", "HTTP/1.1", &good), HandshakeError::NotGet),
        (base("get", "HTTP/1.1", &good), HandshakeError::NotGet),
        (base("GET", "HTTP/1.0", &good), HandshakeError::NotHttp11),
        (
            base(
                "GET",
                "HTTP/1.1",
                &good.replace("Upgrade: websocket\r\n", ""),
            ),
            HandshakeError::NotWebSocketUpgrade,
        ),
        (
            base(
                "GET",
                "HTTP/1.1",
                &good.replace("Upgrade: websocket", "Upgrade: h2c"),
            ),
            HandshakeError::NotWebSocketUpgrade,
        ),
        (
            base(
                "GET",
                "HTTP/1.1",
                &good.replace("Upgrade: websocket", "Upgrade: websockets"),
            ),
            HandshakeError::NotWebSocketUpgrade,
        ),
        (
            base(
                "GET",
                "HTTP/1.1",
                &good.replace("Connection: Upgrade", "Connection: keep-alive"),
            ),
            HandshakeError::MissingConnectionUpgrade,
        ),
        (
            base(
                "GET",
                "HTTP/1.1",
                &good.replace("Connection: Upgrade\r\n", ""),
            ),
            HandshakeError::MissingConnectionUpgrade,
        ),
        (
            base(
                "GET",
                "HTTP/1.1",
                &good.replace("Sec-WebSocket-Version: 13\r\n", ""),
            ),
            HandshakeError::UnsupportedVersion,
        ),
        (
            base(
                "GET",
                "HTTP/1.1",
                &good.replace("Version: 13", "Version: 8"),
            ),
            HandshakeError::UnsupportedVersion,
        ),
        (
            base(
                "GET",
                "HTTP/1.1",
                &good.replace("Version: 13", "Version: 13, 8"),
            ),
            HandshakeError::UnsupportedVersion,
        ),
        (
            base(
                "GET",
                "HTTP/1.1",
                &format!("{good}Sec-WebSocket-Version: 13\r\n"),
            ),
            HandshakeError::UnsupportedVersion,
        ),
        (
            base("GET", "HTTP/1.1", &good.replace(good_key, "")),
            HandshakeError::MissingKey,
        ),
        (
            base("GET", "HTTP/1.1", &format!("{good}{good_key}")),
            HandshakeError::MultipleKeys,
        ),
    ];
    for (wire, want) in cases {
        let got = check_upgrade(&request(&wire)).unwrap_err();
        assert_eq!(got, want, "{}", String::from_utf8_lossy(&wire));
    }
}

#[test]
fn keys_must_be_base64_of_16_bytes() {
    let bad = [
        "",
        "dGhlIHNhbXBsZSBub25jZQ",       // no padding
        "dGhlIHNhbXBsZSBub25jZQ=",      // short padding
        "dGhlIHNhbXBsZSBub25jZR==",     // non-zero trailing bits
        "dGhlIHNhbXBsZSBub25j",         // 15 bytes, unpadded
        "dGhlIHNhbXBsZSBub25jZWU=",     // 17 bytes
        "dGhlIHNhbXBsZSBub25jZQ==dGhl", // trailing junk
        "dGhlIHNhbXBsZ SBub25jZQ==",    // inner space
        "dGhlIHNhbXBsZSBub25jZQ-_",     // URL-safe alphabet
        "!!!!!!!!!!!!!!!!!!!!!!==",
    ];
    for key in bad {
        let wire = upgrade_with("").into_iter().collect::<Vec<u8>>();
        let wire = String::from_utf8(wire)
            .unwrap()
            .replace("dGhlIHNhbXBsZSBub25jZQ==", key);
        let got = check_upgrade(&request(wire.as_bytes()));
        assert_eq!(got, Err(HandshakeError::InvalidKey), "{key:?}");
    }
    let wire = String::from_utf8(upgrade_with(""))
        .unwrap()
        .replace("dGhlIHNhbXBsZSBub25jZQ==", "dGhlIHNhbXBsZSBub25jZ\u{e9}=");
    assert_eq!(
        check_upgrade(&request(wire.as_bytes())),
        Err(HandshakeError::InvalidKey)
    );
}

#[test]
fn refusals_are_answered_byte_exact() {
    let e = check_upgrade(&request(
        b"GET /ws/twilio-media HTTP/1.1\r\nHost: h\r\n\r\n",
    ))
    .unwrap_err();
    assert_eq!(
        String::from_utf8(e.response().close().to_bytes()).unwrap(),
        "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\n\
         Content-Length: 54\r\nConnection: close\r\n\r\n\
         not a WebSocket upgrade: no Upgrade: websocket header\n"
    );
    let e = HandshakeError::UnsupportedVersion;
    assert_eq!(
        String::from_utf8(e.response().to_bytes()).unwrap(),
        "HTTP/1.1 426 Upgrade Required\r\nContent-Type: text/plain; charset=utf-8\r\n\
         Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\nContent-Length: 39\r\n\
         Connection: Upgrade\r\n\r\nupgrade required: WebSocket version 13\n"
    );
}

#[test]
fn routing_helpers() {
    assert!(handshake::is_upgrade_request(&request(TWILIO)));
    assert!(!handshake::is_upgrade_request(&request(
        b"GET / HTTP/1.1\r\nHost: h\r\n\r\n"
    )));
    assert_eq!(
        handshake::offered_subprotocol(&request(&upgrade_with(
            "Sec-WebSocket-Protocol: a\r\nSec-WebSocket-Protocol: b, Audio.twilio.com\r\n"
        ))),
        Some("Audio.twilio.com".to_string())
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn any_16_byte_key_is_accepted(key in prop::array::uniform16(any::<u8>())) {
        use base64::Engine;
        let key = base64::engine::general_purpose::STANDARD.encode(key);
        let wire = String::from_utf8(upgrade_with("")).unwrap().replace("dGhlIHNhbXBsZSBub25jZQ==", &key);
        let upgrade = check_upgrade(&request(wire.as_bytes())).unwrap();
        prop_assert_eq!(&upgrade.key, &key);
        let accept = upgrade.accept();
        prop_assert_eq!(accept.len(), 28);
        let wire = response_101(&upgrade);
        let tail = format!("Sec-WebSocket-Accept: {}\r\n\r\n", accept);
        prop_assert!(wire.ends_with(tail.as_bytes()));
    }

    #[test]
    fn arbitrary_upgrade_like_requests_never_panic(
        lines in prop::collection::vec(
            (
                prop::sample::select(vec![
                    "Upgrade", "Connection", "Sec-WebSocket-Key", "Sec-WebSocket-Version",
                    "Sec-WebSocket-Protocol", "sec-websocket-extensions", "X-Other",
                ]),
                "[ -~\u{80}-\u{ff}]{0,30}",
            ),
            0..10,
        ),
        method in prop::sample::select(vec!["GET", "POST", "OPTIONS"]),
    ) {
        let mut wire = format!("{method} /ws HTTP/1.1\r\nHost: h\r\n");
        for (name, value) in &lines {
            wire.push_str(&format!("{name}: {value}\r\n"));
        }
        wire.push_str("\r\n");
        let now = Instant::now();
        let mut parser = RequestParser::new(Limits::default(), now);
        parser.handle_receive(now, wire.as_bytes());
        if let Ok(Some(r)) = parser.poll_request() {
            match check_upgrade(&r) {
                Ok(u) => {
                    let wire = response_101(&u);
                    prop_assert!(wire.starts_with(b"HTTP/1.1 101 Switching Protocols\r\n"));
                    prop_assert!(u.subprotocol.is_none_or(|p| p.eq_ignore_ascii_case("audio.twilio.com")));
                }
                Err(e) => prop_assert!(e.status() == 400 || e.status() == 426),
            }
        }
    }
}
