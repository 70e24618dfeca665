//! The parser's central promise: however the bytes are split into reads, the
//! outcome is the same. Checked exhaustively (every single split point and one
//! byte at a time) for real requests, and with proptest for generated requests
//! under arbitrary splits. Also: arbitrary bytes never panic and always end in
//! requests, an error, or a deadline that closes the connection.

use callstream_core::http::{Limits, ParseError, Request, RequestParser, Version};
use proptest::prelude::*;
use std::time::Instant;

#[derive(Debug, PartialEq)]
struct Outcome {
    requests: Vec<Request>,
    error: Option<ParseError>,
    leftover: Vec<u8>,
}

/// Feeds `input` cut at `cuts` (sorted offsets), draining after every push.
fn run(input: &[u8], cuts: &[usize]) -> Outcome {
    let now = Instant::now();
    let mut parser = RequestParser::new(Limits::default(), now);
    let mut requests = Vec::new();
    let mut error = None;
    let mut start = 0;
    for &end in cuts.iter().chain(std::iter::once(&input.len())) {
        let end = end.clamp(start, input.len());
        parser.handle_receive(now, &input[start..end]);
        start = end;
        loop {
            match parser.poll_request() {
                Ok(Some(r)) => requests.push(r),
                Ok(None) => break,
                Err(e) => {
                    error = Some(e);
                    break;
                }
            }
        }
    }
    Outcome {
        requests,
        error,
        leftover: parser.buffered().to_vec(),
    }
}

fn assert_split_invariant(input: &[u8]) -> Outcome {
    let whole = run(input, &[]);
    for cut in 0..=input.len() {
        assert_eq!(run(input, &[cut]), whole, "split at {cut}");
    }
    let bytewise: Vec<usize> = (1..input.len()).collect();
    assert_eq!(run(input, &bytewise), whole, "one byte at a time");
    whole
}

const WEBHOOK: &[u8] = b"POST /webhook/stream_status HTTP/1.1\r\n\
Host: callstream.example.com\r\n\
Content-Type: application/x-www-form-urlencoded\r\n\
X-Twilio-Signature: abc=\r\n\
Content-Length: 64\r\n\
\r\n\
StreamEvent=stream-started&StreamSid=MZ1&Timestamp=2024-01-01T00";

const UPGRADE_AND_FRAME: &[u8] = b"GET /ws/twilio-media HTTP/1.1\r\n\
host: h\r\n\
connection: Upgrade\r\n\
upgrade: websocket\r\n\
sec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
sec-websocket-version: 13\r\n\
\r\n\
\x81\x82\x01\x02\x03\x04\x69\x6b";

const CHUNKED_PIPELINE: &[u8] = b"\r\nPOST /a?x=1 HTTP/1.1\r\n\
Host: h\r\n\
Transfer-Encoding: chunked\r\n\
\r\n\
4;ext=\"v\"\r\nWiki\r\n\
5\r\npedia\r\n\
0\r\nTrailer: yes\r\n\r\n\
GET /b HTTP/1.0\r\n\r\n\
GET /c HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n\
GET /partial";

#[test]
fn every_split_of_a_webhook() {
    let out = assert_split_invariant(WEBHOOK);
    assert_eq!(out.requests.len(), 1);
    assert_eq!(out.requests[0].body.len(), 64);
    assert_eq!(out.error, None);
}

/// Like `run`, but stops polling after the first request, as a connection
/// does once it has an upgrade request: what follows is WebSocket, not HTTP.
fn run_until_first(input: &[u8], cuts: &[usize]) -> (Option<Request>, Vec<u8>) {
    let now = Instant::now();
    let mut parser = RequestParser::new(Limits::default(), now);
    let mut start = 0;
    for &end in cuts.iter().chain(std::iter::once(&input.len())) {
        let end = end.clamp(start, input.len());
        parser.handle_receive(now, &input[start..end]);
        start = end;
        if let Some(request) = parser.poll_request().unwrap() {
            parser.handle_receive(now, &input[start..]);
            return (Some(request), parser.take_buffered());
        }
    }
    (None, parser.take_buffered())
}

#[test]
fn every_split_of_an_upgrade_keeps_the_frame() {
    let whole = run_until_first(UPGRADE_AND_FRAME, &[]);
    assert_eq!(whole.0.as_ref().map(|r| r.path()), Some("/ws/twilio-media"));
    assert_eq!(whole.1, b"\x81\x82\x01\x02\x03\x04\x69\x6b");
    for cut in 0..=UPGRADE_AND_FRAME.len() {
        assert_eq!(
            run_until_first(UPGRADE_AND_FRAME, &[cut]),
            whole,
            "split at {cut}"
        );
    }
    // Drained further, the frame is not HTTP: every split refuses it alike.
    let out = assert_split_invariant(UPGRADE_AND_FRAME);
    assert_eq!(out.requests.len(), 1);
    assert_eq!(out.error.map(|e| e.status()), Some(400));
}

#[test]
fn every_split_of_chunked_pipelined_requests() {
    let out = assert_split_invariant(CHUNKED_PIPELINE);
    let paths: Vec<&str> = out.requests.iter().map(|r| r.path()).collect();
    assert_eq!(paths, ["/a", "/b", "/c"]);
    assert_eq!(out.requests[0].body, b"Wikipedia");
    assert_eq!(out.requests[1].version, Version::Http10);
    assert_eq!(out.leftover, b"GET /partial");
}

#[test]
fn every_split_of_bad_requests_gives_the_same_error() {
    let cases: &[&[u8]] = &[
        b"GET / HTTP/2.0\r\nHost: h\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: h\r\nBad Header: x\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nabcdeXX",
        b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\nabc",
        b"GET /ok HTTP/1.1\r\nHost: h\r\n\r\n\x00\x01",
    ];
    for input in cases {
        let out = assert_split_invariant(input);
        assert!(out.error.is_some() || !out.leftover.is_empty(), "{input:?}");
    }
}

#[test]
fn every_split_around_the_head_limit() {
    let limit = Limits::default().max_head_bytes;
    let mut over = b"GET / HTTP/1.1\r\nHost: h\r\nX: ".to_vec();
    over.resize(limit + 10, b'a');
    over.extend_from_slice(b"\r\n\r\n");
    let whole = run(&over, &[]);
    assert_eq!(whole.error, Some(ParseError::HeadTooLarge { limit }));
    for cut in (limit - 40..over.len()).step_by(3) {
        assert_eq!(run(&over, &[cut]), whole, "split at {cut}");
    }
}

// ---- generated requests ------------------------------------------------

#[derive(Debug, Clone)]
struct Model {
    method: String,
    target: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    chunks: Option<Vec<usize>>,
    http10: bool,
}

fn model() -> impl Strategy<Value = Model> {
    let header = ("[A-Za-z][A-Za-z0-9-]{0,10}", "([!-~]([ -~]{0,16}[!-~])?)?").prop_filter(
        "framing headers are the test's",
        |(n, _)| {
            !["host", "content-length", "transfer-encoding"]
                .iter()
                .any(|f| n.eq_ignore_ascii_case(f))
        },
    );
    (
        prop::sample::select(vec!["GET", "POST", "PUT", "DELETE"]),
        "(/[a-z0-9_.%-]{0,8}){1,3}(\\?[a-zA-Z0-9=&%+]{0,16})?",
        prop::collection::vec(header, 0..8),
        prop::collection::vec(any::<u8>(), 0..200),
        prop::option::of(prop::collection::vec(1usize..64, 0..6)),
        any::<bool>(),
    )
        .prop_map(|(method, target, headers, body, chunks, http10)| {
            // Chunked bodies only on HTTP/1.1 (on 1.0 they are refused).
            let chunks = if http10 { None } else { chunks };
            Model {
                method: method.into(),
                target,
                headers,
                body,
                chunks,
                http10,
            }
        })
}

fn serialize(m: &Model, out: &mut Vec<u8>) {
    let version = if m.http10 { "HTTP/1.0" } else { "HTTP/1.1" };
    out.extend_from_slice(format!("{} {} {version}\r\nHost: h\r\n", m.method, m.target).as_bytes());
    for (n, v) in &m.headers {
        out.extend_from_slice(format!("{n}: {v}\r\n").as_bytes());
    }
    match &m.chunks {
        None => {
            out.extend_from_slice(format!("Content-Length: {}\r\n\r\n", m.body.len()).as_bytes());
            out.extend_from_slice(&m.body);
        }
        Some(sizes) => {
            out.extend_from_slice(b"Transfer-Encoding: chunked\r\n\r\n");
            let mut rest = m.body.as_slice();
            for &size in sizes
                .iter()
                .cycle()
                .take(if sizes.is_empty() { 0 } else { 1000 })
            {
                if rest.is_empty() {
                    break;
                }
                let n = size.min(rest.len());
                out.extend_from_slice(format!("{n:X};i={n}\r\n").as_bytes());
                out.extend_from_slice(&rest[..n]);
                out.extend_from_slice(b"\r\n");
                rest = &rest[n..];
            }
            if !rest.is_empty() {
                out.extend_from_slice(format!("{:x}\r\n", rest.len()).as_bytes());
                out.extend_from_slice(rest);
                out.extend_from_slice(b"\r\n");
            }
            out.extend_from_slice(b"0\r\nT: 1\r\n\r\n");
        }
    }
}

fn matches_model(r: &Request, m: &Model) -> bool {
    // One framing header (Content-Length or Transfer-Encoding) follows the model's.
    let framing = 1;
    r.method() == m.method
        && r.target() == m.target
        && r.path() == m.target.split('?').next().unwrap_or_default()
        && r.query() == m.target.split_once('?').map(|(_, q)| q)
        && r.version
            == if m.http10 {
                Version::Http10
            } else {
                Version::Http11
            }
        && r.headers().len() == m.headers.len() + 1 + framing
        && r.headers()
            .skip(1)
            .take(m.headers.len())
            .zip(&m.headers)
            .all(|((n, v), (mn, mv))| n == mn && v == mv.as_bytes())
        && r.body == m.body
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn generated_requests_parse_the_same_under_any_split(
        models in prop::collection::vec(model(), 1..4),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..12),
    ) {
        let mut wire = Vec::new();
        for m in &models {
            serialize(m, &mut wire);
        }
        let mut cuts: Vec<usize> = cuts.iter().map(|i| i.index(wire.len() + 1)).collect();
        cuts.sort_unstable();
        let out = run(&wire, &cuts);
        prop_assert_eq!(&out.error, &None);
        prop_assert!(out.leftover.is_empty());
        prop_assert_eq!(out.requests.len(), models.len());
        for (r, m) in out.requests.iter().zip(&models) {
            prop_assert!(matches_model(r, m), "{:?}\n!=\n{:?}", r, m);
        }
        prop_assert_eq!(run(&wire, &[]), out);
    }

    #[test]
    fn arbitrary_bytes_in_arbitrary_pieces_never_panic_and_always_end(
        input in prop::collection::vec(any::<u8>(), 0..600),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..8),
    ) {
        let mut cuts: Vec<usize> = cuts.iter().map(|i| i.index(input.len() + 1)).collect();
        cuts.sort_unstable();
        let out = run(&input, &cuts);
        prop_assert_eq!(&run(&input, &[]), &out);
        if let Some(e) = &out.error {
            prop_assert!([400, 413, 431, 501, 505].contains(&e.status()));
        }
        // Whatever is left waiting is ended by a deadline.
        let t0 = Instant::now();
        let mut parser = RequestParser::new(Limits::default(), t0);
        parser.handle_receive(t0, &input);
        while let Ok(Some(_)) = parser.poll_request() {}
        if parser.poll_request().is_ok() {
            let deadline = parser.poll_timeout().expect("a waiting parser has a deadline");
            prop_assert!(parser.handle_timeout(deadline).is_some());
        }
    }

    #[test]
    fn request_like_bytes_never_panic(
        head in "(GET|POST) /[ -~]{0,20} HTTP/1\\.[01]\r\n([A-Za-z-]{1,12}: [ -~]{0,20}\r\n){0,6}\r\n[ -~\r\n]{0,80}",
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..6),
    ) {
        let input = head.into_bytes();
        let mut cuts: Vec<usize> = cuts.iter().map(|i| i.index(input.len() + 1)).collect();
        cuts.sort_unstable();
        prop_assert_eq!(run(&input, &cuts), run(&input, &[]));
    }
}
