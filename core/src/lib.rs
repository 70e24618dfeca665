//! # callstream-core
//!
//! The sans-IO heart of callstream: it connects phone calls to applications
//! through Twilio's voice Media Streams without owning a socket, a thread, a
//! file or a clock. Bytes, time and application commands go in; bytes, events
//! and deadlines come out. Adapters (smol, blocking threads, or your own axum or
//! tokio server) pump bytes and sleep until the deadline the core names.
//!
//! The modules read like a table of contents of the protocol:
//!
//! | module | what it holds |
//! |---|---|
//! | [`codec`] | G.711 μ-law, bit-exact with Python's `audioop` |
//! | [`sid`] | Twilio SIDs (`MZ…`, `CA…`, `AC…`) as validated, copyable values |
//! | [`message`] | the JSON messages of a media stream, parsed and written |
//! | [`twiml`] | a typed TwiML builder that enforces Twilio's rules |
//! | [`signature`] | `X-Twilio-Signature`: compute and validate |
//! | [`public_url`] | the URL Twilio signed, rebuilt behind proxies |
//! | [`verify`] | the whole request check: signature, shared keys, JSON bodies, account |
//! | [`form`] | `application/x-www-form-urlencoded` bodies and query strings |
//! | [`http`] | HTTP/1.1 requests pushed in pieces, answers written out |
//! | [`handshake`] | the WebSocket upgrade: checks, accept key, subprotocol |
//! | [`websocket`] | WebSocket framing over in-memory buffers |
//! | [`connection`] | one state machine per TCP connection: routes, webhooks, upgrade |
//! | [`jitter`] | inbound jitter buffer: ordering, de-duplication, concealment |
//! | [`pacer`] | outbound pacing on absolute 20 ms deadlines |
//! | [`vad`] | energy voice activity detection |
//! | [`call`] | one state machine per media stream: marks, clear, barge-in |
//! | [`handler`] | the application interface and the shipped handlers |
//! | [`metrics`] | server-wide counters, rendered as Prometheus text |
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod call;
pub mod codec;
pub mod connection;
pub mod form;
pub mod handler;
pub mod handshake;
pub mod http;
pub mod jitter;
pub mod message;
pub mod metrics;
pub mod pacer;
pub mod public_url;
pub mod sid;
pub mod signature;
pub mod twiml;
pub mod vad;
pub mod verify;
pub mod websocket;
