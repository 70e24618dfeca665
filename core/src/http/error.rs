//! What can go wrong reading a request, and what the peer gets for it.

use std::fmt;

/// Why a request could not be read. Every variant is the peer's fault; each
/// names the status to answer ([`status`](ParseError::status)), and every one
/// ends the connection after the answer (the framing of anything that follows
/// cannot be trusted).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ParseError {
    /// The request line or a header line is not HTTP/1.1 syntax (`what` says
    /// which part). 400.
    Malformed {
        /// The part that was wrong, e.g. `"invalid header name"`.
        what: &'static str,
    },
    /// A well-formed version other than HTTP/1.0 or HTTP/1.1 (e.g. an HTTP/2
    /// preface). 505.
    UnsupportedVersion,
    /// The request head is longer than `limit` bytes. 431.
    HeadTooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// More than `limit` header (or trailer) lines. 431.
    TooManyHeaders {
        /// The limit in lines.
        limit: usize,
    },
    /// The trailer section of a chunked body is longer than `limit` bytes. 431.
    TrailersTooLarge {
        /// The limit in bytes (the head limit).
        limit: usize,
    },
    /// An HTTP/1.1 request without a `Host` header. 400.
    MissingHost,
    /// More than one `Host` header. 400.
    MultipleHosts,
    /// A `Content-Length` value that is not a decimal number. 400.
    InvalidContentLength,
    /// `Content-Length` values that disagree. 400.
    ConflictingContentLength,
    /// Both `Content-Length` and `Transfer-Encoding` (refused as a smuggling
    /// attempt). 400.
    ContentLengthWithTransferEncoding,
    /// `Transfer-Encoding` on an HTTP/1.0 request. 400.
    TransferEncodingOnHttp10,
    /// `Transfer-Encoding` whose last coding is not `chunked`, or that applies
    /// `chunked` twice. 400.
    InvalidTransferEncoding,
    /// A transfer coding other than `chunked` (e.g. `gzip, chunked`). 501.
    UnsupportedTransferCoding,
    /// The body is longer than `limit` bytes. 413.
    BodyTooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// A chunked body's framing is broken (`what` says how). 400.
    InvalidChunk {
        /// What was wrong, e.g. `"chunk size is not hexadecimal"`.
        what: &'static str,
    },
}

impl ParseError {
    /// The HTTP status to answer with before closing.
    #[must_use]
    pub fn status(&self) -> u16 {
        match self {
            ParseError::HeadTooLarge { .. }
            | ParseError::TooManyHeaders { .. }
            | ParseError::TrailersTooLarge { .. } => 431,
            ParseError::BodyTooLarge { .. } => 413,
            ParseError::UnsupportedTransferCoding => 501,
            ParseError::UnsupportedVersion => 505,
            ParseError::Malformed { .. }
            | ParseError::MissingHost
            | ParseError::MultipleHosts
            | ParseError::InvalidContentLength
            | ParseError::ConflictingContentLength
            | ParseError::ContentLengthWithTransferEncoding
            | ParseError::TransferEncodingOnHttp10
            | ParseError::InvalidTransferEncoding
            | ParseError::InvalidChunk { .. } => 400,
        }
    }

    /// Whether the peer is at fault: always true (kept so that callers can
    /// route every error type of the engine through one question).
    #[must_use]
    pub fn is_peer_fault(&self) -> bool {
        true
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParseError::Malformed { what } => write!(f, "malformed request: {what}"),
            ParseError::UnsupportedVersion => f.write_str("only HTTP/1.0 and HTTP/1.1 are served"),
            ParseError::HeadTooLarge { limit } => {
                write!(f, "request head longer than {limit} bytes")
            }
            ParseError::TooManyHeaders { limit } => {
                write!(f, "more than {limit} header lines")
            }
            ParseError::TrailersTooLarge { limit } => {
                write!(f, "chunked trailers longer than {limit} bytes")
            }
            ParseError::MissingHost => f.write_str("HTTP/1.1 request without a Host header"),
            ParseError::MultipleHosts => f.write_str("more than one Host header"),
            ParseError::InvalidContentLength => f.write_str("Content-Length is not a number"),
            ParseError::ConflictingContentLength => f.write_str("Content-Length values disagree"),
            ParseError::ContentLengthWithTransferEncoding => {
                f.write_str("both Content-Length and Transfer-Encoding")
            }
            ParseError::TransferEncodingOnHttp10 => {
                f.write_str("Transfer-Encoding on an HTTP/1.0 request")
            }
            ParseError::InvalidTransferEncoding => {
                f.write_str("Transfer-Encoding must end with chunked, applied once")
            }
            ParseError::UnsupportedTransferCoding => {
                f.write_str("only the chunked transfer coding is supported")
            }
            ParseError::BodyTooLarge { limit } => write!(f, "body longer than {limit} bytes"),
            ParseError::InvalidChunk { what } => write!(f, "invalid chunked body: {what}"),
        }
    }
}

impl std::error::Error for ParseError {}

/// What [`RequestParser::handle_timeout`](super::RequestParser::handle_timeout)
/// found when a deadline passed. Either way the connection closes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Expiry {
    /// A request had started (head or body) but did not complete in time:
    /// answer 408 ([`Response::request_timeout`](super::Response::request_timeout)),
    /// then close.
    RequestTimeout,
    /// No request in progress: the connection sat idle (between keep-alive
    /// requests, or a new connection that never sent a byte). Close without
    /// answering: a 408 here could cross a request the client is just sending.
    Idle,
}
