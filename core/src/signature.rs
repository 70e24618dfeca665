//! `X-Twilio-Signature`: compute and validate Twilio's request signature.
//!
//! Twilio signs every webhook and the media WebSocket upgrade with
//! HMAC-SHA1 keyed by the account's auth token (docs/protocol.md §5). The contract
//! of this module, matching Twilio's official helper libraries
//! (`twilio-python` `RequestValidator`, `twilio-node` `validateRequest`):
//!
//! 1. The signed string is the full URL Twilio requested, verbatim (scheme to
//!    the end of the query string; host case and percent-encoding matter),
//!    followed, for a form-encoded POST, by every parameter as `name` then
//!    `value` (decoded, no separators), sorted by name in byte order; a
//!    repeated name contributes its values sorted and de-duplicated. A GET
//!    request carries its fields in the query string, so it is validated with
//!    no parameters; so is the WebSocket upgrade.
//! 2. The signature is standard base64 (with padding) of the 20-byte MAC.
//!    [`Validator`] decodes the header and compares MACs in constant time
//!    ([`hmac::Mac::verify_slice`]).
//! 3. Each candidate URL is tried as given and with its port toggled: a URL
//!    without a port is also tried with the scheme's default (`:443` for
//!    `https`/`wss`, `:80` for `http`/`ws`), a URL with a port also without it
//!    (any port, as both official libraries strip it), because Twilio's own
//!    signing is not consistent about ports.
//! 4. A JSON body is covered through the URL: Twilio appends
//!    `bodySHA256=<lower-case hex SHA-256 of the raw body>` to the query and
//!    signs that URL with no parameters; the body is then checked against the
//!    hash. See [`Validator::validate_json`].
//! 5. Several auth tokens can be live at once (primary and secondary during a
//!    rotation); any of them may match. Errors list the URLs tried, never a
//!    token.
//!
//! ```
//! use callstream_core::signature::{self, SignatureError, Validator};
//!
//! // Twilio's worked example (docs/protocol.md §5).
//! let url = "https://mycompany.com/myapp.php?foo=1&bar=2";
//! let params = [
//!     ("CallSid", "CA1234567890ABCDE"),
//!     ("Caller", "+14158675309"),
//!     ("Digits", "1234"),
//!     ("From", "+14158675309"),
//!     ("To", "+18005551212"),
//! ];
//! assert_eq!(signature::compute("12345", url, &params), "RSOYDt4T1cUTdK1PDd93/VVr8B8=");
//!
//! // A validator holding the primary and the secondary token.
//! let validator = Validator::new(vec!["rotated-out".into(), "12345".into()]);
//! assert_eq!(validator.validate(&[url], &params, "RSOYDt4T1cUTdK1PDd93/VVr8B8="), Ok(()));
//! // Twilio signed with ":443": still valid, the port variant is tried.
//! assert_eq!(validator.validate(&[url], &params, "kvajT1Ptam85bY51eRf/AJRuM3w="), Ok(()));
//! // Missing header, or a parameter changed in transit.
//! assert_eq!(validator.validate(&[url], &params, None), Err(SignatureError::Missing));
//! let forged = [("CallSid", "CA1234567890ABCDE"), ("Digits", "9999")];
//! let err = validator.validate(&[url], &forged, "RSOYDt4T1cUTdK1PDd93/VVr8B8=").unwrap_err();
//! assert!(matches!(err, SignatureError::Mismatch { ref urls_tried } if urls_tried.len() == 2));
//! ```

use std::borrow::Cow;
use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha1::Sha1;
use sha2::{Digest, Sha256};

type HmacSha1 = Hmac<Sha1>;
type HmacSha256 = Hmac<Sha256>;

/// The header Twilio sends the signature in (HTTP header names are
/// case-insensitive; Twilio writes it in lower case on WebSocket upgrades).
pub const HEADER: &str = "X-Twilio-Signature";

/// The query parameter carrying the SHA-256 of a JSON body.
pub const BODY_SHA256_PARAM: &str = "bodySHA256";

/// Longest signature header accepted before decoding, in bytes. A valid one is
/// 28 (base64 of a 20-byte HMAC-SHA1); anything much longer is not worth
/// decoding.
pub const MAX_SIGNATURE_LEN: usize = 64;

/// Length of the longest MAC (HMAC-SHA256) in bytes.
const MAX_MAC_LEN: usize = 32;

/// The hash a signature is made with. Auth-token signatures are always
/// HMAC-SHA1; a shared key may sign with either, named in the
/// `X-Twilio-Webhooks-Signature-Settings` header (docs/protocol.md §5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// `HMAC_SHA1`: 20-byte MAC, 28 characters of base64.
    HmacSha1,
    /// `HMAC_SHA256`: 32-byte MAC, 44 characters of base64.
    HmacSha256,
}

impl Algorithm {
    /// The name Twilio writes in the settings header, e.g. `HMAC_SHA256`.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::HmacSha1 => "HMAC_SHA1",
            Algorithm::HmacSha256 => "HMAC_SHA256",
        }
    }

    /// The algorithm a settings header names. The name is compared without
    /// regard to ASCII case, as `twilio-python` upper-cases it before looking
    /// it up; anything else is `None` (a refusal, never a fallback).
    #[must_use]
    pub fn from_name(name: &str) -> Option<Algorithm> {
        [Algorithm::HmacSha1, Algorithm::HmacSha256]
            .into_iter()
            .find(|a| a.name().eq_ignore_ascii_case(name))
    }

    /// Length of the MAC in bytes.
    #[must_use]
    pub fn mac_len(self) -> usize {
        match self {
            Algorithm::HmacSha1 => 20,
            Algorithm::HmacSha256 => 32,
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a request's signature was refused. The engine answers 403 (see
/// [`SignatureError::status`]); no variant ever holds a token.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SignatureError {
    /// The validator holds no auth token, so nothing can be validated; a
    /// server configuration error.
    NoAuthToken,
    /// The request has no (or an empty) `X-Twilio-Signature` header.
    Missing,
    /// The header is not standard padded base64 of a MAC of the right
    /// length (20 bytes for HMAC-SHA1, 32 for HMAC-SHA256).
    Malformed {
        /// What is wrong with it.
        reason: &'static str,
    },
    /// No token signs any candidate URL with these parameters to this value.
    Mismatch {
        /// Every URL tried, port variants included, in the order tried.
        urls_tried: Vec<String>,
    },
    /// A JSON body, but no candidate URL carries `bodySHA256`.
    BodyHashMissing {
        /// The URLs looked at.
        urls_tried: Vec<String>,
    },
    /// The signature over the URL is valid, but the body's SHA-256 is not
    /// the `bodySHA256` it names: the body was changed.
    BodyHashMismatch {
        /// The URL whose signature matched.
        url: String,
    },
}

impl SignatureError {
    /// The HTTP status to answer with: 500 when no token is configured (the
    /// server's fault), 403 otherwise.
    #[must_use]
    pub fn status(&self) -> u16 {
        match self {
            SignatureError::NoAuthToken => 500,
            _ => 403,
        }
    }
}

impl fmt::Display for SignatureError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SignatureError::NoAuthToken => write!(f, "no auth token configured to validate with"),
            SignatureError::Missing => write!(f, "missing X-Twilio-Signature header"),
            SignatureError::Malformed { reason } => {
                write!(f, "malformed X-Twilio-Signature: {reason}")
            }
            SignatureError::Mismatch { urls_tried } => write!(
                f,
                "X-Twilio-Signature matches none of the URLs tried: {}",
                urls_tried.join(", ")
            ),
            SignatureError::BodyHashMissing { urls_tried } => write!(
                f,
                "JSON body but no {BODY_SHA256_PARAM} in the URLs: {}",
                urls_tried.join(", ")
            ),
            SignatureError::BodyHashMismatch { url } => write!(
                f,
                "signature valid for {url} but the body does not match its {BODY_SHA256_PARAM}"
            ),
        }
    }
}

impl std::error::Error for SignatureError {}

/// The signature Twilio would send for `url` and form `params` under `token`
/// (standard base64 with padding).
///
/// Parameters may come in any order and repeat; they are sorted by name then
/// value (byte order) and exact duplicates dropped, as in the module docs.
#[must_use]
pub fn compute<K: AsRef<str>, V: AsRef<str>>(token: &str, url: &str, params: &[(K, V)]) -> String {
    compute_with(Algorithm::HmacSha1, token, url, params)
}

/// The signature for `url` and form `params` keyed with `key` (an auth token
/// or a shared key's secret) under `algorithm`: the same signed string as
/// [`compute`], only the key and the hash change.
#[must_use]
pub fn compute_with<K: AsRef<str>, V: AsRef<str>>(
    algorithm: Algorithm,
    key: &str,
    url: &str,
    params: &[(K, V)],
) -> String {
    let sorted = sorted_params(params);
    let mut out = [0u8; MAX_MAC_LEN];
    let n = Key::new(algorithm, key).sign(url, &sorted, &mut out);
    STANDARD.encode(out.get(..n).unwrap_or_default())
}

/// The signature for `url` with no parameters: a WebSocket upgrade, a GET
/// webhook, or a JSON webhook whose URL already carries `bodySHA256`.
#[must_use]
pub fn compute_url(token: &str, url: &str) -> String {
    compute::<&str, &str>(token, url, &[])
}

/// Lower-case hex SHA-256 of `body`: the `bodySHA256` value for a JSON body.
#[must_use]
pub fn body_sha256(body: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let digest = Sha256::digest(body);
    let mut out = String::with_capacity(64);
    for byte in digest {
        out.push(char::from(HEX[usize::from(byte >> 4)]));
        out.push(char::from(HEX[usize::from(byte & 0xF)]));
    }
    out
}

/// `url` with `bodySHA256=<hash of body>` appended to its query, as Twilio
/// sends a JSON webhook (useful to sign test requests).
#[must_use]
pub fn with_body_sha256(url: &str, body: &[u8]) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}{BODY_SHA256_PARAM}={}", body_sha256(body))
}

/// Validates signatures against one or more keys (auth tokens, or shared
/// keys' secrets) under one [`Algorithm`].
///
/// Keys are keyed once, at construction. `Debug` shows how many there are,
/// never what they are.
#[derive(Clone)]
pub struct Validator {
    algorithm: Algorithm,
    keys: Vec<Key>,
}

impl fmt::Debug for Validator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Validator")
            .field("tokens", &self.keys.len())
            .finish()
    }
}

impl Validator {
    /// A validator accepting an HMAC-SHA1 signature made with any of
    /// `tokens` (primary first, then the secondary during a rotation). Empty
    /// tokens are dropped: anyone could sign with an empty key.
    #[must_use]
    pub fn new(tokens: Vec<String>) -> Validator {
        Validator::with_algorithm(Algorithm::HmacSha1, &tokens)
    }

    /// A validator accepting a signature made under `algorithm` with any of
    /// `keys`. Empty keys are dropped, as in [`Validator::new`].
    #[must_use]
    pub fn with_algorithm<S: AsRef<str>>(algorithm: Algorithm, keys: &[S]) -> Validator {
        let keys = keys
            .iter()
            .map(AsRef::as_ref)
            .filter(|k| !k.is_empty())
            .map(|k| Key::new(algorithm, k))
            .collect();
        Validator { algorithm, keys }
    }

    /// The algorithm signatures are checked with.
    #[must_use]
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// How many tokens the validator holds.
    #[must_use]
    pub fn token_count(&self) -> usize {
        self.keys.len()
    }

    /// Validates a form-encoded (or parameterless) request: `signature` (the
    /// header's value, or `None` when absent) must be what some token gives
    /// for some URL in `urls` or its port variant, with `params`.
    ///
    /// `urls` are the candidates from
    /// [`public_url::signed_urls`](crate::public_url::signed_urls), most
    /// likely first. `params` are every decoded form field received, in any
    /// order, untrimmed; pass none for a GET or a WebSocket upgrade.
    pub fn validate<'s, U, K, V>(
        &self,
        urls: &[U],
        params: &[(K, V)],
        signature: impl Into<Option<&'s str>>,
    ) -> Result<(), SignatureError>
    where
        U: AsRef<str>,
        K: AsRef<str>,
        V: AsRef<str>,
    {
        let mac = self.decode(signature.into())?;
        let sorted = sorted_params(params);
        match self.find(urls, &sorted, &mac) {
            Some(_) => Ok(()),
            None => Err(SignatureError::Mismatch {
                urls_tried: candidates(urls),
            }),
        }
    }

    /// Validates a request with a JSON body (`Content-Type: application/json`).
    ///
    /// Twilio puts `bodySHA256=<lower-case hex SHA-256 of the raw body>` in
    /// the URL's query and signs the URL, that query included, with no
    /// parameters; the body is then checked against the hash. This follows
    /// `twilio-python` (`RequestValidator.validate` with a string body:
    /// `compute_hash(body) == query["bodySHA256"]` and the signature over the
    /// URL with `params = {}`) and `twilio-node` (`validateRequestWithBody`:
    /// `validateRequest(token, sig, url, {})` and `validateBody`), and their
    /// test vector (see `core/tests/signature_vectors.rs`).
    pub fn validate_json<'s, U: AsRef<str>>(
        &self,
        urls: &[U],
        body: &[u8],
        signature: impl Into<Option<&'s str>>,
    ) -> Result<(), SignatureError> {
        let mac = self.decode(signature.into())?;
        // A port variant keeps the query, so looking at the URLs as given is enough.
        if !urls
            .iter()
            .any(|u| query_param(u.as_ref(), BODY_SHA256_PARAM).is_some())
        {
            return Err(SignatureError::BodyHashMissing {
                urls_tried: candidates(urls),
            });
        }
        let Some(url) = self.find(urls, &[], &mac) else {
            return Err(SignatureError::Mismatch {
                urls_tried: candidates(urls),
            });
        };
        // The hash is not secret (it is in the URL), so a plain comparison.
        if query_param(&url, BODY_SHA256_PARAM) == Some(body_sha256(body).as_str()) {
            Ok(())
        } else {
            Err(SignatureError::BodyHashMismatch {
                url: url.into_owned(),
            })
        }
    }

    /// The decoded MAC from the header value (its first
    /// [`Algorithm::mac_len`] bytes are the MAC).
    fn decode(&self, signature: Option<&str>) -> Result<[u8; MAX_MAC_LEN], SignatureError> {
        if self.keys.is_empty() {
            return Err(SignatureError::NoAuthToken);
        }
        let signature = match signature {
            None | Some("") => return Err(SignatureError::Missing),
            Some(s) => s,
        };
        if signature.len() > MAX_SIGNATURE_LEN {
            return Err(SignatureError::Malformed {
                reason: "longer than a base64 HMAC",
            });
        }
        let mut buf = [0u8; MAX_SIGNATURE_LEN];
        // The standard engine wants canonical padding and zero trailing bits,
        // so each 20-byte MAC has exactly one accepted spelling.
        let n =
            STANDARD
                .decode_slice(signature, &mut buf)
                .map_err(|_| SignatureError::Malformed {
                    reason: "not standard padded base64",
                })?;
        let len = self.algorithm.mac_len();
        let mut mac = [0u8; MAX_MAC_LEN];
        match (buf.get(..n), mac.get_mut(..len)) {
            (Some(bytes), Some(slot)) if n == len => slot.copy_from_slice(bytes),
            _ => {
                return Err(SignatureError::Malformed {
                    reason: match self.algorithm {
                        Algorithm::HmacSha1 => "does not decode to 20 bytes",
                        Algorithm::HmacSha256 => "does not decode to 32 bytes",
                    },
                });
            }
        }
        Ok(mac)
    }

    /// The first URL, as given or with its port toggled, that some key signs
    /// to `mac`. The URLs as given are tried first, so the usual case costs
    /// no allocation; the port variants are built only when those fail.
    fn find<'u, U: AsRef<str>>(
        &self,
        urls: &'u [U],
        sorted: &[(&str, &str)],
        mac: &[u8; MAX_MAC_LEN],
    ) -> Option<Cow<'u, str>> {
        let mac = mac.get(..self.algorithm.mac_len()).unwrap_or_default();
        let signs = |url: &str| self.keys.iter().any(|key| key.verifies(url, sorted, mac));
        if let Some(url) = urls.iter().map(AsRef::as_ref).find(|u| signs(u)) {
            return Some(Cow::Borrowed(url));
        }
        urls.iter()
            .filter_map(|u| port_variant(u.as_ref()))
            .find(|v| signs(v))
            .map(Cow::Owned)
    }
}

/// A MAC keyed once; cloned per message.
#[derive(Clone)]
enum Key {
    Sha1(HmacSha1),
    Sha256(HmacSha256),
}

impl Key {
    fn new(algorithm: Algorithm, key: &str) -> Key {
        // HMAC accepts a key of any length (longer ones are hashed), so
        // `new_from_slice` cannot fail for it.
        let bytes = key.as_bytes();
        match algorithm {
            Algorithm::HmacSha1 => match HmacSha1::new_from_slice(bytes) {
                Ok(mac) => Key::Sha1(mac),
                Err(_) => unreachable!("HMAC takes keys of any length"),
            },
            Algorithm::HmacSha256 => match HmacSha256::new_from_slice(bytes) {
                Ok(mac) => Key::Sha256(mac),
                Err(_) => unreachable!("HMAC takes keys of any length"),
            },
        }
    }

    /// Writes the MAC of the signed string into `out`; returns its length.
    fn sign(&self, url: &str, sorted: &[(&str, &str)], out: &mut [u8; MAX_MAC_LEN]) -> usize {
        fn run<M: Mac + Clone>(m: &M, url: &str, sorted: &[(&str, &str)], out: &mut [u8]) -> usize {
            let mut m = m.clone();
            feed(&mut m, url, sorted);
            let bytes = m.finalize().into_bytes();
            let n = bytes.len().min(out.len());
            if let (Some(dst), Some(src)) = (out.get_mut(..n), bytes.get(..n)) {
                dst.copy_from_slice(src);
            }
            n
        }
        match self {
            Key::Sha1(m) => run(m, url, sorted, out),
            Key::Sha256(m) => run(m, url, sorted, out),
        }
    }

    /// Whether this key signs the string to `mac`, compared in constant time.
    fn verifies(&self, url: &str, sorted: &[(&str, &str)], mac: &[u8]) -> bool {
        fn run<M: Mac + Clone>(m: &M, url: &str, sorted: &[(&str, &str)], mac: &[u8]) -> bool {
            let mut m = m.clone();
            feed(&mut m, url, sorted);
            m.verify_slice(mac).is_ok()
        }
        match self {
            Key::Sha1(m) => run(m, url, sorted, mac),
            Key::Sha256(m) => run(m, url, sorted, mac),
        }
    }
}

/// Parameters sorted by name then value, byte order, exact duplicates dropped.
fn sorted_params<K: AsRef<str>, V: AsRef<str>>(params: &[(K, V)]) -> Vec<(&str, &str)> {
    let mut sorted: Vec<(&str, &str)> = params
        .iter()
        .map(|(k, v)| (k.as_ref(), v.as_ref()))
        .collect();
    // `str`'s order is byte order, which for UTF-8 is code-point order too.
    sorted.sort_unstable();
    sorted.dedup();
    sorted
}

fn feed<M: Mac>(mac: &mut M, url: &str, sorted: &[(&str, &str)]) {
    mac.update(url.as_bytes());
    for (name, value) in sorted {
        mac.update(name.as_bytes());
        mac.update(value.as_bytes());
    }
}

/// Each URL followed by its port variant, without repeats, in order.
fn candidates<U: AsRef<str>>(urls: &[U]) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(urls.len() * 2);
    for url in urls {
        let url = url.as_ref();
        for candidate in [Some(url.to_owned()), port_variant(url)]
            .into_iter()
            .flatten()
        {
            if !out.contains(&candidate) {
                out.push(candidate);
            }
        }
    }
    out
}

/// `url` with its explicit port removed, or, when it has none, with the
/// scheme's default port added (`None` for other schemes or no authority).
pub fn port_variant(url: &str) -> Option<String> {
    let scheme_end = url.find("://")?;
    let scheme = url.get(..scheme_end)?;
    let default = if scheme.eq_ignore_ascii_case("https") || scheme.eq_ignore_ascii_case("wss") {
        "443"
    } else if scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("ws") {
        "80"
    } else {
        return None;
    };
    let auth_start = scheme_end + 3;
    let rest = url.get(auth_start..)?;
    let auth_end = auth_start + rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = url.get(auth_start..auth_end)?;
    if authority.is_empty() {
        return None;
    }
    let host_start = authority.rfind('@').map_or(0, |i| i + 1);
    let host_port = authority.get(host_start..)?;
    let colon = if host_port.starts_with('[') {
        // IPv6 literal: a port can only follow the closing bracket.
        host_port
            .find(']')
            .filter(|&i| host_port.get(i + 1..i + 2) == Some(":"))
            .map(|i| i + 1)
    } else {
        host_port.rfind(':')
    };
    let (before, after) = match colon {
        // Remove ":port".
        Some(c) => (
            url.get(..auth_start + host_start + c)?,
            url.get(auth_end..)?,
        ),
        None => {
            let (before, after) = url.split_at(auth_end);
            return Some(format!("{before}:{default}{after}"));
        }
    };
    Some(format!("{before}{after}"))
}

/// The raw value of the first `name=` pair in `url`'s query, if any.
fn query_param<'u>(url: &'u str, name: &str) -> Option<&'u str> {
    let query = url.split_once('?')?.1;
    let query = query.split_once('#').map_or(query, |(q, _)| q);
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == name).then_some(v)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_variant_table() {
        let cases: &[(&str, Option<&str>)] = &[
            (
                "https://a.example/x?y=1",
                Some("https://a.example:443/x?y=1"),
            ),
            ("https://a.example:443/x", Some("https://a.example/x")),
            ("https://a.example:1234/x", Some("https://a.example/x")),
            ("http://a.example/x", Some("http://a.example:80/x")),
            ("http://a.example:80", Some("http://a.example")),
            ("wss://a.example/ws", Some("wss://a.example:443/ws")),
            ("ws://a.example/ws", Some("ws://a.example:80/ws")),
            ("WSS://a.example", Some("WSS://a.example:443")),
            ("https://a.example?q=1", Some("https://a.example:443?q=1")),
            ("https://[::1]/x", Some("https://[::1]:443/x")),
            ("https://[::1]:8443/x", Some("https://[::1]/x")),
            (
                "https://u:p@a.example/x",
                Some("https://u:p@a.example:443/x"),
            ),
            ("https://u:p@a.example:9/x", Some("https://u:p@a.example/x")),
            ("ftp://a.example/x", None),
            ("https:///x", None),
            ("not a url", None),
            ("", None),
        ];
        for (url, want) in cases {
            assert_eq!(port_variant(url).as_deref(), *want, "{url}");
        }
    }

    #[test]
    fn query_param_table() {
        let u = "https://a.example/x?a=1&bodySHA256=ab&c#bodySHA256=zz";
        assert_eq!(query_param(u, "bodySHA256"), Some("ab"));
        assert_eq!(query_param(u, "c"), Some(""));
        assert_eq!(query_param(u, "a"), Some("1"));
        assert_eq!(query_param(u, "zz"), None);
        assert_eq!(query_param("https://a.example/x", "a"), None);
    }

    #[test]
    fn signature_length_limit() {
        let v = Validator::new(vec!["t".into()]);
        let url = ["https://a.example/"];
        let no: [(&str, &str); 0] = [];
        let long = "A".repeat(MAX_SIGNATURE_LEN + 1);
        assert!(matches!(
            v.validate(&url, &no, long.as_str()),
            Err(SignatureError::Malformed { .. })
        ));
        // At the limit it is decoded (and is the wrong length).
        let at = "A".repeat(MAX_SIGNATURE_LEN);
        assert!(matches!(
            v.validate(&url, &no, at.as_str()),
            Err(SignatureError::Malformed {
                reason: "does not decode to 20 bytes"
            })
        ));
    }

    #[test]
    fn malformed_signatures() {
        let v = Validator::new(vec!["t".into()]);
        let url = ["https://a.example/"];
        let no: [(&str, &str); 0] = [];
        let good = compute_url("t", url[0]);
        assert_eq!(v.validate(&url, &no, good.as_str()), Ok(()));
        for bad in [
            good.trim_end_matches('='),      // padding dropped
            &good[..good.len() - 4],         // truncated: 15 bytes
            "!!!!!!!!!!!!!!!!!!!!!!!!!!!=",  // not base64
            " RSOYDt4T1cUTdK1PDd93/VVr8B8=", // leading space
            "RSOYDt4T1cUTdK1PDd93_VVr8B8=",  // URL-safe alphabet
            "RSOYDt4T1cUTdK1PDd93/VVr8B9=",  // non-zero trailing bits
        ] {
            assert!(
                matches!(
                    v.validate(&url, &no, bad),
                    Err(SignatureError::Malformed { .. })
                ),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn empty_tokens_are_dropped() {
        let v = Validator::new(vec![String::new()]);
        assert_eq!(v.token_count(), 0);
        let sig = compute_url("", "https://a.example/");
        let no: [(&str, &str); 0] = [];
        assert_eq!(
            v.validate(&["https://a.example/"], &no, sig.as_str()),
            Err(SignatureError::NoAuthToken)
        );
        assert_eq!(SignatureError::NoAuthToken.status(), 500);
        assert_eq!(SignatureError::Missing.status(), 403);
    }

    #[test]
    fn debug_never_shows_a_token() {
        let v = Validator::new(vec!["super-secret-token".into()]);
        let dbg = format!("{v:?}");
        assert_eq!(dbg, "Validator { tokens: 1 }");
    }

    #[test]
    fn body_sha256_is_lower_hex() {
        assert_eq!(
            body_sha256(b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
