//! HTTP/1.1 for Twilio's webhooks: requests pushed in pieces, answers written out.
//!
//! [`RequestParser`] is a push parser in the sans-IO style of `httparse` and
//! `h11`: the connection hands it whatever bytes a read produced, with the time
//! they arrived, and pulls complete [`Request`]s out. It owns no socket and
//! reads no clock. [`Response`] writes an answer into a caller's buffer.
//!
//! # Contract
//!
//! - [`RequestParser::handle_receive`]`(now, bytes)` appends bytes (any split: a request
//!   cut at every byte offset parses the same); then call
//!   [`RequestParser::poll_request`] until it returns `Ok(None)`. Each `Ok(Some)`
//!   is one complete request, head and body. Requests pipelined in one read come
//!   out one per call; bytes after the last complete request stay buffered
//!   ([`RequestParser::buffered`], [`RequestParser::take_buffered`]: after a
//!   WebSocket upgrade those are the first frames).
//! - The parser is lazy: it parses only when polled, so a connection that
//!   decides to close (or to switch to WebSocket) after a request simply stops
//!   polling, and nothing after that request is interpreted as HTTP.
//! - Every [`ParseError`] is the peer's fault, carries the status to answer
//!   ([`ParseError::status`]; [`Response::for_parse_error`] builds the answer),
//!   and ends the connection: answer, then close. After an error the parser
//!   keeps returning it and ignores further bytes.
//! - Timing: the parser stamps when a request's first byte arrived and when its
//!   head completed, and reports the next deadline ([`RequestParser::poll_timeout`]).
//!   The connection arms its timer for the earliest of its deadlines and, when
//!   it fires, calls [`RequestParser::handle_timeout`], which says what to do:
//!   [`Expiry::RequestTimeout`] (answer 408, then close) or [`Expiry::Idle`]
//!   (close without a word).
//!
//! # Decisions (RFC 9112 leaves some to the server)
//!
//! - Both `Content-Length` and `Transfer-Encoding`: refused with 400, not
//!   "TE wins" (RFC 9112 §6.3 ¶3 allows either; the combination is the classic
//!   request-smuggling shape and no honest client sends it).
//! - `Content-Length` repeated (on several lines or as a list): accepted when
//!   every value is the same number, 400 otherwise (§6.3 ¶5).
//! - `Transfer-Encoding`: only `chunked`, alone. `chunked` not last or applied
//!   twice is 400 (§6.1); another coding (e.g. `gzip, chunked`) is 501. On an
//!   HTTP/1.0 request any `Transfer-Encoding` is 400 (§6.1 says its framing is
//!   faulty).
//! - Chunked bodies: chunk extensions are accepted and ignored; trailer fields
//!   are checked for syntax, counted against the head limits, and dropped (no
//!   application here needs them, and §6.5 forbids merging them blindly).
//!   Chunk-size lines must end in CRLF and hold at most [`MAX_CHUNK_LINE`] bytes.
//! - HTTP/1.1 requests need exactly one `Host` (§3.2: 400 otherwise).
//! - HTTP/1.0 connections never persist: [`Request::keep_alive`] is false, so
//!   the answer carries `Connection: close`. (1.0 keep-alive is a legacy opt-in
//!   that no Twilio component uses; closing is always correct.)
//! - Empty lines before a request line are skipped (§2.2). Line folding
//!   (obs-fold) is refused (httparse; §5.2 allows 400).
//! - A head that is still incomplete is scanned for bytes that can never be
//!   valid (control characters, a CR without LF), so garbage such as a TLS
//!   handshake on the plain port is answered with 400 at once rather than
//!   after 16 KiB or 10 s. The scan is incremental (linear in the head's size
//!   however it is split), and the full parse runs once, at the blank line.
//! - `Expect: 100-continue` (HTTP/1.1) is answered: once the head is accepted
//!   (its `Content-Length` within the body limit, else 413 first) and while
//!   none of the body has arrived, [`RequestParser::poll_continue`] says to
//!   write `HTTP/1.1 100 Continue`, so a client such as curl does not wait
//!   its second for nothing. Other expectations are ignored.
//!
//! # Limits ([`Limits`], each configurable)
//!
//! | limit | default | crossing it |
//! |---|---|---|
//! | request head (request line + headers) | 16 KiB | 431, close |
//! | header lines | 64 | 431, close |
//! | body (after de-chunking) | 64 KiB | 413, close (as soon as `Content-Length` or a chunk size says so) |
//! | head complete after its first byte | 10 s | 408, close |
//! | body complete after the head | 10 s | 408, close |
//! | idle between requests (from the end of the last one) | 60 s | close |
//! | a new connection's first byte | 10 s (the head limit) | close |
//!
//! # Example
//!
//! ```
//! use callstream_core::http::{Limits, RequestParser, Response};
//! use std::time::{Duration, Instant};
//!
//! let now = Instant::now();
//! let mut parser = RequestParser::new(Limits::default(), now);
//! let wire = b"POST /webhook/call_status HTTP/1.1\r\nHost: example.com\r\n\
//!              Content-Type: application/x-www-form-urlencoded\r\n\
//!              Content-Length: 15\r\n\r\nCallStatus=busy";
//! // Bytes arrive in arbitrary pieces.
//! parser.handle_receive(now, &wire[..20]);
//! assert!(parser.poll_request().unwrap().is_none());
//! parser.handle_receive(now, &wire[20..]);
//! let request = parser.poll_request().unwrap().expect("complete");
//! assert_eq!(request.method(), "POST");
//! assert_eq!(request.path(), "/webhook/call_status");
//! assert_eq!(request.header("content-type"), Some("application/x-www-form-urlencoded"));
//! assert_eq!(request.body, b"CallStatus=busy");
//! assert!(request.keep_alive());
//!
//! let mut out = Vec::new();
//! Response::no_content().write_to(&mut out);
//! assert_eq!(out, b"HTTP/1.1 204 No Content\r\n\r\n");
//!
//! // Between requests the connection may idle for 60 s.
//! assert_eq!(parser.poll_timeout(), Some(now + Duration::from_secs(60)));
//! ```

mod error;
mod parser;
mod request;
mod response;

pub use error::{Expiry, ParseError};
pub use parser::{Limits, MAX_CHUNK_LINE, RequestParser};
pub use request::{Request, Version};
pub(crate) use response::is_token;
pub use response::{Response, overloaded_response, reason_phrase};
