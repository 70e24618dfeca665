//! Is this request from Twilio, for our account? The whole check, for any
//! HTTP stack.
//!
//! A [`Verifier`] is built once from [`Settings`] (auth tokens, shared keys,
//! the public base URL, whether forwarded headers are trusted, the account);
//! [`Verifier::verify`] then looks at one request through the
//! [`SignedRequest`] trait and says [`Verified`] (with the request's decoded
//! parameters) or [`Refusal`] (why, the status to answer, the URLs tried;
//! never a key). No I/O: the engine ([`connection`](crate::connection)) calls
//! it for every signed route, and an embedder (an axum or hyper server)
//! calls it with its own request type, or with the borrowed [`Parts`].
//!
//! # The rules (docs/protocol.md §5)
//!
//! 1. Nothing configured (no auth token, no shared key): every request is
//!    refused, [`Reason::NoAuthToken`], unless
//!    [`Settings::insecure_no_signatures`] asks to accept it unchecked
//!    ([`Check::SignaturesOff`]).
//! 2. `X-Twilio-Signature` and `X-Twilio-Webhooks-Signature-Settings` may
//!    each appear once (names in any case); twice is
//!    [`Reason::DuplicateHeader`], never "the first wins", as a proxy that
//!    adds a second value must not choose which one is checked.
//! 3. With a settings header (`key=<id>,algorithm=HMAC_SHA256`, see
//!    [`parse_signature_settings`]) the signature is keyed with the secret of
//!    every configured [`SharedKey`] with that id (two of the same id during a
//!    rotation of its secret; ids differ when a second key is rolled in) and
//!    hashed with the named algorithm (HMAC-SHA1 when it names none, as
//!    twilio-python reads it). An algorithm we do not know, a malformed
//!    header, or an id no key has is a refusal, never a fallback to the auth
//!    token. Without the header: the auth tokens and HMAC-SHA1.
//! 4. The signed URL is rebuilt with
//!    [`public_url::signed_urls`](crate::public_url::signed_urls) (400 when
//!    the `Host` or a trusted forwarded header is invalid).
//! 5. A `Content-Type: application/json` body is checked the JSON way: the
//!    signature covers the URL, its `bodySHA256` query included, with no
//!    parameters, and the body's lower-case hex SHA-256 must equal
//!    `bodySHA256` (exactly one in the query). A form body (or a GET's
//!    query) is decoded and, for a POST, its parameters are signed.
//! 6. With [`Settings::account_sid`], a webhook (not a WebSocket upgrade)
//!    must carry exactly one `AccountSid`, equal to it.
//!
//! Duplicates are 403, like every other failed check, not 400: the request
//! is well-formed HTTP, it just cannot be attributed to Twilio, and one
//! status for all such refusals tells a prober nothing about which check
//! failed. 400 is kept for what cannot be read at all (an invalid `Host`, an
//! undecodable form).
//!
//! ```
//! use callstream_core::signature::{self, Algorithm};
//! use callstream_core::verify::{Parts, Reason, Settings, SharedKey, Verifier};
//! use callstream_core::public_url::PublicBase;
//!
//! let verifier = Verifier::new(Settings {
//!     auth_tokens: vec!["12345".into()],
//!     shared_keys: vec![SharedKey::new("webhooks_sharedkey_1", "s3cret")],
//!     public_base_url: Some(PublicBase::parse("https://voice.example.com")?),
//!     ..Settings::default()
//! });
//! let body = b"AccountSid=AC123&CallStatus=ringing";
//! let params = [("AccountSid", "AC123"), ("CallStatus", "ringing")];
//! let url = "https://voice.example.com/webhook/call_status";
//! let sig = signature::compute_with(Algorithm::HmacSha256, "s3cret", url, &params);
//! let headers: [(&str, &[u8]); 3] = [
//!     ("Host", b"internal:8080"),
//!     ("X-Twilio-Signature", sig.as_bytes()),
//!     ("X-Twilio-Webhooks-Signature-Settings", b"key=webhooks_sharedkey_1,algorithm=HMAC_SHA256"),
//! ];
//! let request = Parts {
//!     method: "POST",
//!     target: "/webhook/call_status",
//!     headers: &headers,
//!     body,
//!     websocket: false,
//! };
//! let verified = verifier.verify(&request).expect("signed with the shared key");
//! assert_eq!(verified.params[1], ("CallStatus".to_owned(), "ringing".to_owned()));
//!
//! // The same signature without the settings header is checked as an
//! // auth-token HMAC-SHA1, and refused: 32 bytes are not one.
//! let refused = verifier.verify(&Parts { headers: &headers[..2], ..request }).unwrap_err();
//! assert!(matches!(refused.reason, Reason::Malformed { .. }));
//! assert_eq!(refused.status(), 403);
//! assert_eq!(refused.urls_tried[0], url);
//! # Ok::<(), callstream_core::public_url::UrlError>(())
//! ```

mod secret;
mod settings_header;

use std::fmt;

pub use secret::{SecretError, SecretWarning, clean_secret};
pub use settings_header::{
    MAX_SETTINGS_LEN, SETTINGS_HEADER, SignatureSettings, parse_signature_settings,
};

use crate::form::{self, FormError};
use crate::public_url::{self, PublicBase, RequestParts};
use crate::sid::AccountSid;
use crate::signature::{self, Algorithm, SignatureError, Validator};

/// How much of a hostile value a [`Reason`] keeps, in characters.
const EXCERPT: usize = 64;

/// A SharedKey from Twilio's webhook configuration: its id (what the
/// settings header's `key=` names) and its secret. `Debug` never shows the
/// secret.
#[derive(Clone, PartialEq, Eq)]
pub struct SharedKey {
    /// The key's id, e.g. `webhooks_sharedkey_…`, compared exactly.
    pub id: String,
    /// The secret the signature is keyed with.
    pub secret: String,
}

impl SharedKey {
    /// A shared key with this id and secret.
    #[must_use]
    pub fn new(id: impl Into<String>, secret: impl Into<String>) -> SharedKey {
        SharedKey {
            id: id.into(),
            secret: secret.into(),
        }
    }
}

impl fmt::Debug for SharedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedKey")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// What the check needs to know about the server.
#[derive(Clone, Default)]
pub struct Settings {
    /// Twilio auth tokens (primary, secondary during a rotation), for
    /// requests without a settings header. Empty ones are ignored.
    pub auth_tokens: Vec<String>,
    /// Shared keys (primary, secondary during a rotation), for requests with
    /// `X-Twilio-Webhooks-Signature-Settings`. Keys with an empty secret are
    /// ignored.
    pub shared_keys: Vec<SharedKey>,
    /// The URL Twilio uses to reach the server; `None`: rebuilt from `Host`.
    pub public_base_url: Option<PublicBase>,
    /// Whether `Forwarded` / `X-Forwarded-*` may rebuild the public URL.
    pub trust_forwarded: bool,
    /// When set, a webhook must carry exactly this `AccountSid`.
    pub account_sid: Option<AccountSid>,
    /// With no key configured, accept requests unchecked instead of
    /// refusing them (tests and local experiments only).
    pub insecure_no_signatures: bool,
}

impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Settings")
            .field(
                "auth_tokens",
                &format_args!("<{} token(s)>", self.auth_tokens.len()),
            )
            .field("shared_keys", &self.shared_keys)
            .field("public_base_url", &self.public_base_url)
            .field("trust_forwarded", &self.trust_forwarded)
            .field("account_sid", &self.account_sid)
            .field("insecure_no_signatures", &self.insecure_no_signatures)
            .finish()
    }
}

/// A request as the check sees it. Implemented for the engine's
/// [`http::Request`](crate::http::Request) and for the borrowed [`Parts`];
/// an embedder implements it for its own type (e.g. an `http::Request<Bytes>`:
/// `headers` maps `HeaderMap::iter` to `(name.as_str(), value.as_bytes())`).
pub trait SignedRequest {
    /// The method, e.g. `POST`.
    fn method(&self) -> &str;
    /// The request target as received: path and query, starting with `/`
    /// (what Twilio signed after the public base URL).
    fn target(&self) -> &str;
    /// Every header line in order: name (any case), value bytes.
    fn headers(&self) -> impl Iterator<Item = (&str, &[u8])>;
    /// The (de-chunked) body.
    fn body(&self) -> &[u8];
    /// Whether this is a WebSocket upgrade (signed over a `wss://` URL, no
    /// account check). By default: a `GET` with `Upgrade: websocket`.
    fn is_websocket(&self) -> bool {
        self.method() == "GET"
            && self.headers().any(|(n, v)| {
                n.eq_ignore_ascii_case("upgrade")
                    && v.split(|&b| b == b',')
                        .any(|t| trim(t).eq_ignore_ascii_case(b"websocket"))
            })
    }
}

/// A request as borrowed pieces, for a stack with no type of its own to
/// implement [`SignedRequest`] for.
#[derive(Debug, Clone, Copy)]
pub struct Parts<'a> {
    /// The method.
    pub method: &'a str,
    /// Path and query as received, starting with `/`.
    pub target: &'a str,
    /// Header lines: name, value bytes.
    pub headers: &'a [(&'a str, &'a [u8])],
    /// The body.
    pub body: &'a [u8],
    /// Whether this is a WebSocket upgrade.
    pub websocket: bool,
}

impl SignedRequest for Parts<'_> {
    fn method(&self) -> &str {
        self.method
    }
    fn target(&self) -> &str {
        self.target
    }
    fn headers(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.headers.iter().copied()
    }
    fn body(&self) -> &[u8] {
        self.body
    }
    fn is_websocket(&self) -> bool {
        self.websocket
    }
}

impl SignedRequest for crate::http::Request {
    fn method(&self) -> &str {
        crate::http::Request::method(self)
    }
    fn target(&self) -> &str {
        crate::http::Request::target(self)
    }
    fn headers(&self) -> impl Iterator<Item = (&str, &[u8])> {
        crate::http::Request::headers(self)
    }
    fn body(&self) -> &[u8] {
        &self.body
    }
}

/// How an accepted request was checked.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Check {
    /// Nothing is configured to check with and signatures are not required:
    /// accepted unchecked (log it loudly).
    SignaturesOff,
    /// Signed with an auth token (HMAC-SHA1).
    AuthToken,
    /// Signed with a shared key.
    SharedKey {
        /// The key's id, from the settings header.
        key_id: String,
        /// The algorithm it named.
        algorithm: Algorithm,
    },
}

/// An accepted request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// How it was checked.
    pub check: Check,
    /// Its decoded parameters: the form body of a POST or the query of a
    /// GET (in the order sent), the top-level text, number and boolean
    /// fields of a JSON object body (by name); none for a WebSocket upgrade.
    pub params: Vec<(String, String)>,
}

/// Why a request was refused. [`Reason::status`] is what the peer gets.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Reason {
    /// No auth token is configured (and signatures are required, or the
    /// request has no settings header while only shared keys are): nothing
    /// to check the signature with. 403; a server configuration problem.
    NoAuthToken,
    /// No (or an empty) `X-Twilio-Signature`. 403.
    Missing,
    /// `X-Twilio-Signature` is not base64 of a MAC of the right length. 403.
    Malformed {
        /// What is wrong with it.
        what: &'static str,
    },
    /// No key signs any URL tried to this value. 403.
    Mismatch,
    /// A header that must appear once appeared more than once. 403.
    DuplicateHeader {
        /// Which (canonical spelling).
        name: &'static str,
    },
    /// A parameter that must appear once appeared more than once. 403.
    DuplicateParameter {
        /// Which.
        name: &'static str,
    },
    /// `X-Twilio-Webhooks-Signature-Settings` cannot be read. 403.
    BadSettings {
        /// What is wrong with it.
        what: &'static str,
    },
    /// The settings header names an algorithm we do not implement. 403.
    UnsupportedAlgorithm {
        /// The name received (cut to 64 characters).
        algorithm: String,
    },
    /// The settings header names a key id no configured shared key has. 403.
    UnknownSharedKey {
        /// The id received (cut to 64 characters).
        key_id: String,
    },
    /// A JSON body, but the URL carries no `bodySHA256`. 403.
    BodyHashMissing,
    /// The signature is valid but the body does not hash to `bodySHA256`.
    /// 403.
    BodyHashMismatch,
    /// The request's `AccountSid` is not the configured account (or it has
    /// none). 403.
    AccountMismatch {
        /// The `AccountSid` received (cut to 64 characters), empty when none.
        account_sid: String,
    },
    /// The public URL cannot be rebuilt (invalid `Host` or trusted
    /// forwarded header). 400; the value is never reflected.
    InvalidOrigin,
    /// The form body (or query) cannot be decoded. 400.
    InvalidForm(FormError),
}

impl Reason {
    /// The status to answer: 400 for [`Reason::InvalidOrigin`] and
    /// [`Reason::InvalidForm`], 403 for everything else.
    #[must_use]
    pub fn status(&self) -> u16 {
        match self {
            Reason::InvalidOrigin | Reason::InvalidForm(_) => 400,
            _ => 403,
        }
    }

    /// Whether the refusal is about the account rather than the signature.
    #[must_use]
    pub fn is_account(&self) -> bool {
        matches!(
            self,
            Reason::AccountMismatch { .. }
                | Reason::DuplicateParameter {
                    name: ACCOUNT_SID_PARAM
                }
        )
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::NoAuthToken => write!(f, "no auth token configured"),
            Reason::Missing => write!(f, "missing X-Twilio-Signature"),
            Reason::Malformed { what } => write!(f, "malformed X-Twilio-Signature: {what}"),
            Reason::Mismatch => write!(f, "X-Twilio-Signature did not match"),
            Reason::DuplicateHeader { name } => write!(f, "{name} sent more than once"),
            Reason::DuplicateParameter { name } => {
                write!(f, "parameter {name} sent more than once")
            }
            Reason::BadSettings { what } => write!(f, "malformed {SETTINGS_HEADER}: {what}"),
            Reason::UnsupportedAlgorithm { algorithm } => {
                write!(f, "unsupported signature algorithm {algorithm:?}")
            }
            Reason::UnknownSharedKey { key_id } => {
                write!(f, "no shared key configured with id {key_id:?}")
            }
            Reason::BodyHashMissing => write!(f, "JSON body but no bodySHA256 in the URL"),
            Reason::BodyHashMismatch => write!(f, "the body does not hash to bodySHA256"),
            Reason::AccountMismatch { account_sid } => {
                write!(
                    f,
                    "AccountSid {account_sid:?} is not the configured account"
                )
            }
            Reason::InvalidOrigin => write!(f, "invalid Host or forwarded header"),
            Reason::InvalidForm(e) => write!(f, "{e}"),
        }
    }
}

/// A refused request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// Why.
    pub reason: Reason,
    /// The URLs the signature was checked against, port variants included
    /// (empty when it never got that far). Never a key.
    pub urls_tried: Vec<String>,
}

impl Refusal {
    /// The status to answer (see [`Reason::status`]).
    #[must_use]
    pub fn status(&self) -> u16 {
        self.reason.status()
    }

    fn new(reason: Reason) -> Refusal {
        Refusal {
            reason,
            urls_tried: Vec::new(),
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.reason, self.status())?;
        if !self.urls_tried.is_empty() {
            write!(f, "; URLs tried: {}", self.urls_tried.join(", "))?;
        }
        Ok(())
    }
}

impl std::error::Error for Refusal {}

const SIGNATURE_HEADER: &str = signature::HEADER;
const ACCOUNT_SID_PARAM: &str = "AccountSid";

/// The request check, built once from [`Settings`] and shared by every
/// request. See the module docs for the rules.
#[derive(Clone)]
pub struct Verifier {
    settings: Settings,
    tokens: Validator,
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Verifier")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl Verifier {
    /// A verifier for these settings (auth tokens are keyed now).
    #[must_use]
    pub fn new(settings: Settings) -> Verifier {
        let tokens = Validator::new(settings.auth_tokens.clone());
        Verifier { settings, tokens }
    }

    /// The settings it checks with.
    #[must_use]
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Whether anything is configured to check a signature with.
    #[must_use]
    pub fn has_keys(&self) -> bool {
        self.tokens.token_count() > 0
            || self
                .settings
                .shared_keys
                .iter()
                .any(|k| !k.secret.is_empty())
    }

    /// Checks one request. See the module docs for the rules.
    ///
    /// # Errors
    ///
    /// A [`Refusal`]: answer [`Refusal::status`].
    pub fn verify<R: SignedRequest + ?Sized>(&self, request: &R) -> Result<Verified, Refusal> {
        let websocket = request.is_websocket();
        let heads = Heads::scan(request);
        if heads.content_type_count > 1 {
            return Err(Refusal::new(Reason::DuplicateHeader {
                name: "Content-Type",
            }));
        }
        let json = !websocket && heads.content_type.is_some_and(is_json);
        let params = if websocket {
            Vec::new()
        } else if json {
            json_params(request.body())
        } else if request.method() == "POST" {
            form::parse(request.body()).map_err(|e| Refusal::new(Reason::InvalidForm(e)))?
        } else {
            let query = request.target().split_once('?').map_or("", |(_, q)| q);
            form::parse(query.as_bytes()).map_err(|e| Refusal::new(Reason::InvalidForm(e)))?
        };
        let check = if self.has_keys() {
            self.check_signature(request, &heads, websocket, json, &params)?
        } else if !self.settings.insecure_no_signatures {
            return Err(Refusal::new(Reason::NoAuthToken));
        } else {
            Check::SignaturesOff
        };
        if !websocket {
            self.check_account(&params)?;
        }
        Ok(Verified { check, params })
    }

    fn check_signature<R: SignedRequest + ?Sized>(
        &self,
        request: &R,
        heads: &Heads<'_>,
        websocket: bool,
        json: bool,
        params: &[(String, String)],
    ) -> Result<Check, Refusal> {
        if heads.signature_count > 1 {
            return Err(Refusal::new(Reason::DuplicateHeader {
                name: SIGNATURE_HEADER,
            }));
        }
        if heads.settings_count > 1 {
            return Err(Refusal::new(Reason::DuplicateHeader {
                name: SETTINGS_HEADER,
            }));
        }
        let shared;
        let (validator, check) = match heads.settings {
            Some(raw) => {
                let value = std::str::from_utf8(raw)
                    .map_err(|_| Refusal::new(Reason::BadSettings { what: "not UTF-8" }))?;
                let parsed = parse_signature_settings(value).map_err(Refusal::new)?;
                let secrets: Vec<&str> = self
                    .settings
                    .shared_keys
                    .iter()
                    .filter(|k| k.id == parsed.key_id && !k.secret.is_empty())
                    .map(|k| k.secret.as_str())
                    .collect();
                if secrets.is_empty() {
                    return Err(Refusal::new(Reason::UnknownSharedKey {
                        key_id: excerpt(parsed.key_id),
                    }));
                }
                shared = Validator::with_algorithm(parsed.algorithm, &secrets);
                let check = Check::SharedKey {
                    key_id: parsed.key_id.to_owned(),
                    algorithm: parsed.algorithm,
                };
                (&shared, check)
            }
            None if self.tokens.token_count() == 0 => {
                return Err(Refusal::new(Reason::NoAuthToken));
            }
            None => (&self.tokens, Check::AuthToken),
        };
        fn text(v: Option<&[u8]>) -> Option<&str> {
            v.and_then(|v| std::str::from_utf8(v).ok())
        }
        // An absolute-form target (`POST https://host/webhook/x`, RFC 9112
        // §3.2.2, sent by some proxies) is signed like its origin form, and
        // its authority stands for `Host`, which the RFC says to ignore then.
        let (path_and_query, authority) = origin_form(request.target());
        let parts = RequestParts {
            path_and_query: &path_and_query,
            host: authority.or(text(heads.host)),
            forwarded_proto: text(heads.forwarded_proto),
            forwarded_host: text(heads.forwarded_host),
            forwarded: text(heads.forwarded),
            websocket,
        };
        let urls = public_url::signed_urls(
            self.settings.public_base_url.as_ref(),
            &parts,
            self.settings.trust_forwarded,
        )
        .map_err(|_| Refusal::new(Reason::InvalidOrigin))?;
        let signature = match heads.signature {
            None => None,
            Some(raw) => Some(std::str::from_utf8(raw).map_err(|_| Refusal {
                reason: Reason::Malformed { what: "not UTF-8" },
                urls_tried: urls.clone(),
            })?),
        };
        let result = if json {
            let hashes = urls
                .first()
                .map_or(0, |u| query_count(u, signature::BODY_SHA256_PARAM));
            if hashes > 1 {
                return Err(Refusal {
                    reason: Reason::DuplicateParameter {
                        name: signature::BODY_SHA256_PARAM,
                    },
                    urls_tried: urls,
                });
            }
            validator.validate_json(&urls, request.body(), signature)
        } else if websocket || request.method() != "POST" {
            // A GET is signed over its URL alone: the query is part of it.
            validator.validate::<_, &str, &str>(&urls, &[], signature)
        } else {
            validator.validate(&urls, params, signature)
        };
        match result {
            Ok(()) => Ok(check),
            Err(error) => {
                let (reason, urls_tried) = match error {
                    SignatureError::NoAuthToken => (Reason::NoAuthToken, urls),
                    SignatureError::Missing => (Reason::Missing, urls),
                    SignatureError::Malformed { reason } => {
                        (Reason::Malformed { what: reason }, urls)
                    }
                    SignatureError::Mismatch { urls_tried } => (Reason::Mismatch, urls_tried),
                    SignatureError::BodyHashMissing { urls_tried } => {
                        (Reason::BodyHashMissing, urls_tried)
                    }
                    SignatureError::BodyHashMismatch { url } => {
                        (Reason::BodyHashMismatch, vec![url])
                    }
                };
                Err(Refusal { reason, urls_tried })
            }
        }
    }

    fn check_account(&self, params: &[(String, String)]) -> Result<(), Refusal> {
        let Some(account) = &self.settings.account_sid else {
            return Ok(());
        };
        let mut theirs = params.iter().filter(|(k, _)| k == ACCOUNT_SID_PARAM);
        let first = theirs.next().map_or("", |(_, v)| v.as_str());
        if theirs.next().is_some() {
            return Err(Refusal::new(Reason::DuplicateParameter {
                name: ACCOUNT_SID_PARAM,
            }));
        }
        if first != account.as_str() {
            return Err(Refusal::new(Reason::AccountMismatch {
                account_sid: excerpt(first),
            }));
        }
        Ok(())
    }
}

/// The headers the check reads, found in one pass. Like the parser's
/// `header`, the first line of each counts; the counts catch repeats.
#[derive(Default)]
struct Heads<'a> {
    signature: Option<&'a [u8]>,
    signature_count: usize,
    settings: Option<&'a [u8]>,
    settings_count: usize,
    content_type: Option<&'a [u8]>,
    content_type_count: usize,
    host: Option<&'a [u8]>,
    forwarded_proto: Option<&'a [u8]>,
    forwarded_host: Option<&'a [u8]>,
    forwarded: Option<&'a [u8]>,
}

impl<'a> Heads<'a> {
    fn scan<R: SignedRequest + ?Sized>(request: &'a R) -> Heads<'a> {
        let mut h = Heads::default();
        for (name, value) in request.headers() {
            let (slot, count) = if name.eq_ignore_ascii_case(SIGNATURE_HEADER) {
                (&mut h.signature, Some(&mut h.signature_count))
            } else if name.eq_ignore_ascii_case(SETTINGS_HEADER) {
                (&mut h.settings, Some(&mut h.settings_count))
            } else if name.eq_ignore_ascii_case("content-type") {
                (&mut h.content_type, Some(&mut h.content_type_count))
            } else if name.eq_ignore_ascii_case("host") {
                (&mut h.host, None)
            } else if name.eq_ignore_ascii_case("x-forwarded-proto") {
                (&mut h.forwarded_proto, None)
            } else if name.eq_ignore_ascii_case("x-forwarded-host") {
                (&mut h.forwarded_host, None)
            } else if name.eq_ignore_ascii_case("forwarded") {
                (&mut h.forwarded, None)
            } else {
                continue;
            };
            if slot.is_none() {
                *slot = Some(value);
            }
            if let Some(count) = count {
                *count += 1;
            }
        }
        h
    }
}

/// The origin form of a request target (path and query, starting with
/// `/`) and, for an absolute-form target (`http://` or `https://`, in any
/// case), its authority. Other targets come back as they are.
fn origin_form(target: &str) -> (std::borrow::Cow<'_, str>, Option<&str>) {
    let scheme_len = ["http://", "https://"].into_iter().find_map(|scheme| {
        target
            .get(..scheme.len())
            .filter(|t| t.eq_ignore_ascii_case(scheme))
            .map(|_| scheme.len())
    });
    let Some(rest) = scheme_len.and_then(|n| target.get(n..)) else {
        return (std::borrow::Cow::Borrowed(target), None);
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let path = if tail.starts_with('/') {
        std::borrow::Cow::Borrowed(tail)
    } else {
        std::borrow::Cow::Owned(format!("/{tail}"))
    };
    (path, Some(authority))
}

/// Whether a `Content-Type` value is `application/json` (parameters such as
/// `charset` ignored, case-insensitive).
fn is_json(value: &[u8]) -> bool {
    let media = value.split(|&b| b == b';').next().unwrap_or_default();
    trim(media).eq_ignore_ascii_case(b"application/json")
}

/// The top-level text, number and boolean fields of a JSON object body, in
/// order; nothing when the body is not a JSON object.
fn json_params(body: &[u8]) -> Vec<(String, String)> {
    let Ok(map) = serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(body) else {
        return Vec::new();
    };
    map.into_iter()
        .filter_map(|(k, v)| match v {
            serde_json::Value::String(s) => Some((k, s)),
            serde_json::Value::Number(n) => Some((k, n.to_string())),
            serde_json::Value::Bool(b) => Some((k, b.to_string())),
            _ => None,
        })
        .collect()
}

/// How many `name=` pairs `url`'s query holds.
fn query_count(url: &str, name: &str) -> usize {
    let Some((_, query)) = url.split_once('?') else {
        return 0;
    };
    let query = query.split_once('#').map_or(query, |(q, _)| q);
    query
        .split('&')
        .filter(|pair| pair.split_once('=').map_or(*pair, |(k, _)| k) == name)
        .count()
}

fn trim(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

/// At most [`EXCERPT`] characters of a hostile value.
fn excerpt(s: &str) -> String {
    crate::excerpt::prefix(s, EXCERPT).to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::{Limits, RequestParser};
    use std::time::Instant;

    fn parsed(wire: &[u8]) -> crate::http::Request {
        let mut p = RequestParser::new(Limits::default(), Instant::now());
        p.handle_receive(Instant::now(), wire);
        p.poll_request().unwrap().unwrap()
    }

    #[test]
    fn our_request_is_a_signed_request() {
        let get = parsed(b"GET /ws HTTP/1.1\r\nHost: a.example\r\nUpgrade: h2c, WebSocket\r\n\r\n");
        assert!(SignedRequest::is_websocket(&get));
        assert_eq!(SignedRequest::target(&get), "/ws");
        let post = parsed(b"POST /ws HTTP/1.1\r\nHost: a.example\r\nUpgrade: websocket\r\n\r\n");
        assert!(!SignedRequest::is_websocket(&post));
    }

    #[test]
    fn signatures_off_and_required() {
        let headers: [(&str, &[u8]); 1] = [("Host", b"a.example")];
        let request = Parts {
            method: "POST",
            target: "/x",
            headers: &headers,
            body: b"AccountSid=AC1",
            websocket: false,
        };
        let off = Verifier::new(Settings {
            insecure_no_signatures: true,
            ..Settings::default()
        })
        .verify(&request)
        .unwrap();
        assert_eq!(off.check, Check::SignaturesOff);
        assert_eq!(off.params, [("AccountSid".to_owned(), "AC1".to_owned())]);
        let required = Verifier::new(Settings::default());
        assert_eq!(
            required.verify(&request).unwrap_err(),
            Refusal::new(Reason::NoAuthToken)
        );
        // A shared key with an empty secret is no key.
        let empty = Verifier::new(Settings {
            shared_keys: vec![SharedKey::new("k", "")],
            ..Settings::default()
        });
        assert!(!empty.has_keys());
    }

    #[test]
    fn debug_never_shows_a_secret() {
        let v = Verifier::new(Settings {
            auth_tokens: vec!["token-secret".into()],
            shared_keys: vec![SharedKey::new("key-id", "shared-secret")],
            ..Settings::default()
        });
        let dbg = format!("{v:?}");
        assert!(dbg.contains("key-id"), "{dbg}");
        assert!(!dbg.contains("secret\""), "{dbg}");
        assert!(
            !dbg.contains("token-secret") && !dbg.contains("shared-secret"),
            "{dbg}"
        );
    }
}
