//! The public URL: what Twilio requested, rebuilt on a server that may sit
//! behind a TLS-terminating proxy.
//!
//! Twilio signs the URL it requested (docs/protocol.md §5), and the TwiML it gets
//! back must name URLs it can reach. Behind Cloud Run, a load balancer or a
//! tunnel, the server itself sees plain HTTP and, often, an internal `Host`.
//! The contract of this module:
//!
//! - A configured [`PublicBase`] (e.g. `https://voice.example.com`, optionally
//!   with a path prefix) always wins.
//! - With none, `X-Forwarded-Proto` / `X-Forwarded-Host` are used only when the
//!   caller says they are trusted (a proxy it controls sets them), taking the
//!   first value of a comma-separated list; `https` becomes `wss` for a
//!   WebSocket upgrade, `http` becomes `ws`. RFC 7239 `Forwarded` (`proto=`,
//!   `host=` of its first element, [`parse_forwarded`]) is read the same way
//!   under the same trust; when it and an `X-Forwarded-*` header disagree the
//!   request is refused ([`UrlError::ForwardedConflict`]).
//! - Otherwise the URL is built from `Host`, only after [`valid_host`] accepts
//!   it. A host that fails is an error (the engine answers 400): it is never
//!   reflected into TwiML or a URL. Whether TLS ended in front of the server
//!   is then unknown, so [`signed_urls`] tries both schemes and
//!   [`request_base`] (the base for TwiML) assumes `https`/`wss`.
//!
//! [`signed_urls`] gives the candidates for signature validation;
//! [`request_base`] gives the [`PublicBase`] to write URLs into TwiML with.
//! Both follow the same order, so the `<Stream url>` the engine writes is
//! among the URLs it accepts a signature for.
//!
//! ```
//! use callstream_core::public_url::{signed_urls, PublicBase, RequestParts};
//!
//! let base = PublicBase::parse("https://voice.example.com/")?;
//! assert_eq!(base.http_url("/webhook/incoming_call"), "https://voice.example.com/webhook/incoming_call");
//! assert_eq!(base.ws_url("/ws/twilio-media"), "wss://voice.example.com/ws/twilio-media");
//!
//! // Cloud Run: no base configured, the front says https, the proxy is trusted.
//! let req = RequestParts {
//!     path_and_query: "/ws/twilio-media",
//!     host: Some("voice-abc123-uc.a.run.app"),
//!     forwarded_proto: Some("https"),
//!     forwarded_host: None,
//!     forwarded: None,
//!     websocket: true,
//! };
//! assert_eq!(
//!     signed_urls(None, &req, true)?,
//!     [
//!         "wss://voice-abc123-uc.a.run.app/ws/twilio-media",
//!         "wss://voice-abc123-uc.a.run.app/ws/twilio-media/",
//!     ]
//! );
//! # Ok::<(), callstream_core::public_url::UrlError>(())
//! ```

use std::fmt;
use std::net::Ipv6Addr;

/// Longest public base URL [`PublicBase::parse`] accepts, in bytes.
pub const MAX_BASE_URL_BYTES: usize = 2048;

/// Longest host\[:port\] [`valid_host`] accepts, in bytes: a 253-byte DNS name
/// plus `:65535` (a bracketed IPv6 address is shorter).
pub const MAX_HOST_BYTES: usize = 253 + 6;

/// How much of an offending value an error keeps, in characters.
const EXCERPT_CHARS: usize = 80;

/// Why a public URL could not be built.
///
/// From [`PublicBase::parse`] it is a configuration error; from
/// [`signed_urls`] it is the request's fault, answered with 400.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum UrlError {
    /// The base URL is longer than [`MAX_BASE_URL_BYTES`].
    TooLong {
        /// Its length in bytes.
        len: usize,
    },
    /// The base URL's scheme is not `http` or `https`.
    BadScheme {
        /// The URL given (first 80 characters).
        url: String,
    },
    /// The base URL's host\[:port\] is missing or fails [`valid_host`].
    InvalidHost {
        /// The host given (first 80 characters).
        host: String,
    },
    /// The base URL carries user information (`user@`), which Twilio's
    /// signature and TwiML URLs should not.
    HasUserinfo,
    /// The base URL has a query string.
    HasQuery,
    /// The base URL has a fragment.
    HasFragment,
    /// The base URL's path prefix holds characters a URL path cannot, or an
    /// empty segment (`//`).
    InvalidPath {
        /// The path given (first 80 characters).
        path: String,
    },
    /// The request has no `Host` header (and nothing else names the host).
    MissingHost,
    /// The request's `Host` fails [`valid_host`].
    InvalidRequestHost {
        /// The value received (first 80 characters).
        host: String,
    },
    /// A trusted `X-Forwarded-Proto` names neither `http` nor `https`.
    InvalidForwardedProto {
        /// The value received (first 80 characters).
        proto: String,
    },
    /// A trusted `X-Forwarded-Host` fails [`valid_host`].
    InvalidForwardedHost {
        /// The value received (first 80 characters).
        host: String,
    },
    /// A trusted `Forwarded` header cannot be read.
    InvalidForwarded {
        /// What is wrong with it (the value is not repeated).
        what: &'static str,
    },
    /// A trusted `Forwarded` header and an `X-Forwarded-*` header name
    /// different schemes or hosts: which one the front meant is unknown.
    ForwardedConflict,
    /// The request target does not start with `/` (origin form).
    BadRequestTarget {
        /// The target received (first 80 characters).
        target: String,
    },
}

impl fmt::Display for UrlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UrlError::TooLong { len } => write!(
                f,
                "public base URL of {len} bytes is over {MAX_BASE_URL_BYTES}"
            ),
            UrlError::BadScheme { url } => {
                write!(
                    f,
                    "public base URL {url:?} must start with http:// or https://"
                )
            }
            UrlError::InvalidHost { host } => {
                write!(
                    f,
                    "public base URL host {host:?} is not a valid host[:port]"
                )
            }
            UrlError::HasUserinfo => write!(f, "public base URL must not carry user@"),
            UrlError::HasQuery => write!(f, "public base URL must not have a query string"),
            UrlError::HasFragment => write!(f, "public base URL must not have a fragment"),
            UrlError::InvalidPath { path } => {
                write!(
                    f,
                    "public base URL path {path:?} is not a valid URL path prefix"
                )
            }
            UrlError::MissingHost => write!(f, "request has no Host header (400)"),
            UrlError::InvalidRequestHost { host } => {
                write!(f, "request Host {host:?} is not a valid host[:port] (400)")
            }
            UrlError::InvalidForwardedProto { proto } => {
                write!(
                    f,
                    "X-Forwarded-Proto {proto:?} is neither http nor https (400)"
                )
            }
            UrlError::InvalidForwardedHost { host } => {
                write!(
                    f,
                    "X-Forwarded-Host {host:?} is not a valid host[:port] (400)"
                )
            }
            UrlError::InvalidForwarded { what } => write!(f, "Forwarded header: {what} (400)"),
            UrlError::ForwardedConflict => write!(
                f,
                "Forwarded and X-Forwarded-* name different schemes or hosts (400)"
            ),
            UrlError::BadRequestTarget { target } => {
                write!(f, "request target {target:?} does not start with / (400)")
            }
        }
    }
}

impl std::error::Error for UrlError {}

/// The configured public base URL: `http` or `https`, a valid host\[:port\],
/// optionally a path prefix; no user information, query or fragment.
///
/// The scheme is stored in lower case; host and path are kept as written,
/// because Twilio signs the URL verbatim. A trailing `/` is dropped, so
/// `https://x.example/` and `https://x.example` are the same base.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PublicBase {
    tls: bool,
    host: String,
    prefix: String,
}

impl PublicBase {
    /// Parses and validates a base URL such as `https://voice.example.com` or
    /// `https://example.com:8443/voice/`.
    pub fn parse(url: &str) -> Result<PublicBase, UrlError> {
        if url.len() > MAX_BASE_URL_BYTES {
            return Err(UrlError::TooLong { len: url.len() });
        }
        let bad_scheme = || UrlError::BadScheme { url: excerpt(url) };
        let (scheme, rest) = url.split_once("://").ok_or_else(bad_scheme)?;
        let tls = if scheme.eq_ignore_ascii_case("https") {
            true
        } else if scheme.eq_ignore_ascii_case("http") {
            false
        } else {
            return Err(bad_scheme());
        };
        if rest.contains('#') {
            return Err(UrlError::HasFragment);
        }
        if rest.contains('?') {
            return Err(UrlError::HasQuery);
        }
        let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        if authority.contains('@') {
            return Err(UrlError::HasUserinfo);
        }
        if !valid_host(authority) {
            return Err(UrlError::InvalidHost {
                host: excerpt(authority),
            });
        }
        let prefix = path.strip_suffix('/').unwrap_or(path);
        if !valid_path(prefix) || path.contains("//") {
            return Err(UrlError::InvalidPath {
                path: excerpt(path),
            });
        }
        Ok(PublicBase {
            tls,
            host: authority.to_owned(),
            prefix: prefix.to_owned(),
        })
    }

    /// Whether the base is `https`.
    #[must_use]
    pub fn is_https(&self) -> bool {
        self.tls
    }

    /// The host\[:port\], as configured.
    #[must_use]
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The path prefix: empty, or `/` followed by segments, without a
    /// trailing `/`.
    #[must_use]
    pub fn path_prefix(&self) -> &str {
        &self.prefix
    }

    /// The HTTP URL for `path_and_query` (a `/` is put in front when missing):
    /// `https://host/prefix/path?query`.
    #[must_use]
    pub fn http_url(&self, path_and_query: &str) -> String {
        self.join(if self.tls { "https" } else { "http" }, path_and_query)
    }

    /// The WebSocket URL for `path`: `wss://` for an `https` base, `ws://`
    /// for `http`.
    #[must_use]
    pub fn ws_url(&self, path: &str) -> String {
        self.join(if self.tls { "wss" } else { "ws" }, path)
    }

    fn join(&self, scheme: &str, path: &str) -> String {
        let slash = if path.starts_with('/') { "" } else { "/" };
        let mut url = String::with_capacity(
            scheme.len() + 3 + self.host.len() + self.prefix.len() + slash.len() + path.len(),
        );
        url.push_str(scheme);
        url.push_str("://");
        url.push_str(&self.host);
        url.push_str(&self.prefix);
        url.push_str(slash);
        url.push_str(path);
        url
    }
}

impl fmt::Display for PublicBase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.tls { "https" } else { "http" };
        write!(f, "{scheme}://{}{}", self.host, self.prefix)
    }
}

/// Whether `s` is a syntactically valid `host[:port]`: a DNS name (labels of
/// letters, digits and inner hyphens, 1–63 bytes each, 253 in all, no trailing
/// dot), a dotted-quad IPv4 address (no leading zeros), or a bracketed IPv6
/// address; then optionally `:` and a port 1–65535 without leading zeros.
///
/// Anything else — empty, spaces, quotes, `/`, `@`, control characters, an
/// unbracketed IPv6 address, a zone id — is refused: a value that passes can
/// be put into a URL and a TwiML attribute as it is.
#[must_use]
pub fn valid_host(s: &str) -> bool {
    if s.is_empty() || s.len() > MAX_HOST_BYTES {
        return false;
    }
    if let Some(rest) = s.strip_prefix('[') {
        let Some((addr, after)) = rest.split_once(']') else {
            return false;
        };
        let port_ok = match after.strip_prefix(':') {
            Some(port) => valid_port(port),
            None => after.is_empty(),
        };
        // `Ipv6Addr`'s parser takes no zone id (`%eth0`) and no brackets.
        return port_ok && addr.parse::<Ipv6Addr>().is_ok();
    }
    let (host, port) = match s.rsplit_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (s, None),
    };
    if port.is_some_and(|port| !valid_port(port)) {
        return false;
    }
    valid_ipv4(host) || valid_dns_name(host)
}

/// A port: 1–5 ASCII digits, no leading zero, 1–65535.
fn valid_port(port: &str) -> bool {
    !port.is_empty()
        && port.len() <= 5
        && port.bytes().all(|b| b.is_ascii_digit())
        && !port.starts_with('0')
        && port.parse::<u32>().is_ok_and(|p| (1..=65535).contains(&p))
}

/// Dotted quad, each part 0–255 written without leading zeros (a leading
/// zero reads as octal to some resolvers).
fn valid_ipv4(host: &str) -> bool {
    let mut parts = 0;
    for part in host.split('.') {
        parts += 1;
        let ok = !part.is_empty()
            && part.len() <= 3
            && part.bytes().all(|b| b.is_ascii_digit())
            && (part == "0" || !part.starts_with('0'))
            && part.parse::<u16>().is_ok_and(|v| v <= 255);
        if !ok || parts > 4 {
            return false;
        }
    }
    parts == 4
}

/// RFC 1123 host name: letters, digits, hyphens not at a label's ends; the
/// last label not all digits (that would be a malformed IPv4 address).
fn valid_dns_name(host: &str) -> bool {
    if host.is_empty() || host.len() > 253 {
        return false;
    }
    let mut last = "";
    for label in host.split('.') {
        let ok = !label.is_empty()
            && label.len() <= 63
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-');
        if !ok {
            return false;
        }
        last = label;
    }
    !last.bytes().all(|b| b.is_ascii_digit())
}

/// Whether `path` is empty or a `/`-started URL path: RFC 3986 `pchar`s
/// (unreserved, sub-delims, `:`, `@`, and `%` with two hex digits) and `/`.
pub(crate) fn valid_path(path: &str) -> bool {
    if path.is_empty() {
        return true;
    }
    if !path.starts_with('/') {
        return false;
    }
    let bytes = path.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' {
            let hex = bytes.get(i + 1..i + 3);
            if !hex.is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit)) {
                return false;
            }
            i += 3;
            continue;
        }
        let ok = b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'-' | b'.'
                    | b'_'
                    | b'~'
                    | b'!'
                    | b'$'
                    | b'&'
                    | b'\''
                    | b'('
                    | b')'
                    | b'*'
                    | b'+'
                    | b','
                    | b';'
                    | b'='
                    | b':'
                    | b'@'
                    | b'/'
            );
        if !ok {
            return false;
        }
        i += 1;
    }
    true
}

/// What [`signed_urls`] needs to know about a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestParts<'a> {
    /// The request target as received: path and query string, starting with `/`.
    pub path_and_query: &'a str,
    /// The `Host` header, if any.
    pub host: Option<&'a str>,
    /// The `X-Forwarded-Proto` header, if any (used only when trusted).
    pub forwarded_proto: Option<&'a str>,
    /// The `X-Forwarded-Host` header, if any (used only when trusted).
    pub forwarded_host: Option<&'a str>,
    /// The RFC 7239 `Forwarded` header (its first line), if any (used only
    /// when trusted; see [`parse_forwarded`]).
    pub forwarded: Option<&'a str>,
    /// Whether the request is a WebSocket upgrade (`ws`/`wss` scheme, and the
    /// trailing-slash variant is added).
    pub websocket: bool,
}

/// The URLs Twilio may have signed for `req`, most likely first.
///
/// From `base` when configured; else from trusted forwarded headers; else
/// from a valid `Host` (see the module docs). When nothing says whether TLS
/// ended in front of the server (no base, no trusted `X-Forwarded-Proto`),
/// both schemes are candidates: `wss` then `ws` for an upgrade (Twilio only
/// connects over TLS, and [`request_base`] writes `wss` into the TwiML),
/// `http` then `https` for a webhook. For a WebSocket upgrade each URL also
/// comes with and without a trailing `/`, as Twilio's docs suggest. Port
/// variants (`:443`, `:80`) are left to
/// [`signature::Validator`](crate::signature::Validator), which tries them for
/// every URL. At most four URLs come out.
///
/// Errors are the request's fault (answer 400): a target not starting with
/// `/`, a missing or invalid `Host`, an invalid trusted forwarded header.
pub fn signed_urls(
    base: Option<&PublicBase>,
    req: &RequestParts<'_>,
    trust_forwarded: bool,
) -> Result<Vec<String>, UrlError> {
    if !req.path_and_query.starts_with('/') {
        return Err(UrlError::BadRequestTarget {
            target: excerpt(req.path_and_query),
        });
    }
    let primaries = match base {
        Some(base) if req.websocket => vec![base.ws_url(req.path_and_query)],
        Some(base) => vec![base.http_url(req.path_and_query)],
        None => {
            let (tls, host) = request_origin(req, trust_forwarded)?;
            let schemes: &[&str] = match (req.websocket, tls) {
                (true, Some(true)) => &["wss"],
                (true, Some(false)) => &["ws"],
                (true, None) => &["wss", "ws"],
                (false, Some(true)) => &["https"],
                (false, Some(false)) => &["http"],
                (false, None) => &["http", "https"],
            };
            schemes
                .iter()
                .map(|scheme| format!("{scheme}://{host}{}", req.path_and_query))
                .collect()
        }
    };
    if !req.websocket {
        return Ok(primaries);
    }
    let mut urls = Vec::with_capacity(primaries.len() * 2);
    for url in primaries {
        let variant = toggle_trailing_slash(&url);
        urls.push(url);
        urls.extend(variant);
    }
    Ok(urls)
}

/// The public base to write into TwiML for `req`: the configured `base`
/// when there is one; else the scheme and host from trusted forwarded
/// headers, or the validated `Host`. With no trusted `X-Forwarded-Proto` the
/// scheme is taken to be `https`: TLS ends in a front the server cannot see
/// (ngrok, a load balancer), and Twilio only opens media streams over `wss`.
///
/// Errors as [`signed_urls`] (the request's fault, answer 400); an invalid
/// `Host` is never reflected.
pub fn request_base(
    base: Option<&PublicBase>,
    req: &RequestParts<'_>,
    trust_forwarded: bool,
) -> Result<PublicBase, UrlError> {
    if let Some(base) = base {
        return Ok(base.clone());
    }
    let (tls, host) = request_origin(req, trust_forwarded)?;
    Ok(PublicBase {
        tls: tls.unwrap_or(true),
        host: host.to_owned(),
        prefix: String::new(),
    })
}

/// Whether TLS ended in front (`None`: unknown) and the host, for a request
/// with no configured base.
fn request_origin<'a>(
    req: &RequestParts<'a>,
    trust_forwarded: bool,
) -> Result<(Option<bool>, &'a str), UrlError> {
    let mut tls = None;
    let mut host = None;
    if trust_forwarded {
        let rfc = req.forwarded.map(parse_forwarded).transpose()?;
        let x_proto = req.forwarded_proto.map(|p| (first_value(p), p));
        let rfc_proto = rfc.and_then(|f| f.proto).map(|p| (p, p));
        if let Some((first, raw)) = agree(x_proto, rfc_proto)? {
            tls = if first.eq_ignore_ascii_case("https") || first.eq_ignore_ascii_case("wss") {
                Some(true)
            } else if first.eq_ignore_ascii_case("http") || first.eq_ignore_ascii_case("ws") {
                Some(false)
            } else {
                return Err(UrlError::InvalidForwardedProto {
                    proto: excerpt(raw),
                });
            };
        }
        let x_host = req.forwarded_host.map(|h| (first_value(h), h));
        let rfc_host = rfc.and_then(|f| f.host).map(|h| (h, h));
        if let Some((first, raw)) = agree(x_host, rfc_host)? {
            if !valid_host(first) {
                return Err(UrlError::InvalidForwardedHost { host: excerpt(raw) });
            }
            host = Some(first);
        }
    }
    let host = match host {
        Some(host) => host,
        None => {
            let raw = req.host.ok_or(UrlError::MissingHost)?;
            if !valid_host(raw) {
                return Err(UrlError::InvalidRequestHost { host: excerpt(raw) });
            }
            raw
        }
    };
    Ok((tls, host))
}

/// One value from `X-Forwarded-*` and `Forwarded`: whichever is present, and
/// when both are, they must be the same (ASCII case aside).
fn agree<'a>(
    x: Option<(&'a str, &'a str)>,
    rfc: Option<(&'a str, &'a str)>,
) -> Result<Option<(&'a str, &'a str)>, UrlError> {
    match (x, rfc) {
        (Some(a), Some(b)) if !a.0.eq_ignore_ascii_case(b.0) => Err(UrlError::ForwardedConflict),
        (a, b) => Ok(a.or(b)),
    }
}

/// Longest first element of a `Forwarded` header read, in bytes (one
/// proxy's `for`, `by`, `host` and `proto` fit in well under this).
pub const MAX_FORWARDED_ELEMENT: usize = 512;

/// What the first element of an RFC 7239 `Forwarded` header says about the
/// request as the outermost proxy received it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ForwardedElement<'a> {
    /// `proto=`: the scheme (not yet checked to be `http` or `https`).
    pub proto: Option<&'a str>,
    /// `host=`: the `Host` it received (not yet checked by [`valid_host`]).
    pub host: Option<&'a str>,
}

/// Reads the first element of a `Forwarded` value (RFC 7239 §4): pairs
/// `name=value` separated by `;`, names in any case, values a token or a
/// quoted string (`host="[::1]:8080"`). Parameters other than `proto` and
/// `host` are skipped. Refused: a parameter named twice in the element (§4
/// forbids it), an empty first element, a pair without `=`, an unterminated
/// quote, a backslash escape inside quotes (no honest host or scheme needs
/// one), a first element over [`MAX_FORWARDED_ELEMENT`] bytes.
///
/// ```
/// use callstream_core::public_url::{parse_forwarded, ForwardedElement};
///
/// let e = parse_forwarded(r#"for=192.0.2.60;Proto=https;host="voice.example.com", for=10.0.0.1"#)?;
/// assert_eq!(e, ForwardedElement { proto: Some("https"), host: Some("voice.example.com") });
/// # Ok::<(), callstream_core::public_url::UrlError>(())
/// ```
///
/// # Errors
///
/// [`UrlError::InvalidForwarded`] (the request's fault: 400).
pub fn parse_forwarded(value: &str) -> Result<ForwardedElement<'_>, UrlError> {
    let bad = |what| Err(UrlError::InvalidForwarded { what });
    let bytes = value.as_bytes();
    let mut out = ForwardedElement::default();
    let mut i = 0;
    let mut seen: Vec<&str> = Vec::new();
    let is_ows = |b: u8| b == b' ' || b == b'\t';
    let is_tchar = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
    loop {
        while bytes.get(i).copied().is_some_and(is_ows) {
            i += 1;
        }
        if i > MAX_FORWARDED_ELEMENT {
            return bad("first element too long");
        }
        match bytes.get(i) {
            None | Some(b',') if seen.is_empty() => return bad("empty first element"),
            None | Some(b',') => break,
            Some(b';') => {
                // An empty pair between two `;`: the grammar allows it.
                i += 1;
                continue;
            }
            Some(_) => {}
        }
        let name_start = i;
        while bytes.get(i).copied().is_some_and(is_tchar) {
            i += 1;
        }
        let name = value.get(name_start..i).unwrap_or_default();
        if name.is_empty() || bytes.get(i) != Some(&b'=') {
            return bad("a parameter without =");
        }
        i += 1;
        let pair_value = if bytes.get(i) == Some(&b'"') {
            let start = i + 1;
            let end = bytes
                .get(start..)
                .and_then(|rest| rest.iter().position(|&b| b == b'"' || b == b'\\'))
                .map(|n| start + n);
            match end.and_then(|e| bytes.get(e).map(|&b| (e, b))) {
                Some((e, b'"')) => {
                    i = e + 1;
                    value.get(start..e).unwrap_or_default()
                }
                Some(_) => return bad("an escape in a quoted value"),
                None => return bad("an unterminated quoted value"),
            }
        } else {
            // A token by the grammar; proxies also send `host=h:8080`
            // unquoted, so anything up to a delimiter (checked later).
            let start = i;
            while bytes
                .get(i)
                .is_some_and(|&b| !matches!(b, b';' | b',' | b' ' | b'\t' | b'"'))
            {
                i += 1;
            }
            value.get(start..i).unwrap_or_default()
        };
        if i > MAX_FORWARDED_ELEMENT {
            return bad("first element too long");
        }
        if seen.iter().any(|n| n.eq_ignore_ascii_case(name)) {
            return bad("a parameter named twice");
        }
        seen.push(name);
        if name.eq_ignore_ascii_case("proto") {
            out.proto = Some(pair_value);
        } else if name.eq_ignore_ascii_case("host") {
            out.host = Some(pair_value);
        }
        while bytes.get(i).copied().is_some_and(is_ows) {
            i += 1;
        }
        match bytes.get(i) {
            None | Some(b',' | b';') => {}
            Some(_) => return bad("bytes after a value"),
        }
    }
    Ok(out)
}

/// The first element of a comma-separated header value, without the
/// optional whitespace around it (the outermost proxy's view).
fn first_value(v: &str) -> &str {
    v.split(',').next().unwrap_or("").trim_matches([' ', '\t'])
}

/// `url` with its path's trailing `/` removed or added (query kept); `None`
/// when the path is just `/`.
fn toggle_trailing_slash(url: &str) -> Option<String> {
    let (before_query, query) = match url.find('?') {
        Some(i) => url.split_at(i),
        None => (url, ""),
    };
    let path_start = before_query.find("://").map_or(0, |i| i + 3);
    let path = before_query[path_start..]
        .find('/')
        .map_or("", |i| &before_query[path_start + i..]);
    if path == "/" || path.is_empty() {
        return None;
    }
    let toggled = match before_query.strip_suffix('/') {
        Some(stripped) => stripped.to_owned(),
        None => format!("{before_query}/"),
    };
    Some(toggled + query)
}

/// The first [`EXCERPT_CHARS`] characters of `s`, for error messages.
fn excerpt(s: &str) -> String {
    crate::excerpt::prefix(s, EXCERPT_CHARS).to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_hosts() {
        for h in [
            "example.com",
            "Example.COM",
            "a",
            "localhost",
            "localhost:8080",
            "x-1.example.com:443",
            "1.2.3.4",
            "0.0.0.0:1",
            "255.255.255.255:65535",
            "[::1]",
            "[::1]:8080",
            "[2001:db8::1]",
            "[::ffff:192.0.2.1]:443",
            "voice-abc123-uc.a.run.app",
            "123.example",
            "a1",
        ] {
            assert!(valid_host(h), "{h:?} should be valid");
        }
    }

    #[test]
    fn invalid_hosts() {
        let long_label = format!("{}.com", "a".repeat(64));
        let long_name = format!("{}a", "a.".repeat(126)); // 253 bytes is fine...
        assert!(valid_host(&long_name));
        let too_long_name = format!("{long_name}b"); // ...254 is not
        for h in [
            "",
            ":",
            ":80",
            "example.com:",
            "example.com:0",
            "example.com:65536",
            "example.com:080",
            "example.com:+80",
            "example.com:8 0",
            "example.com.",
            ".example.com",
            "exa mple.com",
            "example..com",
            "-example.com",
            "example-.com",
            "exam_ple.com",
            "example.com/",
            "example.com/path",
            "user@example.com",
            "example.com\"",
            "example.com'",
            "<script>",
            "example.com\r\nX-Injected: 1",
            "example.com\0",
            "ex\u{e9}mple.com",
            "1.2.3",
            "1.2.3.4.5",
            "256.1.1.1",
            "01.2.3.4",
            "1.2.3.4:99999",
            "::1",
            "[::1",
            "[::1]x",
            "[::1]:",
            "[fe80::1%eth0]",
            "[1.2.3.4]",
            "[]",
            "123",
            &long_label,
            &too_long_name,
        ] {
            assert!(!valid_host(h), "{h:?} should be invalid");
        }
    }

    #[test]
    fn valid_host_length_limit() {
        let name = format!("{}a", "a.".repeat(126));
        assert_eq!(name.len(), 253);
        let with_port = format!("{name}:65535");
        assert_eq!(with_port.len(), MAX_HOST_BYTES);
        assert!(valid_host(&with_port));
        assert!(!valid_host(&format!("{with_port}0")));
    }

    #[test]
    fn base_parse_table() {
        let cases: &[(&str, &str, &str, &str)] = &[
            // input, Display, http_url("/a?b=1"), ws_url("/ws")
            (
                "https://x.example",
                "https://x.example",
                "https://x.example/a?b=1",
                "wss://x.example/ws",
            ),
            (
                "https://x.example/",
                "https://x.example",
                "https://x.example/a?b=1",
                "wss://x.example/ws",
            ),
            (
                "HTTP://x.example:8080/voice/",
                "http://x.example:8080/voice",
                "http://x.example:8080/voice/a?b=1",
                "ws://x.example:8080/voice/ws",
            ),
            (
                "https://[::1]:8443/a/b",
                "https://[::1]:8443/a/b",
                "https://[::1]:8443/a/b/a?b=1",
                "wss://[::1]:8443/a/b/ws",
            ),
            (
                "https://x.example/%7Euser",
                "https://x.example/%7Euser",
                "https://x.example/%7Euser/a?b=1",
                "wss://x.example/%7Euser/ws",
            ),
        ];
        for &(input, display, http, ws) in cases {
            let base = PublicBase::parse(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(base.to_string(), display, "{input}");
            assert_eq!(base.http_url("/a?b=1"), http, "{input}");
            assert_eq!(base.ws_url("/ws"), ws, "{input}");
            assert_eq!(base.ws_url("ws"), ws, "{input} without leading slash");
        }
    }

    #[test]
    fn base_parse_errors() {
        type Check = fn(&UrlError) -> bool;
        let cases: &[(&str, Check)] = &[
            ("x.example", |e| matches!(e, UrlError::BadScheme { .. })),
            ("ftp://x.example", |e| {
                matches!(e, UrlError::BadScheme { .. })
            }),
            ("wss://x.example", |e| {
                matches!(e, UrlError::BadScheme { .. })
            }),
            ("https://", |e| matches!(e, UrlError::InvalidHost { .. })),
            ("https:///path", |e| {
                matches!(e, UrlError::InvalidHost { .. })
            }),
            ("https://bad host", |e| {
                matches!(e, UrlError::InvalidHost { .. })
            }),
            ("https://x.example:0", |e| {
                matches!(e, UrlError::InvalidHost { .. })
            }),
            ("https://u:p@x.example", |e| {
                matches!(e, UrlError::HasUserinfo)
            }),
            ("https://x.example/?a=1", |e| {
                matches!(e, UrlError::HasQuery)
            }),
            ("https://x.example?a=1", |e| matches!(e, UrlError::HasQuery)),
            ("https://x.example/#f", |e| {
                matches!(e, UrlError::HasFragment)
            }),
            ("https://x.example/a b", |e| {
                matches!(e, UrlError::InvalidPath { .. })
            }),
            ("https://x.example/a//b", |e| {
                matches!(e, UrlError::InvalidPath { .. })
            }),
            ("https://x.example//", |e| {
                matches!(e, UrlError::InvalidPath { .. })
            }),
            ("https://x.example/%zz", |e| {
                matches!(e, UrlError::InvalidPath { .. })
            }),
            ("https://x.example/a\"b", |e| {
                matches!(e, UrlError::InvalidPath { .. })
            }),
        ];
        for (input, check) in cases {
            let err = PublicBase::parse(input).unwrap_err();
            assert!(check(&err), "{input}: {err:?}");
        }
    }

    #[test]
    fn base_length_limit() {
        let ok = format!("https://x.example/{}", "a".repeat(MAX_BASE_URL_BYTES - 18));
        assert_eq!(ok.len(), MAX_BASE_URL_BYTES);
        assert!(PublicBase::parse(&ok).is_ok());
        let long = format!("{ok}a");
        assert_eq!(
            PublicBase::parse(&long),
            Err(UrlError::TooLong {
                len: MAX_BASE_URL_BYTES + 1
            })
        );
    }

    fn req<'a>(
        path: &'a str,
        host: Option<&'a str>,
        proto: Option<&'a str>,
        fwd_host: Option<&'a str>,
        websocket: bool,
    ) -> RequestParts<'a> {
        RequestParts {
            path_and_query: path,
            host,
            forwarded_proto: proto,
            forwarded_host: fwd_host,
            forwarded: None,
            websocket,
        }
    }

    #[test]
    fn signed_urls_table() {
        let base = PublicBase::parse("https://voice.example.com/").unwrap();
        let prefixed = PublicBase::parse("https://example.com/voice").unwrap();
        type Case<'a> = (
            Option<&'a PublicBase>,
            RequestParts<'a>,
            bool,
            &'a [&'a str],
        );
        let cases: &[Case<'_>] = &[
            // Configured base wins over everything, even trusted headers.
            (
                Some(&base),
                req(
                    "/webhook/incoming_call",
                    Some("10.0.0.7:8080"),
                    Some("http"),
                    Some("evil.example"),
                    false,
                ),
                true,
                &["https://voice.example.com/webhook/incoming_call"],
            ),
            (
                Some(&base),
                req("/webhook/call_status?x=1", None, None, None, false),
                false,
                &["https://voice.example.com/webhook/call_status?x=1"],
            ),
            (
                Some(&base),
                req("/ws/twilio-media", Some("internal"), None, None, true),
                false,
                &[
                    "wss://voice.example.com/ws/twilio-media",
                    "wss://voice.example.com/ws/twilio-media/",
                ],
            ),
            (
                Some(&base),
                req("/ws/twilio-media/", None, None, None, true),
                false,
                &[
                    "wss://voice.example.com/ws/twilio-media/",
                    "wss://voice.example.com/ws/twilio-media",
                ],
            ),
            (
                Some(&prefixed),
                req("/ws/twilio-media", None, None, None, true),
                false,
                &[
                    "wss://example.com/voice/ws/twilio-media",
                    "wss://example.com/voice/ws/twilio-media/",
                ],
            ),
            // Cloud Run: X-Forwarded-Proto https, Host is the service's host.
            (
                None,
                req(
                    "/webhook/incoming_call",
                    Some("svc-abc-uc.a.run.app"),
                    Some("https"),
                    None,
                    false,
                ),
                true,
                &["https://svc-abc-uc.a.run.app/webhook/incoming_call"],
            ),
            (
                None,
                req(
                    "/ws/twilio-media",
                    Some("svc-abc-uc.a.run.app"),
                    Some("https"),
                    None,
                    true,
                ),
                true,
                &[
                    "wss://svc-abc-uc.a.run.app/ws/twilio-media",
                    "wss://svc-abc-uc.a.run.app/ws/twilio-media/",
                ],
            ),
            // Internal Host, public name in X-Forwarded-Host; lists take the first value.
            (
                None,
                req(
                    "/ws/twilio-media",
                    Some("10.1.2.3:8080"),
                    Some("https, http"),
                    Some("voice.example.com , proxy.internal"),
                    true,
                ),
                true,
                &[
                    "wss://voice.example.com/ws/twilio-media",
                    "wss://voice.example.com/ws/twilio-media/",
                ],
            ),
            (
                None,
                req("/a", Some("h.example"), Some("HTTP"), None, false),
                true,
                &["http://h.example/a"],
            ),
            // Forwarded headers present but not trusted: ignored; Host used,
            // scheme unknown so both are candidates.
            (
                None,
                req(
                    "/webhook/incoming_call",
                    Some("h.example:8080"),
                    Some("https"),
                    Some("evil.example"),
                    false,
                ),
                false,
                &[
                    "http://h.example:8080/webhook/incoming_call",
                    "https://h.example:8080/webhook/incoming_call",
                ],
            ),
            (
                None,
                req(
                    "/ws/twilio-media",
                    Some("h.example"),
                    Some("https"),
                    None,
                    true,
                ),
                false,
                &[
                    "wss://h.example/ws/twilio-media",
                    "wss://h.example/ws/twilio-media/",
                    "ws://h.example/ws/twilio-media",
                    "ws://h.example/ws/twilio-media/",
                ],
            ),
            // Trusted, but no forwarded headers: Host, scheme unknown.
            (
                None,
                req("/", Some("[::1]:8080"), None, None, true),
                true,
                &["wss://[::1]:8080/", "ws://[::1]:8080/"],
            ),
            // Trusted host without a proto: the host from the proxy, scheme unknown.
            (
                None,
                req("/a", Some("10.0.0.1"), None, Some("pub.example"), false),
                true,
                &["http://pub.example/a", "https://pub.example/a"],
            ),
            // Query kept; trailing-slash variant on the path only.
            (
                None,
                req("/ws/x?a=1", Some("h.example"), Some("http"), None, true),
                true,
                &["ws://h.example/ws/x?a=1", "ws://h.example/ws/x/?a=1"],
            ),
        ];
        for (i, (base, r, trust, want)) in cases.iter().enumerate() {
            let got = signed_urls(*base, r, *trust).unwrap_or_else(|e| panic!("case {i}: {e}"));
            assert_eq!(got, *want, "case {i}");
        }
    }

    #[test]
    fn signed_urls_errors() {
        type Case<'a> = (RequestParts<'a>, bool, fn(&UrlError) -> bool);
        let cases: &[Case<'_>] = &[
            (req("/a", None, None, None, false), false, |e| {
                matches!(e, UrlError::MissingHost)
            }),
            (req("/a", None, Some("https"), None, false), true, |e| {
                matches!(e, UrlError::MissingHost)
            }),
            (req("a", Some("h.example"), None, None, false), false, |e| {
                matches!(e, UrlError::BadRequestTarget { .. })
            }),
            (
                req("http://h.example/a", Some("h.example"), None, None, false),
                false,
                |e| matches!(e, UrlError::BadRequestTarget { .. }),
            ),
            (
                req("/a", Some("h.example\"><Hangup/>"), None, None, false),
                false,
                |e| matches!(e, UrlError::InvalidRequestHost { .. }),
            ),
            (
                req("/a", Some("evil.example/path"), None, None, false),
                false,
                |e| matches!(e, UrlError::InvalidRequestHost { .. }),
            ),
            (
                req("/a", Some("evil.example@good.example"), None, None, false),
                false,
                |e| matches!(e, UrlError::InvalidRequestHost { .. }),
            ),
            (req("/a", Some(""), None, None, false), false, |e| {
                matches!(e, UrlError::InvalidRequestHost { .. })
            }),
            (
                req("/a", Some("h.example"), Some("ftp"), None, false),
                true,
                |e| matches!(e, UrlError::InvalidForwardedProto { .. }),
            ),
            (
                req("/a", Some("h.example"), Some(""), None, false),
                true,
                |e| matches!(e, UrlError::InvalidForwardedProto { .. }),
            ),
            (
                req("/a", Some("h.example"), None, Some("a b"), false),
                true,
                |e| matches!(e, UrlError::InvalidForwardedHost { .. }),
            ),
            (
                req("/a", Some("h.example"), None, Some(", h.example"), false),
                true,
                |e| matches!(e, UrlError::InvalidForwardedHost { .. }),
            ),
            // A hostile Host is still refused when a trusted forwarded proto is present.
            (
                req("/a", Some("<x>"), Some("https"), None, false),
                true,
                |e| matches!(e, UrlError::InvalidRequestHost { .. }),
            ),
        ];
        for (i, (r, trust, check)) in cases.iter().enumerate() {
            let err = signed_urls(None, r, *trust).unwrap_err();
            assert!(check(&err), "case {i}: {err:?}");
        }
    }

    #[test]
    fn untrusted_bad_forwarded_headers_are_ignored() {
        let r = req("/a", Some("h.example"), Some("ftp"), Some("<bad>"), false);
        assert_eq!(
            signed_urls(None, &r, false).unwrap(),
            ["http://h.example/a", "https://h.example/a"]
        );
    }

    #[test]
    fn request_base_table() {
        let base = PublicBase::parse("https://voice.example.com/p").unwrap();
        type Case<'a> = (Option<&'a PublicBase>, RequestParts<'a>, bool, &'a str);
        let cases: &[Case<'_>] = &[
            (
                Some(&base),
                req("/x", Some("evil.example"), Some("http"), None, false),
                true,
                "https://voice.example.com/p",
            ),
            (
                None,
                req("/x", Some("svc.a.run.app"), Some("https"), None, false),
                true,
                "https://svc.a.run.app",
            ),
            (
                None,
                req(
                    "/x",
                    Some("10.0.0.1:8080"),
                    Some("http"),
                    Some("pub.example:8080"),
                    false,
                ),
                true,
                "http://pub.example:8080",
            ),
            // Scheme unknown: https, since TLS must end somewhere for Twilio to stream.
            (
                None,
                req(
                    "/x",
                    Some("abc.ngrok.app"),
                    Some("http"),
                    Some("evil.example"),
                    false,
                ),
                false,
                "https://abc.ngrok.app",
            ),
            (
                None,
                req("/x", Some("abc.ngrok.app"), None, None, true),
                true,
                "https://abc.ngrok.app",
            ),
        ];
        for (i, (base, r, trust, want)) in cases.iter().enumerate() {
            let got = request_base(*base, r, *trust).unwrap_or_else(|e| panic!("case {i}: {e}"));
            assert_eq!(got.to_string(), *want, "case {i}");
        }
        // The stream URL written from it is one the upgrade's signature is checked against.
        let r = req("/ws/twilio-media", Some("abc.ngrok.app"), None, None, true);
        let stream_url = request_base(None, &r, false)
            .unwrap()
            .ws_url("/ws/twilio-media");
        assert!(signed_urls(None, &r, false).unwrap().contains(&stream_url));
        // Hostile Host: an error, never a base.
        let r = req("/x", Some("a.example\"/><Hangup/>"), None, None, false);
        assert!(matches!(
            request_base(None, &r, false),
            Err(UrlError::InvalidRequestHost { .. })
        ));
        let r = req("/x", Some("a.example"), Some("gopher"), None, false);
        assert!(matches!(
            request_base(None, &r, true),
            Err(UrlError::InvalidForwardedProto { .. })
        ));
    }

    #[test]
    fn error_excerpts_are_bounded() {
        let host = "a".repeat(10_000);
        let r = req("/a", Some(&host), None, None, false);
        match signed_urls(None, &r, false).unwrap_err() {
            UrlError::InvalidRequestHost { host } => assert_eq!(host.len(), EXCERPT_CHARS),
            e => panic!("{e:?}"),
        }
    }

    #[test]
    fn forwarded_table() {
        let ok: &[(&str, Option<&str>, Option<&str>)] = &[
            (
                "proto=https;host=a.example",
                Some("https"),
                Some("a.example"),
            ),
            (
                "PROTO=https ; HOST=\"[::1]:8080\"",
                Some("https"),
                Some("[::1]:8080"),
            ),
            ("for=1.2.3.4, proto=http;host=b.example", None, None),
            ("for=\"_hidden\";by=x;proto=https", Some("https"), None),
            ("host=a.example:8443", None, Some("a.example:8443")),
            (";;proto=https;", Some("https"), None),
            ("proto=\"\"", Some(""), None),
        ];
        for (value, proto, host) in ok {
            assert_eq!(
                parse_forwarded(value),
                Ok(ForwardedElement {
                    proto: *proto,
                    host: *host
                }),
                "{value}"
            );
        }
        let long = format!("for={}", "a".repeat(MAX_FORWARDED_ELEMENT));
        let at = format!("for={}", "a".repeat(MAX_FORWARDED_ELEMENT - 4));
        assert!(parse_forwarded(&at).is_ok());
        for value in [
            "",
            " ",
            ", proto=https",
            ";",
            "proto",
            "=https",
            "proto=https;PROTO=http",
            "host=\"a.example",
            "host=\"a\\\"b\"",
            "proto=https host=a",
            "proto=\"https\"x",
            long.as_str(),
        ] {
            assert!(
                matches!(
                    parse_forwarded(value),
                    Err(UrlError::InvalidForwarded { .. })
                ),
                "{value:?}"
            );
        }
    }

    #[test]
    fn forwarded_with_x_forwarded() {
        let mut r = req("/a", Some("10.0.0.1"), None, None, false);
        r.forwarded = Some("proto=https;host=pub.example");
        assert_eq!(
            signed_urls(None, &r, true).unwrap(),
            ["https://pub.example/a"]
        );
        // Untrusted: ignored.
        assert_eq!(
            signed_urls(None, &r, false).unwrap(),
            ["http://10.0.0.1/a", "https://10.0.0.1/a"]
        );
        // Agreeing X-Forwarded-* (case aside) is fine; disagreeing is refused.
        r.forwarded_proto = Some("HTTPS");
        assert!(signed_urls(None, &r, true).is_ok());
        r.forwarded_host = Some("other.example");
        assert_eq!(
            signed_urls(None, &r, true),
            Err(UrlError::ForwardedConflict)
        );
        // The Forwarded host is checked like any host, and never reflected beyond 80 chars.
        let mut r = req("/a", Some("10.0.0.1"), None, None, false);
        r.forwarded = Some("host=\"a.example\\\"><x>\"");
        assert!(matches!(
            signed_urls(None, &r, true),
            Err(UrlError::InvalidForwarded { .. })
        ));
        r.forwarded = Some("host=\"a.example/<x>\"");
        assert!(matches!(
            signed_urls(None, &r, true),
            Err(UrlError::InvalidForwardedHost { .. })
        ));
        r.forwarded = Some("proto=ftp");
        assert!(matches!(
            request_base(None, &r, true),
            Err(UrlError::InvalidForwardedProto { .. })
        ));
    }

    #[test]
    fn valid_path_table() {
        for p in ["", "/", "/a/b", "/a%20b", "/~x:y@z!$&'()*+,;=-._"] {
            assert!(valid_path(p), "{p:?}");
        }
        for p in [
            "a", "/a b", "/a%2", "/a%g0", "/a?b", "/a#b", "/\u{e9}", "/a\"", "/<",
        ] {
            assert!(!valid_path(p), "{p:?}");
        }
    }
}
