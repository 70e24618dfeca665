//! The WebSocket upgrade (RFC 6455 §4.2) as pure functions: check the
//! client's request, compute the accept key, write the `101`.
//!
//! # Contract
//!
//! [`check_upgrade`] takes a parsed [`Request`] and either returns an
//! [`Upgrade`] (answer with [`response_101`], then speak WebSocket on the
//! connection, starting with the bytes the parser still holds) or a
//! [`HandshakeError`] that knows its status and reason
//! ([`HandshakeError::response`] is the answer to write). Checks, in order:
//!
//! 1. method `GET` (RFC 6455 §4.1 ¶2), 400 otherwise;
//! 2. `HTTP/1.1` (HTTP/1.0 has no upgrade), 400;
//! 3. `Upgrade` lists `websocket` and `Connection` lists `upgrade`: tokens in
//!    comma lists, any case, on any of several header lines (RFC 9110 §7.6.1,
//!    §7.8), 400;
//! 4. `Sec-WebSocket-Version: 13`, otherwise 426 with
//!    `Sec-WebSocket-Version: 13` so the client knows what to retry with
//!    (RFC 6455 §4.2.2 ¶4);
//! 5. exactly one `Sec-WebSocket-Key`, the base64 of exactly 16 bytes
//!    (canonical standard base64 with padding: 24 characters), 400.
//!
//! Subprotocol (docs/protocol.md §1): Twilio sends none, yet some code believes it
//! asks for `audio.twilio.com`. When the client offers `audio.twilio.com`
//! (any case, anywhere in a comma- or space-separated list, on any
//! `Sec-WebSocket-Protocol` line) the 101 names it exactly as the client
//! spelled it; otherwise the 101 names none. A subprotocol is never
//! required (refusing would be Twilio error 31920), and one that was not
//! offered is never named (RFC 6455 §4.1: the client must then fail).
//! Extensions (`permessage-deflate`) are never negotiated: the 101 has no
//! `Sec-WebSocket-Extensions`, which RFC 6455 §9.1 allows.
//!
//! The 101 carries `Upgrade: websocket`, `Connection: Upgrade` and
//! `Sec-WebSocket-Accept`, each exactly once, because some fronts (Google
//! Front End) reject anything else.
//!
//! ```
//! use callstream_core::handshake;
//! use callstream_core::http::{Limits, RequestParser};
//! use std::time::Instant;
//!
//! let now = Instant::now();
//! let mut parser = RequestParser::new(Limits::default(), now);
//! parser.handle_receive(now, b"GET /ws/twilio-media HTTP/1.1\r\nhost: example.com\r\n\
//!     connection: Upgrade\r\nupgrade: websocket\r\n\
//!     sec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\nsec-websocket-version: 13\r\n\r\n");
//! let request = parser.poll_request().unwrap().unwrap();
//! let upgrade = handshake::check_upgrade(&request).unwrap();
//! assert_eq!(upgrade.subprotocol, None);
//! assert_eq!(
//!     handshake::response_101(&upgrade),
//!     b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
//!       Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n"
//! );
//! ```

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use sha1::{Digest, Sha1};

use crate::http::{Request, Response, Version};

/// The only WebSocket version there is (RFC 6455 §4.1).
pub const WEBSOCKET_VERSION: &str = "13";

/// The subprotocol echoed when a client offers it (see the module docs).
pub const TWILIO_SUBPROTOCOL: &str = "audio.twilio.com";

/// RFC 6455 §1.3: appended to the client's key before hashing.
const ACCEPT_GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// An accepted upgrade: what the 101 needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upgrade {
    /// The client's `Sec-WebSocket-Key`, as sent.
    pub key: String,
    /// `audio.twilio.com` spelled as the client spelled it, when offered.
    pub subprotocol: Option<String>,
}

impl Upgrade {
    /// The `Sec-WebSocket-Accept` value for this key.
    #[must_use]
    pub fn accept(&self) -> String {
        accept_key(&self.key)
    }
}

/// Why an upgrade request was refused. Each variant knows its status (400,
/// or 426 for the version) and a reason for humans; the peer is always at
/// fault.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum HandshakeError {
    /// The method is not `GET`. 400.
    NotGet,
    /// The request is HTTP/1.0. 400.
    NotHttp11,
    /// No `Upgrade` header lists `websocket`. 400.
    NotWebSocketUpgrade,
    /// No `Connection` header lists `upgrade`. 400.
    MissingConnectionUpgrade,
    /// `Sec-WebSocket-Version` is missing or not exactly `13`. 426.
    UnsupportedVersion,
    /// No `Sec-WebSocket-Key`. 400.
    MissingKey,
    /// More than one `Sec-WebSocket-Key` line. 400.
    MultipleKeys,
    /// The key is not canonical base64 of exactly 16 bytes. 400.
    InvalidKey,
}

impl HandshakeError {
    /// The HTTP status to answer with: 426 for the version, 400 otherwise.
    #[must_use]
    pub fn status(&self) -> u16 {
        match self {
            HandshakeError::UnsupportedVersion => 426,
            _ => 400,
        }
    }

    /// What was wrong, for the answer's body and the logs.
    #[must_use]
    pub fn reason(&self) -> &'static str {
        match self {
            HandshakeError::NotGet => "WebSocket upgrade must use GET",
            HandshakeError::NotHttp11 => "WebSocket upgrade needs HTTP/1.1",
            HandshakeError::NotWebSocketUpgrade => {
                "not a WebSocket upgrade: no Upgrade: websocket header"
            }
            HandshakeError::MissingConnectionUpgrade => {
                "WebSocket upgrade without Connection: Upgrade"
            }
            HandshakeError::UnsupportedVersion => "Sec-WebSocket-Version must be 13",
            HandshakeError::MissingKey => "WebSocket upgrade without Sec-WebSocket-Key",
            HandshakeError::MultipleKeys => "more than one Sec-WebSocket-Key",
            HandshakeError::InvalidKey => "Sec-WebSocket-Key is not base64 of 16 bytes",
        }
    }

    /// The answer: 400 with the reason as the plain-text body, or 426 with
    /// `Sec-WebSocket-Version: 13` (and `Upgrade: websocket`). It does not
    /// close by itself; add [`Response::close`] if the connection should end.
    #[must_use]
    pub fn response(&self) -> Response {
        match self {
            HandshakeError::UnsupportedVersion => Response::upgrade_required(),
            _ => Response::bad_request(self.reason()),
        }
    }
}

impl fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.reason())
    }
}

impl std::error::Error for HandshakeError {}

/// `Sec-WebSocket-Accept` for `key`: base64(SHA-1(key + GUID)) (RFC 6455 §1.3).
#[must_use]
pub fn accept_key(key: &str) -> String {
    let mut sha = Sha1::new();
    sha.update(key.as_bytes());
    sha.update(ACCEPT_GUID);
    STANDARD.encode(sha.finalize())
}

/// Whether `request` asks for a WebSocket (an `Upgrade` header listing
/// `websocket`), whatever else is wrong with it: lets a router tell an upgrade
/// attempt from a plain request.
#[must_use]
pub fn is_upgrade_request(request: &Request) -> bool {
    request.has_token("upgrade", "websocket")
}

/// `audio.twilio.com` as the client spelled it, if any `Sec-WebSocket-Protocol`
/// line offers it (comma- or space-separated, any case).
#[must_use]
pub fn offered_subprotocol(request: &Request) -> Option<String> {
    request
        .headers_all("sec-websocket-protocol")
        .filter_map(|line| std::str::from_utf8(line).ok())
        .flat_map(|line| line.split([',', ' ', '\t']))
        .find(|p| p.eq_ignore_ascii_case(TWILIO_SUBPROTOCOL))
        .map(str::to_owned)
}

/// Checks an upgrade request (see the module docs for the rules and their
/// order).
///
/// # Errors
///
/// The first rule the request breaks, as a [`HandshakeError`].
pub fn check_upgrade(request: &Request) -> Result<Upgrade, HandshakeError> {
    if request.method() != "GET" {
        return Err(HandshakeError::NotGet);
    }
    if request.version != Version::Http11 {
        return Err(HandshakeError::NotHttp11);
    }
    if !is_upgrade_request(request) {
        return Err(HandshakeError::NotWebSocketUpgrade);
    }
    if !request.has_token("connection", "upgrade") {
        return Err(HandshakeError::MissingConnectionUpgrade);
    }
    let mut versions = request.tokens("sec-websocket-version");
    if versions.next() != Some(WEBSOCKET_VERSION) || versions.next().is_some() {
        return Err(HandshakeError::UnsupportedVersion);
    }
    let mut keys = request.headers_all("sec-websocket-key");
    let key = keys.next().ok_or(HandshakeError::MissingKey)?;
    if keys.next().is_some() {
        return Err(HandshakeError::MultipleKeys);
    }
    let key = std::str::from_utf8(key).map_err(|_| HandshakeError::InvalidKey)?;
    // 24 characters is the only length that can hold 16 bytes; checking it
    // first bounds the decoding work on hostile input.
    if key.len() != 24 || STANDARD.decode(key).map(|k| k.len()) != Ok(16) {
        return Err(HandshakeError::InvalidKey);
    }
    Ok(Upgrade {
        key: key.to_owned(),
        subprotocol: offered_subprotocol(request),
    })
}

/// The complete `101 Switching Protocols` for `upgrade`.
///
/// `Sec-WebSocket-Protocol` is written only when `upgrade.subprotocol` is set
/// and is an RFC 9110 token (so a hand-made `Upgrade` cannot split the
/// response).
#[must_use]
pub fn response_101(upgrade: &Upgrade) -> Vec<u8> {
    let mut out = Vec::with_capacity(160);
    out.extend_from_slice(
        b"HTTP/1.1 101 Switching Protocols\r\n\
          Upgrade: websocket\r\n\
          Connection: Upgrade\r\n\
          Sec-WebSocket-Accept: ",
    );
    out.extend_from_slice(upgrade.accept().as_bytes());
    out.extend_from_slice(b"\r\n");
    if let Some(protocol) = upgrade
        .subprotocol
        .as_deref()
        .filter(|p| crate::http::is_token(p))
    {
        out.extend_from_slice(b"Sec-WebSocket-Protocol: ");
        out.extend_from_slice(protocol.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc_6455_accept_example() {
        // RFC 6455 §1.3: SHA-1 b3 7a 4f 2c c0 62 4f 16 90 f6 46 06 cf 38 59 45 b2 be c4 ea.
        assert_eq!(
            accept_key("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn hand_made_subprotocols_cannot_split_the_response() {
        let upgrade = Upgrade {
            key: "dGhlIHNhbXBsZSBub25jZQ==".into(),
            subprotocol: Some("x\r\nSet-Cookie: a=b".into()),
        };
        let wire = response_101(&upgrade);
        assert!(!wire.windows(10).any(|w| w == b"Set-Cookie"));
        assert!(wire.ends_with(b"xOo=\r\n\r\n"));
    }

    #[test]
    fn every_error_has_a_status_and_reason() {
        let all = [
            HandshakeError::NotGet,
            HandshakeError::NotHttp11,
            HandshakeError::NotWebSocketUpgrade,
            HandshakeError::MissingConnectionUpgrade,
            HandshakeError::UnsupportedVersion,
            HandshakeError::MissingKey,
            HandshakeError::MultipleKeys,
            HandshakeError::InvalidKey,
        ];
        for e in all {
            let r = e.response();
            assert_eq!(r.status(), e.status());
            assert!(!e.reason().is_empty());
            assert_eq!(e.to_string(), e.reason());
        }
        assert_eq!(HandshakeError::UnsupportedVersion.status(), 426);
        assert_eq!(
            HandshakeError::UnsupportedVersion
                .response()
                .header_value("sec-websocket-version"),
            Some("13")
        );
    }
}
