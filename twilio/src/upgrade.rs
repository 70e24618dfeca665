//! The WebSocket upgrade exactly as Twilio sends it (docs/protocol.md §1), and
//! Twilio's reading of the answer: anything but a proper `101` is error 31920.
//!
//! Observed on real calls: lower-case header names in this order,
//! `user-agent: Twilio.TmeWs/1.0`, `accept-encoding: gzip`, no `Origin`, no
//! `Sec-WebSocket-Protocol`, no extensions, and `x-twilio-signature` over the
//! `wss://` URL of the `<Stream>` (public host and path, no parameters).

use base64::Engine as _;
use sha1::Digest as _;

use crate::response::Head;
use crate::signature;

/// The user agent of Twilio's media stream client.
pub const USER_AGENT: &str = "Twilio.TmeWs/1.0";

/// Headers a proxy in front of the server adds (Cloud Run, a load balancer);
/// each is sent only when set.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Forwarded {
    /// `x-forwarded-for`: the client's address.
    pub for_: Option<String>,
    /// `x-forwarded-host`: the public host, when `host` is an internal one.
    pub host: Option<String>,
    /// `x-forwarded-proto`: `https` behind a TLS front.
    pub proto: Option<String>,
}

/// One upgrade request, as Twilio would open a `<Stream url>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upgrade {
    /// The `host` header: the public host of the `<Stream url>`.
    pub host: String,
    /// The path requested.
    pub path: String,
    /// The 16 bytes behind `sec-websocket-key`.
    pub key: [u8; 16],
    /// Sign with this auth token (`None`: no `x-twilio-signature`).
    pub token: Option<String>,
    /// Offer this `sec-websocket-protocol`. Twilio offers none; community code
    /// believes it asks for `audio.twilio.com`, so servers are tested with both.
    pub protocol: Option<String>,
    /// Proxy headers, when a front sits between Twilio and the server.
    pub forwarded: Option<Forwarded>,
    /// The URL signed: the `<Stream url>` exactly as written in the TwiML.
    /// `None`: `wss://`, the public host and the path.
    pub stream_url: Option<String>,
}

/// Why Twilio gives up on an answer: error 31920, the handshake failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HandshakeError {
    /// Any status but `101`, a redirect included.
    Status(u16),
    /// A header the `101` must carry exactly once is missing, repeated or wrong.
    Header(&'static str),
    /// The server named a subprotocol that was not offered (RFC 6455 §4.1).
    UnofferedProtocol(String),
}

impl HandshakeError {
    /// Twilio's error code for it.
    #[must_use]
    pub fn code(&self) -> u16 {
        31920
    }
}

impl std::fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HandshakeError::Status(s) => write!(f, "31920: answered {s}, not 101"),
            HandshakeError::Header(h) => write!(f, "31920: `{h}` missing, repeated or wrong"),
            HandshakeError::UnofferedProtocol(p) => {
                write!(f, "31920: subprotocol {p:?} was never offered")
            }
        }
    }
}

impl std::error::Error for HandshakeError {}

impl Upgrade {
    /// Twilio opening `path` on `host`, signed with `token`; the key is
    /// derived from `n` so that runs repeat.
    #[must_use]
    pub fn new(host: &str, path: &str, token: Option<&str>, n: u8) -> Upgrade {
        Upgrade {
            host: host.to_owned(),
            path: path.to_owned(),
            key: [n; 16],
            token: token.map(str::to_owned),
            protocol: None,
            forwarded: None,
            stream_url: None,
        }
    }

    /// The URL Twilio signs: the `<Stream url>` when set, else `wss://`, the
    /// public host, the path.
    #[must_use]
    pub fn url(&self) -> String {
        if let Some(url) = &self.stream_url {
            return url.clone();
        }
        let host = self
            .forwarded
            .as_ref()
            .and_then(|f| f.host.as_ref())
            .unwrap_or(&self.host);
        format!("wss://{host}{}", self.path)
    }

    /// `sec-websocket-key` as sent.
    #[must_use]
    pub fn key_base64(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(self.key)
    }

    /// The request bytes, header order and case as Twilio sends them.
    #[must_use]
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut req = format!(
            "GET {} HTTP/1.1\r\nhost: {}\r\nuser-agent: {USER_AGENT}\r\nconnection: Upgrade\r\nupgrade: websocket\r\nsec-websocket-key: {}\r\nsec-websocket-version: 13\r\n",
            self.path,
            self.host,
            self.key_base64()
        );
        if let Some(token) = &self.token {
            let sig = signature::sign(token, &self.url(), &[]);
            req.push_str(&format!("x-twilio-signature: {sig}\r\n"));
        }
        if let Some(p) = &self.protocol {
            req.push_str(&format!("sec-websocket-protocol: {p}\r\n"));
        }
        req.push_str("accept-encoding: gzip\r\n");
        if let Some(f) = &self.forwarded {
            let headers = [
                ("x-forwarded-for", &f.for_),
                ("x-forwarded-host", &f.host),
                ("x-forwarded-proto", &f.proto),
            ];
            for (name, value) in headers {
                if let Some(value) = value {
                    req.push_str(&format!("{name}: {value}\r\n"));
                }
            }
        }
        req.push_str("\r\n");
        req.into_bytes()
    }

    /// Checks the answer's head as a WebSocket client must (RFC 6455 §4.1):
    /// `101`, `Upgrade: websocket`, `Connection: Upgrade` and the right
    /// `Sec-WebSocket-Accept`, each once, and a subprotocol only if offered.
    /// Returns the subprotocol the server chose.
    ///
    /// # Errors
    /// The [`HandshakeError`] Twilio would log as 31920.
    pub fn check_answer(&self, head: &Head) -> Result<Option<String>, HandshakeError> {
        if head.status != 101 {
            return Err(HandshakeError::Status(head.status));
        }
        let once = |name: &'static str, ok: &dyn Fn(&str) -> bool| match (
            head.count(name),
            head.header(name),
        ) {
            (1, Some(v)) if ok(v) => Ok(()),
            _ => Err(HandshakeError::Header(name)),
        };
        once("upgrade", &|v| v.eq_ignore_ascii_case("websocket"))?;
        once("connection", &|v| {
            v.split(',')
                .any(|o| o.trim().eq_ignore_ascii_case("upgrade"))
        })?;
        let accept = accept_key(&self.key_base64());
        once("sec-websocket-accept", &|v| v == accept)?;
        match head.header("sec-websocket-protocol") {
            None => Ok(None),
            Some(chosen) => {
                let offered = self
                    .protocol
                    .as_deref()
                    .is_some_and(|o| o.split([',', ' ']).any(|p| p.eq_ignore_ascii_case(chosen)));
                if offered && head.count("sec-websocket-protocol") == 1 {
                    Ok(Some(chosen.to_owned()))
                } else {
                    Err(HandshakeError::UnofferedProtocol(chosen.to_owned()))
                }
            }
        }
    }
}

/// `Sec-WebSocket-Accept` for a key (RFC 6455 §4.2.2), computed here rather
/// than by the server's code it checks.
#[must_use]
pub fn accept_key(key_base64: &str) -> String {
    let mut sha = sha1::Sha1::new();
    sha.update(key_base64.as_bytes());
    sha.update(b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
    base64::engine::general_purpose::STANDARD.encode(sha.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::response::parse_head;

    #[test]
    fn request_is_byte_for_byte_what_twilio_sends() {
        let up = Upgrade::new("example.ngrok.app", "/ws/twilio-media", Some("12345"), 1);
        let sig = signature::sign("12345", "wss://example.ngrok.app/ws/twilio-media", &[]);
        let want = format!(
            "GET /ws/twilio-media HTTP/1.1\r\nhost: example.ngrok.app\r\nuser-agent: Twilio.TmeWs/1.0\r\nconnection: Upgrade\r\nupgrade: websocket\r\nsec-websocket-key: AQEBAQEBAQEBAQEBAQEBAQ==\r\nsec-websocket-version: 13\r\nx-twilio-signature: {sig}\r\naccept-encoding: gzip\r\n\r\n"
        );
        assert_eq!(String::from_utf8(up.to_bytes()).unwrap(), want);
        let unsigned = Upgrade::new("h", "/", None, 1).to_bytes();
        assert!(
            !String::from_utf8(unsigned)
                .unwrap()
                .contains("x-twilio-signature")
        );
    }

    #[test]
    fn behind_a_proxy_the_public_host_is_signed() {
        let mut up = Upgrade::new("10.0.0.7:8080", "/ws", Some("12345"), 2);
        up.forwarded = Some(Forwarded {
            for_: Some("54.172.60.1".into()),
            host: Some("bot.example.com".into()),
            proto: Some("https".into()),
        });
        assert_eq!(up.url(), "wss://bot.example.com/ws");
        let text = String::from_utf8(up.to_bytes()).unwrap();
        let sig = signature::sign("12345", "wss://bot.example.com/ws", &[]);
        assert!(text.contains(&format!("x-twilio-signature: {sig}\r\n")));
        assert!(text.ends_with(
            "accept-encoding: gzip\r\nx-forwarded-for: 54.172.60.1\r\nx-forwarded-host: bot.example.com\r\nx-forwarded-proto: https\r\n\r\n"
        ));
        up.forwarded = Some(Forwarded {
            proto: Some("https".into()),
            ..Forwarded::default()
        });
        assert_eq!(up.url(), "wss://10.0.0.7:8080/ws");
        up.stream_url = Some("wss://bot.example.com/ws/".into());
        let sig = signature::sign("12345", "wss://bot.example.com/ws/", &[]);
        assert!(String::from_utf8(up.to_bytes()).unwrap().contains(&sig));
        let text = String::from_utf8(up.to_bytes()).unwrap();
        assert!(text.ends_with("accept-encoding: gzip\r\nx-forwarded-proto: https\r\n\r\n"));
    }

    #[test]
    fn rfc_6455_sample_accept_key() {
        assert_eq!(
            accept_key("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    fn head(extra: &str, up: &Upgrade) -> Head {
        let text = format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n{extra}\r\n",
            accept_key(&up.key_base64())
        );
        parse_head(text.as_bytes()).unwrap().unwrap()
    }

    #[test]
    fn answer_checks() {
        let mut up = Upgrade::new("h", "/ws", None, 3);
        assert_eq!(up.check_answer(&head("", &up)), Ok(None));
        assert_eq!(
            up.check_answer(&head("Upgrade: websocket\r\n", &up)),
            Err(HandshakeError::Header("upgrade"))
        );
        assert_eq!(
            up.check_answer(&head("Sec-WebSocket-Protocol: audio.twilio.com\r\n", &up)),
            Err(HandshakeError::UnofferedProtocol("audio.twilio.com".into()))
        );
        up.protocol = Some("audio.twilio.com".into());
        assert_eq!(
            up.check_answer(&head("Sec-WebSocket-Protocol: audio.twilio.com\r\n", &up)),
            Ok(Some("audio.twilio.com".into()))
        );
        let wrong_key = Upgrade::new("h", "/ws", None, 4);
        assert_eq!(
            up.check_answer(&head("", &wrong_key)),
            Err(HandshakeError::Header("sec-websocket-accept"))
        );
        let redirect = parse_head(b"HTTP/1.1 308 Permanent Redirect\r\n\r\n")
            .unwrap()
            .unwrap();
        let e = up.check_answer(&redirect).unwrap_err();
        assert_eq!((e.clone(), e.code()), (HandshakeError::Status(308), 31920));
    }
}
