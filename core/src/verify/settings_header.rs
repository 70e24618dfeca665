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
/// names are ignored (room for later additions). Where that library falls
/// back to HMAC-SHA1 this refuses instead, since a header that names a shared
/// key but no readable algorithm cannot be checked safely: no `algorithm`, an
/// empty one, one named twice, the same for `key`, an element without `=`.
/// An algorithm that is not `HMAC_SHA1` or `HMAC_SHA256` is
/// [`Reason::UnsupportedAlgorithm`].
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
pub fn parse_signature_settings(value: &str) -> Result<SignatureSettings<'_>, Reason> {
    let bad = |what| Err(Reason::BadSettings { what });
    if value.len() > MAX_SETTINGS_LEN {
        return bad("too long");
    }
    let mut key_id = None;
    let mut algorithm = None;
    for element in value.split(',') {
        if element.trim().is_empty() {
            continue;
        }
        let Some((name, value)) = element.split_once('=') else {
            return bad("an element without =");
        };
        let slot = match name.trim() {
            "key" => &mut key_id,
            "algorithm" => &mut algorithm,
            _ => continue,
        };
        if slot.is_some() {
            return bad("a parameter named twice");
        }
        let value = value.trim();
        if value.is_empty() {
            return bad("an empty value");
        }
        *slot = Some(value);
    }
    let Some(key_id) = key_id else {
        return bad("no key");
    };
    let Some(name) = algorithm else {
        return bad("no algorithm");
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
            "key=k",
            "algorithm=HMAC_SHA256",
            "key=,algorithm=HMAC_SHA256",
            "key=k,algorithm=",
            "key=k,algorithm=HMAC_SHA256,algorithm=HMAC_SHA1",
            "key=k,key=j,algorithm=HMAC_SHA256",
            "key=k,Algorithm=HMAC_SHA256",
            "key=k;algorithm=HMAC_SHA256",
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
