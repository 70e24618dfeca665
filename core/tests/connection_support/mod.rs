//! A scripted peer for `Connection`: bytes in, every output drained the way
//! the module docs say an adapter must, bytes and events collected.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use callstream_core::connection::{CloseReason, Config, Connection, Event, Output};

pub const TOKEN: &str = "12345";

pub struct Peer {
    pub conn: Connection,
    pub start: Instant,
    pub now: Instant,
    /// Bytes the connection wrote, not yet taken by the test.
    pub wire: Vec<u8>,
    /// Events not yet taken by the test.
    pub events: Vec<Event>,
    pub closed: bool,
    pub deadline: Option<Instant>,
    /// When false, the peer does not read: `transmit` is left in place.
    pub reading: bool,
}

impl Peer {
    pub fn new(config: Config) -> Peer {
        Peer::shared(Arc::new(config))
    }

    pub fn shared(config: Arc<Config>) -> Peer {
        let start = Instant::now();
        let mut peer = Peer {
            conn: Connection::new(config, start),
            start,
            now: start,
            wire: Vec::new(),
            events: Vec::new(),
            closed: false,
            deadline: None,
            reading: true,
        };
        peer.drain();
        peer
    }

    /// Feeds bytes, then drains.
    pub fn send(&mut self, bytes: &[u8]) -> &mut Self {
        self.conn.handle_receive(self.now, bytes);
        self.drain();
        self
    }

    pub fn eof(&mut self) -> &mut Self {
        self.conn.handle_eof(self.now);
        self.drain();
        self
    }

    pub fn shutdown(&mut self) -> &mut Self {
        self.conn.shutdown(self.now);
        self.drain();
        self
    }

    /// Lets `d` pass, firing the deadline when it is reached.
    pub fn wait(&mut self, d: Duration) -> &mut Self {
        self.now += d;
        self.conn.handle_timeout(self.now);
        self.drain();
        self
    }

    /// Drains until `Timeout` or `Close`, then "writes" `transmit`.
    pub fn drain(&mut self) {
        for _ in 0..1_000_000 {
            match self.conn.poll_output() {
                Output::Event(e) => self.events.push(e),
                Output::Timeout(t) => {
                    self.deadline = Some(t);
                    break;
                }
                Output::Close => {
                    assert!(
                        matches!(self.conn.poll_output(), Output::Close),
                        "Close is final"
                    );
                    self.closed = true;
                    break;
                }
            }
        }
        if self.reading {
            let n = self.conn.transmit().len();
            self.wire.extend_from_slice(self.conn.transmit());
            self.conn.consume_transmit(n);
        }
    }

    pub fn take_wire(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.wire)
    }

    pub fn take_events(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.events)
    }

    /// The wire as text, for readable assertion failures.
    pub fn take_text(&mut self) -> String {
        String::from_utf8(self.take_wire()).expect("answers are ASCII here")
    }

    /// Events without the per-request `Request` records (their latency
    /// depends on the script) and `Closed`.
    pub fn take_app_events(&mut self) -> Vec<Event> {
        self.take_events()
            .into_iter()
            .filter(|e| !matches!(e, Event::Request { .. } | Event::Closed { .. }))
            .collect()
    }

    pub fn close_reason(&self) -> Option<CloseReason> {
        self.events.iter().find_map(|e| match e {
            Event::Closed { reason } => Some(reason.clone()),
            _ => None,
        })
    }

    pub fn statuses(&self) -> Vec<u16> {
        self.events
            .iter()
            .filter_map(|e| match e {
                Event::Request { status, .. } => Some(*status),
                _ => None,
            })
            .collect()
    }
}

/// A masked client frame (RFC 6455 §5.3) with a fixed mask key.
pub fn client_frame(first: u8, payload: &[u8]) -> Vec<u8> {
    let mask = [0x0f, 0x1e, 0x2d, 0x3c];
    let mut out = vec![first];
    match payload.len() {
        n if n < 126 => out.push(0x80 | n as u8),
        n if n <= 0xFFFF => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    out
}

pub fn text_frame(text: &str) -> Vec<u8> {
    client_frame(0x81, text.as_bytes())
}

/// Frames the server wrote (unmasked, RFC 6455 §5.2), as (opcode, payload).
/// Panics on anything a server must not send: masked or truncated frames.
pub fn server_frames(mut bytes: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let mut frames = Vec::new();
    while !bytes.is_empty() {
        assert!(bytes.len() >= 2, "truncated frame");
        let opcode = bytes[0] & 0x0f;
        assert_eq!(
            bytes[0] & 0x80,
            0x80,
            "the server sends unfragmented frames"
        );
        assert_eq!(bytes[1] & 0x80, 0, "server frames are not masked");
        let (len, start) = match bytes[1] & 0x7f {
            126 => (u16::from_be_bytes([bytes[2], bytes[3]]) as usize, 4),
            127 => (
                u64::from_be_bytes(bytes[2..10].try_into().unwrap()) as usize,
                10,
            ),
            n => (n as usize, 2),
        };
        frames.push((opcode, bytes[start..start + len].to_vec()));
        bytes = &bytes[start + len..];
    }
    frames
}
