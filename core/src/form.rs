//! `application/x-www-form-urlencoded`: webhook bodies and query strings.
//!
//! Twilio posts its webhooks form-encoded (or sends the same fields as a GET
//! query string), and the request signature covers the **decoded** names and
//! values (docs/protocol.md §5). So this decoder must produce exactly the strings
//! Twilio signed, which is what the WHATWG URL standard's
//! `application/x-www-form-urlencoded` parser (browsers), Python's
//! `urllib.parse.parse_qsl` and the frameworks behind Twilio's helper libraries
//! produce for everything Twilio sends.
//!
//! # Contract
//!
//! - The input is split on `&`; empty pieces are skipped (`a=1&&b=2` has two
//!   pairs). Each piece is split at its **first** `=`: `a=b=c` is `("a", "b=c")`,
//!   and a piece without `=` is a name with an empty value (`a` is `("a", "")`).
//! - In names and values `+` becomes a space and `%XX` (two hex digits, either
//!   case) becomes the byte `XX`. An invalid escape (`%zz`, or `%` or `%4` at the
//!   end) is kept literally, as browsers and Python do, so a value like
//!   `100%` signs and validates the same everywhere.
//! - Pairs come out in input order; a repeated name gives one pair per
//!   occurrence (the signature sorts and de-duplicates repeated values itself).
//! - Decoded bytes must be UTF-8. Twilio's values are Unicode strings and it
//!   signs their UTF-8 bytes, so genuine requests always decode; invalid UTF-8
//!   is refused with [`FormError::InvalidUtf8`] rather than replaced with
//!   U+FFFD, because a lossy value would hash differently from whatever the
//!   sender signed and would hide the fault. Nothing is trimmed (docs/protocol.md §5:
//!   never trim values).
//! - At most [`MAX_PAIRS`] pairs by default ([`parse_with_limit`] to choose):
//!   a 64 KiB body could otherwise hold tens of thousands of empty pairs.
//!   Twilio's webhooks carry a few dozen.
//!
//! Never panics on any input; allocation is proportional to the input.
//!
//! ```
//! use callstream_core::form;
//! let pairs = form::parse(b"CallSid=CA123&From=%2B14155550100&Caller+Name=Ada+L.&x=100%").unwrap();
//! assert_eq!(pairs, vec![
//!     ("CallSid".to_string(), "CA123".to_string()),
//!     ("From".to_string(), "+14155550100".to_string()),
//!     ("Caller Name".to_string(), "Ada L.".to_string()),
//!     ("x".to_string(), "100%".to_string()),
//! ]);
//! assert_eq!(form::encode(&[("From", "+1 415")]), "From=%2B1+415");
//! ```

use std::fmt;

/// Default limit on the number of name/value pairs [`parse`] accepts.
pub const MAX_PAIRS: usize = 1000;

/// Why a form could not be decoded. Every variant is the sender's fault; the
/// answer is [`status`](FormError::status) (400).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum FormError {
    /// More than `limit` pairs.
    TooManyPairs {
        /// The limit that was crossed.
        limit: usize,
    },
    /// The decoded name or value of pair number `pair` (0-based, counting only
    /// non-empty pieces) is not valid UTF-8.
    InvalidUtf8 {
        /// Index of the offending pair.
        pair: usize,
    },
}

impl FormError {
    /// The HTTP status to answer: 400 Bad Request for every variant.
    #[must_use]
    pub fn status(&self) -> u16 {
        400
    }
}

impl fmt::Display for FormError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FormError::TooManyPairs { limit } => {
                write!(f, "form has more than {limit} name/value pairs")
            }
            FormError::InvalidUtf8 { pair } => {
                write!(f, "form pair {pair} does not decode to UTF-8")
            }
        }
    }
}

impl std::error::Error for FormError {}

/// Decodes a form body or query string (without the leading `?`), keeping at
/// most [`MAX_PAIRS`] pairs. See the [module docs](self) for the rules.
///
/// # Errors
///
/// [`FormError::TooManyPairs`] past the limit, [`FormError::InvalidUtf8`] when
/// a decoded name or value is not UTF-8.
pub fn parse(input: &[u8]) -> Result<Vec<(String, String)>, FormError> {
    parse_with_limit(input, MAX_PAIRS)
}

/// [`parse`] with a chosen limit on the number of pairs.
///
/// # Errors
///
/// As [`parse`], with `max_pairs` as the limit.
pub fn parse_with_limit(
    input: &[u8],
    max_pairs: usize,
) -> Result<Vec<(String, String)>, FormError> {
    // Twilio's bodies are ASCII, so the input is UTF-8 nearly always: then it
    // is checked once, here, and names and values are cut from it as text
    // (at ASCII bytes, so characters stay whole) and not checked again.
    // Otherwise every component is decoded as bytes and checked on its own,
    // which gives the same pairs, or the same error.
    let text = match std::str::from_utf8(input) {
        Ok(text) => text,
        Err(_) => return parse_bytes(input, max_pairs),
    };
    // Room for every piece up front (bounded by the limit): one allocation.
    let pieces = input.iter().filter(|&&b| b == b'&').count() + 1;
    let mut pairs = Vec::with_capacity(pieces.min(max_pairs));
    // One pass over the bytes finds each piece's end and first `=`.
    let mut start = 0;
    let mut eq = None;
    for i in 0..=input.len() {
        match input.get(i) {
            Some(b'=') if eq.is_none() => eq = Some(i),
            Some(b'&') | None => {
                if i > start {
                    if pairs.len() == max_pairs {
                        return Err(FormError::TooManyPairs { limit: max_pairs });
                    }
                    let (name, value) = match eq {
                        Some(eq) => (text.get(start..eq), text.get(eq + 1..i)),
                        None => (text.get(start..i), Some("")),
                    };
                    let index = pairs.len();
                    let bad = FormError::InvalidUtf8 { pair: index };
                    let name = name.and_then(decode_text).ok_or(bad.clone())?;
                    let value = value.and_then(decode_text).ok_or(bad)?;
                    pairs.push((name, value));
                }
                start = i + 1;
                eq = None;
            }
            Some(_) => {}
        }
    }
    Ok(pairs)
}

/// The byte-wise form of [`parse_with_limit`], for an input that is not
/// UTF-8 (each component is then checked on its own).
fn parse_bytes(input: &[u8], max_pairs: usize) -> Result<Vec<(String, String)>, FormError> {
    let mut pairs = Vec::new();
    for piece in input.split(|&b| b == b'&').filter(|p| !p.is_empty()) {
        if pairs.len() == max_pairs {
            return Err(FormError::TooManyPairs { limit: max_pairs });
        }
        let (name, value) = match piece.iter().position(|&b| b == b'=') {
            Some(eq) => (&piece[..eq], &piece[eq + 1..]),
            None => (piece, &b""[..]),
        };
        let index = pairs.len();
        let name = decode_component(name).ok_or(FormError::InvalidUtf8 { pair: index })?;
        let value = decode_component(value).ok_or(FormError::InvalidUtf8 { pair: index })?;
        pairs.push((name, value));
    }
    Ok(pairs)
}

/// [`decode_component`] for a component that is already text: the same
/// result, but the runs between escapes are copied as text, and only an
/// escape outside ASCII (which may build a multi-byte character, or an
/// invalid one) sends the component through the byte-wise decoder.
fn decode_text(component: &str) -> Option<String> {
    let bytes = component.as_bytes();
    let is_special = |b: &u8| *b == b'+' || *b == b'%';
    let Some(first) = bytes.iter().position(is_special) else {
        return Some(component.to_owned());
    };
    let mut out = String::with_capacity(component.len());
    out.push_str(component.get(..first)?);
    let mut i = first;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'+' => {
                out.push(' ');
                i += 1;
            }
            b'%' => match (
                bytes.get(i + 1).and_then(|&h| hex_value(h)),
                bytes.get(i + 2).and_then(|&l| hex_value(l)),
            ) {
                (Some(hi), Some(lo)) if hi < 8 => {
                    out.push(char::from(hi << 4 | lo));
                    i += 3;
                }
                (Some(_), Some(_)) => return decode_component(bytes),
                // An invalid escape stays literal (WHATWG, Python's unquote).
                _ => {
                    out.push('%');
                    i += 1;
                }
            },
            _ => {
                // The run up to the next escape, as text: it starts after
                // an ASCII byte and ends before one, so it is whole characters.
                let rest = bytes.get(i..)?;
                let end = rest
                    .iter()
                    .position(is_special)
                    .map_or(bytes.len(), |p| i + p);
                out.push_str(component.get(i..end)?);
                i = end;
            }
        }
    }
    Some(out)
}

/// Decodes one name or value: `+` → space, valid `%XX` → byte, anything else
/// literal. `None` when the result is not UTF-8.
fn decode_component(input: &[u8]) -> Option<String> {
    // Fast path: nothing to decode.
    if !input.iter().any(|&b| b == b'+' || b == b'%') {
        return std::str::from_utf8(input).ok().map(str::to_owned);
    }
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while let Some(&b) = input.get(i) {
        match b {
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b'%' => match (
                input.get(i + 1).and_then(|&h| hex_value(h)),
                input.get(i + 2).and_then(|&l| hex_value(l)),
            ) {
                (Some(hi), Some(lo)) => {
                    out.push(hi << 4 | lo);
                    i += 3;
                }
                // An invalid escape stays literal (WHATWG, Python's unquote).
                _ => {
                    out.push(b'%');
                    i += 1;
                }
            },
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Encodes pairs as `name=value&…`, the WHATWG serializer's output: ASCII
/// letters, digits and `*-._` stay, space becomes `+`, every other byte of the
/// UTF-8 becomes `%XX` (upper-case hex). Every pair gets an `=`, so
/// `parse(encode(p).as_bytes()) == p` for any pairs of strings.
#[must_use]
pub fn encode<K: AsRef<str>, V: AsRef<str>>(pairs: &[(K, V)]) -> String {
    let mut out = String::new();
    for (i, (name, value)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        encode_component(name.as_ref(), &mut out);
        out.push('=');
        encode_component(value.as_ref(), &mut out);
    }
    out
}

/// Appends one form-encoded name or value to `out` (the rules of [`encode`]).
pub fn encode_component(input: &str, out: &mut String) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in input.as_bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'*' | b'-' | b'.' | b'_' => {
                out.push(char::from(b));
            }
            b' ' => out.push('+'),
            _ => {
                out.push('%');
                out.push(char::from(HEX[usize::from(b >> 4)]));
                out.push(char::from(HEX[usize::from(b & 0xF)]));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(input: &str) -> Vec<(String, String)> {
        parse(input.as_bytes()).unwrap()
    }

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn table() {
        let cases: &[(&str, &[(&str, &str)])] = &[
            ("", &[]),
            ("&", &[]),
            ("&&a=1&&", &[("a", "1")]),
            ("a=1&b=2", &[("a", "1"), ("b", "2")]),
            ("a", &[("a", "")]),
            ("a=", &[("a", "")]),
            ("=", &[("", "")]),
            ("=v", &[("", "v")]),
            ("a=b=c", &[("a", "b=c")]),
            ("a=1&a=2&a=1", &[("a", "1"), ("a", "2"), ("a", "1")]),
            ("a+b=c+d", &[("a b", "c d")]),
            ("a%20b=c%2Bd", &[("a b", "c+d")]),
            ("x=%2b%2B", &[("x", "++")]),
            ("x=%26%3D", &[("x", "&=")]),
            ("x=100%", &[("x", "100%")]),
            ("x=%4", &[("x", "%4")]),
            ("x=%zz", &[("x", "%zz")]),
            ("x=%g0%0g", &[("x", "%g0%0g")]),
            ("x=%%41", &[("x", "%A")]),
            ("x=%E2%82%AC", &[("x", "€")]),
            ("x=€", &[("x", "€")]),
            ("x=%20%20", &[("x", "  ")]),
            ("x=a;b", &[("x", "a;b")]),
            ("x=%00", &[("x", "\0")]),
        ];
        for (input, want) in cases {
            assert_eq!(p(input), pairs(want), "input {input:?}");
        }
    }

    #[test]
    fn twilio_voice_webhook() {
        let body = "AccountSid=AC00000000000000000000000000000000&ApiVersion=2010-04-01\
            &CallSid=CA11111111111111111111111111111111&CallStatus=ringing\
            &Called=%2B18005551212&Caller=%2B14158675309&Direction=inbound\
            &From=%2B14158675309&FromCity=SAN+FRANCISCO&To=%2B18005551212";
        let got = p(body);
        assert_eq!(got.len(), 10);
        assert_eq!(got[4], ("Called".into(), "+18005551212".into()));
        assert_eq!(got[8], ("FromCity".into(), "SAN FRANCISCO".into()));
    }

    #[test]
    fn invalid_utf8_is_refused_with_the_pair_index() {
        assert_eq!(parse(b"a=1&b=%FF"), Err(FormError::InvalidUtf8 { pair: 1 }));
        assert_eq!(parse(b"%C3=1"), Err(FormError::InvalidUtf8 { pair: 0 }));
        assert_eq!(parse(b"a=\xFF"), Err(FormError::InvalidUtf8 { pair: 0 }));
        assert_eq!(FormError::InvalidUtf8 { pair: 0 }.status(), 400);
    }

    #[test]
    fn pair_limit_is_exact() {
        let at = "a=1&".repeat(MAX_PAIRS);
        assert_eq!(parse(at.as_bytes()).unwrap().len(), MAX_PAIRS);
        let over = format!("{at}b");
        assert_eq!(
            parse(over.as_bytes()),
            Err(FormError::TooManyPairs { limit: MAX_PAIRS })
        );
        // Empty pieces do not count.
        assert_eq!(parse_with_limit(b"&&&a&&&b&&&", 2).unwrap().len(), 2);
        assert_eq!(
            parse_with_limit(b"a&b&c", 2),
            Err(FormError::TooManyPairs { limit: 2 })
        );
        assert_eq!(parse_with_limit(b"", 0), Ok(vec![]));
    }

    #[test]
    fn text_decoder_matches_the_byte_decoder() {
        for input in [
            "",
            "a",
            "+",
            "%",
            "%4",
            "%41",
            "%7F",
            "%80",
            "%C3%A9",
            "%C3",
            "%E2%82%AC+x",
            "é%20€",
            "a+b%zz%2",
            "%%41",
            "100%",
            "é+%C3%A9+%FF",
        ] {
            assert_eq!(
                decode_text(input),
                decode_component(input.as_bytes()),
                "{input:?}"
            );
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]

        /// The UTF-8 fast path and the byte-wise path agree on every text,
        /// limit and error included.
        #[test]
        fn text_parse_matches_byte_parse(
            input in "[ab=&+%0-9A-Fé€\u{80}-\u{10FFFF}]{0,48}",
            limit in 0usize..6,
        ) {
            proptest::prop_assert_eq!(
                parse_with_limit(input.as_bytes(), limit),
                parse_bytes(input.as_bytes(), limit)
            );
        }

        /// The UTF-8 fast path and the byte-wise path agree on every text.
        #[test]
        fn text_path_matches_byte_path(input in "[a-z%=&+0-9A-Fé€\u{80}-\u{10FFFF}]{0,48}") {
            proptest::prop_assert_eq!(
                decode_text(&input),
                decode_component(input.as_bytes())
            );
        }
    }

    #[test]
    fn encode_table() {
        assert_eq!(encode::<&str, &str>(&[]), "");
        assert_eq!(encode(&[("a", "")]), "a=");
        assert_eq!(encode(&[("a b", "c+d&e=f")]), "a+b=c%2Bd%26e%3Df");
        assert_eq!(encode(&[("x", "*-._~€")]), "x=*-._%7E%E2%82%AC");
        assert_eq!(encode(&[("a", "1"), ("a", "2")]), "a=1&a=2");
    }

    #[test]
    fn errors_read_well() {
        assert_eq!(
            FormError::TooManyPairs { limit: 3 }.to_string(),
            "form has more than 3 name/value pairs"
        );
    }
}
