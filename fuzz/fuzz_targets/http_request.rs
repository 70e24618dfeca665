#![no_main]
//! The HTTP request parser on arbitrary bytes pushed in arbitrary pieces:
//! never panics, and the outcome does not depend on the split. The first byte
//! chooses the piece sizes, the second the limits (the defaults, or small
//! ones that inputs of a few hundred bytes can cross: 431, 413, chunk
//! trailers); the rest is the input.
use callstream_core::http::{Limits, ParseError, Request, RequestParser};
use libfuzzer_sys::fuzz_target;
use std::time::Instant;

/// The default limits when the top bit of `b` is clear, else small ones.
fn limits(b: u8) -> Limits {
    if b & 0x80 == 0 {
        return Limits::default();
    }
    Limits {
        max_head_bytes: 32 + usize::from(b & 0x0f) * 48,
        max_headers: usize::from((b >> 4) & 0x07),
        max_body_bytes: usize::from(b & 0x0f) * 16,
        ..Limits::default()
    }
}

fn run(
    input: &[u8],
    limits: &Limits,
    piece: impl Fn(usize) -> usize,
) -> (Vec<Request>, Option<ParseError>, Vec<u8>) {
    let now = Instant::now();
    let mut parser = RequestParser::new(limits.clone(), now);
    let mut requests = Vec::new();
    let mut start = 0;
    let mut n = 0;
    while start < input.len() {
        let end = (start + piece(n)).min(input.len());
        n += 1;
        parser.handle_receive(now, &input[start..end]);
        start = end;
        loop {
            match parser.poll_request() {
                Ok(Some(r)) => requests.push(r),
                Ok(None) => break,
                Err(e) => return (requests, Some(e), Vec::new()),
            }
        }
    }
    // Anything still waiting is ended by the deadline.
    if let Some(deadline) = parser.poll_timeout() {
        assert!(parser.handle_timeout(deadline).is_some());
    }
    (requests, None, parser.buffered().to_vec())
}

fuzz_target!(|data: &[u8]| {
    let [seed, limit, input @ ..] = data else {
        return;
    };
    let limits = limits(*limit);
    let whole = run(input, &limits, |_| usize::MAX);
    let pieces = run(input, &limits, |n| {
        1 + (usize::from(*seed).wrapping_mul(n + 7) % 61)
    });
    assert_eq!(whole.0, pieces.0);
    assert_eq!(whole.1, pieces.1);
});
