//! Checks the bytes a server writes, as its peer reads them: HTTP/1.1
//! answers framed so that a keep-alive client finds where each ends (RFC 9112
//! §6.3), one per request in order and nothing after `Connection: close`;
//! after a `101`, WebSocket frames as RFC 6455 lets a server send them, and
//! (when asked) texts that Twilio accepts on a media stream.
//!
//! A push checker for fuzz targets and tests: [`Wire::expect`] what the
//! server owes, [`Wire::push`] what it wrote, [`Wire::finish`] at the end.

use std::collections::VecDeque;
use std::fmt;

use crate::check::{self, Warning};
use crate::frame::{self, FrameError};
use crate::response::{self, ResponseError};

/// The most bytes an error quotes.
const QUOTE: usize = 200;

/// One answer the peer is owed, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expect {
    /// A response with this status to a request with this method.
    Response {
        /// The status the server's event named.
        status: u16,
        /// The request's method (`HEAD` answers carry no content).
        method: String,
    },
    /// `101 Switching Protocols`; WebSocket frames follow.
    Upgrade,
}

/// What a peer could not accept in the server's output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WireError {
    /// Bytes that are no HTTP answer a client can frame.
    Response(ResponseError, String),
    /// Not HTTP/1.1.
    Version(u8),
    /// An answer after one that said `Connection: close`.
    AfterClose,
    /// An answer nobody asked for.
    Unasked(u16),
    /// A status other than the one owed.
    Status {
        /// What was owed.
        expected: u16,
        /// What came.
        found: u16,
    },
    /// A frame no server may send.
    Frame(FrameError),
    /// A frame after the server's close frame.
    AfterCloseFrame,
    /// A binary frame where Twilio reads only text (its warning 31950).
    Binary,
    /// A text Twilio refuses (its warning 31951).
    Twilio(Warning),
    /// At the end: bytes left that do not make a whole message.
    Leftover(String),
    /// At the end: answers owed and never written.
    Unanswered(Vec<Expect>),
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WireError::Response(e, bytes) => write!(f, "{e}: {bytes:?}"),
            WireError::Version(v) => write!(f, "HTTP/1.{v}, not HTTP/1.1"),
            WireError::AfterClose => f.write_str("a response after `Connection: close`"),
            WireError::Unasked(s) => write!(f, "a response ({s}) nobody asked for"),
            WireError::Status { expected, found } => {
                write!(f, "status {found}, the event said {expected}")
            }
            WireError::Frame(e) => write!(f, "{e}"),
            WireError::AfterCloseFrame => f.write_str("a frame after the close frame"),
            WireError::Binary => f.write_str("a binary frame on a media stream"),
            WireError::Twilio(w) => write!(f, "Twilio would refuse it: {w}"),
            WireError::Leftover(b) => write!(f, "bytes the peer cannot frame: {b:?}"),
            WireError::Unanswered(e) => write!(f, "answers never written: {e:?}"),
        }
    }
}

impl std::error::Error for WireError {}

/// What the peer has read so far, and what it still waits for.
#[derive(Debug, Default)]
pub struct Wire {
    buf: Vec<u8>,
    expect: VecDeque<Expect>,
    websocket: bool,
    /// A response said `Connection: close`, or a close frame was sent.
    last_sent: bool,
    /// Text frames must be messages Twilio accepts on a media stream, and
    /// binary frames are refused.
    pub twilio_text: bool,
}

impl Wire {
    /// The peer is owed `e` after what is already expected.
    pub fn expect(&mut self, e: Expect) {
        self.expect.push_back(e);
    }

    /// Bytes the server wrote; checks every complete message in them.
    ///
    /// # Errors
    /// The first [`WireError`] met; the checker is then of no further use.
    pub fn push(&mut self, bytes: &[u8]) -> Result<(), WireError> {
        self.buf.extend_from_slice(bytes);
        while self.step()? {}
        Ok(())
    }

    /// Everything was written: nothing may be left half-sent or owed.
    ///
    /// # Errors
    /// [`WireError::Leftover`] or [`WireError::Unanswered`], or what
    /// [`Wire::push`] reports.
    pub fn finish(&mut self) -> Result<(), WireError> {
        while self.step()? {}
        if !self.buf.is_empty() {
            return Err(WireError::Leftover(quote(&self.buf)));
        }
        if !self.websocket && !self.expect.is_empty() {
            return Err(WireError::Unanswered(self.expect.iter().cloned().collect()));
        }
        Ok(())
    }

    /// Reads one complete message off the front; false when none is complete.
    fn step(&mut self) -> Result<bool, WireError> {
        if self.buf.is_empty() {
            return Ok(false);
        }
        if self.websocket {
            self.frame()
        } else {
            self.response()
        }
    }

    fn response(&mut self) -> Result<bool, WireError> {
        let bad = |e, buf: &[u8]| WireError::Response(e, quote(buf));
        let Some(head) = response::parse_head(&self.buf).map_err(|e| bad(e, &self.buf))? else {
            return Ok(false);
        };
        if self.last_sent {
            return Err(WireError::AfterClose);
        }
        if head.version != 1 {
            return Err(WireError::Version(head.version));
        }
        if head.status == 100 {
            // An interim answer to `Expect: 100-continue`: no content, no
            // event of its own, and the final answer still follows.
            if head.header("content-length").is_some() || head.closes() {
                return Err(WireError::Response(
                    response::ResponseError::Malformed("a 100 with fields".to_owned()),
                    quote(&self.buf),
                ));
            }
            self.buf.drain(..head.len);
            return Ok(true);
        }
        let method = match self.expect.front() {
            Some(Expect::Response { status, method }) => {
                if head.status != *status {
                    return Err(WireError::Status {
                        expected: *status,
                        found: head.status,
                    });
                }
                method.as_str()
            }
            Some(Expect::Upgrade) if head.status != 101 => {
                return Err(WireError::Status {
                    expected: 101,
                    found: head.status,
                });
            }
            Some(Expect::Upgrade) => "GET",
            None => return Err(WireError::Unasked(head.status)),
        };
        let body = head.body_len(method).map_err(|e| bad(e, &self.buf))?;
        let Some(end) = head
            .len
            .checked_add(body)
            .filter(|end| *end <= self.buf.len())
        else {
            // Not all written yet.
            return Ok(false);
        };
        self.expect.pop_front();
        self.buf.drain(..end);
        self.websocket = head.status == 101;
        self.last_sent = head.closes();
        Ok(true)
    }

    fn frame(&mut self) -> Result<bool, WireError> {
        let Some((frame, used)) = frame::read_server_frame(&self.buf).map_err(WireError::Frame)?
        else {
            return Ok(false);
        };
        if self.last_sent {
            return Err(WireError::AfterCloseFrame);
        }
        match frame.opcode {
            0x1 if self.twilio_text => {
                let text = String::from_utf8_lossy(&frame.payload);
                check::check_text(&text, None).map_err(WireError::Twilio)?;
            }
            0x2 if self.twilio_text => return Err(WireError::Binary),
            0x8 => self.last_sent = true,
            _ => {}
        }
        self.buf.drain(..used);
        Ok(true)
    }
}

fn quote(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes.get(..QUOTE).unwrap_or(bytes)).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    const CLEAR: &str = r#"{"event":"clear","streamSid":"MZ0123456789abcdef0123456789abcdef"}"#;

    fn text(t: &str) -> Vec<u8> {
        let mut out = vec![0x81, t.len() as u8];
        out.extend_from_slice(t.as_bytes());
        out
    }

    fn get(status: u16) -> Expect {
        Expect::Response {
            status,
            method: "GET".into(),
        }
    }

    #[test]
    fn keep_alive_answers_then_an_upgrade_then_frames() {
        let mut w = Wire {
            twilio_text: true,
            ..Wire::default()
        };
        w.expect(get(200));
        w.expect(Expect::Response {
            status: 200,
            method: "HEAD".into(),
        });
        w.expect(Expect::Upgrade);
        let mut out = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok".to_vec();
        out.extend_from_slice(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n");
        out.extend_from_slice(b"HTTP/1.1 101 Switching Protocols\r\n\r\n");
        out.extend(text(CLEAR));
        out.extend([0x88, 0x02, 0x03, 0xe8]);
        // Byte by byte: every split is a place a partial write can stop.
        for b in &out {
            w.push(std::slice::from_ref(b)).unwrap();
        }
        w.finish().unwrap();
    }

    #[test]
    fn what_a_peer_refuses() {
        let cases: Vec<(Vec<Expect>, Vec<u8>, WireError)> = vec![
            (vec![], b"HTTP/1.1 200 OK\r\n\r\n".to_vec(), WireError::Unasked(200)),
            (
                vec![get(404)],
                b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n".to_vec(),
                WireError::Status {
                    expected: 404,
                    found: 200,
                },
            ),
            (
                vec![get(200), get(200)],
                b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\nHTTP/1.1 200 OK\r\n\r\n"
                    .to_vec(),
                WireError::AfterClose,
            ),
            (
                vec![get(200)],
                b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n".to_vec(),
                WireError::Version(0),
            ),
            (
                vec![Expect::Upgrade],
                [b"HTTP/1.1 101 Switching Protocols\r\n\r\n".as_slice(), &[0x82, 0]].concat(),
                WireError::Binary,
            ),
            (
                vec![Expect::Upgrade],
                [
                    b"HTTP/1.1 101 Switching Protocols\r\n\r\n".as_slice(),
                    &[0x88, 0],
                    &[0x89, 0],
                ]
                .concat(),
                WireError::AfterCloseFrame,
            ),
        ];
        for (expect, bytes, want) in cases {
            let mut w = Wire {
                twilio_text: true,
                ..Wire::default()
            };
            for e in expect {
                w.expect(e);
            }
            assert_eq!(w.push(&bytes), Err(want.clone()), "{want}");
        }
        let mut w = Wire {
            twilio_text: true,
            ..Wire::default()
        };
        w.expect(Expect::Upgrade);
        let bad = [
            b"HTTP/1.1 101 Switching Protocols\r\n\r\n".as_slice(),
            &text(r#"{"event":"stop"}"#),
        ]
        .concat();
        assert!(matches!(w.push(&bad), Err(WireError::Twilio(_))));
    }

    #[test]
    fn finish_wants_everything_whole_and_answered() {
        let mut w = Wire::default();
        w.expect(get(200));
        w.push(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok")
            .unwrap();
        assert!(matches!(w.finish(), Err(WireError::Leftover(_))));
        let mut w = Wire::default();
        w.expect(get(200));
        assert_eq!(w.finish(), Err(WireError::Unanswered(vec![get(200)])));
    }
}
