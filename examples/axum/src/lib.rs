//! callstream-core inside a tokio + axum service.
//!
//! The service keeps its own router, runtime and WebSocket; callstream-core
//! brings what is easy to get wrong with Twilio (docs/protocol.md):
//!
//! - `POST /voice` — Twilio's voice webhook: the request is checked with the
//!   core's [`Verifier`] (the signature over the URLs Twilio may have
//!   signed, shared keys, JSON bodies, duplicated headers), and the answer is
//!   built with the [`twiml`] builder (escaped, and refused if Twilio would
//!   refuse it).
//! - `GET /media` — the media stream: the upgrade is signed too (over the
//!   `wss://` URL), accepted by axum without requiring a subprotocol, and
//!   each stream runs a [`Session`] (here the shipped echo handler) driven by
//!   the run loop of callstream-core's crate docs: text frames in with
//!   `handle_text`, `poll_output` drained into frames out, `handle_timeout`
//!   at the session's deadline or when a remote control wakes it.
//!
//! [`Verifier`]: callstream_core::verify::Verifier
//! [`twiml`]: callstream_core::twiml
//! [`Session`]: callstream_core::handler::Session
#![forbid(unsafe_code)]

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{RawForm, State};
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use callstream_core::call::{Call, CallConfig, CallOutput};
use callstream_core::handler::{self, Session};
use callstream_core::public_url::PublicBase;
use callstream_core::twiml;
use callstream_core::verify::{self, Verifier};

/// What the service is configured with.
pub struct Settings {
    /// The public `https://` base URL Twilio reaches the service at.
    pub public_base: PublicBase,
    /// Twilio auth tokens (primary, then secondary during a rotation).
    pub auth_tokens: Vec<String>,
}

struct AppState {
    base: PublicBase,
    verifier: Verifier,
}

/// The service's router: mount it, nest it, or serve it as it is.
pub fn router(settings: Settings) -> Router {
    let state = Arc::new(AppState {
        verifier: Verifier::new(verify::Settings {
            auth_tokens: settings.auth_tokens,
            public_base_url: Some(settings.public_base.clone()),
            ..verify::Settings::default()
        }),
        base: settings.public_base,
    });
    Router::new()
        .route("/voice", post(voice))
        .route("/media", get(media))
        .with_state(state)
}

/// The request's parameters when Twilio signed it (the core's whole check
/// over axum's request parts), `None` when it is refused.
fn verified(
    state: &AppState,
    method: &str,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
    websocket: bool,
) -> Option<Vec<(String, String)>> {
    let headers: Vec<(&str, &[u8])> = headers
        .iter()
        .map(|(name, value)| (name.as_str(), value.as_bytes()))
        .collect();
    let parts = verify::Parts {
        method,
        target: uri.path_and_query().map_or("/", |p| p.as_str()),
        headers: &headers,
        body,
        websocket,
    };
    state.verifier.verify(&parts).ok().map(|v| v.params)
}

async fn voice(
    State(state): State<Arc<AppState>>,
    uri: Uri,
    headers: HeaderMap,
    RawForm(body): RawForm,
) -> Response {
    let Some(params) = verified(&state, "POST", &uri, &headers, &body, false) else {
        return (StatusCode::FORBIDDEN, "forbidden").into_response();
    };
    let from = params
        .iter()
        .find(|(k, _)| k == "From")
        .map_or("", |(_, v)| v.as_str());
    let xml = twiml::Stream::new(state.base.ws_url("/media"))
        .and_then(|stream| stream.parameter("from", from))
        .and_then(|stream| {
            twiml::Response::new()
                .say("Connecting you to the echo.")
                .connect(twiml::Connect::new().stream(stream))
                .to_xml()
        });
    match xml {
        Ok(xml) => (
            [
                (header::CONTENT_TYPE, "application/xml; charset=utf-8"),
                (header::CACHE_CONTROL, "no-store"),
            ],
            xml,
        )
            .into_response(),
        // The caller's own values broke a TwiML rule: never reflected.
        Err(_) => (StatusCode::BAD_REQUEST, "bad call parameters").into_response(),
    }
}

async fn media(
    State(state): State<Arc<AppState>>,
    uri: Uri,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    if verified(&state, "GET", &uri, &headers, &[], true).is_none() {
        return (StatusCode::FORBIDDEN, "forbidden").into_response();
    }
    // No `.protocols(..)`: Twilio offers none, and requiring one is 31920.
    ws.on_upgrade(run_stream)
}

/// One media stream: the run loop of callstream-core over axum's WebSocket.
async fn run_stream(mut socket: WebSocket) {
    let wake = Arc::new(tokio::sync::Notify::new());
    let waker = wake.clone();
    let handlers = handler::by_name("echo").unwrap_or_else(|| {
        Arc::new(|_: &callstream_core::wire::StreamStart| {
            Box::new(handler::Silent) as Box<dyn handler::Handler>
        })
    });
    let mut session = Session::on_start(
        Call::new(CallConfig::default(), Instant::now()),
        handlers,
        Some(Arc::new(move || waker.notify_one())),
    );
    loop {
        // Drain: frames out, in order, until the session names its deadline.
        let deadline = loop {
            match session.poll_output() {
                CallOutput::Send(text) => {
                    if socket.send(Message::Text(text.into())).await.is_err() {
                        return;
                    }
                }
                CallOutput::Close { code, reason } => {
                    let frame = axum::extract::ws::CloseFrame {
                        code,
                        reason: reason.into(),
                    };
                    let _ = socket.send(Message::Close(Some(frame))).await;
                    return;
                }
                CallOutput::Event(_) => {}
                CallOutput::Timeout(at) => break at,
            }
        };
        tokio::select! {
            message = socket.recv() => match message {
                Some(Ok(Message::Text(text))) => session.handle_text(Instant::now(), text.as_str()),
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => {
                    session.handle_closed(Instant::now());
                    while !matches!(session.poll_output(), CallOutput::Timeout(_)) {}
                    return;
                }
                // Twilio sends only text; pings are answered by axum.
                Some(Ok(_)) => {}
            },
            () = tokio::time::sleep_until(deadline.into()) => session.handle_timeout(Instant::now()),
            () = wake.notified() => session.handle_timeout(Instant::now()),
        }
    }
}
