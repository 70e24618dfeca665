//! One state machine per TCP connection: the webhooks, the WebSocket upgrade
//! and the media stream behind it. The adapters' only entry point.
//!
//! A [`Connection`] owns no socket and reads no clock. An adapter feeds it
//! what the socket read and the time; it hands back bytes to write, events
//! for the application, the next deadline, and when to close.
//!
//! # In the run loop
//!
//! A connection keeps the crate's [run loop](crate#run-loop). What is its
//! own: its inputs are [`handle_receive`](Connection::handle_receive),
//! [`handle_eof`](Connection::handle_eof),
//! [`handle_timeout`](Connection::handle_timeout) (a deadline, or the
//! [waker](Connection::set_waker)) and [`shutdown`](Connection::shutdown);
//! a drain of [`poll_output`](Connection::poll_output) ends at
//! [`Output::Timeout`] or [`Output::Close`], which is final (every later
//! call returns it again: write what is left of `transmit()`, best effort,
//! and close the socket); [`Output::Event`]s are for the application (logs,
//! metrics, webhooks), and work happens lazily inside `poll_output`, one
//! request or one message at a time, so nothing piles up. Bytes that do not
//! fit the socket stay in `transmit()`; when more than
//! [`Config::max_transmit`] wait (the peer is not reading), the connection
//! closes.
//!
//! Optional, for speed: when an adapter learns which connections have bytes
//! waiting, before it reads them, it may prefetch the memory
//! [`hot_memory`](Connection::hot_memory) names. With many calls, a frame
//! otherwise finds its call's state out of the cache and waits for each
//! line in turn (`BENCHMARKS.md`, "Prefetching a call's state").
//!
//! ```
//! use callstream_core::connection::{Config, Connection, Output, Route, Routes};
//! use std::sync::Arc;
//! use std::time::Instant;
//!
//! // What an adapter does; here the "socket" is two byte vectors.
//! let now = Instant::now();
//! let config = Config {
//!     routes: Routes::new().route("/healthz", Route::Healthz),
//!     ..Config::default()
//! };
//! let mut conn = Connection::new(Arc::new(config), now);
//! let mut wire_out = Vec::new();
//! let mut closed = false;
//! conn.handle_receive(now, b"GET /healthz HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n");
//! loop {
//!     match conn.poll_output() {
//!         Output::Event(event) => println!("{event:?}"),
//!         Output::Timeout(_deadline) => break, // sleep until then, or until bytes arrive
//!         Output::Close => {
//!             closed = true;
//!             break;
//!         }
//!     }
//! }
//! let n = conn.transmit().len();
//! wire_out.extend_from_slice(conn.transmit());
//! conn.consume_transmit(n);
//! assert!(closed);
//! assert!(wire_out.starts_with(b"HTTP/1.1 200 OK\r\n"));
//! assert!(wire_out.ends_with(b"\r\n\r\nok"));
//! ```
//!
//! # What it serves
//!
//! The paths of the application's route table ([`Config::routes`]), each
//! with and without a trailing `/`, never redirected (a 3xx is Twilio error
//! 31920 on the upgrade, 11200 on a webhook). The engine carries no paths of
//! its own; what it does at each [`Route`]:
//!
//! | route | methods | answer |
//! |---|---|---|
//! | [`Route::Healthz`] | GET | 200 `ok` |
//! | [`Route::Version`] | GET | 200 JSON, the application's [`Config::version`] (404 without one) |
//! | [`Route::Metrics`] | GET | 200 Prometheus text, when [`Config::metrics`] is set (404 otherwise) |
//! | [`Route::IncomingCall`] | POST, GET | 200 TwiML, the application's answer ([`App::incoming_call`]; signed) |
//! | [`Route::IncomingCallPreview`] | GET | the same TwiML for a sample call (unsigned) |
//! | [`Route::StreamStatus`], [`Route::StreamEnded`], [`Route::CallStatus`], [`Route::HandleRecording`] | POST | 204 at once, parameters out as [`Event::Webhook`] (signed; the `<Connect action>` answer is [`App::stream_ended`]) |
//! | [`Route::MediaStream`] | GET | the WebSocket upgrade (signed), then the media stream |
//!
//! Anything else goes to [`App::route`], else 404; a known path with another
//! method is 405 with `Allow`.
//! Requests are parsed by [`http::RequestParser`] under [`Config::limits`]
//! (431, 413, 408 then close, idle close, 400 and close); see [`crate::http`].
//!
//! # Signatures, accounts, public URLs
//!
//! Routes Twilio signs are checked by [`crate::verify`]: against every token
//! in [`Config::auth_tokens`] (or the [`Config::shared_keys`] a
//! `X-Twilio-Webhooks-Signature-Settings` header names; JSON bodies against
//! their `bodySHA256`) over the URLs Twilio may have signed
//! ([`public_url::signed_urls`]: the configured public base first, else
//! `Host`, with trusted forwarded headers when [`Config::trust_forwarded`]).
//! A missing or wrong `X-Twilio-Signature` (header name in any case) is 403
//! plus [`Event::SignatureRejected`] naming the URLs tried and the reason,
//! never a token. With no token or shared key configured every signed route
//! is refused too, unless [`Config::insecure_no_signatures`] asks to accept
//! them unchecked (then [`Event::SignaturesOff`] is emitted once per
//! [`Config`]). With [`Config::account_sid`] set, webhooks for
//! another account get 403 too. An invalid `Host` is 400 and never reflected.
//!
//! # After the upgrade
//!
//! Frames are handled by [`websocket::WebSocket`]. With [`Config::session`]
//! set, each stream gets a call machine ([`handler::Session`]): text frames go
//! to it, what it sends becomes text frames, its close our close frame, its
//! events [`Event::Call`], and its deadline is folded into
//! [`Output::Timeout`]. Without one, each message is parsed with
//! [`message::parse`] and comes out as [`Event::StreamMessage`]. With
//! [`Config::account_sid`] set, a stream whose `start` names another account
//! is closed with 1008. [`shutdown`](Connection::shutdown)
//! sends close 1001 and waits up to [`Config::close_timeout`] for the answer.
//!
//! [`http::RequestParser`]: crate::http::RequestParser
//! [`public_url::signed_urls`]: crate::public_url::signed_urls
//! [`websocket::WebSocket`]: crate::websocket::WebSocket
//! [`message::parse`]: crate::message::parse
//! [`handler::Session`]: crate::handler::Session

mod app;
mod routes;
mod stream;

pub use app::{App, IncomingCall, StreamApp};

use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use crate::call::{CallEvent, CallStats};
use crate::handler::SessionFactory;
use crate::http::{Limits, RequestParser};
use crate::message::Inbound;
use crate::public_url::PublicBase;
use crate::sid::AccountSid;
use crate::verify::{self, SharedKey, Verifier};
use crate::websocket::{Initiator, WsError};

use stream::StreamPhase;

/// Wakes the connection's task from another thread (a
/// [`RemoteControl`](crate::handler::RemoteControl) gave the call a command):
/// the adapter then calls [`Connection::handle_timeout`] and drains. Must be
/// cheap and must not block.
pub use crate::handler::Waker;

/// What a connection needs to know about the server. Built once and shared
/// (`Arc`) by every connection.
///
/// ```
/// use callstream_core::connection::{Config, Route, Routes, StreamApp};
/// use std::sync::Arc;
/// let config = Config {
///     auth_tokens: vec!["token".into()],
///     routes: Routes::new()
///         .route("/voice", Route::IncomingCall)
///         .route("/media", Route::MediaStream),
///     app: Arc::new(StreamApp {
///         greeting: Some("Hello!".into()),
///         call_parameters: vec![("caller".into(), "From".into())],
///         ..StreamApp::default()
///     }),
///     ..Config::default()
/// };
/// # let _ = config;
/// ```
pub struct Config {
    /// The URL Twilio uses to reach this server (e.g. `https://voice.example.com`).
    /// Signatures are checked against it and TwiML names it. `None`: rebuilt
    /// from each request's `Host` (and trusted forwarded headers).
    pub public_base_url: Option<PublicBase>,
    /// Twilio auth tokens to accept signatures from (primary, secondary).
    /// Empty: every signed route is refused (403), unless
    /// [`Config::insecure_no_signatures`] is set.
    pub auth_tokens: Vec<String>,
    /// With no auth token configured, accept signed routes unchecked (and
    /// emit [`Event::SignaturesOff`] once) instead of refusing them. Off by
    /// default: a server that cannot verify Twilio should not act for it.
    /// For tests and local experiments only; with a token configured,
    /// signatures are always checked.
    pub insecure_no_signatures: bool,
    /// Twilio shared keys (primary, secondary during a rotation), for
    /// requests signed under `X-Twilio-Webhooks-Signature-Settings`
    /// ([`crate::verify`]). Configuring one turns signature checks on, like a
    /// token.
    pub shared_keys: Vec<SharedKey>,
    /// Whether `Forwarded` / `X-Forwarded-Proto` / `X-Forwarded-Host` may be
    /// used to rebuild the public URL (only when a proxy you control sets
    /// them).
    pub trust_forwarded: bool,
    /// When set, webhooks whose `AccountSid` is another account get 403, and a
    /// media stream that starts for another account is closed (1008).
    pub account_sid: Option<AccountSid>,
    /// Which path serves which route. Default: none (every path is 404,
    /// or the application's [`App::route`]).
    pub routes: Routes,
    /// What the application answers: the incoming-call TwiML, the
    /// `<Connect action>` webhook, its own routes. Default: a
    /// [`StreamApp`] with no greeting and no parameters.
    pub app: Arc<dyn App>,
    /// The body of [`Route::Version`], served as `application/json`.
    /// `None`: the route is 404.
    pub version: Option<String>,
    /// HTTP limits: head and body sizes, header count, timeouts.
    pub limits: Limits,
    /// Renders `GET /metrics` (Prometheus text). `None`: the route is 404.
    pub metrics: Option<Arc<dyn Fn() -> String + Send + Sync>>,
    /// Makes the call machine for each media stream (e.g.
    /// [`handler::session_factory`](crate::handler::session_factory)). `None`:
    /// stream messages come out parsed as [`Event::StreamMessage`].
    pub session: Option<SessionFactory>,
    /// Most bytes allowed to wait in [`Connection::transmit`]; past it the
    /// peer is not reading and the connection closes. Default 1 MiB.
    pub max_transmit: usize,
    /// How long to wait for the peer's answer to our WebSocket close frame
    /// before closing the TCP connection anyway. Default 5 s.
    pub close_timeout: Duration,
    /// A media stream with no message from Twilio for this long is closed
    /// (Twilio sends a frame every 20 ms while a stream lives). Only text
    /// frames count: pings or a frame dribbled byte by byte do not keep a
    /// stream open. Default 60 s.
    pub stream_idle_timeout: Duration,
    /// A media stream whose `start` has not come this long after the
    /// upgrade is closed with 1008 (Twilio sends `connected` and `start`
    /// together, at once). Default 10 s.
    pub stream_start_timeout: Duration,
    /// After [`Connection::shutdown`], how long a live call may go on before
    /// it is closed with 1001 (a call is live from its `start` to its end).
    /// Default zero: closed at once. A server draining within a platform's
    /// grace period (Cloud Run: about 10 s) sets it to that period less
    /// [`Config::close_timeout`].
    pub shutdown_grace: Duration,
    /// State shared by every connection made from this `Config` (one-time
    /// warnings, the signature validator). Leave it at its default.
    pub shared: Shared,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            public_base_url: None,
            auth_tokens: Vec::new(),
            insecure_no_signatures: false,
            shared_keys: Vec::new(),
            trust_forwarded: false,
            account_sid: None,
            routes: Routes::default(),
            app: Arc::new(StreamApp::default()),
            version: None,
            limits: Limits::default(),
            metrics: None,
            session: None,
            max_transmit: 1024 * 1024,
            close_timeout: Duration::from_secs(5),
            stream_idle_timeout: Duration::from_secs(60),
            stream_start_timeout: Duration::from_secs(10),
            shutdown_grace: Duration::ZERO,
            shared: Shared::default(),
        }
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the tokens: only how many there are.
        f.debug_struct("Config")
            .field("public_base_url", &self.public_base_url)
            .field(
                "auth_tokens",
                &format_args!("<{} token(s)>", self.auth_tokens.len()),
            )
            .field("insecure_no_signatures", &self.insecure_no_signatures)
            .field("shared_keys", &self.shared_keys)
            .field("trust_forwarded", &self.trust_forwarded)
            .field("account_sid", &self.account_sid)
            .field("limits", &self.limits)
            .field("metrics", &self.metrics.is_some())
            .field("session", &self.session.is_some())
            .field("max_transmit", &self.max_transmit)
            .field("close_timeout", &self.close_timeout)
            .field("stream_idle_timeout", &self.stream_idle_timeout)
            .field("stream_start_timeout", &self.stream_start_timeout)
            .field("shutdown_grace", &self.shutdown_grace)
            .finish_non_exhaustive()
    }
}

/// Per-[`Config`] state shared by its connections. Atomics and a lazily
/// built verifier only: no I/O.
#[derive(Default)]
pub struct Shared {
    signatures_off_reported: AtomicBool,
    front_reported: AtomicBool,
    verifier: OnceLock<Verifier>,
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shared")
            .field("signatures_off_reported", &self.signatures_off_reported)
            .field("front_reported", &self.front_reported)
            .finish_non_exhaustive()
    }
}

impl Config {
    /// The default configuration with [`Config::insecure_no_signatures`] on:
    /// unsigned requests are accepted. For tests and local experiments only.
    #[must_use]
    pub fn unsigned() -> Self {
        Config {
            insecure_no_signatures: true,
            ..Config::default()
        }
    }

    /// The request check, built from the security fields on first use.
    fn verifier(&self) -> &Verifier {
        self.shared
            .verifier
            .get_or_init(|| Verifier::new(self.verify_settings()))
    }

    /// The security fields as [`verify::Settings`], for an embedder that
    /// checks requests itself with [`Verifier`].
    #[must_use]
    pub fn verify_settings(&self) -> verify::Settings {
        verify::Settings {
            auth_tokens: self.auth_tokens.clone(),
            shared_keys: self.shared_keys.clone(),
            public_base_url: self.public_base_url.clone(),
            trust_forwarded: self.trust_forwarded,
            account_sid: self.account_sid,
            insecure_no_signatures: self.insecure_no_signatures,
        }
    }

    /// True the first time only (per `Config`).
    fn first(flag: &AtomicBool) -> bool {
        !flag.swap(true, Ordering::Relaxed)
    }
}

/// What the connection wants next. See the module docs for the contract.
#[derive(Debug)]
// `Event::Call` can carry an audio frame (336 bytes) by value, as the call
// machine's own outputs do: a move per frame is cheaper than a box per frame.
#[allow(clippy::large_enum_variant)]
pub enum Output {
    /// Something for the application; keep draining.
    Event(Event),
    /// Nothing more to do until bytes arrive or this deadline passes (then
    /// call [`Connection::handle_timeout`]). Stop draining.
    Timeout(Instant),
    /// Write what is left of [`Connection::transmit`], then close the socket.
    Close,
}

/// What the engine does at a path: the kinds of request it serves. Which
/// path serves which is the application's ([`Routes`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Route {
    /// A health check: 200 `ok`.
    Healthz,
    /// The application's version document ([`Config::version`]).
    Version,
    /// Prometheus text ([`Config::metrics`]).
    Metrics,
    /// Twilio's incoming-call webhook: the application's TwiML (signed).
    IncomingCall,
    /// The TwiML for a sample call (unsigned).
    IncomingCallPreview,
    /// The `<Stream statusCallback>` webhook (signed).
    StreamStatus,
    /// The `<Connect action>` webhook: what the call does after its stream
    /// (signed).
    StreamEnded,
    /// The call's status callback (signed).
    CallStatus,
    /// The recording status callback (signed).
    HandleRecording,
    /// The media stream's WebSocket upgrade (signed).
    MediaStream,
    /// Any other path (answered 404). One label, so that metrics stay bounded.
    Unknown,
}

impl Route {
    /// A stable name for logs and labels, e.g. `call_status`; `unknown` for
    /// [`Route::Unknown`]. Not a path: the application names the paths
    /// ([`Routes`]).
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Route::Healthz => "healthz",
            Route::Version => "version",
            Route::Metrics => "metrics",
            Route::IncomingCall => "incoming_call",
            Route::IncomingCallPreview => "incoming_call_preview",
            Route::StreamStatus => "stream_status",
            Route::StreamEnded => "stream_ended",
            Route::CallStatus => "call_status",
            Route::HandleRecording => "handle_recording",
            Route::MediaStream => "media_stream",
            Route::Unknown => "unknown",
        }
    }

    /// Whether Twilio signs requests to this route.
    #[must_use]
    pub fn is_signed(self) -> bool {
        matches!(
            self,
            Route::IncomingCall
                | Route::StreamStatus
                | Route::StreamEnded
                | Route::CallStatus
                | Route::HandleRecording
                | Route::MediaStream
        )
    }
}

/// The application's route table: which path serves which [`Route`]. The
/// engine carries no paths of its own; a path not in the table is
/// [`Route::Unknown`] (the application's [`App::route`], else 404).
///
/// ```
/// use callstream_core::connection::{Route, Routes};
/// let routes = Routes::new()
///     .route("/healthz", Route::Healthz)
///     .route("/twilio/voice", Route::IncomingCall)
///     .route("/twilio/media", Route::MediaStream);
/// assert_eq!(routes.find("/twilio/voice/"), Route::IncomingCall);
/// assert_eq!(routes.path(Route::MediaStream), Some("/twilio/media"));
/// assert_eq!(routes.find("/elsewhere"), Route::Unknown);
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Routes {
    table: Vec<(String, Route)>,
}

impl Routes {
    /// An empty table: every path is [`Route::Unknown`].
    #[must_use]
    pub fn new() -> Routes {
        Routes::default()
    }

    /// Serves `route` at `path` (absolute, without a trailing `/`: a request
    /// may add one). A route has one path: naming it again moves it.
    ///
    /// # Panics
    /// When `path` does not start with `/`, ends with one (other than `/`
    /// itself), holds a `?` or `#`, or `route` is [`Route::Unknown`]: a
    /// table is written by the application, not read from a request.
    #[must_use]
    pub fn route(mut self, path: impl Into<String>, route: Route) -> Routes {
        let path = path.into();
        assert!(
            path.starts_with('/')
                && (path == "/" || !path.ends_with('/'))
                && !path.contains(['?', '#']),
            "a route's path is absolute, without a trailing slash, query or fragment: {path:?}"
        );
        assert!(
            route != Route::Unknown,
            "Route::Unknown is served by no path"
        );
        self.table.retain(|(p, r)| *r != route && *p != path);
        self.table.push((path, route));
        self
    }

    /// The route for a request path: exact, or with one trailing `/`.
    #[must_use]
    pub fn find(&self, path: &str) -> Route {
        let path = match path.strip_suffix('/') {
            Some("") | None => path,
            Some(p) => p,
        };
        self.table
            .iter()
            .find(|(p, _)| p == path)
            .map_or(Route::Unknown, |(_, r)| *r)
    }

    /// The path that serves `route`, if any does.
    #[must_use]
    pub fn path(&self, route: Route) -> Option<&str> {
        self.table
            .iter()
            .find(|(_, r)| *r == route)
            .map(|(p, _)| p.as_str())
    }

    /// Every (path, route), in the order given.
    pub fn iter(&self) -> impl Iterator<Item = (&str, Route)> {
        self.table.iter().map(|(p, r)| (p.as_str(), *r))
    }
}

impl fmt::Display for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a connection closed (the last event before [`Output::Close`]).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CloseReason {
    /// The peer closed its side (every complete request was answered first).
    PeerClosed,
    /// The last answer said `Connection: close` (the client asked, HTTP/1.0,
    /// or the server is shutting down).
    Done,
    /// No request for the idle limit (or a new connection sent nothing).
    IdleTimeout,
    /// A request did not complete in time; 408 was answered.
    RequestTimeout,
    /// A request could not be read; `status` was answered (400, 413, 431, …).
    BadRequest {
        /// The status answered.
        status: u16,
    },
    /// The upgrade was refused with `status`.
    HandshakeRejected {
        /// The status answered.
        status: u16,
    },
    /// More than [`Config::max_transmit`] bytes waited: the peer is not
    /// reading.
    TransmitOverflow {
        /// Bytes waiting when the limit was crossed.
        pending: usize,
    },
    /// The WebSocket close handshake finished.
    WebSocketClosed {
        /// The code in the peer's close frame.
        code: Option<u16>,
        /// Who started the handshake.
        initiator: Initiator,
    },
    /// The peer broke the WebSocket protocol; a close frame with the error's
    /// code was sent.
    WebSocketFailed(WsError),
    /// The peer did not answer our close frame within [`Config::close_timeout`].
    CloseTimeout,
    /// The media stream sent no message for [`Config::stream_idle_timeout`].
    StreamIdle,
    /// The media stream sent no `start` within [`Config::stream_start_timeout`];
    /// closed with 1008.
    StartTimeout,
    /// [`Connection::shed`]: the server is over a limit and closed this HTTP
    /// connection (answering 503 to a request in progress).
    Shed,
    /// [`Connection::shutdown`] on a connection with nothing in progress.
    Shutdown,
}

/// What happened, for the application. Emitted in order from
/// [`Connection::poll_output`].
#[derive(Clone, Debug, PartialEq)]
// See `Output`: audio frames travel by value.
#[allow(clippy::large_enum_variant)]
#[non_exhaustive]
pub enum Event {
    /// A request was answered (every parsed request, upgrade included).
    Request {
        /// The method, as sent.
        method: String,
        /// The route it matched.
        route: Route,
        /// The status answered (101 for an upgrade).
        status: u16,
        /// From the request's first byte to its answer, by the adapter's clock.
        latency: Duration,
    },
    /// A request could not be parsed; `status` was answered and the
    /// connection closes.
    Malformed {
        /// The status answered (400, 413, 431, 501, 505).
        status: u16,
        /// What was wrong.
        reason: String,
    },
    /// A Twilio webhook was accepted; its parameters in the order sent.
    Webhook {
        /// Which webhook.
        route: Route,
        /// The decoded form (or query) parameters.
        params: Vec<(String, String)>,
    },
    /// A request on a signed route had no valid `X-Twilio-Signature` (or
    /// no key is configured to check it with): 403.
    SignatureRejected {
        /// The route.
        route: Route,
        /// The URLs the signature was checked against (never a token).
        urls_tried: Vec<String>,
        /// Why: [`verify::Reason::NoAuthToken`] when nothing is configured
        /// to check with, [`verify::Reason::Mismatch`] when the signature
        /// did not match, and so on.
        reason: verify::Reason,
    },
    /// No auth token is configured, so signatures are not checked. Once per
    /// [`Config`].
    SignaturesOff,
    /// A webhook for another account than [`Config::account_sid`]: 403.
    AccountRejected {
        /// The route.
        route: Route,
        /// The `AccountSid` the request carried (cut to 64 characters), empty
        /// when it had none or more than one.
        account_sid: String,
    },
    /// A request came through a front or proxy (`Via: 1.1 google`,
    /// `X-Cloud-Trace-Context`, `X-Forwarded-*`, …). Once per [`Config`].
    FrontDetected {
        /// What was seen, e.g. `Google Front End (Via: 1.1 google)`.
        what: String,
    },
    /// The configuration cannot serve a request (e.g. no public base URL
    /// and a plain-HTTP request, so the stream URL would be `ws://`): 500.
    ConfigError {
        /// What is wrong and how to fix it.
        reason: String,
    },
    /// A request to the media-stream route was not a valid upgrade (or its
    /// signature failed): `status` was answered.
    HandshakeRejected {
        /// 400, 403, 405 or 426.
        status: u16,
        /// Why.
        reason: String,
    },
    /// The connection is now a WebSocket media stream.
    Upgraded {
        /// The subprotocol echoed (only when the client offered it).
        subprotocol: Option<String>,
    },
    /// What the call machine reports ([`Config::session`]): `Connected`,
    /// `Started`, `Dtmf`, marks, speech, barge-in, warnings, and `Stopped`
    /// with the call's stats (before [`Event::Closed`]).
    Call(CallEvent),
    /// A message from Twilio on the media stream, parsed (only when no
    /// [`Config::session`] is set).
    StreamMessage(Inbound<'static>),
    /// A message on the media stream that is not a valid Twilio message; it
    /// was dropped.
    InvalidStreamMessage {
        /// What was wrong.
        error: String,
    },
    /// A binary WebSocket message was dropped (Twilio never sends one).
    BinaryDropped {
        /// Its length.
        len: usize,
    },
    /// The connection is closing; [`Output::Close`] follows.
    Closed {
        /// Why.
        reason: CloseReason,
    },
}

/// How long `poll_output` asks to sleep when no timer is armed: any wake-up
/// is harmless, so this only bounds how long a forgotten connection lingers.
const NO_DEADLINE: Duration = Duration::from_secs(3600);

/// Most answer-buffer capacity an HTTP connection keeps once everything is
/// written: enough for the usual answers without a new allocation each.
const IDLE_OUT_CAPACITY: usize = 16 * 1024;

enum Phase {
    Http(Box<RequestParser>),
    Stream(Box<StreamPhase>),
}

/// One TCP connection: HTTP/1.1 requests, then possibly a media stream.
/// See the module docs for the drain contract.
pub struct Connection {
    config: Arc<Config>,
    now: Instant,
    phase: Phase,
    /// Bytes to write while in HTTP (moved into the WebSocket on upgrade).
    out: Vec<u8>,
    sent: usize,
    events: VecDeque<Event>,
    waker: Option<Waker>,
    /// Set once `Event::Closed` is queued; `Close` follows the queue.
    closed: bool,
    /// The peer closed its side.
    eof: bool,
    /// `shutdown` was called.
    draining: bool,
    /// After the current answer, close (it said `Connection: close`).
    close_after_answer: Option<CloseReason>,
    /// When the first byte of the request in progress arrived.
    request_started: Option<Instant>,
    /// [`Connection::refuse_upgrades`] was called.
    refuse_upgrades: bool,
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field(
                "phase",
                &match self.phase {
                    Phase::Http(_) => "http",
                    Phase::Stream(_) => "stream",
                },
            )
            .field("transmit", &self.transmit().len())
            .field("events", &self.events.len())
            .field("closed", &self.closed)
            .finish_non_exhaustive()
    }
}

// Events travel by value (see `Output`).
#[allow(clippy::large_enum_variant)]
enum Step {
    /// Something happened; poll again.
    Progress,
    /// One event, handed straight out: the queue is empty whenever `step`
    /// runs, so order is kept, and a media message's event is not copied
    /// in and out of the queue.
    Emit(Event),
    /// Nothing to do before this deadline.
    Idle(Option<Instant>),
}

impl Connection {
    /// A new connection accepted at `now`.
    #[must_use]
    pub fn new(config: Arc<Config>, now: Instant) -> Self {
        let parser = RequestParser::new(config.limits.clone(), now);
        Connection {
            config,
            now,
            phase: Phase::Http(Box::new(parser)),
            out: Vec::new(),
            sent: 0,
            events: VecDeque::new(),
            waker: None,
            closed: false,
            eof: false,
            draining: false,
            close_after_answer: None,
            request_started: None,
            refuse_upgrades: false,
        }
    }

    /// Bytes read from the socket at `now`. Ignored after [`Output::Close`].
    pub fn handle_receive(&mut self, now: Instant, bytes: &[u8]) {
        self.advance(now);
        if self.closed || self.eof {
            return;
        }
        match &mut self.phase {
            Phase::Http(parser) => {
                if !bytes.is_empty() && self.request_started.is_none() {
                    self.request_started = Some(now);
                }
                parser.handle_receive(now, bytes);
            }
            Phase::Stream(s) => s.handle_receive(bytes),
        }
    }

    /// The peer closed its side of the connection at `now`. Requests already
    /// received are still answered; then the connection closes.
    pub fn handle_eof(&mut self, now: Instant) {
        self.advance(now);
        self.eof = true;
        if let Phase::Stream(s) = &mut self.phase {
            s.eof();
        }
    }

    /// The deadline from the last [`Output::Timeout`] passed (calling it early
    /// is harmless), or the waker fired.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.advance(now);
        if self.closed {
            return;
        }
        match &mut self.phase {
            Phase::Http(parser) => {
                if let Some(expiry) = parser.handle_timeout(now) {
                    self.http_expired(expiry);
                }
            }
            Phase::Stream(s) => s.handle_timeout(now, &self.config),
        }
    }

    /// The server is shutting down (e.g. SIGTERM): an idle HTTP connection
    /// closes now, one with a request in progress closes after answering it,
    /// a live call goes on for up to [`Config::shutdown_grace`], and a media
    /// stream then gets close 1001 and up to [`Config::close_timeout`] to
    /// answer. Call it once; the deadlines come out of
    /// [`poll_output`](Self::poll_output) as usual.
    pub fn shutdown(&mut self, now: Instant) {
        self.advance(now);
        if self.closed {
            return;
        }
        self.draining = true;
        if let Phase::Stream(s) = &mut self.phase {
            s.shutdown(now, &self.config);
        }
    }

    /// Closes the connection at once because the server is over a limit an
    /// unauthenticated client could exhaust (connections that have not made
    /// a request, memory held by request buffers, streams that have not
    /// started): a request in progress is answered 503 (`Retry-After: 1`),
    /// an idle HTTP connection closes quietly, a media stream still waiting
    /// for `start` (a replayed upgrade, for all the server can tell) gets
    /// close code 1013, and [`CloseReason::Shed`] is the last event. Buffers
    /// are freed now. A media stream whose `start` arrived is never shed:
    /// nothing happens.
    pub fn shed(&mut self, now: Instant) {
        self.advance(now);
        if self.closed {
            return;
        }
        let parser = match &mut self.phase {
            Phase::Http(parser) => parser,
            Phase::Stream(s) => {
                s.shed();
                return;
            }
        };
        let partial = !parser.is_idle();
        **parser = RequestParser::new(self.config.limits.clone(), now);
        self.close_after_answer = None;
        if partial {
            self.out
                .extend_from_slice(crate::http::overloaded_response());
        }
        self.finish(CloseReason::Shed);
    }

    /// From now on, a WebSocket upgrade on this connection is answered 503
    /// (`Retry-After: 1`) instead of accepted: for a connection the server
    /// took in past its call slots, so that health checks, metrics and
    /// webhooks are answered while every slot holds a call.
    pub fn refuse_upgrades(&mut self) {
        self.refuse_upgrades = true;
    }

    /// Bytes of memory this connection holds for HTTP requests (read
    /// buffer, the request in progress, answers not yet written); zero once
    /// it is a media stream. A server budgets this across connections,
    /// since any client can make a connection hold it before any signature
    /// is checked.
    #[must_use]
    pub fn request_buffer_bytes(&self) -> usize {
        match &self.phase {
            Phase::Http(parser) => parser.memory() + self.out.capacity(),
            Phase::Stream(_) => 0,
        }
    }

    /// Sets the waker handed to the call machine (so that a remote control can
    /// wake this connection). Call it before the upgrade (e.g. right after
    /// [`new`](Self::new)): the session gets the waker set when it is made.
    pub fn set_waker(&mut self, waker: Waker) {
        self.waker = Some(waker);
    }

    /// The next thing to do. See the module docs for the contract.
    #[must_use]
    pub fn poll_output(&mut self) -> Output {
        loop {
            if let Some(event) = self.events.pop_front() {
                return Output::Event(event);
            }
            if self.closed {
                return Output::Close;
            }
            let pending = self.transmit().len();
            if pending > self.config.max_transmit {
                let reason = CloseReason::TransmitOverflow { pending };
                match &mut self.phase {
                    // The call machine still hears of the end (`Stopped`).
                    Phase::Stream(s) => s.fail(reason),
                    Phase::Http(_) => {
                        // `Closed` is the last event: answer nothing more.
                        self.finish(reason);
                        continue;
                    }
                }
            }
            match self.step() {
                Step::Progress => {}
                Step::Emit(event) => return Output::Event(event),
                Step::Idle(deadline) => {
                    return Output::Timeout(deadline.unwrap_or(self.now + NO_DEADLINE));
                }
            }
        }
    }

    /// Bytes waiting to be written to the socket.
    #[must_use]
    pub fn transmit(&self) -> &[u8] {
        match &self.phase {
            Phase::Stream(s) => s.transmit(),
            Phase::Http(_) => self.out.get(self.sent..).unwrap_or_default(),
        }
    }

    /// Reports that the first `n` bytes of [`transmit`](Self::transmit) were
    /// written.
    pub fn consume_transmit(&mut self, n: usize) {
        match &mut self.phase {
            Phase::Stream(s) => s.consume_transmit(n),
            Phase::Http(_) => {
                self.sent = self.sent.saturating_add(n).min(self.out.len());
                if self.sent == self.out.len() {
                    self.out.clear();
                    self.sent = 0;
                    // A big answer (metrics, a long TwiML) must not pin its
                    // memory to an idle keep-alive connection.
                    if self.out.capacity() > IDLE_OUT_CAPACITY {
                        self.out = Vec::new();
                    }
                }
            }
        }
    }

    /// Whether a call is in progress: a media stream whose `start` arrived
    /// and that has not ended.
    #[must_use]
    pub fn is_call_live(&self) -> bool {
        match &self.phase {
            Phase::Stream(s) => s.is_call_live(),
            Phase::Http(_) => false,
        }
    }

    /// Drops the call's session, and with it the application's handler,
    /// now rather than with the connection. For a runtime about to drop the
    /// connection that contains handler panics: a handler whose `Drop`
    /// panics would otherwise unwind through the runtime where it drops the
    /// connection; called inside the runtime's guard first, the panic stays
    /// there. The stream has no call machine afterwards: drop the connection
    /// next.
    pub fn drop_session(&mut self) {
        if let Phase::Stream(s) = &mut self.phase {
            s.drop_session();
        }
    }

    /// Whether the connection is a media stream whose `start` arrived (its
    /// call may have ended since): an upgrade proves only that someone had
    /// a signed URL, which can be replayed; `start` follows at once from
    /// Twilio.
    #[must_use]
    pub fn is_call_started(&self) -> bool {
        match &self.phase {
            Phase::Stream(s) => s.is_started(),
            Phase::Http(_) => false,
        }
    }

    /// Whether the connection is a WebSocket media stream now.
    #[must_use]
    pub fn is_stream(&self) -> bool {
        matches!(self.phase, Phase::Stream(_))
    }

    /// The memory this connection's next input will read and write, as
    /// address ranges handed to `visit` (each at least one byte long): the
    /// stream's state and the parts of its buffers a media frame and its echo
    /// use (or the request parser's state, before an upgrade). Which ranges
    /// are named may change from one release to the next.
    ///
    /// For a runtime that prefetches them when it learns input is ready and
    /// before it reads the socket: with many calls each frame finds its
    /// call's state out of the cache, and touching it line by line makes every
    /// miss wait for the last; prefetched, the misses overlap, during the read.
    /// A hint only: nothing here reads what the addresses point at, they may
    /// go stale on the next `&mut` call, and they must never be dereferenced,
    /// only given to a prefetch instruction (which never faults). With no
    /// prefetching nothing changes but the time. `callstream-server`'s
    /// `Driver::prefetch` is one such runtime.
    pub fn hot_memory(&self, mut visit: impl FnMut(*const u8, usize)) {
        // An empty buffer (a dangling address) is nothing to load.
        let mut visit = |start, len| {
            if len > 0 {
                visit(start, len);
            }
        };
        match &self.phase {
            Phase::Http(parser) => visit(crate::hot::of(&**parser), size_of::<RequestParser>()),
            Phase::Stream(stream) => stream.hot_memory(&mut visit),
        }
    }

    /// The call's counters, once a media stream with a call machine runs.
    #[must_use]
    pub fn call_stats(&self) -> Option<CallStats> {
        match &self.phase {
            Phase::Stream(s) => s.call_stats(),
            Phase::Http(_) => None,
        }
    }

    /// Binary WebSocket messages dropped on this connection.
    #[must_use]
    pub fn binary_dropped(&self) -> u64 {
        match &self.phase {
            Phase::Stream(s) => s.binary_dropped(),
            Phase::Http(_) => 0,
        }
    }

    fn advance(&mut self, now: Instant) {
        // Time never runs backwards here, whatever the caller passes.
        if now > self.now {
            self.now = now;
        }
    }

    fn emit(&mut self, event: Event) {
        self.events.push_back(event);
    }

    /// Queues `Closed` (once); `Close` follows the events already queued.
    fn finish(&mut self, reason: CloseReason) {
        if !self.closed {
            self.closed = true;
            self.events.push_back(Event::Closed { reason });
        }
    }

    fn step(&mut self) -> Step {
        match &mut self.phase {
            Phase::Http(_) => self.step_http(),
            Phase::Stream(s) => match s.step(self.now, &self.config, &mut self.events) {
                stream::StreamStep::Progress => Step::Progress,
                stream::StreamStep::Emit(event) => Step::Emit(event),
                stream::StreamStep::Idle(deadline) => Step::Idle(Some(deadline)),
                stream::StreamStep::Finished(reason) => {
                    self.finish(reason);
                    Step::Progress
                }
            },
        }
    }
}
