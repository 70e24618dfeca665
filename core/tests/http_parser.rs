//! Byte-level tests of the HTTP request parser: real requests, every limit
//! crossed, every refusal, pipelining, keep-alive and deadlines.

use callstream_core::http::{
    Expiry, Limits, MAX_CHUNK_LINE, ParseError, RequestParser, Response, Version,
};
use std::time::{Duration, Instant};

/// Pushes `input` in one piece and drains the parser: the requests, then the
/// error that stopped it (if any).
fn parse(input: &[u8]) -> (Vec<callstream_core::http::Request>, Option<ParseError>) {
    parse_with(Limits::default(), input)
}

fn parse_with(
    limits: Limits,
    input: &[u8],
) -> (Vec<callstream_core::http::Request>, Option<ParseError>) {
    let now = Instant::now();
    let mut parser = RequestParser::new(limits, now);
    parser.handle_receive(now, input);
    let mut requests = Vec::new();
    loop {
        match parser.poll_request() {
            Ok(Some(r)) => requests.push(r),
            Ok(None) => return (requests, None),
            Err(e) => return (requests, Some(e)),
        }
    }
}

fn error_of(input: &[u8]) -> ParseError {
    match parse(input) {
        (_, Some(e)) => e,
        (requests, None) => panic!("no error for {input:?}, got {requests:?}"),
    }
}

const TWILIO_WEBHOOK: &[u8] = b"POST /webhook/incoming_call HTTP/1.1\r\n\
Host: callstream.example.com\r\n\
User-Agent: TwilioProxy/1.1\r\n\
Content-Length: 108\r\n\
Accept: */*\r\n\
Cache-Control: max-age=259200\r\n\
Content-Type: application/x-www-form-urlencoded; charset=utf-8\r\n\
I-Twilio-Idempotency-Token: 2f1d2f5c-52a4-4e1f-9a35-2d6f1b0f6a11\r\n\
X-Home-Region: us1\r\n\
X-Twilio-Signature: RSOYDt4T1cUTdK1PDd93/VVr8B8=\r\n\
\r\n\
AccountSid=AC00000000000000000000000000000000&CallSid=CA11111111111111111111111111111111&From=%2B14155550100";

const TWILIO_UPGRADE: &[u8] = b"GET /ws/twilio-media HTTP/1.1\r\n\
host: callstream.example.com\r\n\
user-agent: Twilio.TmeWs/1.0\r\n\
connection: Upgrade\r\n\
upgrade: websocket\r\n\
sec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
sec-websocket-version: 13\r\n\
x-twilio-signature: 3d2S3wRJ0dJsqRcDa+8VCqkpnLI=\r\n\
accept-encoding: gzip\r\n\
x-forwarded-for: 54.172.60.1\r\n\
x-forwarded-host: callstream.example.com\r\n\
x-forwarded-proto: https\r\n\
\r\n";

#[test]
fn twilio_webhook_parses() {
    let (requests, error) = parse(TWILIO_WEBHOOK);
    assert_eq!(error, None);
    let [r] = requests.as_slice() else {
        panic!("{requests:?}")
    };
    assert_eq!(r.method(), "POST");
    assert_eq!(r.target(), "/webhook/incoming_call");
    assert_eq!(r.path(), "/webhook/incoming_call");
    assert_eq!(r.query(), None);
    assert_eq!(r.version, Version::Http11);
    assert_eq!(r.headers().len(), 9);
    assert_eq!(r.headers().next().map(|h| h.0), Some("Host"));
    assert_eq!(
        r.header("x-twilio-signature"),
        Some("RSOYDt4T1cUTdK1PDd93/VVr8B8=")
    );
    assert_eq!(r.body.len(), 108);
    assert!(r.body.ends_with(b"From=%2B14155550100"));
    assert!(r.keep_alive());
}

#[test]
fn twilio_upgrade_parses_with_lower_case_names() {
    let (requests, error) = parse(TWILIO_UPGRADE);
    assert_eq!(error, None);
    let r = &requests[0];
    assert_eq!(r.headers().next().map(|h| h.0), Some("host"));
    assert_eq!(
        r.header("Sec-WebSocket-Key"),
        Some("dGhlIHNhbXBsZSBub25jZQ==")
    );
    assert_eq!(r.header("X-Forwarded-Proto"), Some("https"));
    assert!(r.body.is_empty());
}

#[test]
fn query_and_absolute_form_targets() {
    let (r, _) =
        parse(b"GET /webhook/incoming_call?CallSid=CA1&From=%2B1 HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_eq!(r[0].path(), "/webhook/incoming_call");
    assert_eq!(r[0].query(), Some("CallSid=CA1&From=%2B1"));
    let (r, _) = parse(b"GET http://h.example/healthz?x HTTP/1.1\r\nHost: h.example\r\n\r\n");
    assert_eq!(r[0].path(), "/healthz");
    assert_eq!(r[0].query(), Some("x"));
    assert_eq!(r[0].target(), "http://h.example/healthz?x");
}

#[test]
fn header_values_are_trimmed_bytes() {
    let (r, _) = parse(b"GET / HTTP/1.1\r\nHost: h\r\nX-A:   spaced out \t\r\nX-B: caf\xc3\xa9\r\nX-C: \xff\r\nX-E:\r\n\r\n");
    assert_eq!(r[0].header("x-a"), Some("spaced out"));
    assert_eq!(r[0].header("x-b"), Some("café"));
    assert_eq!(r[0].header("x-c"), None);
    assert_eq!(r[0].headers_all("x-c").next(), Some(&b"\xff"[..]));
    assert_eq!(r[0].header("x-e"), Some(""));
}

#[test]
fn pipelined_requests_come_out_in_order_and_leftovers_stay() {
    let mut wire = Vec::new();
    wire.extend_from_slice(b"GET /healthz HTTP/1.1\r\nHost: h\r\n\r\n");
    wire.extend_from_slice(TWILIO_WEBHOOK);
    // RFC 9112 §2.2: blank lines between requests are skipped.
    wire.extend_from_slice(b"\r\n\r\nGET /version HTTP/1.1\r\nHost: h\r\n\r\n");
    wire.extend_from_slice(b"GET /partial HTTP/1.1\r\nHo");
    let now = Instant::now();
    let mut parser = RequestParser::new(Limits::default(), now);
    parser.handle_receive(now, &wire);
    let paths: Vec<String> = std::iter::from_fn(|| parser.poll_request().unwrap())
        .map(|r| r.path().to_owned())
        .collect();
    assert_eq!(paths, ["/healthz", "/webhook/incoming_call", "/version"]);
    assert_eq!(parser.buffered(), b"GET /partial HTTP/1.1\r\nHo");
    assert!(!parser.is_idle());
}

#[test]
fn bytes_after_an_upgrade_are_kept_for_the_websocket() {
    let frame = [0x81u8, 0x85, 1, 2, 3, 4, 0x69, 0x67, 0x6f, 0x68, 0x6e];
    let mut wire = TWILIO_UPGRADE.to_vec();
    wire.extend_from_slice(&frame);
    let now = Instant::now();
    let mut parser = RequestParser::new(Limits::default(), now);
    parser.handle_receive(now, &wire);
    let request = parser.poll_request().unwrap().unwrap();
    assert_eq!(request.path(), "/ws/twilio-media");
    assert_eq!(parser.take_buffered(), frame);
    assert!(parser.buffered().is_empty());
}

#[test]
fn http10_never_keeps_alive() {
    let (r, _) = parse(b"GET / HTTP/1.0\r\n\r\n");
    assert_eq!(r[0].version, Version::Http10);
    assert!(!r[0].keep_alive());
    let (r, _) = parse(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    assert!(!r[0].keep_alive());
    let (r, _) = parse(b"GET / HTTP/1.1\r\nHost: h\r\nConnection: Close\r\n\r\n");
    assert!(!r[0].keep_alive());
}

#[test]
fn content_length_rules() {
    let ok: &[&[u8]] = &[
        b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc",
        b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3, 3\r\n\r\nabc",
        b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\ncontent-length: 003\r\n\r\nabc",
        b"POST / HTTP/1.0\r\nContent-Length: 3\r\n\r\nabc",
    ];
    for input in ok {
        let (r, e) = parse(input);
        assert_eq!(e, None, "{input:?}");
        assert_eq!(r[0].body, b"abc");
    }
    let (r, e) = parse(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n");
    assert_eq!((r[0].body.len(), e), (0, None));

    let bad: &[(&[u8], ParseError)] = &[
        (
            b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabc",
            ParseError::ConflictingContentLength,
        ),
        (
            b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3, 4\r\n\r\nabc",
            ParseError::ConflictingContentLength,
        ),
        (
            b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: abc\r\n\r\n",
            ParseError::InvalidContentLength,
        ),
        (
            b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: -1\r\n\r\n",
            ParseError::InvalidContentLength,
        ),
        (
            b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: +1\r\n\r\n",
            ParseError::InvalidContentLength,
        ),
        (
            b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1 2\r\n\r\n",
            ParseError::InvalidContentLength,
        ),
        (
            b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length:\r\n\r\n",
            ParseError::InvalidContentLength,
        ),
        (
            b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3,\r\n\r\n",
            ParseError::InvalidContentLength,
        ),
        (
            b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 0x10\r\n\r\n",
            ParseError::InvalidContentLength,
        ),
        (
            b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 99999999999999999999999999\r\n\r\n",
            ParseError::BodyTooLarge { limit: 65536 },
        ),
    ];
    for (input, want) in bad {
        let e = error_of(input);
        assert_eq!(&e, want, "{}", String::from_utf8_lossy(input));
        assert_eq!(e.status(), want.status());
    }
}

#[test]
fn transfer_encoding_rules() {
    let chunked =
        b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: Chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n";
    let (r, e) = parse(chunked);
    assert_eq!((r[0].body.as_slice(), e), (&b"abc"[..], None));

    let bad: &[(&[u8], ParseError, u16)] = &[
        (b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", ParseError::ContentLengthWithTransferEncoding, 400),
        (b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n", ParseError::ContentLengthWithTransferEncoding, 400),
        (b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip\r\n\r\n", ParseError::InvalidTransferEncoding, 400),
        (b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", ParseError::InvalidTransferEncoding, 400),
        (b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", ParseError::InvalidTransferEncoding, 400),
        (b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: \r\n\r\n", ParseError::InvalidTransferEncoding, 400),
        (b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: \xffchunked\r\n\r\n", ParseError::InvalidTransferEncoding, 400),
        (b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", ParseError::UnsupportedTransferCoding, 501),
        (b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n", ParseError::UnsupportedTransferCoding, 501),
        (b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", ParseError::TransferEncodingOnHttp10, 400),
    ];
    for (input, want, status) in bad {
        let e = error_of(input);
        assert_eq!(&e, want, "{}", String::from_utf8_lossy(input));
        assert_eq!(e.status(), *status);
    }
}

#[test]
fn chunked_bodies_with_extensions_and_trailers() {
    let wire =
        b"POST /webhook/call_status HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n\
        5;name=value;quoted=\"a b\"\r\nCallS\r\n\
        A \r\ntatus=busy\r\n\
        0\r\nX-Checksum: abc\r\nX-More: 1\r\n\r\n\
        GET /next HTTP/1.1\r\nHost: h\r\n\r\n";
    let (r, e) = parse(wire);
    assert_eq!(e, None);
    assert_eq!(r.len(), 2);
    assert_eq!(r[0].body, b"CallStatus=busy");
    // Trailers are dropped, not merged into the headers.
    assert_eq!(r[0].header("x-checksum"), None);
    assert_eq!(r[1].path(), "/next");
}

#[test]
fn chunked_framing_errors() {
    let head = "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n";
    let cases: &[(&str, &str)] = &[
        ("zz\r\n", "chunk size is not hexadecimal"),
        ("\r\n", "chunk size is not hexadecimal"),
        (
            "5\nhello\r\n0\r\n\r\n",
            "chunk size line must end with CRLF",
        ),
        ("5\r\nhelloXX0\r\n\r\n", "chunk data not followed by CRLF"),
        ("5\r\nhello\rX", "chunk data not followed by CRLF"),
        ("5;a\x01b\r\n", "invalid byte in chunk extension"),
        ("0\r\nBad Trailer\r\n\r\n", "malformed trailer section"),
    ];
    for (body, what) in cases {
        let e = error_of(format!("{head}{body}").as_bytes());
        assert_eq!(e, ParseError::InvalidChunk { what }, "{body:?}");
        assert_eq!(e.status(), 400);
    }
}

#[test]
fn malformed_heads_are_400_and_versions_505() {
    let cases: &[(&[u8], u16)] = &[
        (b"GET / HTTP/1.1\r\n\r\n", 400), // no Host
        (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
        (b"GET / HTTP/1.0\r\nHost: a\r\nhost: a\r\n\r\n", 400),
        (b"GET / FOO/1.1\r\nHost: a\r\n\r\n", 400),
        (b"GET / HTTP/1.1 \r\nHost: a\r\n\r\n", 400),
        (b"GET  / HTTP/1.1\r\nHost: a\r\n\r\n", 400),
        (b"G@T / HTTP/1.1\r\nHost: a\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nBad Name: x\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\n: x\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n folded\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: a\x00\r\n\r\n", 400),
        (b"GET / HTTP/1.1\rHost: a\r\n\r\n", 400),
        (b"\rGET / HTTP/1.1\r\nHost: a\r\n\r\n", 400),
        (b"GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505),
        (b"GET / HTTP/1.2\r\nHost: a\r\n\r\n", 505),
        (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 505),
        (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 400), // a TLS ClientHello
    ];
    for (input, status) in cases {
        let e = error_of(input);
        assert_eq!(
            e.status(),
            *status,
            "{:?} gave {e}",
            String::from_utf8_lossy(input)
        );
        let answer = Response::for_parse_error(&e);
        assert!(answer.closes());
        assert_eq!(answer.status(), *status);
    }
}

#[test]
fn garbage_is_refused_before_the_head_limit() {
    // Without the blank line the head is incomplete, but the bytes are
    // already invalid: the answer comes at once.
    let now = Instant::now();
    let mut parser = RequestParser::new(Limits::default(), now);
    parser.handle_receive(now, b"GET / HTTP/1.1\r\nHost: a\r\nX-Bad: a\x01b\r\n");
    assert!(parser.poll_request().is_err());
    let mut parser = RequestParser::new(Limits::default(), now);
    parser.handle_receive(now, b"\x00");
    assert_eq!(parser.poll_request().unwrap_err().status(), 400);
}

#[test]
fn errors_stick_and_later_bytes_are_ignored() {
    let now = Instant::now();
    let mut parser = RequestParser::new(Limits::default(), now);
    parser.handle_receive(now, b"GET / HTTP/9.9\r\n\r\n");
    let e = parser.poll_request().unwrap_err();
    assert_eq!(e, ParseError::UnsupportedVersion);
    parser.handle_receive(now, b"GET / HTTP/1.1\r\nHost: h\r\n\r\n");
    assert!(parser.buffered().is_empty());
    assert_eq!(parser.poll_request(), Err(e));
    assert_eq!(parser.poll_timeout(), None);
}

/// A GET whose head is exactly `len` bytes long.
fn head_of_len(len: usize) -> Vec<u8> {
    let fixed = b"GET / HTTP/1.1\r\nHost: h\r\nX-Pad: \r\n\r\n".len();
    let pad = "p".repeat(len - fixed);
    format!("GET / HTTP/1.1\r\nHost: h\r\nX-Pad: {pad}\r\n\r\n").into_bytes()
}

#[test]
fn head_size_limit_is_exact() {
    let limit = Limits::default().max_head_bytes;
    assert_eq!(limit, 16 * 1024);
    let at = head_of_len(limit);
    assert_eq!(at.len(), limit);
    assert_eq!(parse(&at).1, None);
    let over = head_of_len(limit + 1);
    let e = error_of(&over);
    assert_eq!(e, ParseError::HeadTooLarge { limit });
    assert_eq!(e.status(), 431);
    // Without a blank line, 431 comes as soon as the limit is reached.
    assert_eq!(error_of(&over[..limit]), ParseError::HeadTooLarge { limit });
    assert_eq!(parse(&over[..limit - 1]), (vec![], None));
}

#[test]
fn header_count_limit_is_exact() {
    let build = |n: usize| {
        let mut s = String::from("GET / HTTP/1.1\r\nHost: h\r\n");
        for i in 1..n {
            s.push_str(&format!("X-{i}: v\r\n"));
        }
        s.push_str("\r\n");
        s.into_bytes()
    };
    let (r, e) = parse(&build(64));
    assert_eq!((r[0].headers().len(), e), (64, None));
    let e = error_of(&build(65));
    assert_eq!(e, ParseError::TooManyHeaders { limit: 64 });
    assert_eq!(e.status(), 431);
    // Larger limits than the parser's stack array work too.
    let limits = Limits {
        max_headers: 100,
        ..Limits::default()
    };
    assert_eq!(
        parse_with(limits.clone(), &build(100)).0[0].headers().len(),
        100
    );
    assert_eq!(
        parse_with(limits, &build(101)).1,
        Some(ParseError::TooManyHeaders { limit: 100 })
    );
}

#[test]
fn body_limit_is_exact_for_content_length() {
    let limit = Limits::default().max_body_bytes;
    assert_eq!(limit, 64 * 1024);
    let at = [
        format!("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: {limit}\r\n\r\n").into_bytes(),
        vec![b'a'; limit],
    ]
    .concat();
    let (r, e) = parse(&at);
    assert_eq!((r[0].body.len(), e), (limit, None));
    // Refused from the head alone: no need to receive the body.
    let over = format!(
        "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: {}\r\n\r\n",
        limit + 1
    );
    let e = error_of(over.as_bytes());
    assert_eq!(e, ParseError::BodyTooLarge { limit });
    assert_eq!(e.status(), 413);
}

fn chunked(chunks: &[usize]) -> Vec<u8> {
    let mut wire = b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for &n in chunks {
        wire.extend_from_slice(format!("{n:x}\r\n").as_bytes());
        wire.extend(std::iter::repeat_n(b'z', n));
        wire.extend_from_slice(b"\r\n");
    }
    wire.extend_from_slice(b"0\r\n\r\n");
    wire
}

#[test]
fn body_limit_is_exact_for_chunked() {
    let limit = Limits::default().max_body_bytes;
    let (r, e) = parse(&chunked(&[1000, limit - 1000]));
    assert_eq!((r[0].body.len(), e), (limit, None));
    assert_eq!(
        error_of(&chunked(&[1000, limit - 999])),
        ParseError::BodyTooLarge { limit }
    );
    assert_eq!(
        error_of(&chunked(&[limit + 1])),
        ParseError::BodyTooLarge { limit }
    );
    // A size too big for any integer is simply too large.
    let huge = b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffffffffffff\r\n";
    assert_eq!(error_of(huge), ParseError::BodyTooLarge { limit });
}

#[test]
fn chunk_line_limit_is_exact() {
    let head = "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n";
    // "1;" + extension + "\r\n" == MAX_CHUNK_LINE bytes.
    let ext = "e".repeat(MAX_CHUNK_LINE - 4);
    let at = format!("{head}1;{ext}\r\nz\r\n0\r\n\r\n");
    assert_eq!(parse(at.as_bytes()).0[0].body, b"z");
    let over = format!("{head}1;{ext}e\r\nz\r\n0\r\n\r\n");
    assert_eq!(
        error_of(over.as_bytes()),
        ParseError::InvalidChunk {
            what: "chunk size line too long"
        }
    );
}

#[test]
fn trailer_limits() {
    let head = "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n";
    let limits = Limits {
        max_head_bytes: 64,
        max_headers: 2,
        ..Limits::default()
    };
    // "X: " + value + "\r\n" + "\r\n" == 64 bytes of trailer section.
    let at = format!("{head}X: {}\r\n\r\n", "v".repeat(64 - 7));
    assert_eq!(parse_with(limits.clone(), at.as_bytes()).1, None);
    let over = format!("{head}X: {}\r\n\r\n", "v".repeat(64 - 6));
    assert_eq!(
        parse_with(limits.clone(), over.as_bytes()).1,
        Some(ParseError::TrailersTooLarge { limit: 64 })
    );
    let many = format!("{head}A: 1\r\nB: 2\r\nC: 3\r\n\r\n");
    assert_eq!(
        parse_with(limits, many.as_bytes()).1,
        Some(ParseError::TooManyHeaders { limit: 2 })
    );
}

#[test]
fn limits_are_configurable() {
    let limits = Limits {
        max_head_bytes: 40,
        max_headers: 1,
        max_body_bytes: 3,
        ..Limits::default()
    };
    let ok = b"POST / HTTP/1.1\r\nHost: h\r\n\r\n";
    assert_eq!(parse_with(limits.clone(), ok).1, None);
    let e = parse_with(
        limits.clone(),
        b"POST / HTTP/1.1\r\nHost: h\r\nA: b\r\n\r\n",
    )
    .1;
    assert_eq!(e, Some(ParseError::TooManyHeaders { limit: 1 }));
    let e = parse_with(
        limits.clone(),
        b"POST /long/path/here HTTP/1.1\r\nHost: hh\r\n\r\n",
    )
    .1;
    assert_eq!(e, Some(ParseError::HeadTooLarge { limit: 40 }));
    let e = parse_with(limits, b"POST / HTTP/1.1\r\nHost: h\r\n").1;
    assert_eq!(e, None, "waiting");
}

#[test]
fn a_new_connection_must_speak_within_the_head_timeout() {
    let t0 = Instant::now();
    let mut parser = RequestParser::new(Limits::default(), t0);
    let deadline = t0 + Duration::from_secs(10);
    assert_eq!(parser.poll_timeout(), Some(deadline));
    assert!(parser.is_idle());
    assert_eq!(
        parser.handle_timeout(deadline - Duration::from_millis(1)),
        None
    );
    assert_eq!(parser.handle_timeout(deadline), Some(Expiry::Idle));
    assert_eq!(parser.poll_timeout(), None);
    parser.handle_receive(deadline, b"GET / HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_eq!(parser.poll_request(), Ok(None));
}

#[test]
fn a_slow_head_gets_408() {
    let t0 = Instant::now();
    let mut parser = RequestParser::new(Limits::default(), t0);
    let t1 = t0 + Duration::from_secs(3);
    parser.handle_receive(t1, b"GET / HTTP/1.1\r\n");
    assert_eq!(parser.poll_request(), Ok(None));
    // More bytes do not restart the clock: it runs from the first byte.
    parser.handle_receive(t1 + Duration::from_secs(5), b"Host: h\r\n");
    assert_eq!(parser.poll_request(), Ok(None));
    assert_eq!(parser.poll_timeout(), Some(t1 + Duration::from_secs(10)));
    assert_eq!(parser.handle_timeout(t1 + Duration::from_secs(9)), None);
    assert_eq!(
        parser.handle_timeout(t1 + Duration::from_secs(10)),
        Some(Expiry::RequestTimeout)
    );
    assert_eq!(Response::request_timeout().status(), 408);
}

#[test]
fn a_slow_body_gets_408() {
    let t0 = Instant::now();
    let mut parser = RequestParser::new(Limits::default(), t0);
    let t1 = t0 + Duration::from_secs(1);
    parser.handle_receive(
        t1,
        b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\nabc",
    );
    assert_eq!(parser.poll_request(), Ok(None));
    assert_eq!(parser.poll_timeout(), Some(t1 + Duration::from_secs(10)));
    assert_eq!(
        parser.handle_timeout(t1 + Duration::from_secs(10)),
        Some(Expiry::RequestTimeout)
    );
}

#[test]
fn idle_keep_alive_closes_after_60_s_without_answer() {
    let t0 = Instant::now();
    let mut parser = RequestParser::new(Limits::default(), t0);
    let t1 = t0 + Duration::from_secs(2);
    parser.handle_receive(t1, b"GET /healthz HTTP/1.1\r\nHost: h\r\n\r\n");
    assert!(parser.poll_request().unwrap().is_some());
    assert!(parser.is_idle());
    assert_eq!(parser.poll_timeout(), Some(t1 + Duration::from_secs(60)));
    // Blank lines do not count as a request starting.
    parser.handle_receive(t1 + Duration::from_secs(30), b"\r\n");
    assert_eq!(parser.poll_request(), Ok(None));
    assert_eq!(parser.poll_timeout(), Some(t1 + Duration::from_secs(60)));
    assert_eq!(
        parser.handle_timeout(t1 + Duration::from_secs(60)),
        Some(Expiry::Idle)
    );
}

#[test]
fn a_pipelined_partial_head_starts_its_clock_on_arrival() {
    let t0 = Instant::now();
    let mut parser = RequestParser::new(Limits::default(), t0);
    parser.handle_receive(t0, b"GET /a HTTP/1.1\r\nHost: h\r\n\r\nGET /b HT");
    assert!(parser.poll_request().unwrap().is_some());
    assert_eq!(parser.poll_request(), Ok(None));
    assert!(!parser.is_idle());
    assert_eq!(parser.poll_timeout(), Some(t0 + Duration::from_secs(10)));
}

#[test]
fn timeouts_are_configurable_and_never_overflow() {
    let t0 = Instant::now();
    let limits = Limits {
        idle_timeout: Duration::from_secs(5),
        head_timeout: Duration::MAX,
        ..Limits::default()
    };
    let mut parser = RequestParser::new(limits, t0);
    assert_eq!(parser.poll_timeout(), None);
    assert_eq!(
        parser.handle_timeout(t0 + Duration::from_secs(1_000_000)),
        None
    );
    parser.handle_receive(t0, b"GET / HTTP/1.1\r\nHost: h\r\n\r\n");
    assert!(parser.poll_request().unwrap().is_some());
    assert_eq!(parser.poll_timeout(), Some(t0 + Duration::from_secs(5)));
}

/// A recycled request's buffers hold the previous request's bytes: the next
/// request built in them must be exactly what a fresh parser gives, whatever
/// the sizes of the two (longer or shorter target, more or fewer headers,
/// chunked or not, a body over the head limit that is not kept).
#[test]
fn recycled_requests_parse_like_fresh_ones() {
    let big = "x".repeat(20 * 1024);
    let wires: Vec<Vec<u8>> = vec![
        TWILIO_WEBHOOK.to_vec(),
        b"GET / HTTP/1.1\r\nHost: h\r\n\r\n".to_vec(),
        TWILIO_UPGRADE.to_vec(),
        b"GET http://h.example?q=1 HTTP/1.1\r\nHost: h\r\nA: 1\r\nA: 2\r\n\r\n".to_vec(),
        b"POST /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
            .to_vec(),
        format!(
            "POST /big HTTP/1.1\r\nHost: h\r\nContent-Length: {}\r\n\r\n{big}",
            big.len()
        )
        .into_bytes(),
        b"GET /v HTTP/1.0\r\n\r\n".to_vec(),
    ];
    let fresh: Vec<_> = wires
        .iter()
        .map(|w| {
            let (mut r, e) = parse(w);
            assert_eq!((r.len(), e), (1, None), "{:?}", String::from_utf8_lossy(w));
            r.remove(0)
        })
        .collect();
    let now = Instant::now();
    let mut parser = RequestParser::new(Limits::default(), now);
    // Every order of two, so each request is built in each other's buffers.
    for first in &wires {
        for (i, second) in wires.iter().enumerate() {
            parser.handle_receive(now, first);
            let r = parser.poll_request().unwrap().unwrap();
            parser.recycle(r);
            parser.handle_receive(now, second);
            let r = parser.poll_request().unwrap().unwrap();
            assert_eq!(r, fresh[i]);
            assert_eq!(r.headers().len(), fresh[i].headers().len());
            assert_eq!(r.path(), fresh[i].path());
            parser.recycle(r);
        }
    }
}
