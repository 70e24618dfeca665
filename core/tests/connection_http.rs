//! Byte-level transcripts of the HTTP routes through `Connection`: bytes in,
//! exact bytes and events out.

mod connection_support;

use std::sync::Arc;
use std::time::Duration;

use callstream_core::connection::{CloseReason, Config, Event, Route};
use callstream_core::http::Limits;
use callstream_core::sid::AccountSid;
use callstream_core::signature;
use callstream_core::verify::Reason;
use connection_support::{Peer, TOKEN};

const HEALTHZ_OK: &str = "HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\n\
Cache-Control: no-store\r\nContent-Length: 2\r\n\r\nok";

const NO_CONTENT: &str = "HTTP/1.1 204 No Content\r\n\r\n";

const FORBIDDEN: &str = "HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain; charset=utf-8\r\n\
Content-Length: 10\r\n\r\nforbidden\n";

const ACCOUNT: &str = "AC0123456789abcdef0123456789abcdef";

fn signed() -> Config {
    Config {
        auth_tokens: vec![TOKEN.to_owned()],
        ..connection_support::unsigned()
    }
}

/// A form POST to `path` on host `example.com`, signed over
/// `http://example.com{path}` unless `signature` is given.
fn post(path: &str, params: &[(&str, &str)], signature: Option<&str>) -> Vec<u8> {
    let body = callstream_core::form::encode(params);
    let sig = signature
        .map(str::to_owned)
        .unwrap_or_else(|| signature::compute(TOKEN, &format!("http://example.com{path}"), params));
    format!(
        "POST {path} HTTP/1.1\r\nHost: example.com\r\n\
         Content-Type: application/x-www-form-urlencoded\r\n\
         X-Twilio-Signature: {sig}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

fn get(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: example.com\r\n\r\n").into_bytes()
}

const STATUS_PARAMS: [(&str, &str); 5] = [
    ("AccountSid", ACCOUNT),
    ("CallSid", "CA0123456789abcdef0123456789abcdef"),
    ("StreamSid", "MZ0123456789abcdef0123456789abcdef"),
    ("StreamEvent", "stream-started"),
    ("Timestamp", "2024-01-01T00:00:00.000Z"),
];

fn owned(params: &[(&str, &str)]) -> Vec<(String, String)> {
    params
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

#[test]
fn healthz_with_and_without_trailing_slash() {
    for path in ["/healthz", "/healthz/"] {
        let mut peer = Peer::new(connection_support::unsigned());
        peer.send(&get(path));
        assert_eq!(peer.take_text(), HEALTHZ_OK, "{path}");
        assert!(!peer.closed, "keep-alive");
        let events = peer.take_events();
        assert!(
            matches!(&events[..], [Event::Request { method, route: Route::Healthz, status: 200, .. }] if method == "GET"),
            "{events:?}"
        );
    }
}

#[test]
fn version_is_json_with_name_and_version() {
    let mut peer = Peer::new(connection_support::unsigned());
    peer.send(&get("/version"));
    let body = format!(
        "{{\"name\":\"callstream\",\"version\":\"{}\"}}",
        env!("CARGO_PKG_VERSION")
    );
    assert_eq!(
        peer.take_text(),
        format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nCache-Control: no-store\r\n\
             Content-Length: {}\r\n\r\n{body}",
            body.len()
        )
    );
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json["name"], "callstream");
}

#[test]
fn metrics_only_when_configured() {
    let mut peer = Peer::new(connection_support::unsigned());
    peer.send(&get("/metrics"));
    assert!(peer.take_text().starts_with("HTTP/1.1 404 Not Found\r\n"));

    let config = Config {
        metrics: Some(Arc::new(|| "callstream_active_calls 0\n".to_owned())),
        ..connection_support::unsigned()
    };
    let mut peer = Peer::new(config);
    peer.send(&get("/metrics/"));
    assert_eq!(
        peer.take_text(),
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n\
         Cache-Control: no-store\r\nContent-Length: 26\r\n\r\ncallstream_active_calls 0\n"
    );
}

#[test]
fn unknown_path_is_404_and_the_connection_stays_open() {
    let mut peer = Peer::new(connection_support::unsigned());
    peer.send(&get("/nope"));
    assert_eq!(
        peer.take_text(),
        "HTTP/1.1 404 Not Found\r\nContent-Type: text/plain; charset=utf-8\r\n\
         Content-Length: 10\r\n\r\nnot found\n"
    );
    assert!(matches!(
        &peer.take_events()[..],
        [Event::Request {
            route: Route::Unknown,
            status: 404,
            ..
        }]
    ));
    // Never redirected: a double slash is just another unknown path.
    peer.send(&get("/healthz//"));
    assert!(peer.take_text().starts_with("HTTP/1.1 404"));
    assert!(!peer.closed);
}

#[test]
fn wrong_method_is_405_with_allow() {
    let cases = [
        ("POST", "/healthz", "GET, HEAD"),
        ("DELETE", "/webhook/incoming_call", "GET, POST"),
        ("GET", "/webhook/call_status", "POST"),
        ("PUT", "/webhook/stream_status/", "POST"),
        ("POST", "/webhook/incoming_call_preview", "GET, HEAD"),
        ("POST", "/ws/twilio-media", "GET"),
    ];
    for (method, path, allow) in cases {
        let mut peer = Peer::new(connection_support::unsigned());
        peer.send(
            format!("{method} {path} HTTP/1.1\r\nHost: example.com\r\nContent-Length: 0\r\n\r\n")
                .as_bytes(),
        );
        assert_eq!(
            peer.take_text(),
            format!(
                "HTTP/1.1 405 Method Not Allowed\r\nContent-Type: text/plain; charset=utf-8\r\n\
                 Allow: {allow}\r\nContent-Length: 19\r\n\r\nmethod not allowed\n"
            ),
            "{method} {path}"
        );
    }
}

#[test]
fn status_webhooks_answer_204_and_hand_over_their_parameters() {
    let routes = [
        ("/webhook/stream_status", Route::StreamStatus),
        ("/webhook/stream_ended", Route::StreamEnded),
        ("/webhook/call_status", Route::CallStatus),
        ("/webhook/handle_recording", Route::HandleRecording),
    ];
    for (path, route) in routes {
        for path in [path.to_owned(), format!("{path}/")] {
            let mut peer = Peer::new(signed());
            peer.send(&post(&path, &STATUS_PARAMS, None));
            assert_eq!(peer.take_text(), NO_CONTENT, "{path}");
            assert_eq!(
                peer.take_app_events(),
                [Event::Webhook {
                    route,
                    params: owned(&STATUS_PARAMS)
                }],
                "{path}"
            );
            assert!(!peer.closed);
        }
    }
}

#[test]
fn missing_or_wrong_signature_is_403_with_the_urls_tried() {
    for sig in [None, Some("RSOYDt4T1cUTdK1PDd93/VVr8B8=")] {
        let mut peer = Peer::new(signed());
        let mut request = post("/webhook/call_status", &STATUS_PARAMS, sig);
        if sig.is_none() {
            // Drop the header line altogether.
            let text = String::from_utf8(request).unwrap();
            let start = text.find("X-Twilio-Signature").unwrap();
            let end = start + text[start..].find("\r\n").unwrap() + 2;
            request = format!("{}{}", &text[..start], &text[end..]).into_bytes();
        }
        peer.send(&request);
        assert_eq!(peer.take_text(), FORBIDDEN);
        let events = peer.take_app_events();
        match &events[..] {
            [
                Event::SignatureRejected {
                    route: Route::CallStatus,
                    urls_tried,
                    reason,
                },
            ] => {
                assert!(
                    urls_tried
                        .iter()
                        .any(|u| u == "http://example.com/webhook/call_status"),
                    "{urls_tried:?}"
                );
                assert!(urls_tried.iter().all(|u| !u.contains(TOKEN)));
                let want = if sig.is_none() {
                    Reason::Missing
                } else {
                    Reason::Mismatch
                };
                assert_eq!(*reason, want);
            }
            other => panic!("{other:?}"),
        }
        assert!(!peer.closed, "a 403 keeps the connection");
    }
}

#[test]
fn signature_header_name_in_any_case() {
    let mut peer = Peer::new(signed());
    let request = String::from_utf8(post("/webhook/call_status", &STATUS_PARAMS, None)).unwrap();
    peer.send(
        request
            .replace("X-Twilio-Signature", "x-TWILIO-signature")
            .as_bytes(),
    );
    assert_eq!(peer.take_text(), NO_CONTENT);
}

#[test]
fn secondary_token_is_accepted() {
    let config = Config {
        auth_tokens: vec!["other".into(), TOKEN.into()],
        ..connection_support::unsigned()
    };
    let mut peer = Peer::new(config);
    peer.send(&post("/webhook/stream_ended", &STATUS_PARAMS, None));
    assert_eq!(peer.take_text(), NO_CONTENT);
}

#[test]
fn signatures_off_is_reported_once_per_config() {
    let config = Arc::new(connection_support::unsigned());
    let mut first = Peer::shared(config.clone());
    first.send(&post(
        "/webhook/call_status",
        &STATUS_PARAMS,
        Some("whatever"),
    ));
    first.send(&post(
        "/webhook/call_status",
        &STATUS_PARAMS,
        Some("whatever"),
    ));
    assert_eq!(first.take_text(), format!("{NO_CONTENT}{NO_CONTENT}"));
    let events = first.take_app_events();
    assert_eq!(
        events
            .iter()
            .filter(|e| **e == Event::SignaturesOff)
            .count(),
        1,
        "{events:?}"
    );
    let mut second = Peer::shared(config);
    second.send(&post("/webhook/call_status", &STATUS_PARAMS, None));
    assert!(!second.take_app_events().contains(&Event::SignaturesOff));
}

#[test]
fn the_default_without_a_token_refuses_signed_routes_only() {
    let config = connection_support::defaults();
    let mut peer = Peer::new(config);
    peer.send(&post(
        "/webhook/call_status",
        &STATUS_PARAMS,
        Some("whatever"),
    ));
    assert_eq!(peer.take_text(), FORBIDDEN);
    let events = peer.take_app_events();
    assert!(
        events.contains(&Event::SignatureRejected {
            route: Route::CallStatus,
            urls_tried: Vec::new(),
            reason: Reason::NoAuthToken,
        }),
        "{events:?}"
    );
    assert!(!events.contains(&Event::SignaturesOff), "{events:?}");
    // Unsigned routes still answer.
    peer.send(&get("/healthz"));
    assert_eq!(peer.take_text(), HEALTHZ_OK);
}

#[test]
fn another_account_gets_403() {
    let mut config = signed();
    config.account_sid = Some(AccountSid::parse("AC11111111111111111111111111111111").unwrap());
    let mut peer = Peer::new(config);
    peer.send(&post("/webhook/call_status", &STATUS_PARAMS, None));
    assert_eq!(peer.take_text(), FORBIDDEN);
    assert_eq!(
        peer.take_app_events(),
        [Event::AccountRejected {
            route: Route::CallStatus,
            account_sid: ACCOUNT.to_owned()
        }]
    );

    let mut config = signed();
    config.account_sid = Some(AccountSid::parse(ACCOUNT).unwrap());
    let mut peer = Peer::new(config);
    peer.send(&post("/webhook/call_status", &STATUS_PARAMS, None));
    assert_eq!(peer.take_text(), NO_CONTENT);
}

#[test]
fn front_is_reported_once_per_config() {
    let config = Arc::new(connection_support::unsigned());
    let mut peer = Peer::shared(config.clone());
    let request = b"GET /healthz HTTP/1.1\r\nHost: example.com\r\nVia: 1.1 google\r\n\
X-Cloud-Trace-Context: 105445aa7843bc8bf206b12000100000/1\r\n\r\n";
    peer.send(request).send(request);
    assert_eq!(
        peer.take_app_events(),
        [Event::FrontDetected {
            what: "Google Front End (Via: 1.1 google)".into()
        }]
    );
    let mut other = Peer::shared(config);
    other.send(request);
    assert_eq!(other.take_app_events(), []);

    let mut peer = Peer::new(connection_support::unsigned());
    peer.send(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 10.0.0.1\r\n\r\n");
    assert_eq!(
        peer.take_app_events(),
        [Event::FrontDetected {
            what: "a proxy (x-forwarded-for)".into()
        }]
    );
}

#[test]
fn keep_alive_and_pipelining_answer_in_order() {
    let mut peer = Peer::new(signed());
    let mut bytes = get("/healthz");
    bytes.extend(post("/webhook/call_status", &STATUS_PARAMS, None));
    bytes.extend(get("/nope"));
    bytes.extend(get("/version"));
    peer.send(&bytes);
    let text = peer.take_text();
    assert!(
        text.starts_with(&format!(
            "{HEALTHZ_OK}{NO_CONTENT}HTTP/1.1 404 Not Found\r\n"
        )),
        "{text}"
    );
    assert!(text.contains("\"name\":\"callstream\""));
    assert_eq!(peer.statuses(), [200, 204, 404, 200]);
    assert!(!peer.closed);
    // And the connection still serves.
    peer.send(&get("/healthz"));
    assert_eq!(peer.take_text(), HEALTHZ_OK);
}

#[test]
fn connection_close_and_http10_close_after_the_answer() {
    for request in [
        "GET /healthz HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n",
        "GET /healthz HTTP/1.0\r\n\r\n",
    ] {
        let mut peer = Peer::new(connection_support::unsigned());
        peer.send(request.as_bytes());
        assert_eq!(
            peer.take_text(),
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\n\
             Cache-Control: no-store\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
        );
        assert!(peer.closed);
        assert_eq!(peer.close_reason(), Some(CloseReason::Done));
    }
}

#[test]
fn requests_after_connection_close_are_not_answered() {
    let mut peer = Peer::new(connection_support::unsigned());
    let mut bytes = b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".to_vec();
    bytes.extend(get("/version"));
    peer.send(&bytes);
    assert_eq!(peer.statuses(), [200]);
    assert!(peer.closed);
}

#[test]
fn a_request_split_at_every_byte_offset_gives_the_same_result() {
    let request = post("/webhook/stream_status", &STATUS_PARAMS, None);
    let mut whole = Peer::new(signed());
    whole.send(&request);
    let want_wire = whole.take_wire();
    let want_events = whole.take_app_events();
    assert_eq!(String::from_utf8_lossy(&want_wire), NO_CONTENT);
    for cut in 0..=request.len() {
        let mut peer = Peer::new(signed());
        peer.send(&request[..cut]).send(&request[cut..]);
        assert_eq!(peer.take_wire(), want_wire, "cut at {cut}");
        assert_eq!(peer.take_app_events(), want_events, "cut at {cut}");
    }
}

#[test]
fn malformed_request_is_400_then_close() {
    let mut peer = Peer::new(connection_support::unsigned());
    peer.send(b"GET /healthz HTTP/1.1\r\nHost example.com\r\n\r\n");
    let text = peer.take_text();
    assert!(text.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{text}");
    assert!(text.contains("Connection: close\r\n"));
    assert!(peer.closed);
    assert!(matches!(
        peer.close_reason(),
        Some(CloseReason::BadRequest { status: 400 })
    ));
    assert!(
        peer.events
            .iter()
            .any(|e| matches!(e, Event::Malformed { status: 400, .. }))
    );
}

#[test]
fn head_over_the_limit_is_431_then_close() {
    let mut peer = Peer::new(connection_support::unsigned());
    let limit = Limits::default().max_head_bytes;
    let filler = "a".repeat(limit);
    peer.send(format!("GET /healthz HTTP/1.1\r\nHost: x\r\nX-Filler: {filler}\r\n\r\n").as_bytes());
    let text = peer.take_text();
    assert!(text.starts_with("HTTP/1.1 431 "), "{text}");
    assert!(peer.closed);
}

#[test]
fn too_many_headers_is_431_then_close() {
    let mut peer = Peer::new(connection_support::unsigned());
    let max = Limits::default().max_headers;
    let headers: String = (0..max).map(|i| format!("X-{i}: v\r\n")).collect();
    // Host plus `max` more: one over.
    peer.send(format!("GET /healthz HTTP/1.1\r\nHost: x\r\n{headers}\r\n").as_bytes());
    assert!(peer.take_text().starts_with("HTTP/1.1 431 "));
    assert!(peer.closed);

    // Exactly `max` lines is fine.
    let mut peer = Peer::new(connection_support::unsigned());
    let headers: String = (1..max).map(|i| format!("X-{i}: v\r\n")).collect();
    peer.send(format!("GET /healthz HTTP/1.1\r\nHost: x\r\n{headers}\r\n").as_bytes());
    assert_eq!(peer.take_text(), HEALTHZ_OK);
}

#[test]
fn body_over_the_limit_is_413_then_close() {
    let mut peer = Peer::new(connection_support::unsigned());
    let limit = Limits::default().max_body_bytes;
    peer.send(
        format!(
            "POST /webhook/call_status HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
            limit + 1
        )
        .as_bytes(),
    );
    assert!(peer.take_text().starts_with("HTTP/1.1 413 "));
    assert!(peer.closed);
    assert!(matches!(
        peer.close_reason(),
        Some(CloseReason::BadRequest { status: 413 })
    ));
}

#[test]
fn incomplete_request_gets_408_then_close() {
    let mut peer = Peer::new(connection_support::unsigned());
    peer.send(b"GET /healthz HTTP/1.1\r\nHost: x\r\n");
    let timeout = Limits::default().head_timeout;
    peer.wait(timeout - Duration::from_millis(1));
    assert!(peer.take_wire().is_empty());
    assert!(!peer.closed);
    peer.wait(Duration::from_millis(1));
    let text = peer.take_text();
    assert!(
        text.starts_with("HTTP/1.1 408 Request Timeout\r\n"),
        "{text}"
    );
    assert!(text.contains("Connection: close"));
    assert!(peer.closed);
    assert_eq!(peer.close_reason(), Some(CloseReason::RequestTimeout));
}

#[test]
fn idle_keep_alive_connection_closes_after_the_idle_limit() {
    let mut peer = Peer::new(connection_support::unsigned());
    peer.send(&get("/healthz"));
    peer.take_wire();
    let idle = Limits::default().idle_timeout;
    assert_eq!(peer.deadline, Some(peer.now + idle));
    peer.wait(idle - Duration::from_millis(1));
    assert!(!peer.closed);
    peer.wait(Duration::from_millis(1));
    assert!(peer.closed);
    assert!(peer.take_wire().is_empty(), "closed without a word");
    assert_eq!(peer.close_reason(), Some(CloseReason::IdleTimeout));
}

#[test]
fn eof_after_a_request_answers_it_then_closes() {
    let mut peer = Peer::new(connection_support::unsigned());
    peer.conn.handle_receive(peer.now, &get("/healthz"));
    peer.conn.handle_eof(peer.now);
    peer.drain();
    assert_eq!(peer.take_text(), HEALTHZ_OK);
    assert!(peer.closed);
    assert_eq!(peer.close_reason(), Some(CloseReason::PeerClosed));
}

#[test]
fn shutdown_closes_idle_connections_and_finishes_requests_in_progress() {
    let mut idle = Peer::new(connection_support::unsigned());
    idle.shutdown();
    assert!(idle.closed);
    assert_eq!(idle.close_reason(), Some(CloseReason::Shutdown));

    let mut busy = Peer::new(connection_support::unsigned());
    let request = get("/healthz");
    busy.send(&request[..10]).shutdown();
    assert!(!busy.closed);
    busy.send(&request[10..]);
    let text = busy.take_text();
    assert!(text.contains("Connection: close\r\n"), "{text}");
    assert!(busy.closed);
}

#[test]
fn a_peer_that_does_not_read_is_cut_off() {
    let mut peer = Peer::new(Config {
        max_transmit: 1000,
        ..connection_support::unsigned()
    });
    peer.reading = false;
    let many: Vec<u8> = (0..30).flat_map(|_| get("/healthz")).collect();
    peer.send(&many);
    assert!(peer.closed);
    assert!(
        matches!(peer.close_reason(), Some(CloseReason::TransmitOverflow { pending }) if pending > 1000)
    );
    // It stopped answering once over the limit: not all 30 were answered.
    assert!(peer.statuses().len() < 30);
    // And `Closed` was the last event: no answer was reported after it.
    let events = peer.take_events();
    let closed_at = events
        .iter()
        .position(|e| matches!(e, Event::Closed { .. }))
        .expect("a Closed event");
    assert_eq!(
        closed_at,
        events.len() - 1,
        "events after Closed: {:?}",
        &events[closed_at..]
    );
}

#[test]
fn invalid_host_is_400_and_never_reflected() {
    let mut peer = Peer::new(connection_support::unsigned());
    peer.send(
        b"POST /webhook/incoming_call HTTP/1.1\r\nHost: evil.com/<script>\r\nContent-Length: 0\r\n\r\n",
    );
    let text = peer.take_text();
    assert!(text.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{text}");
    assert!(!text.contains("<script>"), "{text}");
}

const CALL_PARAMS: [(&str, &str); 5] = [
    ("AccountSid", ACCOUNT),
    ("CallSid", "CA0123456789abcdef0123456789abcdef"),
    ("From", "+14158675309"),
    ("To", "+18005551212"),
    ("CallStatus", "ringing"),
];

fn with_base(base: &str) -> Config {
    Config {
        auth_tokens: vec![TOKEN.to_owned()],
        public_base_url: Some(callstream_core::public_url::PublicBase::parse(base).unwrap()),
        ..connection_support::unsigned()
    }
}

fn twiml_answer(xml: &str) -> String {
    format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/xml; charset=utf-8\r\nCache-Control: no-store\r\n\
         Content-Length: {}\r\n\r\n{xml}",
        xml.len()
    )
}

/// The body of an HTTP answer.
fn body(text: &str) -> &str {
    &text[text.find("\r\n\r\n").unwrap() + 4..]
}

#[test]
fn incoming_call_post_answers_the_connect_stream_twiml() {
    let mut peer = Peer::new(with_base("https://voice.example.com"));
    let body_text = callstream_core::form::encode(&CALL_PARAMS);
    let sig = signature::compute(
        TOKEN,
        "https://voice.example.com/webhook/incoming_call",
        &CALL_PARAMS,
    );
    peer.send(
        format!(
            "POST /webhook/incoming_call HTTP/1.1\r\nHost: internal:8080\r\n\
             Content-Type: application/x-www-form-urlencoded; charset=UTF-8\r\n\
             X-Twilio-Signature: {sig}\r\nContent-Length: {}\r\n\r\n{body_text}",
            body_text.len()
        )
        .as_bytes(),
    );
    let xml = concat!(
        r#"<?xml version="1.0" encoding="UTF-8"?><Response>"#,
        r#"<Connect action="https://voice.example.com/webhook/stream_ended">"#,
        r#"<Stream statusCallback="https://voice.example.com/webhook/stream_status" url="wss://voice.example.com/ws/twilio-media">"#,
        r#"<Parameter name="call_sid" value="CA0123456789abcdef0123456789abcdef"/>"#,
        r#"<Parameter name="from" value="+14158675309"/>"#,
        r#"<Parameter name="to" value="+18005551212"/>"#,
        r#"</Stream></Connect></Response>"#
    );
    assert_eq!(peer.take_text(), twiml_answer(xml));
    assert_eq!(
        peer.take_app_events(),
        [Event::Webhook {
            route: Route::IncomingCall,
            params: owned(&CALL_PARAMS)
        }]
    );
    // An independent XML parser agrees on the shape.
    let doc = roxmltree::Document::parse(xml).unwrap();
    let stream = doc
        .descendants()
        .find(|n| n.has_tag_name("Stream"))
        .unwrap();
    assert_eq!(stream.parent().unwrap().tag_name().name(), "Connect");
    assert_eq!(
        stream.attribute("url"),
        Some("wss://voice.example.com/ws/twilio-media")
    );
}

#[test]
fn incoming_call_get_is_signed_over_its_query() {
    let mut peer = Peer::new(with_base("https://voice.example.com"));
    let query = callstream_core::form::encode(&CALL_PARAMS);
    let url = format!("https://voice.example.com/webhook/incoming_call/?{query}");
    let sig = signature::compute(TOKEN, &url, &[] as &[(&str, &str)]);
    peer.send(
        format!("GET /webhook/incoming_call/?{query} HTTP/1.1\r\nHost: x\r\nX-Twilio-Signature: {sig}\r\n\r\n")
            .as_bytes(),
    );
    let text = peer.take_text();
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
    assert!(body(&text).contains(r#"<Parameter name="from" value="+14158675309"/>"#));
    assert!(peer.take_app_events().iter().any(|e| matches!(
        e,
        Event::Webhook {
            route: Route::IncomingCall,
            ..
        }
    )));
}

#[test]
fn incoming_call_without_signature_is_403() {
    let mut peer = Peer::new(with_base("https://voice.example.com"));
    peer.send(&post(
        "/webhook/incoming_call",
        &CALL_PARAMS,
        Some("bm9wZQ=="),
    ));
    assert_eq!(peer.take_text(), FORBIDDEN);
    assert!(matches!(
        &peer.take_app_events()[..],
        [Event::SignatureRejected {
            route: Route::IncomingCall,
            ..
        }]
    ));
}

#[test]
fn greeting_and_extra_parameters_are_in_the_twiml() {
    let mut config = with_base("https://voice.example.com/voice");
    config.auth_tokens.clear();
    config.app = Arc::new(callstream_core::connection::StreamApp {
        greeting: Some("Hello & welcome".into()),
        extra_parameters: vec![("handler".into(), "parrot".into())],
        ..Default::default()
    });
    let mut peer = Peer::new(config);
    peer.send(&post("/webhook/incoming_call", &CALL_PARAMS, Some("")));
    let text = peer.take_text();
    let xml = body(&text);
    assert!(
        xml.starts_with(concat!(
            r#"<?xml version="1.0" encoding="UTF-8"?><Response><Say>Hello &amp; welcome</Say>"#,
            r#"<Connect action="https://voice.example.com/voice/webhook/stream_ended">"#
        )),
        "{xml}"
    );
    assert!(
        xml.contains(r#"url="wss://voice.example.com/voice/ws/twilio-media""#),
        "{xml}"
    );
    assert!(
        xml.ends_with(
            r#"<Parameter name="handler" value="parrot"/></Stream></Connect></Response>"#
        ),
        "{xml}"
    );
}

#[test]
fn the_greeting_speaks_in_the_configured_language_and_voice() {
    let mut config = with_base("https://voice.example.com");
    config.auth_tokens.clear();
    config.app = Arc::new(callstream_core::connection::StreamApp {
        greeting: Some("Shalom".into()),
        greeting_language: Some("he-IL".into()),
        greeting_voice: Some("Google.he-IL-Standard-A".into()),
        ..Default::default()
    });
    let mut peer = Peer::new(config);
    peer.send(&post("/webhook/incoming_call", &CALL_PARAMS, Some("")));
    let text = peer.take_text();
    assert!(
        body(&text).contains(
            r#"<Response><Say language="he-IL" voice="Google.he-IL-Standard-A">Shalom</Say><Connect"#
        ),
        "{text}"
    );
}

#[test]
fn a_greeting_language_that_is_no_language_tag_is_a_configuration_error() {
    let mut config = with_base("https://voice.example.com");
    config.auth_tokens.clear();
    config.app = Arc::new(callstream_core::connection::StreamApp {
        greeting: Some("Hello".into()),
        greeting_language: Some("English".into()),
        ..Default::default()
    });
    let mut peer = Peer::new(config);
    peer.send(&post("/webhook/incoming_call", &CALL_PARAMS, Some("")));
    let text = peer.take_text();
    assert!(
        text.starts_with("HTTP/1.1 500 Internal Server Error\r\n"),
        "{text}"
    );
    assert!(
        peer.take_app_events()
            .iter()
            .any(|e| matches!(e, Event::ConfigError { reason } if reason.contains("English")))
    );
}

#[test]
fn preview_is_unsigned_and_shows_a_sample_call() {
    let mut peer = Peer::new(with_base("https://voice.example.com"));
    peer.send(&get("/webhook/incoming_call_preview"));
    let text = peer.take_text();
    assert!(
        text.starts_with("HTTP/1.1 200 OK\r\nContent-Type: application/xml; charset=utf-8\r\n")
    );
    assert!(
        body(&text)
            .contains(r#"<Parameter name="call_sid" value="CA00000000000000000000000000000000"/>"#)
    );
    // No webhook event: nobody called.
    assert_eq!(peer.take_app_events(), []);
}

#[test]
fn without_a_base_the_twiml_follows_host_and_trusted_forwarded_proto() {
    let config = Config {
        trust_forwarded: true,
        ..connection_support::unsigned()
    };
    let mut peer = Peer::new(config);
    peer.send(
        b"GET /webhook/incoming_call_preview HTTP/1.1\r\nHost: abc-uc.a.run.app\r\n\
X-Forwarded-Proto: https\r\nVia: 1.1 google\r\n\r\n",
    );
    let text = peer.take_text();
    assert!(
        body(&text).contains(r#"url="wss://abc-uc.a.run.app/ws/twilio-media""#),
        "{text}"
    );
    assert!(body(&text).contains(r#"action="https://abc-uc.a.run.app/webhook/stream_ended""#));
}

#[test]
fn without_a_base_or_trusted_proto_the_twiml_assumes_tls_in_front() {
    let mut peer = Peer::new(connection_support::unsigned());
    peer.send(&get("/webhook/incoming_call_preview"));
    let text = peer.take_text();
    assert!(
        body(&text).contains(r#"url="wss://example.com/ws/twilio-media""#),
        "{text}"
    );
    assert!(body(&text).contains(r#"action="https://example.com/webhook/stream_ended""#));
}

#[test]
fn a_plain_http_public_base_is_a_configuration_error() {
    for (config, request) in [
        (with_base("http://voice.example.com"), get("/webhook/incoming_call_preview")),
        (
            Config { trust_forwarded: true, ..connection_support::unsigned() },
            b"GET /webhook/incoming_call_preview HTTP/1.1\r\nHost: x.example\r\nX-Forwarded-Proto: http\r\n\r\n"
                .to_vec(),
        ),
    ] {
        let mut peer = Peer::new(config);
        peer.send(&request);
        let text = peer.take_text();
        assert!(text.starts_with("HTTP/1.1 500 Internal Server Error\r\n"), "{text}");
        assert!(body(&text).contains("wss://"));
        assert!(peer.take_app_events().iter().any(|e| matches!(e, Event::ConfigError { .. })));
    }
}

#[test]
fn call_values_that_break_twiml_are_400_and_not_reflected() {
    let mut config = with_base("https://voice.example.com");
    config.auth_tokens.clear();
    let long = "9".repeat(600);
    let params = [
        ("CallSid", "CA0123456789abcdef0123456789abcdef"),
        ("From", long.as_str()),
    ];
    let mut peer = Peer::new(config);
    peer.send(&post("/webhook/incoming_call", &params, Some("")));
    let text = peer.take_text();
    assert!(text.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{text}");
    assert!(!text.contains(&long));
}

#[test]
fn undecodable_form_body_is_400() {
    let mut peer = Peer::new(connection_support::unsigned());
    peer.send(b"POST /webhook/call_status HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\na=%ff");
    let text = peer.take_text();
    assert!(text.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{text}");
    assert!(
        !peer.closed,
        "the framing is fine, so the connection goes on"
    );
}

#[test]
fn body_that_stops_arriving_gets_408_then_close() {
    let mut peer = Peer::new(connection_support::unsigned());
    peer.send(b"POST /webhook/call_status HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nCall");
    let timeout = Limits::default().body_timeout;
    peer.wait(timeout - Duration::from_millis(1));
    assert!(!peer.closed);
    peer.wait(Duration::from_millis(1));
    assert!(
        peer.take_text()
            .starts_with("HTTP/1.1 408 Request Timeout\r\n")
    );
    assert!(peer.closed);
    assert_eq!(peer.close_reason(), Some(CloseReason::RequestTimeout));
}

#[test]
fn a_new_connection_that_sends_nothing_is_closed_without_a_word() {
    let mut peer = Peer::new(connection_support::unsigned());
    let timeout = Limits::default().head_timeout;
    assert_eq!(peer.deadline, Some(peer.now + timeout));
    peer.wait(timeout);
    assert!(peer.closed);
    assert!(peer.take_wire().is_empty());
    assert_eq!(peer.close_reason(), Some(CloseReason::IdleTimeout));
}
