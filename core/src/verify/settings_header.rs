//! `X-Twilio-Webhooks-Signature-Settings`: which shared key signed a
//! request, and with which hash.

use super::{Reason, excerpt};
use crate::signature::Algorithm;

/// The header Twilio adds when it signs with a shared key instead of the
/// auth token (docs/protocol.md §5).
pub const SETTINGS_HEADER: &str = "X-Twilio-Webhooks-Signature-Settings";

/// Longest settings header read, in bytes. Twilio's is about 80
/// (`key=webhooks_sharedkey_<id>,algorithm=HMAC_SHA256`).
pub const MAX_SETTINGS_LEN: usize = 256;

/// What a settings header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SignatureSettings<'a> {
    /// The shared key's id (`key=`).
    pub key_id: &'a str,
    /// The hash (`algorithm=`).
    pub algorithm: Algorithm,
}

/// Reads a settings header value such as
/// `key=webhooks_sharedkey_1,algorithm=HMAC_SHA256`.
///
/// Read as `twilio-python` 9.13 reads it (`get_signature_algorithm`): the
/// value is split on `,`, each element on its first `=`, name and value
/// trimmed of whitespace; names are compared exactly (`key`, `algorithm`),
/// the algorithm's name without regard to ASCII case; elements with other
/// names are ignored (room for later additions). A header with no
/// `algorithm`, or an empty one, means HMAC-SHA1, as there.
///
/// Stricter than that library, each for a reason:
///
/// - Only ASCII whitespace is trimmed (Python's `strip` also takes U+00A0,
///   U+0085, U+2003, U+3000…): `key=K1\u{a0}` names no key we have, rather
///   than key `K1`, since no header Twilio writes carries them and a
///   lenient reading of a key's name is a second spelling of it.
/// - `key` is required, non-empty and said once: it chooses the secret
///   (the library has no keys; its caller picks the secret).
/// - Neither name may appear twice: a proxy that adds a second element
///   must not choose which one is read (the library takes the first
///   non-empty `algorithm`).
/// - An element without `=` is refused (the library skips it).
/// - An algorithm that is not `HMAC_SHA1` or `HMAC_SHA256` (ASCII case
///   aside) is [`Reason::UnsupportedAlgorithm`] (the library upper-cases
///   with Unicode's rules, so `hmac_ſha256` would pass there).
///
/// ```
/// use callstream_core::signature::Algorithm;
/// use callstream_core::verify::{parse_signature_settings, Reason};
///
/// let s = parse_signature_settings("key=k1, algorithm=hmac_sha256")?;
/// assert_eq!((s.key_id, s.algorithm), ("k1", Algorithm::HmacSha256));
/// assert!(matches!(
///     parse_signature_settings("key=k1,algorithm=HMAC_MD5"),
///     Err(Reason::UnsupportedAlgorithm { .. })
/// ));
/// # Ok::<(), Reason>(())
/// ```
///
/// # Errors
///
/// [`Reason::BadSettings`] or [`Reason::UnsupportedAlgorithm`]: refuse (403).
pub fn parse_signature_settings<'a>(value: &'a str) -> Result<SignatureSettings<'a>, Reason> {
    let bad = |what| Err(Reason::BadSettings { what });
    if value.len() > MAX_SETTINGS_LEN {
        return bad("too long");
    }
    let mut key_id = None;
    let mut algorithm = None;
    let trim = |s: &'a str| s.trim_matches(|c: char| c.is_ascii_whitespace());
    for element in value.split(',') {
        if trim(element).is_empty() {
            continue;
        }
        let Some((name, value)) = element.split_once('=') else {
            return bad("an element without =");
        };
        let slot = match trim(name) {
            "key" => &mut key_id,
            "algorithm" => &mut algorithm,
            _ => continue,
        };
        if slot.is_some() {
            return bad("a parameter named twice");
        }
        *slot = Some(trim(value));
    }
    let key_id = match key_id {
        None => return bad("no key"),
        Some("") => return bad("an empty key"),
        Some(k) => k,
    };
    // No algorithm, or an empty one: HMAC-SHA1, as twilio-python reads it.
    let name = match algorithm {
        None | Some("") => {
            return Ok(SignatureSettings {
                key_id,
                algorithm: Algorithm::HmacSha1,
            });
        }
        Some(name) => name,
    };
    let Some(algorithm) = Algorithm::from_name(name) else {
        return Err(Reason::UnsupportedAlgorithm {
            algorithm: excerpt(name),
        });
    };
    Ok(SignatureSettings { key_id, algorithm })
}

#[cfg(test)]
mod tests {
    use super::super::EXCERPT;
    use super::*;

    #[test]
    fn settings_table() {
        let ok: &[(&str, &str, Algorithm)] = &[
            ("key=k,algorithm=HMAC_SHA256", "k", Algorithm::HmacSha256),
            ("key=k,algorithm=HMAC_SHA1", "k", Algorithm::HmacSha1),
            ("algorithm=HMAC_SHA256,key=k", "k", Algorithm::HmacSha256),
            (
                " key = k ,\talgorithm=hmac_sha256 ",
                "k",
                Algorithm::HmacSha256,
            ),
            ("key=k,algorithm=HMAC_SHA256,", "k", Algorithm::HmacSha256),
            (
                "key=k,version=2,algorithm=HMAC_SHA1",
                "k",
                Algorithm::HmacSha1,
            ),
            ("key=a=b,algorithm=HMAC_SHA1", "a=b", Algorithm::HmacSha1),
            // No algorithm, or an empty one: HMAC-SHA1, as twilio-python.
            ("key=k", "k", Algorithm::HmacSha1),
            ("key=k,algorithm=", "k", Algorithm::HmacSha1),
            ("key=k, algorithm = ", "k", Algorithm::HmacSha1),
            // Only ASCII whitespace is trimmed: these name other keys.
            (
                "key=K1\u{a0},algorithm=HMAC_SHA256",
                "K1\u{a0}",
                Algorithm::HmacSha256,
            ),
            (
                "key=\u{3000}K1,algorithm=HMAC_SHA256",
                "\u{3000}K1",
                Algorithm::HmacSha256,
            ),
            (
                "key=K1\u{85}\u{2003}",
                "K1\u{85}\u{2003}",
                Algorithm::HmacSha1,
            ),
            // Names are exact: `Algorithm` is another element, ignored.
            ("key=k,Algorithm=HMAC_SHA256", "k", Algorithm::HmacSha1),
            // One element: a key id no key has (refused when looked up).
            (
                "key=k;algorithm=HMAC_SHA256",
                "k;algorithm=HMAC_SHA256",
                Algorithm::HmacSha1,
            ),
        ];
        for (value, key, alg) in ok {
            assert_eq!(
                parse_signature_settings(value),
                Ok(SignatureSettings {
                    key_id: key,
                    algorithm: *alg
                }),
                "{value}"
            );
        }
        let bad = [
            "",
            "algorithm=HMAC_SHA256",
            "key=,algorithm=HMAC_SHA256",
            "key= \t,algorithm=HMAC_SHA256",
            "key=k,algorithm=HMAC_SHA256,algorithm=HMAC_SHA1",
            "key=k,key=j,algorithm=HMAC_SHA256",
            "key=k,HMAC_SHA256",
        ];
        for value in bad {
            assert!(
                matches!(
                    parse_signature_settings(value),
                    Err(Reason::BadSettings { .. })
                ),
                "{value}"
            );
        }
        for value in [
            "key=k,algorithm=HMAC_SHA512",
            "key=k,algorithm=\"HMAC_SHA256\"",
            "key=k,algorithm=HMAC-SHA256",
            "key=k,algorithm=HMAC_SHA256\u{a0}",
            "key=k,algorithm=\u{3000}HMAC_SHA1",
            "key=k,algorithm=hmac_\u{17f}ha256",
        ] {
            assert!(
                matches!(
                    parse_signature_settings(value),
                    Err(Reason::UnsupportedAlgorithm { .. })
                ),
                "{value}"
            );
        }
    }

    #[test]
    fn settings_length_limit() {
        let at = format!(
            "key={},algorithm=HMAC_SHA1",
            "k".repeat(MAX_SETTINGS_LEN - 24)
        );
        assert_eq!(at.len(), MAX_SETTINGS_LEN);
        assert!(parse_signature_settings(&at).is_ok());
        let over = format!(
            "key={},algorithm=HMAC_SHA1",
            "k".repeat(MAX_SETTINGS_LEN - 23)
        );
        assert_eq!(over.len(), MAX_SETTINGS_LEN + 1);
        assert_eq!(
            parse_signature_settings(&over),
            Err(Reason::BadSettings { what: "too long" })
        );
        // The algorithm echoed in an error is cut.
        let long = format!("key=k,algorithm={}", "x".repeat(200));
        match parse_signature_settings(&long) {
            Err(Reason::UnsupportedAlgorithm { algorithm }) => {
                assert_eq!(algorithm.len(), EXCERPT);
            }
            other => panic!("{other:?}"),
        }
    }
}
