//! WebSocket frames on Twilio's side of the socket (RFC 6455 §5): the masked
//! frames a client sends, and reading the frames a server sends, with every
//! rule a client holds a server to.

/// The mask key of [`client_frame`]; any key will do, a fixed one repeats.
pub const MASK: [u8; 4] = [0x0f, 0x1e, 0x2d, 0x3c];

/// A masked client frame: `first` is the first byte as sent (FIN, RSV,
/// opcode), the length in its shortest form.
#[must_use]
pub fn client_frame(first: u8, payload: &[u8]) -> Vec<u8> {
    masked_frame(first, payload, MASK)
}

/// A client frame masked with `mask`.
#[must_use]
pub fn masked_frame(first: u8, payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
    let mut out = vec![first];
    let n = payload.len();
    if n < 126 {
        out.push(0x80 | n as u8);
    } else if let Ok(short) = u16::try_from(n) {
        out.push(0x80 | 126);
        out.extend_from_slice(&short.to_be_bytes());
    } else {
        out.push(0x80 | 127);
        out.extend_from_slice(&(n as u64).to_be_bytes());
    }
    out.extend_from_slice(&mask);
    out.extend(payload.iter().zip(mask.iter().cycle()).map(|(b, m)| b ^ m));
    out
}

/// A whole text message in one masked frame, as Twilio sends its messages.
#[must_use]
pub fn text_frame(text: &str) -> Vec<u8> {
    client_frame(0x81, text.as_bytes())
}

/// One frame a server sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// The opcode.
    pub opcode: u8,
    /// The payload.
    pub payload: Vec<u8>,
}

/// A frame no server may send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameError {
    /// Masked: only clients mask (RFC 6455 §5.1).
    Masked,
    /// Fragmented or with RSV bits: callstream sends whole frames, no
    /// extensions were agreed.
    NotWhole,
    /// A length not in its shortest form, or over 2^63.
    BadLength,
    /// An opcode RFC 6455 does not define.
    Opcode(u8),
    /// A control frame over 125 bytes.
    LongControl,
    /// A close frame with one byte, a code no endpoint may send, or a
    /// reason that is not UTF-8 (RFC 6455 §5.5.1, §7.4).
    BadClose,
    /// A text frame that is not UTF-8.
    NotUtf8,
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FrameError::Masked => f.write_str("a server frame must not be masked"),
            FrameError::NotWhole => f.write_str("server frames are whole, without extensions"),
            FrameError::BadLength => f.write_str("length not in its shortest form"),
            FrameError::Opcode(op) => write!(f, "opcode {op:#x}"),
            FrameError::LongControl => f.write_str("control frame over 125 bytes"),
            FrameError::BadClose => f.write_str("bad close frame"),
            FrameError::NotUtf8 => f.write_str("text frame not UTF-8"),
        }
    }
}

impl std::error::Error for FrameError {}

/// Reads the frame at the front of `bytes`: the frame and the bytes it took,
/// or `Ok(None)` while incomplete.
///
/// # Errors
/// The [`FrameError`] that makes it a frame no server may send.
pub fn read_server_frame(bytes: &[u8]) -> Result<Option<(Frame, usize)>, FrameError> {
    let (Some(&b0), Some(&b1)) = (bytes.first(), bytes.get(1)) else {
        return Ok(None);
    };
    if b1 & 0x80 != 0 {
        return Err(FrameError::Masked);
    }
    let (len, at): (usize, usize) = match b1 & 0x7f {
        126 => {
            let Some(n) = bytes.get(2..4) else {
                return Ok(None);
            };
            let n = usize::from(u16::from_be_bytes([n[0], n[1]]));
            if n < 126 {
                return Err(FrameError::BadLength);
            }
            (n, 4)
        }
        127 => {
            let Some(n) = bytes.get(2..10) else {
                return Ok(None);
            };
            let mut b = [0u8; 8];
            b.copy_from_slice(n);
            let n = u64::from_be_bytes(b);
            if n <= 0xffff || n >> 63 != 0 {
                return Err(FrameError::BadLength);
            }
            (usize::try_from(n).map_err(|_| FrameError::BadLength)?, 10)
        }
        n => (usize::from(n), 2),
    };
    let Some(payload) = bytes.get(at..at.saturating_add(len)) else {
        return Ok(None);
    };
    if b0 & 0x80 == 0 || b0 & 0x70 != 0 {
        return Err(FrameError::NotWhole);
    }
    let opcode = b0 & 0x0f;
    match opcode {
        0x1 => {
            std::str::from_utf8(payload).map_err(|_| FrameError::NotUtf8)?;
        }
        0x2 => {}
        0x8..=0xA if len > 125 => return Err(FrameError::LongControl),
        0x8 => {
            if let Some((code, reason)) = payload.split_first_chunk::<2>() {
                // RFC 6455 §7.4.1 and the IANA registry: codes a peer may send.
                let code = u16::from_be_bytes(*code);
                let sendable = matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999);
                if !sendable || std::str::from_utf8(reason).is_err() {
                    return Err(FrameError::BadClose);
                }
            } else if len == 1 {
                return Err(FrameError::BadClose);
            }
        }
        0x9 | 0xA => {}
        op => return Err(FrameError::Opcode(op)),
    }
    Ok(Some((
        Frame {
            opcode,
            payload: payload.to_vec(),
        },
        at + len,
    )))
}

/// Every whole frame in `bytes`, in order, and the bytes left after them.
///
/// # Errors
/// The first [`FrameError`] met.
pub fn read_server_frames(mut bytes: &[u8]) -> Result<(Vec<Frame>, &[u8]), FrameError> {
    let mut frames = Vec::new();
    while let Some((frame, used)) = read_server_frame(bytes)? {
        frames.push(frame);
        bytes = bytes.get(used..).unwrap_or_default();
    }
    Ok((frames, bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(first: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = vec![first];
        match payload.len() {
            n if n < 126 => out.push(n as u8),
            n if n <= 0xffff => {
                out.push(126);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                out.push(127);
                out.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        out.extend_from_slice(payload);
        out
    }

    #[test]
    fn client_frames_are_masked_with_the_shortest_length() {
        assert_eq!(
            text_frame("Hi"),
            [0x81, 0x82, 0x0f, 0x1e, 0x2d, 0x3c, b'H' ^ 0x0f, b'i' ^ 0x1e]
        );
        assert_eq!(client_frame(0x82, &[0; 126])[1..4], [0x80 | 126, 0, 126]);
        assert_eq!(client_frame(0x82, &[0; 65536])[1], 0x80 | 127);
    }

    #[test]
    fn reads_frames_of_every_length_form_split_anywhere() {
        for len in [0, 125, 126, 65535, 65536] {
            let wire = server(0x82, &vec![7; len]);
            for cut in [0, 1, wire.len() / 2, wire.len() - 1] {
                assert_eq!(read_server_frame(&wire[..cut]), Ok(None), "{len} cut {cut}");
            }
            let (frame, used) = read_server_frame(&wire).unwrap().unwrap();
            assert_eq!((frame.payload.len(), used), (len, wire.len()));
        }
        let mut two = server(0x81, b"a");
        two.extend(server(0x88, &[0x03, 0xe8]));
        two.push(0x81);
        let (frames, rest) = read_server_frames(&two).unwrap();
        assert_eq!(frames.len(), 2);
        assert_eq!(rest, [0x81]);
    }

    #[test]
    fn frames_no_server_may_send() {
        let cases: [(Vec<u8>, FrameError); 9] = [
            (client_frame(0x81, b"x"), FrameError::Masked),
            (server(0x01, b"x"), FrameError::NotWhole),
            (server(0xC1, b"x"), FrameError::NotWhole),
            (vec![0x82, 126, 0, 5, 1, 2, 3, 4, 5], FrameError::BadLength),
            (server(0x83, b""), FrameError::Opcode(3)),
            (server(0x89, &[0; 126]), FrameError::LongControl),
            (server(0x88, &[3]), FrameError::BadClose),
            (server(0x88, &[0x03, 0xed]), FrameError::BadClose),
            (server(0x81, &[0xff]), FrameError::NotUtf8),
        ];
        for (wire, want) in cases {
            assert_eq!(read_server_frame(&wire), Err(want.clone()), "{want}");
        }
    }
}
