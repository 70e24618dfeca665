//! Writing messages: JSON built by hand into a caller's `String`, so the hot
//! path (one `media` message per 20 ms frame) allocates nothing once the
//! buffer has grown.

use super::BASE64_OUT;
use crate::codec;
use crate::sid::StreamSid;
use base64::Engine as _;

/// Appends `s` as a JSON string literal (quotes included).
///
/// Escapes what RFC 8259 requires (`"`, `\` and U+0000..U+001F) and nothing
/// else, so the text reads back byte for byte.
fn push_json_string(out: &mut String, s: &str) {
    out.push('"');
    let mut rest = s;
    while let Some(at) = rest.find(|c: char| c == '"' || c == '\\' || c < '\u{20}') {
        let (clean, tail) = rest.split_at(at);
        out.push_str(clean);
        let mut chars = tail.chars();
        if let Some(c) = chars.next() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                '\u{08}' => out.push_str("\\b"),
                '\u{0C}' => out.push_str("\\f"),
                other => {
                    const HEX: &[u8; 16] = b"0123456789abcdef";
                    let n = other as usize;
                    out.push_str("\\u00");
                    out.push(char::from(HEX[(n >> 4) & 0xF]));
                    out.push(char::from(HEX[n & 0xF]));
                }
            }
        }
        rest = chars.as_str();
    }
    out.push_str(rest);
    out.push('"');
}

/// Appends one `media` message to Twilio carrying `ulaw` (raw μ-law, 8 kHz
/// mono, no header), exactly
/// `{"event":"media","streamSid":"MZ…","media":{"payload":"<base64>"}}`.
///
/// Any length is allowed (Twilio buffers and plays outbound audio in order);
/// an empty `ulaw` writes an empty payload.
pub fn write_media(out: &mut String, sid: &StreamSid, ulaw: &[u8]) {
    out.reserve(64 + ulaw.len().div_ceil(3) * 4);
    out.push_str(r#"{"event":"media","streamSid":""#);
    out.push_str(sid.as_str());
    out.push_str(r#"","media":{"payload":""#);
    BASE64_OUT.encode_string(ulaw, out);
    out.push_str(r#""}}"#);
}

/// Like [`write_media`], but encodes 16-bit linear samples to μ-law on the way
/// (with [`codec::encode`]), without an intermediate buffer on the heap.
pub fn write_media_pcm(out: &mut String, sid: &StreamSid, pcm: &[i16]) {
    // Chunks are a multiple of 3 bytes so that base64 pads only at the very end.
    const CHUNK: usize = 480;
    out.reserve(64 + pcm.len().div_ceil(3) * 4);
    out.push_str(r#"{"event":"media","streamSid":""#);
    out.push_str(sid.as_str());
    out.push_str(r#"","media":{"payload":""#);
    let mut ulaw = [0u8; CHUNK];
    for samples in pcm.chunks(CHUNK) {
        let n = codec::encode_into(samples, &mut ulaw);
        BASE64_OUT.encode_string(ulaw.get(..n).unwrap_or_default(), out);
    }
    out.push_str(r#""}}"#);
}

/// Appends one `mark` message to Twilio, exactly
/// `{"event":"mark","streamSid":"MZ…","mark":{"name":"<name>"}}`, with `name`
/// JSON-escaped. Twilio echoes the mark when the audio queued before it has
/// played, or at once when a `clear` flushed it.
pub fn write_mark(out: &mut String, sid: &StreamSid, name: &str) {
    out.reserve(64 + name.len());
    out.push_str(r#"{"event":"mark","streamSid":""#);
    out.push_str(sid.as_str());
    out.push_str(r#"","mark":{"name":"#);
    push_json_string(out, name);
    out.push_str("}}");
}

/// Appends one `clear` message to Twilio, exactly
/// `{"event":"clear","streamSid":"MZ…"}`: Twilio drops the audio it has
/// buffered and echoes every pending mark.
pub fn write_clear(out: &mut String, sid: &StreamSid) {
    out.push_str(r#"{"event":"clear","streamSid":""#);
    out.push_str(sid.as_str());
    out.push_str(r#""}"#);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(s: &str) -> String {
        let mut out = String::new();
        push_json_string(&mut out, s);
        out
    }

    #[test]
    fn json_strings_escape_exactly_what_rfc_8259_requires() {
        let cases: &[(&str, &str)] = &[
            ("", r#""""#),
            ("label", r#""label""#),
            ("a\"b", r#""a\"b""#),
            ("a\\b", r#""a\\b""#),
            ("line\nfeed\r\t", r#""line\nfeed\r\t""#),
            ("\u{0}\u{1f}\u{08}\u{0c}", r#""\u0000\u001f\b\f""#),
            ("/ ü 😀 \u{7f} \u{2028}", "\"/ ü 😀 \u{7f} \u{2028}\""),
        ];
        for (input, want) in cases {
            assert_eq!(json(input), *want, "{input:?}");
        }
    }

    #[test]
    fn writers_produce_exactly_the_documented_fields() {
        let sid = StreamSid::from_u128(0xabc);
        let mut out = String::new();
        write_media(&mut out, &sid, &[0xFF, 0x7F, 0x00]);
        assert_eq!(
            out,
            r#"{"event":"media","streamSid":"MZ00000000000000000000000000000abc","media":{"payload":"/38A"}}"#
        );
        out.clear();
        write_mark(&mut out, &sid, "say \"hi\"");
        assert_eq!(
            out,
            r#"{"event":"mark","streamSid":"MZ00000000000000000000000000000abc","mark":{"name":"say \"hi\""}}"#
        );
        out.clear();
        write_clear(&mut out, &sid);
        assert_eq!(
            out,
            r#"{"event":"clear","streamSid":"MZ00000000000000000000000000000abc"}"#
        );
    }

    #[test]
    fn writers_append() {
        let sid = StreamSid::from_u128(1);
        let mut out = String::from("x");
        write_clear(&mut out, &sid);
        write_clear(&mut out, &sid);
        assert!(out.starts_with("x{"));
        assert_eq!(out.matches("clear").count(), 2);
    }

    #[test]
    fn media_pcm_equals_media_of_encoded_samples_across_chunk_sizes() {
        let sid = StreamSid::from_u128(9);
        for len in [0usize, 1, 2, 3, 159, 160, 479, 480, 481, 1000, 1441] {
            let pcm: Vec<i16> = (0..len).map(|i| (i as i16).wrapping_mul(397)).collect();
            let ulaw: Vec<u8> = pcm.iter().map(|&s| codec::encode(s)).collect();
            let (mut a, mut b) = (String::new(), String::new());
            write_media_pcm(&mut a, &sid, &pcm);
            write_media(&mut b, &sid, &ulaw);
            assert_eq!(a, b, "{len} samples");
        }
    }
}
