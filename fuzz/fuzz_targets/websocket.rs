//! The WebSocket frame layer on its own: arbitrary bytes (raw, or wrapped in
//! well-formed client frames so that the fuzzer reaches fragmentation,
//! control frames and the size limit quickly), with sends, closes and partial
//! writes in between. It must never panic, and must keep its contract:
//! nothing comes out after `Closed`/`Failed`; a `Failed` leaves a close frame
//! with its code in the transmit buffer; text never exceeds `MAX_MESSAGE`;
//! sending fails once a close frame was sent or received; and every byte it
//! writes is a frame a server may send (see `callstream_twilio::wire`).
//!
//! Input layout: a script of ops, each a control byte and its arguments (see
//! the `match`). Missing bytes read as 0.
#![no_main]
use callstream_core::websocket::{Event, MAX_MESSAGE, WebSocket};
use libfuzzer_sys::fuzz_target;

use callstream_twilio::wire::{Expect, Wire};

/// Close codes callstream sends (RFC 6455 §7.4.1; 4000–4999 are private).
const CODES: [u16; 6] = [1000, 1001, 1008, 1011, 3000, 4999];

struct Bytes<'a>(&'a [u8]);

impl Bytes<'_> {
    fn byte(&mut self) -> u8 {
        match self.0.split_first() {
            Some((b, rest)) => {
                self.0 = rest;
                *b
            }
            None => 0,
        }
    }
    fn take(&mut self, n: usize) -> &[u8] {
        let (a, b) = self.0.split_at(n.min(self.0.len()));
        self.0 = b;
        a
    }
}

/// A client frame: `head` is the first byte as sent (FIN, RSV, opcode), the
/// payload is masked with `mask` as RFC 6455 §5.3 requires of a client.
fn frame(head: u8, payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
    let mut out = vec![head];
    let n = payload.len();
    if n < 126 {
        out.push(0x80 | n as u8);
    } else if n <= usize::from(u16::MAX) {
        out.push(0x80 | 126);
        out.extend_from_slice(&(n as u16).to_be_bytes());
    } else {
        out.push(0x80 | 127);
        out.extend_from_slice(&(n as u64).to_be_bytes());
    }
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    out
}

fuzz_target!(|data: &[u8]| {
    let mut input = Bytes(data);
    let mut ws = WebSocket::accept(
        Vec::new(),
        b"HTTP/1.1 101 Switching Protocols\r\n\r\n".to_vec(),
    );
    let mut finished = false;
    let mut wire = Wire::default();
    wire.expect(Expect::Upgrade);
    while !input.0.is_empty() {
        match input.byte() % 8 {
            0 | 1 => {
                let n = usize::from(input.byte());
                let chunk = input.take(n).to_vec();
                ws.handle_receive(&chunk);
            }
            2..=4 => {
                // A frame: head byte, payload length byte, repeat count (so
                // that messages can cross MAX_MESSAGE), mask choice, payload.
                let head = input.byte();
                let n = usize::from(input.byte());
                let repeat = match input.byte() {
                    255 => 300,
                    r => 1 + usize::from(r % 4),
                };
                let mask = if input.byte() & 1 == 0 {
                    [0; 4]
                } else {
                    [0x37, 0xfa, 0x21, 0x3d]
                };
                let payload = input.take(n).repeat(repeat);
                ws.handle_receive(&frame(head, &payload, mask));
            }
            5 => {
                let n = usize::from(input.byte());
                let text = String::from_utf8_lossy(input.take(n)).into_owned();
                let open = ws.is_open();
                assert_eq!(
                    ws.send_text(&text).is_ok(),
                    open,
                    "send_text disagrees with is_open"
                );
            }
            6 => {
                let code = CODES[usize::from(input.byte()) % CODES.len()];
                let n = usize::from(input.byte());
                let reason = String::from_utf8_lossy(input.take(n)).into_owned();
                ws.close(code, &reason);
                if !finished {
                    assert!(ws.is_closing() || ws.is_finished());
                }
            }
            _ => {
                let n = (usize::from(input.byte()) * 64).min(ws.transmit().len());
                wire.push(&ws.transmit()[..n])
                    .unwrap_or_else(|e| panic!("{e}"));
                ws.consume_transmit(n);
            }
        }
        // Only a connection that had not sent its close frame yet queues
        // one when it fails.
        let was_open = ws.is_open();
        let mut polls = 0;
        while let Some(event) = ws.poll_event() {
            polls += 1;
            assert!(polls < 100_000, "poll_event never returned None");
            assert!(!finished, "event after the connection finished: {event:?}");
            match event {
                Event::Text(text) => assert!(text.len() <= MAX_MESSAGE),
                Event::BinaryDropped { len } => assert!(len <= MAX_MESSAGE),
                Event::Closed { .. } => finished = true,
                Event::Failed(error) => {
                    finished = true;
                    let code = error.close_code().to_be_bytes();
                    let out = ws.transmit();
                    assert!(
                        !was_open || out.windows(4).any(|w| w[0] == 0x88 && w[2..] == code),
                        "no close frame with code {} queued for {error:?}",
                        error.close_code()
                    );
                }
                _ => {}
            }
            assert_eq!(ws.is_finished(), finished);
        }
        if finished {
            assert!(ws.is_finished() && !ws.is_open());
        }
    }
    wire.push(ws.transmit()).unwrap_or_else(|e| panic!("{e}"));
    wire.finish().unwrap_or_else(|e| panic!("{e}"));
});
