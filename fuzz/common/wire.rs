//! Checks the bytes a server writes, as the peer would read them: HTTP/1.1
//! responses framed so that a keep-alive client can find where each ends
//! (RFC 9112 §6.3), then, after a `101`, WebSocket frames as RFC 6455 lets a
//! server send them. Shared by the fuzz targets through `#[path]`.
#![allow(dead_code)]

use std::collections::VecDeque;

/// One answer the peer is owed, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expect {
    /// A response with this status to a request with this method.
    Response { status: u16, method: String },
    /// `101 Switching Protocols`; WebSocket frames follow.
    Upgrade,
}

/// What the peer has read so far, and what it still waits for.
#[derive(Debug, Default)]
pub struct Wire {
    buf: Vec<u8>,
    expect: VecDeque<Expect>,
    websocket: bool,
    /// A response said `Connection: close`, or a close frame was sent.
    last_sent: bool,
    /// Text frames must be messages Twilio accepts on a media stream.
    pub twilio_text: bool,
}

impl Wire {
    /// The peer is owed `e` after what is already expected.
    pub fn expect(&mut self, e: Expect) {
        self.expect.push_back(e);
    }

    /// Bytes the server wrote; checks every complete message in them.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
        while self.step() {}
    }

    /// Everything was written: nothing may be left half-sent or unexplained.
    pub fn finish(&mut self) {
        while self.step() {}
        assert!(
            self.buf.is_empty(),
            "bytes the peer cannot frame: {:?}",
            String::from_utf8_lossy(&self.buf[..self.buf.len().min(200)])
        );
        if !self.websocket {
            assert!(
                self.expect.is_empty(),
                "answers never written: {:?}",
                self.expect
            );
        }
    }

    /// Reads one complete message off the front; false when none is complete.
    fn step(&mut self) -> bool {
        if self.buf.is_empty() {
            return false;
        }
        if self.websocket {
            self.frame()
        } else {
            self.response()
        }
    }

    fn response(&mut self) -> bool {
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut r = httparse::Response::new(&mut headers);
        let head_len = match r.parse(&self.buf) {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) => return false,
            Err(e) => panic!(
                "not an HTTP response ({e}): {:?}",
                String::from_utf8_lossy(&self.buf[..self.buf.len().min(200)])
            ),
        };
        assert!(!self.last_sent, "a response after `Connection: close`");
        assert_eq!(r.version, Some(1), "not HTTP/1.1");
        let status = r.code.unwrap_or(0);
        let mut lengths = r
            .headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case("content-length"));
        let length = lengths.next().map(|h| {
            std::str::from_utf8(h.value)
                .ok()
                .and_then(|v| v.parse::<usize>().ok())
                .expect("Content-Length is a number")
        });
        assert!(lengths.next().is_none(), "two Content-Length headers");
        assert!(
            !r.headers
                .iter()
                .any(|h| h.name.eq_ignore_ascii_case("transfer-encoding")),
            "Transfer-Encoding in a response"
        );
        let close = r.headers.iter().any(|h| {
            h.name.eq_ignore_ascii_case("connection")
                && std::str::from_utf8(h.value)
                    .is_ok_and(|v| v.split(',').any(|o| o.trim().eq_ignore_ascii_case("close")))
        });
        if status == 100 {
            // An interim answer to `Expect: 100-continue`: no content, no
            // event of its own, and the final answer still follows.
            assert!(length.is_none() && !close, "a 100 with fields");
            self.buf.drain(..head_len);
            return true;
        }
        let expected = self.expect.pop_front();
        let head_request = match &expected {
            Some(Expect::Response { status: s, method }) => {
                assert_eq!(status, *s, "status differs from the event's");
                method == "HEAD"
            }
            Some(Expect::Upgrade) => {
                assert_eq!(status, 101, "upgrade answered with {status}");
                false
            }
            None => panic!("a response ({status}) nobody asked for"),
        };
        // RFC 9112 §6.3: no content after 1xx, 204, 304 or any answer to HEAD.
        let bodiless = status < 200 || status == 204 || status == 304;
        let body = if bodiless || head_request {
            0
        } else {
            length.expect("a response with content but no Content-Length")
        };
        if self.buf.len() < head_len + body {
            // Not all written yet: put the expectation back.
            self.expect.push_front(expected.expect("popped above"));
            return false;
        }
        self.buf.drain(..head_len + body);
        if status == 101 {
            self.websocket = true;
        }
        self.last_sent = close;
        true
    }

    fn frame(&mut self) -> bool {
        let b = &self.buf;
        if b.len() < 2 {
            return false;
        }
        let (fin, rsv, opcode) = (b[0] & 0x80 != 0, b[0] & 0x70, b[0] & 0x0f);
        assert!(b[1] & 0x80 == 0, "a server frame must not be masked");
        let (len, at) = match b[1] & 0x7f {
            126 => {
                if b.len() < 4 {
                    return false;
                }
                let n = usize::from(u16::from_be_bytes([b[2], b[3]]));
                assert!(n >= 126, "length not in its shortest form");
                (n, 4)
            }
            127 => {
                if b.len() < 10 {
                    return false;
                }
                let mut n = [0u8; 8];
                n.copy_from_slice(&b[2..10]);
                let n = u64::from_be_bytes(n);
                assert!(n > 0xffff && n >> 63 == 0, "bad 64-bit length {n}");
                (usize::try_from(n).expect("fits"), 10)
            }
            n => (usize::from(n), 2),
        };
        if b.len() < at + len {
            return false;
        }
        let payload = &b[at..at + len];
        assert!(!self.last_sent, "a frame after our close frame");
        assert!(
            fin && rsv == 0,
            "server frames are whole, without extensions"
        );
        match opcode {
            0x1 => {
                let text = std::str::from_utf8(payload).expect("text frame not UTF-8");
                if self.twilio_text {
                    if let Err(e) = callstream_core::message::parse_outbound(text) {
                        panic!("Twilio would refuse {text:?}: {e}");
                    }
                }
            }
            0x9 | 0xA => assert!(len <= 125, "control frame over 125 bytes"),
            0x8 => {
                assert!(len <= 125 && len != 1, "close payload of {len} bytes");
                if len >= 2 {
                    let code = u16::from_be_bytes([payload[0], payload[1]]);
                    // RFC 6455 §7.4.1 and the IANA registry: codes a peer may send.
                    assert!(
                        matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999),
                        "close code {code} must not be sent"
                    );
                    assert!(
                        std::str::from_utf8(&payload[2..]).is_ok(),
                        "close reason not UTF-8"
                    );
                }
                self.last_sent = true;
            }
            _ => panic!("server sent opcode {opcode:#x}"),
        }
        self.buf.drain(..at + len);
        true
    }
}
