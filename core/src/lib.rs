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
//! | [`dtmf`] | keys as DTMF tones, to send digits from a call's audio |
//! | [`sid`] | Twilio SIDs (`MZ…`, `CA…`, `AC…`) as validated, copyable values |
//! | [`message`] | the JSON messages of a media stream, parsed and written |
//! | [`twiml`] | a typed TwiML builder that enforces Twilio's rules |
//! | [`signature`] | `X-Twilio-Signature`: compute and validate |
//! | [`public_url`] | the URL Twilio signed, rebuilt behind proxies |
//! | [`verify`] | the whole request check: signature, shared keys, JSON bodies, account |
//! | [`excerpt`] | hostile text cut for errors and logs |
//! | [`form`] | `application/x-www-form-urlencoded` bodies and query strings |
//! | [`http`] | HTTP/1.1 requests pushed in pieces, answers written out |
//! | [`handshake`] | the WebSocket upgrade: checks, accept key, subprotocol |
//! | [`websocket`] | WebSocket framing over in-memory buffers |
//! | [`connection`] | one state machine per TCP connection: routes, webhooks, upgrade |
//! | [`jitter`] | inbound jitter buffer: ordering, de-duplication, concealment |
//! | [`pacer`] | outbound pacing on absolute 20 ms deadlines |
//! | [`resample`] | sample-rate conversion, streamed in chunks without a seam |
//! | [`vad`] | energy voice activity detection |
//! | [`call`] | one state machine per media stream: audio and control, marks, clear, barge-in |
//! | [`wire`] | a provider's media stream messages as the call machine's facts (Twilio's JSON: [`wire::twilio`]) |
//! | [`handler`] | the application interface and the shipped handlers |
//!
//! # Run loop
//!
//! Every state machine here — [`connection::Connection`] for a TCP
//! connection, [`call::Call`] and [`handler::Session`] for a media stream,
//! and the inner machines they are built from ([`http::RequestParser`],
//! [`websocket::WebSocket`], [`jitter::JitterBuffer`], [`pacer::Pacer`]) —
//! keeps one contract, in one vocabulary:
//!
//! 1. **Input** goes in through `handle_*`, each with the time it happened:
//!    `handle_receive(now, bytes)` for what the peer sent, `handle_eof` when
//!    it closed its side, `handle_timeout(now)` when time passed. Commands
//!    from the application (play, mark, clear, hang up, shut down) are inputs
//!    too. Nothing inside ever reads a clock: time is only the `now` given.
//! 2. **Output** comes out of `poll_*`, one item per call: `poll_output`
//!    (the machines a driver runs), `poll_event`, `poll_frame`,
//!    `poll_transmit`, `poll_request` (the inner ones). After every input,
//!    drain: call the poller until it says there is nothing more now — the
//!    driver-level machines return a `Timeout(deadline)` (or, for a
//!    connection, `Close`, which is final), the inner ones `None` — and
//!    act on each item in order.
//! 3. **Bytes** for the peer wait in `transmit()`; write them and report
//!    what went out with `consume_transmit(n)`.
//! 4. **Time**: the deadline is absolute (an `Instant`, from `poll_timeout`
//!    or the `Timeout` output). Sleep until it or until input arrives, then
//!    call `handle_timeout(now)`. Waking early is harmless (the machine
//!    names its deadline again); a deadline is never "sleep 20 ms", so
//!    nothing drifts.
//! 5. **A wake is not a timeout, but is handled like one.** A handler's
//!    [`handler::RemoteControl`] on another thread queues a command and calls
//!    the waker the driver installed ([`connection::Connection::set_waker`]);
//!    the driver then calls `handle_timeout(now)`, which applies the queued
//!    commands in order before time advances, and drains as in 2.
//!
//! The per-module docs say what each machine takes and gives; the loop is
//! this one. An adapter that follows it for [`connection::Connection`] is a
//! complete server (see `adapters/` and `examples/` in the repository).
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod call;
pub mod codec;
pub mod connection;
pub mod dtmf;
pub mod excerpt;
pub mod form;
pub mod handler;
pub mod handshake;
mod hot;
pub mod http;
pub mod jitter;
pub mod message;
pub mod pacer;
pub mod public_url;
pub mod resample;
pub mod sid;
pub mod signature;
pub mod twiml;
pub mod vad;
pub mod verify;
pub mod websocket;
pub mod wire;
