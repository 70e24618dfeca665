//! `X-Twilio-Signature` as Twilio computes it (docs/protocol.md §5): HMAC-SHA1
//! keyed with the auth token over the URL followed by every parameter, sorted
//! by name, as `name` then `value` with no separators; standard base64.
//!
//! Written apart from the core's `signature` module on purpose: a test that
//! signs with the code it checks proves nothing. This is the peer's side only
//! (it signs; it does not validate).

use base64::Engine as _;
use hmac::{Hmac, Mac as _};

/// The signature Twilio sends for a request to `url` carrying the form
/// `params` (empty for a GET or a WebSocket upgrade).
///
/// Pairs are sorted by name, then value (byte order, case-sensitive), which is
/// how Twilio orders them; `url` is used verbatim, scheme to query.
#[must_use]
pub fn sign(token: &str, url: &str, params: &[(&str, &str)]) -> String {
    let mut sorted = params.to_vec();
    sorted.sort_unstable();
    let mut mac = match Hmac::<sha1::Sha1>::new_from_slice(token.as_bytes()) {
        Ok(mac) => mac,
        // HMAC takes a key of any length; this arm cannot be reached.
        Err(_) => return String::new(),
    };
    mac.update(url.as_bytes());
    for (name, value) in sorted {
        mac.update(name.as_bytes());
        mac.update(value.as_bytes());
    }
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Twilio's documented example (docs/protocol.md §5).
    const PARAMS: [(&str, &str); 5] = [
        ("CallSid", "CA1234567890ABCDE"),
        ("Caller", "+14158675309"),
        ("Digits", "1234"),
        ("From", "+14158675309"),
        ("To", "+18005551212"),
    ];

    #[test]
    fn twilio_documentation_example() {
        let url = "https://mycompany.com/myapp.php?foo=1&bar=2";
        assert_eq!(sign("12345", url, &PARAMS), "RSOYDt4T1cUTdK1PDd93/VVr8B8=");
        let with_port = "https://mycompany.com:443/myapp.php?foo=1&bar=2";
        assert_eq!(
            sign("12345", with_port, &PARAMS),
            "kvajT1Ptam85bY51eRf/AJRuM3w="
        );
    }

    #[test]
    fn parameter_order_does_not_matter() {
        let url = "https://mycompany.com/myapp.php?foo=1&bar=2";
        let mut reversed = PARAMS;
        reversed.reverse();
        assert_eq!(sign("12345", url, &reversed), sign("12345", url, &PARAMS));
    }

    #[test]
    fn token_and_url_change_the_signature() {
        let url = "wss://callstream.test/ws/twilio-media";
        let base = sign("12345", url, &[]);
        assert_ne!(sign("12346", url, &[]), base);
        assert_ne!(sign("12345", &format!("{url}/"), &[]), base);
    }
}
