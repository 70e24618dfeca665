//! The wire, and nothing more of it than an echo needs: the answer to the
//! upgrade (RFC 6455 §4.2.2), a client frame's header (§5.2: masked, as
//! every client frame must be), unmasking (§5.3), a server frame's header,
//! and the one rewrite that turns Twilio's inbound `media` message into the
//! outbound one (docs/protocol.md §2) by slicing strings: no JSON parser, no
//! base64, no audio, so that whatever a real server spends above this is its
//! own work.

use base64::Engine as _;
use sha1::{Digest as _, Sha1};

/// The longest request head taken before the upgrade is refused: a
/// Twilio upgrade is well under 2 KiB.
pub const MAX_HEAD: usize = 8 * 1024;
/// The longest client frame payload taken: a Twilio `media` message is
/// about 400 bytes. Longer is closed with 1009 (message too big).
pub const MAX_FRAME: usize = 64 * 1024;

/// RFC 6455 §1.3: appended to the client's key before hashing.
const GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// What the bytes so far say about the request head.
#[derive(Debug, PartialEq, Eq)]
pub enum Head {
    /// No blank line yet: read more.
    Partial,
    /// A WebSocket upgrade of `len` bytes; the answer to send.
    Upgrade {
        /// Bytes of the head, blank line included.
        len: usize,
        /// The whole `101` response.
        response: String,
    },
    /// Anything else (or a head over [`MAX_HEAD`]): answer 400 and close.
    Refused,
}

/// The `400` sent to anything that is not an upgrade.
pub const BAD_REQUEST: &[u8] =
    b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";

/// Reads the request head at the start of `buf`.
#[must_use]
pub fn read_head(buf: &[u8]) -> Head {
    let Some(end) = find(buf, b"\r\n\r\n") else {
        return if buf.len() > MAX_HEAD {
            Head::Refused
        } else {
            Head::Partial
        };
    };
    let len = end + 4;
    if len > MAX_HEAD {
        return Head::Refused;
    }
    let Ok(text) = std::str::from_utf8(buf.get(..end).unwrap_or_default()) else {
        return Head::Refused;
    };
    let mut lines = text.split("\r\n");
    if !lines.next().is_some_and(|l| l.starts_with("GET ")) {
        return Head::Refused;
    }
    let (mut upgrade, mut key) = (false, None);
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let (name, value) = (name.trim(), value.trim());
        if name.eq_ignore_ascii_case("upgrade") {
            upgrade = value.eq_ignore_ascii_case("websocket");
        } else if name.eq_ignore_ascii_case("sec-websocket-key") {
            key = Some(value);
        }
    }
    match key {
        Some(key) if upgrade && !key.is_empty() => Head::Upgrade {
            len,
            response: format!(
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
                 Connection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n\r\n",
                accept(key)
            ),
        },
        _ => Head::Refused,
    }
}

/// `Sec-WebSocket-Accept` for a client's `Sec-WebSocket-Key` (§4.2.2).
#[must_use]
pub fn accept(key: &str) -> String {
    let mut sha = Sha1::new();
    sha.update(key.as_bytes());
    sha.update(GUID.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(sha.finalize())
}

/// A client frame's header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame {
    /// FIN: the last (here: only) frame of its message.
    pub fin: bool,
    /// The opcode: 0x1 text, 0x8 close, 0x9 ping, …
    pub opcode: u8,
    /// Where the payload starts in the buffer.
    pub start: usize,
    /// Where it ends (and the next frame starts).
    pub end: usize,
    /// The masking key.
    pub mask: [u8; 4],
}

/// What the bytes so far hold.
#[derive(Debug, PartialEq, Eq)]
pub enum Parse {
    /// Not a whole frame yet.
    Partial,
    /// A whole frame.
    Frame(Frame),
    /// A frame the server must refuse: close with this code.
    Error(u16),
}

/// Reads the client frame at the start of `buf` (§5.2).
#[must_use]
pub fn parse_frame(buf: &[u8]) -> Parse {
    let (Some(&b0), Some(&b1)) = (buf.first(), buf.get(1)) else {
        return Parse::Partial;
    };
    let (fin, opcode) = (b0 & 0x80 != 0, b0 & 0x0f);
    // No extension was agreed, so the reserved bits must be clear, and a
    // client must mask (§5.1): both are protocol errors.
    if b0 & 0x70 != 0 || b1 & 0x80 == 0 {
        return Parse::Error(1002);
    }
    let (len, at) = match b1 & 0x7f {
        126 => match buf.get(2..4).and_then(|b| <[u8; 2]>::try_from(b).ok()) {
            Some(b) => (u64::from(u16::from_be_bytes(b)), 4),
            None => return Parse::Partial,
        },
        127 => match buf.get(2..10).and_then(|b| <[u8; 8]>::try_from(b).ok()) {
            Some(b) => (u64::from_be_bytes(b), 10),
            None => return Parse::Partial,
        },
        n => (u64::from(n), 2),
    };
    // Control frames are short and whole (§5.5).
    if opcode & 0x8 != 0 && (len > 125 || !fin) {
        return Parse::Error(1002);
    }
    let Ok(len) = usize::try_from(len) else {
        return Parse::Error(1009);
    };
    if len > MAX_FRAME {
        return Parse::Error(1009);
    }
    let Some(mask) = buf
        .get(at..at + 4)
        .and_then(|b| <[u8; 4]>::try_from(b).ok())
    else {
        return Parse::Partial;
    };
    let (start, end) = (at + 4, at + 4 + len);
    if buf.len() < end {
        return Parse::Partial;
    }
    Parse::Frame(Frame {
        fin,
        opcode,
        start,
        end,
        mask,
    })
}

/// Unmasks a payload in place (§5.3), a word at a time.
pub fn unmask(payload: &mut [u8], mask: [u8; 4]) {
    let word = u32::from_ne_bytes(mask);
    let mut chunks = payload.chunks_exact_mut(4);
    for chunk in &mut chunks {
        if let Ok(bytes) = <[u8; 4]>::try_from(&*chunk) {
            chunk.copy_from_slice(&(u32::from_ne_bytes(bytes) ^ word).to_ne_bytes());
        }
    }
    for (b, m) in chunks.into_remainder().iter_mut().zip(mask) {
        *b ^= m;
    }
}

/// Appends an unmasked server frame header (FIN set) for `len` bytes.
pub fn server_head(opcode: u8, len: usize, out: &mut Vec<u8>) {
    out.push(0x80 | opcode);
    match len {
        0..=125 => out.push(len as u8),
        126..=0xffff => {
            out.push(126);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        }
        _ => {
            out.push(127);
            out.extend_from_slice(&(len as u64).to_be_bytes());
        }
    }
}

const HEAD: &[u8] = br#"{"event":"media","streamSid":""#;
const MIDDLE: &[u8] = br#"","media":{"payload":""#;
const TAIL: &[u8] = br#""}}"#;

/// If `text` is Twilio's inbound `media` message, appends the outbound one
/// carrying the same `streamSid` and `payload`, as a server text frame, and
/// returns true. Both values are taken between their quotes as they stand:
/// a stream SID is hex and a payload base64, neither ever escaped.
pub fn media_echo(text: &[u8], out: &mut Vec<u8>) -> bool {
    if find(text, br#""event":"media""#).is_none() {
        return false;
    }
    let (Some(sid), Some(payload)) = (
        string_after(text, br#""streamSid":""#),
        string_after(text, br#""payload":""#),
    ) else {
        return false;
    };
    let len = HEAD.len() + sid.len() + MIDDLE.len() + payload.len() + TAIL.len();
    server_head(0x1, len, out);
    for part in [HEAD, sid, MIDDLE, payload, TAIL] {
        out.extend_from_slice(part);
    }
    true
}

/// The bytes after `key` up to the next quote.
fn string_after<'a>(text: &'a [u8], key: &[u8]) -> Option<&'a [u8]> {
    let rest = text.get(find(text, key)? + key.len()..)?;
    rest.get(..rest.iter().position(|&b| b == b'"')?)
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_is_the_rfc_example() {
        // RFC 6455 §1.3.
        assert_eq!(
            accept("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn heads() {
        let up = b"GET /ws HTTP/1.1\r\nHost: x\r\nUPGRADE: WebSocket\r\nConnection: Upgrade\r\n\
                   sec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\nrest";
        match read_head(up) {
            Head::Upgrade { len, response } => {
                assert_eq!(len, up.len() - 4);
                assert!(response.starts_with("HTTP/1.1 101 "));
                assert!(
                    response.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n")
                );
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(read_head(&up[..20]), Head::Partial);
        assert_eq!(
            read_head(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
            Head::Refused
        );
        assert_eq!(
            read_head(b"POST / HTTP/1.1\r\nUpgrade: websocket\r\nSec-WebSocket-Key: k\r\n\r\n"),
            Head::Refused
        );
        // The limit: a head that never ends is refused once over it.
        assert_eq!(read_head(&[b'a'; MAX_HEAD]), Head::Partial);
        assert_eq!(read_head(&[b'a'; MAX_HEAD + 1]), Head::Refused);
    }

    fn client(opcode: u8, payload: &[u8]) -> Vec<u8> {
        let mask = [1, 2, 3, 4];
        let mut out = vec![0x80 | opcode];
        match payload.len() {
            n @ 0..=125 => out.push(0x80 | n as u8),
            n @ 126..=0xffff => {
                out.push(0x80 | 126);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                out.push(0x80 | 127);
                out.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        out.extend_from_slice(&mask);
        out.extend(payload.iter().zip(mask.iter().cycle()).map(|(b, m)| b ^ m));
        out
    }

    #[test]
    fn frames_of_every_length_encoding() {
        for n in [0, 5, 125, 126, 1000, 0xffff, 0x10000, MAX_FRAME] {
            let payload: Vec<u8> = (0..n).map(|i| i as u8).collect();
            let mut wire = client(0x1, &payload);
            let Parse::Frame(f) = parse_frame(&wire) else {
                panic!("{n}")
            };
            assert_eq!((f.fin, f.opcode, f.end), (true, 1, wire.len()));
            assert_eq!(parse_frame(&wire[..wire.len() - 1]), Parse::Partial);
            let body = &mut wire[f.start..f.end];
            unmask(body, f.mask);
            assert_eq!(body, &payload[..]);
        }
    }

    #[test]
    fn refused_frames() {
        // Over the limit: 1009.
        assert_eq!(
            parse_frame(&client(0x1, &vec![0; MAX_FRAME + 1])),
            Parse::Error(1009)
        );
        assert_eq!(
            parse_frame(&[0x81, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0]),
            Parse::Error(1009)
        );
        // Unmasked, reserved bits, a long or fragmented control frame: 1002.
        assert_eq!(parse_frame(&[0x81, 0x00]), Parse::Error(1002));
        assert_eq!(parse_frame(&[0xc1, 0x80]), Parse::Error(1002));
        assert_eq!(parse_frame(&client(0x9, &[0; 126])), Parse::Error(1002));
        assert_eq!(parse_frame(&[0x09, 0x80]), Parse::Error(1002));
        assert_eq!(parse_frame(&[0x81]), Parse::Partial);
    }

    #[test]
    fn media_becomes_the_outbound_message() {
        let inbound = br#"{"event":"media","sequenceNumber":"3","streamSid":"MZ0123","media":{"track":"inbound","chunk":"2","timestamp":"20","payload":"/v7+"}}"#;
        let mut out = Vec::new();
        assert!(media_echo(inbound, &mut out));
        let text = br#"{"event":"media","streamSid":"MZ0123","media":{"payload":"/v7+"}}"#;
        assert_eq!(out[..2], [0x81, text.len() as u8]);
        assert_eq!(&out[2..], text);
        out.clear();
        assert!(!media_echo(
            br#"{"event":"start","streamSid":"MZ0123"}"#,
            &mut out
        ));
        assert!(!media_echo(
            br#"{"event":"media","streamSid":"MZ"#,
            &mut out
        ));
        assert!(out.is_empty());
    }

    #[test]
    fn server_heads() {
        for (len, head) in [
            (125, vec![0x81, 125]),
            (126, vec![0x81, 126, 0, 126]),
            (0x10000, vec![0x81, 127, 0, 0, 0, 0, 0, 1, 0, 0]),
        ] {
            let mut out = Vec::new();
            server_head(0x1, len, &mut out);
            assert_eq!(out, head);
        }
    }
}
