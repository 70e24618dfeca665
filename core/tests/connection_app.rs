//! The application's side of the engine ([`App`]): its incoming-call answer,
//! the `<Connect action>` answer and its own routes, through bytes.

mod connection_support;

use std::sync::Arc;

use callstream_core::connection::{App, Config, Event, IncomingCall, Route};
use callstream_core::http::{Request, Response};
use callstream_core::twiml::{self, TwimlError};
use connection_support::Peer;

struct Transfer;

impl App for Transfer {
    fn incoming_call(&self, call: &IncomingCall<'_>) -> Result<String, TwimlError> {
        twiml::Response::new()
            .say(format!("Hello {}", call.param("From")))
            .connect(
                twiml::Connect::new()
                    .stream(twiml::Stream::new(call.stream_url().unwrap_or_default())?),
            )
            .to_xml()
    }

    fn stream_ended(&self, params: &[(String, String)]) -> Option<String> {
        let call = params.iter().find(|(k, _)| k == "CallSid")?;
        (call.1 == "CA0123456789abcdef0123456789abcdef").then(|| {
            twiml::Dial::number("+14155550100")
                .and_then(|dial| twiml::Response::new().dial(dial).to_xml())
                .unwrap_or_default()
        })
    }

    fn route(&self, request: &Request) -> Option<Response> {
        (request.path() == "/custom").then(|| Response::ok_text("mine"))
    }
}

fn post(path: &str, params: &[(&str, &str)]) -> Vec<u8> {
    let body = callstream_core::form::encode(params);
    format!(
        "POST {path} HTTP/1.1\r\nHost: example.com\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

fn config() -> Config {
    Config {
        app: Arc::new(Transfer),
        public_base_url: Some(
            callstream_core::public_url::PublicBase::parse("https://voice.example.com").unwrap(),
        ),
        ..connection_support::unsigned()
    }
}

#[test]
fn the_application_answers_the_incoming_call() {
    let mut peer = Peer::new(config());
    peer.send(&post(
        "/webhook/incoming_call",
        &[
            ("CallSid", "CA0123456789abcdef0123456789abcdef"),
            ("From", "+1555 & co"),
        ],
    ));
    let text = peer.take_text();
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
    assert!(text.contains("<Say>Hello +1555 &amp; co</Say>"), "{text}");
    assert!(
        text.contains(r#"<Stream url="wss://voice.example.com/ws/twilio-media"/>"#),
        "{text}"
    );
}

#[test]
fn the_action_webhook_answers_what_the_application_decided() {
    let mut peer = Peer::new(config());
    peer.send(&post(
        "/webhook/stream_ended",
        &[("CallSid", "CA0123456789abcdef0123456789abcdef")],
    ));
    let text = peer.take_text();
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
    assert!(text.contains("Content-Type: application/xml"), "{text}");
    assert!(
        text.contains("<Dial><Number>+14155550100</Number></Dial>"),
        "{text}"
    );
    assert!(peer.take_app_events().iter().any(|e| matches!(
        e,
        Event::Webhook {
            route: Route::StreamEnded,
            ..
        }
    )));
    // Another call: nothing decided, 204.
    peer.send(&post(
        "/webhook/stream_ended",
        &[("CallSid", "CA0000000000000000000000000000ffff")],
    ));
    assert_eq!(peer.take_text(), "HTTP/1.1 204 No Content\r\n\r\n");
}

#[test]
fn unknown_paths_go_to_the_application_then_404() {
    let mut peer = Peer::new(config());
    peer.send(b"GET /custom HTTP/1.1\r\nHost: example.com\r\n\r\n");
    assert!(peer.take_text().ends_with("\r\n\r\nmine"));
    peer.send(b"GET /other HTTP/1.1\r\nHost: example.com\r\n\r\n");
    assert!(peer.take_text().starts_with("HTTP/1.1 404 "));
}
