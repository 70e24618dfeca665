//! `application/x-www-form-urlencoded` as Twilio's webhooks arrive: unreserved
//! bytes as they are, space as `+`, everything else `%XX` in upper case.

/// Encodes `params` in order, joined with `&`.
#[must_use]
pub fn encode(params: &[(&str, &str)]) -> String {
    let mut out = String::new();
    for (i, (name, value)) in params.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        push_encoded(&mut out, name);
        out.push('=');
        push_encoded(&mut out, value);
    }
    out
}

fn push_encoded(out: &mut String, text: &str) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for b in text.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'*' => {
                out.push(char::from(b));
            }
            b' ' => out.push('+'),
            _ => {
                out.push('%');
                out.push(char::from(HEX[usize::from(b >> 4)]));
                out.push(char::from(HEX[usize::from(b & 15)]));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_like_twilio() {
        assert_eq!(encode(&[]), "");
        assert_eq!(
            encode(&[("From", "+14158675309"), ("Body", "a b&c=d/é~")]),
            "From=%2B14158675309&Body=a+b%26c%3Dd%2F%C3%A9%7E"
        );
        assert_eq!(encode(&[("k", "")]), "k=");
    }
}
