//! A webhook as Twilio sends it (docs/protocol.md §4): a form-encoded POST,
//! signed over the `https://` URL and the sorted parameters.

use crate::{form, signature};

/// The user agent of Twilio's webhook client.
pub const USER_AGENT: &str = "TwilioProxy/1.1";

/// The request bytes of a signed webhook POST to `path` on `host`, closing the
/// connection after the answer. `token: None` leaves the signature out.
#[must_use]
pub fn post(host: &str, path: &str, params: &[(&str, &str)], token: Option<&str>) -> Vec<u8> {
    let body = form::encode(params);
    let mut req = format!(
        "POST {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: {USER_AGENT}\r\nContent-Type: application/x-www-form-urlencoded\r\n"
    );
    if let Some(token) = token {
        let sig = signature::sign(token, &format!("https://{host}{path}"), params);
        req.push_str(&format!("X-Twilio-Signature: {sig}\r\n"));
    }
    req.push_str(&format!(
        "Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    ));
    req.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signed_over_the_https_url_and_the_params() {
        let params = [("CallSid", "CA1"), ("From", "+1 555")];
        let req = String::from_utf8(post("bot.test", "/voice", &params, Some("t"))).unwrap();
        let sig = signature::sign("t", "https://bot.test/voice", &params);
        assert!(req.starts_with("POST /voice HTTP/1.1\r\nHost: bot.test\r\n"));
        assert!(req.contains(&format!("\r\nX-Twilio-Signature: {sig}\r\n")));
        assert!(
            req.ends_with(
                "Content-Length: 25\r\nConnection: close\r\n\r\nCallSid=CA1&From=%2B1+555"
            )
        );
        let unsigned = String::from_utf8(post("bot.test", "/voice", &params, None)).unwrap();
        assert!(!unsigned.contains("X-Twilio-Signature"));
    }
}
