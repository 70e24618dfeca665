#![no_main]
//! The HTTP request parser on arbitrary bytes pushed in arbitrary pieces:
//! never panics, and the outcome does not depend on the split. The first byte
//! chooses the piece sizes; the rest is the input.
use callstream_core::http::{Limits, ParseError, Request, RequestParser};
use libfuzzer_sys::fuzz_target;
use std::time::Instant;

fn run(input: &[u8], piece: impl Fn(usize) -> usize) -> (Vec<Request>, Option<ParseError>, Vec<u8>) {
    let now = Instant::now();
    let mut parser = RequestParser::new(Limits::default(), now);
    let mut requests = Vec::new();
    let mut start = 0;
    let mut n = 0;
    while start < input.len() {
        let end = (start + piece(n)).min(input.len());
        n += 1;
        parser.push(now, &input[start..end]);
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
    if let Some(deadline) = parser.deadline() {
        assert!(parser.handle_timeout(deadline).is_some());
    }
    (requests, None, parser.buffered().to_vec())
}

fuzz_target!(|data: &[u8]| {
    let Some((&seed, input)) = data.split_first() else {
        return;
    };
    let whole = run(input, |_| usize::MAX);
    let pieces = run(input, |n| 1 + (usize::from(seed).wrapping_mul(n + 7) % 61));
    assert_eq!(whole.0, pieces.0);
    assert_eq!(whole.1, pieces.1);
});
