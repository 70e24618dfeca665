//! The push parser: bytes and arrival times in, complete requests out.

use std::mem::MaybeUninit;
use std::time::{Duration, Instant};

use super::{Expiry, ParseError, Request, Version};

/// Longest chunk-size line (size, extensions and CRLF) a chunked body may use.
/// Extensions are ignored, so they only need room enough for real clients.
pub const MAX_CHUNK_LINE: usize = 1024;

/// The limits a connection enforces on HTTP requests. Every field is public;
/// start from [`Limits::default`] and change what you need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Longest request head (request line and header lines), in bytes; also
    /// the longest trailer section of a chunked body. Default 16 KiB; over it: 431.
    pub max_head_bytes: usize,
    /// Most header lines in a head (and trailer lines in a chunked body).
    /// Default 64; over it: 431.
    pub max_headers: usize,
    /// Longest body (after de-chunking), in bytes. Default 64 KiB; over it: 413.
    pub max_body_bytes: usize,
    /// Time from a request's first byte to its complete head. Default 10 s;
    /// past it: 408. Also the time a new connection has to send its first byte
    /// (past it: closed without an answer).
    pub head_timeout: Duration,
    /// Time from the complete head to the complete body. Default 10 s; past it: 408.
    pub body_timeout: Duration,
    /// Time a connection may sit between requests. Default 60 s; past it: closed.
    pub idle_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_head_bytes: 16 * 1024,
            max_headers: 64,
            max_body_bytes: 64 * 1024,
            head_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
        }
    }
}

/// An incremental HTTP/1.1 request parser for one connection (see the
/// [module docs](super) for the contract and the decisions it makes).
#[derive(Debug)]
pub struct RequestParser {
    limits: Limits,
    buf: Vec<u8>,
    state: State,
    last_push: Instant,
    /// When the connection opened or the last request completed.
    idle_since: Instant,
    /// No request has completed yet: the first byte is due within `head_timeout`.
    fresh: bool,
    /// When the current head's first byte (not a blank line) arrived.
    head_started: Option<Instant>,
    /// How far `buf` was scanned for the blank line that ends the head.
    scanned: usize,
    /// A request handed back by [`RequestParser::recycle`]: the next one is
    /// built in its buffers.
    spare: Option<Request>,
    /// The head in progress asked for `100 Continue` and none of its body
    /// has arrived: [`RequestParser::poll_continue`] says so once.
    continue_due: bool,
}

#[derive(Debug)]
enum State {
    Head,
    Body {
        request: Request,
        body: BodyState,
        started: Instant,
    },
    Failed(ParseError),
    /// A deadline passed; the connection is closing.
    Closed,
}

#[derive(Debug)]
enum BodyState {
    Length { remaining: usize },
    ChunkSize,
    ChunkData { remaining: usize },
    ChunkEnd,
    Trailers { scanned: usize },
}

/// httparse needs a header slot array; the default limit fits on the stack.
const STACK_HEADERS: usize = 64;

impl RequestParser {
    /// A parser for a connection that opened at `now`.
    #[must_use]
    pub fn new(limits: Limits, now: Instant) -> Self {
        RequestParser {
            limits,
            buf: Vec::new(),
            state: State::Head,
            last_push: now,
            idle_since: now,
            fresh: true,
            head_started: None,
            scanned: 0,
            spare: None,
            continue_due: false,
        }
    }

    /// Hands back a request that has been answered, so that the next one is
    /// built in its buffers: a keep-alive connection that recycles each
    /// request costs no allocation per request. Optional; buffers larger than
    /// the head limit are not kept (one big body must not pin its memory to
    /// an idle connection).
    pub fn recycle(&mut self, request: Request) {
        if request.capacity() <= self.limits.max_head_bytes {
            self.spare = Some(request);
        }
    }

    /// The limits this parser enforces.
    #[must_use]
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Appends bytes that arrived at `now`. Then drain
    /// [`poll_request`](Self::poll_request) until it returns `Ok(None)`; bytes
    /// stay buffered until polled, so the buffer holds at most one read plus an
    /// incomplete head. After an error or an expiry, bytes are dropped.
    pub fn handle_receive(&mut self, now: Instant, bytes: &[u8]) {
        if matches!(self.state, State::Failed(_) | State::Closed) {
            return;
        }
        self.last_push = now;
        // Blank lines before a request line are skipped (RFC 9112 §2.2), so
        // they do not start the head's clock.
        if matches!(self.state, State::Head)
            && self.head_started.is_none()
            && bytes.iter().any(|&b| b != b'\r' && b != b'\n')
        {
            self.head_started = Some(now);
        }
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete request, `Ok(None)` when more bytes are needed.
    ///
    /// # Errors
    ///
    /// A [`ParseError`]: answer with [`Response::for_parse_error`](super::Response::for_parse_error)
    /// and close. The parser then keeps returning the same error.
    #[must_use = "a returned request must be answered, an error answered and the connection closed"]
    pub fn poll_request(&mut self) -> Result<Option<Request>, ParseError> {
        match self.advance() {
            Ok(request) => Ok(request),
            Err(e) => {
                self.state = State::Failed(e.clone());
                self.buf = Vec::new();
                self.continue_due = false;
                Err(e)
            }
        }
    }

    /// Whether to write `HTTP/1.1 100 Continue` now: true once for a request
    /// whose head said `Expect: 100-continue` (HTTP/1.1; RFC 9110 §10.1.1)
    /// when its head is complete and accepted (a body over the limit was
    /// already refused with 413) and none of its body has arrived. Call it
    /// after [`poll_request`](Self::poll_request) returns `Ok(None)`.
    #[must_use]
    pub fn poll_continue(&mut self) -> bool {
        std::mem::take(&mut self.continue_due)
    }

    /// The next instant at which [`handle_timeout`](Self::handle_timeout) has
    /// something to do, `None` after an error or an expiry (or if the deadline
    /// would overflow `Instant`).
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        match &self.state {
            State::Failed(_) | State::Closed => None,
            State::Body { started, .. } => started.checked_add(self.limits.body_timeout),
            State::Head => match self.head_started {
                Some(t) => t.checked_add(self.limits.head_timeout),
                None if self.fresh => self.idle_since.checked_add(self.limits.head_timeout),
                None => self.idle_since.checked_add(self.limits.idle_timeout),
            },
        }
    }

    /// Checks the deadline at `now`. `Some` when it passed: the parser is then
    /// closed (it ignores bytes and yields no more requests) and the
    /// [`Expiry`] says whether to answer 408 first.
    #[must_use = "an expiry means the connection must close"]
    pub fn handle_timeout(&mut self, now: Instant) -> Option<Expiry> {
        let deadline = self.poll_timeout()?;
        if now < deadline {
            return None;
        }
        let expiry = match self.state {
            State::Head if self.head_started.is_none() => Expiry::Idle,
            _ => Expiry::RequestTimeout,
        };
        self.state = State::Closed;
        self.buf = Vec::new();
        Some(expiry)
    }

    /// Bytes of memory held: the read buffer, the request whose body is
    /// being read, and the recycled one. What a server counts against its
    /// budget for requests nobody has authenticated yet.
    #[must_use]
    pub fn memory(&self) -> usize {
        let body = match &self.state {
            State::Body { request, .. } => request.capacity(),
            _ => 0,
        };
        self.buf.capacity() + body + self.spare.as_ref().map_or(0, Request::capacity)
    }

    /// Whether no request is in progress (nothing but blank lines buffered):
    /// a connection shutting down may close now without cutting a request.
    #[must_use]
    pub fn is_idle(&self) -> bool {
        matches!(self.state, State::Head) && self.head_started.is_none()
    }

    /// Bytes received but not yet part of a returned request. Right after a
    /// WebSocket upgrade request these are the client's first frames.
    #[must_use]
    pub fn buffered(&self) -> &[u8] {
        &self.buf
    }

    /// Takes the [`buffered`](Self::buffered) bytes out (for the WebSocket
    /// layer after an upgrade); the parser is left empty.
    pub fn take_buffered(&mut self) -> Vec<u8> {
        self.scanned = 0;
        if matches!(self.state, State::Head) {
            self.head_started = None;
        }
        std::mem::take(&mut self.buf)
    }

    fn advance(&mut self) -> Result<Option<Request>, ParseError> {
        loop {
            match &mut self.state {
                State::Failed(e) => return Err(e.clone()),
                State::Closed => return Ok(None),
                State::Head => {
                    let Some((request, body)) = self.parse_head()? else {
                        return Ok(None);
                    };
                    match body {
                        None => return Ok(Some(self.complete(request))),
                        Some(body) => {
                            // A client that already sent part of the body
                            // is not waiting (§10.1.1 lets the server omit it).
                            self.continue_due = self.buf.is_empty()
                                && request.version == Version::Http11
                                && request.has_token("expect", "100-continue");
                            self.state = State::Body {
                                request,
                                body,
                                started: self.last_push,
                            }
                        }
                    }
                }
                State::Body { request, body, .. } => {
                    if !advance_body(&mut self.buf, request, body, &self.limits)? {
                        return Ok(None);
                    }
                    if let State::Body { request, .. } =
                        std::mem::replace(&mut self.state, State::Head)
                    {
                        return Ok(Some(self.complete(request)));
                    }
                }
            }
        }
    }

    /// Bookkeeping when a request is complete; returns it.
    fn complete(&mut self, request: Request) -> Request {
        self.state = State::Head;
        self.continue_due = false;
        self.fresh = false;
        self.idle_since = self.last_push;
        self.scanned = 0;
        // Pipelined bytes already buffered start the next head's clock.
        self.head_started = self
            .buf
            .iter()
            .any(|&b| b != b'\r' && b != b'\n')
            .then_some(self.last_push);
        // Between requests, an idle connection keeps at most a head's worth.
        if self.buf.is_empty() && self.buf.capacity() > self.limits.max_head_bytes {
            self.buf = Vec::new();
        }
        request
    }

    /// Parses the head once its blank line has arrived, or as soon as a
    /// byte shows that it never will be valid, or when it reaches the limit.
    fn parse_head(&mut self) -> Result<Option<(Request, Option<BodyState>)>, ParseError> {
        if self.scanned == 0 {
            let skip = leading_blank_lines(&self.buf);
            if skip > 0 {
                self.buf.drain(..skip);
            }
            if self.buf.is_empty() || self.buf == b"\r" {
                return Ok(None);
            }
        }
        let max = self.limits.max_head_bytes;
        let scan = scan_head(&self.buf, &mut self.scanned, max);
        let limit = match scan {
            Scan::Blank(end) => end,
            Scan::Invalid => self.buf.len().min(max),
            Scan::More if self.buf.len() >= max => max,
            Scan::More => return Ok(None),
        };
        // Uninitialised slots: httparse fills only what it parses, and zeroing
        // 64 slots per request showed up in the profile.
        let mut stack = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; STACK_HEADERS];
        let mut heap;
        let slots: &mut [MaybeUninit<httparse::Header<'_>>] =
            if self.limits.max_headers <= STACK_HEADERS {
                &mut stack[..self.limits.max_headers]
            } else {
                heap = Vec::with_capacity(self.limits.max_headers);
                heap.resize_with(self.limits.max_headers, MaybeUninit::uninit);
                &mut heap
            };
        let head = self.buf.get(..limit).unwrap_or_default();
        let mut parsed = httparse::Request::new(&mut []);
        let n = match (parsed.parse_with_uninit_headers(head, slots), scan) {
            (Err(e), _) => return Err(head_error(e, head, &self.limits)),
            (Ok(httparse::Status::Complete(n)), Scan::Blank(_)) => n,
            (Ok(_), Scan::More) => return Err(ParseError::HeadTooLarge { limit: max }),
            // httparse accepted what the scan refused or did not finish at the
            // blank line: cannot happen with httparse 1.10, refused to be safe.
            (Ok(_), _) => {
                return Err(ParseError::Malformed {
                    what: "invalid byte in request head",
                });
            }
        };
        let request = build_request(&parsed, self.spare.take())?;
        let body = framing(&request, &self.limits)?;
        self.buf.drain(..n);
        self.scanned = 0;
        Ok(Some((request, body)))
    }
}

/// Offset of the first control byte (below 0x20, or 0x7F), eight bytes at a
/// time: the head is mostly printable, and this loop is the parser's hottest.
fn first_control(bytes: &[u8]) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let mut chunks = bytes.chunks_exact(8);
    let mut base = 0;
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let x = u64::from_le_bytes(word);
        // A byte below 0x20, or a byte equal to 0x7F (zero after the xor),
        // sets its high bit here; bytes of 0x80 and up never do.
        let below = x.wrapping_sub(ONES * 0x20) & !x & HIGH;
        let y = x ^ (ONES * 0x7F);
        let del = y.wrapping_sub(ONES) & !y & HIGH;
        if below | del != 0 {
            return chunk
                .iter()
                .position(|&b| b < 0x20 || b == 0x7F)
                .map(|p| base + p);
        }
        base += 8;
    }
    chunks
        .remainder()
        .iter()
        .position(|&b| b < 0x20 || b == 0x7F)
        .map(|p| base + p)
}

/// What [`scan_head`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scan {
    /// The blank line ending a head (or trailer section) ends here (exclusive).
    Blank(usize),
    /// A byte that httparse refuses anywhere in a head: a control character
    /// other than HTAB, CR, LF, or a CR not followed by LF.
    Invalid,
    /// Neither yet, in the first `max` bytes.
    More,
}

/// Scans `buf[..max]` from `*scanned` for the blank line that ends a head,
/// or for a byte that can never be part of a valid one, and records how far it
/// got. Incremental (each byte looked at once, so a head dribbled in byte by
/// byte costs linear time, not quadratic), and it only refuses bytes that
/// httparse refuses too: whatever the split of the input, the blank line or
/// the bad byte is found at the same offset and httparse gives the same answer.
fn scan_head(buf: &[u8], scanned: &mut usize, max: usize) -> Scan {
    let hay = buf.get(..buf.len().min(max)).unwrap_or_default();
    let mut i = *scanned;
    // Only control bytes matter (CR, LF, and the invalid ones); skipping the
    // printable run between them in a tight loop keeps this off the profile.
    while let Some(off) = hay.get(i..).and_then(first_control) {
        i += off;
        let Some(&b) = hay.get(i) else { break };
        let line_start = i == 0 || hay.get(i - 1) == Some(&b'\n');
        match b {
            b'\n' if line_start => return Scan::Blank(i + 1),
            b'\r' => match hay.get(i + 1) {
                // Decide when the next byte has come (within the limit).
                None => {
                    *scanned = i;
                    return Scan::More;
                }
                Some(b'\n') if line_start => return Scan::Blank(i + 2),
                Some(b'\n') => {}
                Some(_) => return Scan::Invalid,
            },
            b'\n' | b'\t' => {}
            _ => return Scan::Invalid,
        }
        i += 1;
    }
    *scanned = hay.len();
    Scan::More
}

/// Bytes of blank lines at the start of `buf` (a lone trailing `\r` waits).
fn leading_blank_lines(buf: &[u8]) -> usize {
    let mut i = 0;
    loop {
        match (buf.get(i), buf.get(i + 1)) {
            (Some(b'\n'), _) => i += 1,
            (Some(b'\r'), Some(b'\n')) => i += 2,
            _ => return i,
        }
    }
}

/// Maps an httparse error to ours. A version error is 505 when the version
/// is `HTTP/<digit>…` (a real but unsupported version, e.g. the HTTP/2
/// preface), 400 when it is garbage; the test looks only at bytes up to the
/// error, so every split of the input gives the same answer.
fn head_error(e: httparse::Error, head: &[u8], limits: &Limits) -> ParseError {
    match e {
        httparse::Error::TooManyHeaders => ParseError::TooManyHeaders {
            limit: limits.max_headers,
        },
        httparse::Error::Version => {
            let line = head.split(|&b| b == b'\n').next().unwrap_or_default();
            let version = line.split(|&b| b == b' ').nth(2).unwrap_or_default();
            let real = version
                .strip_prefix(b"HTTP/")
                .is_some_and(|rest| rest.first().is_some_and(u8::is_ascii_digit));
            if real {
                ParseError::UnsupportedVersion
            } else {
                ParseError::Malformed {
                    what: "invalid HTTP version",
                }
            }
        }
        httparse::Error::HeaderName => ParseError::Malformed {
            what: "invalid header name",
        },
        httparse::Error::HeaderValue => ParseError::Malformed {
            what: "invalid header value",
        },
        httparse::Error::NewLine => ParseError::Malformed {
            what: "invalid line ending",
        },
        _ => ParseError::Malformed {
            what: "invalid request line",
        },
    }
}

/// The request for a parsed head, built in `spare`'s buffers when given.
fn build_request(
    parsed: &httparse::Request<'_, '_>,
    spare: Option<Request>,
) -> Result<Request, ParseError> {
    let malformed = ParseError::Malformed {
        what: "invalid request line",
    };
    let (Some(method), Some(target), Some(version)) = (parsed.method, parsed.path, parsed.version)
    else {
        return Err(malformed);
    };
    let version = match version {
        0 => Version::Http10,
        1 => Version::Http11,
        _ => return Err(ParseError::UnsupportedVersion),
    };
    let mut request = spare.unwrap_or_else(Request::empty);
    // Each buffer grows once, to its exact size (a fresh request's buffers
    // would otherwise grow by doubling, header by header).
    let names: usize = parsed.headers.iter().map(|h| h.name.len()).sum();
    let values: usize = parsed.headers.iter().map(|h| h.value.len()).sum();
    request.reserve(
        method.len() + target.len() + names,
        values,
        parsed.headers.len(),
    );
    request.reset(method, target, version);
    for h in parsed.headers.iter() {
        request.push_header(h.name, h.value);
    }
    Ok(request)
}

/// Decides how the body is delimited (RFC 9112 §6), or refuses the request.
fn framing(request: &Request, limits: &Limits) -> Result<Option<BodyState>, ParseError> {
    let hosts = request.headers_all("host").count();
    if hosts > 1 {
        return Err(ParseError::MultipleHosts);
    }
    if hosts == 0 && request.version == Version::Http11 {
        return Err(ParseError::MissingHost);
    }
    if request.headers_all("transfer-encoding").next().is_some() {
        if request.version == Version::Http10 {
            return Err(ParseError::TransferEncodingOnHttp10);
        }
        if request.headers_all("content-length").next().is_some() {
            return Err(ParseError::ContentLengthWithTransferEncoding);
        }
        let mut codings = Vec::new();
        for line in request.headers_all("transfer-encoding") {
            let line =
                std::str::from_utf8(line).map_err(|_| ParseError::InvalidTransferEncoding)?;
            codings.extend(
                line.split(',')
                    .map(|t| t.trim_matches([' ', '\t']))
                    .filter(|t| !t.is_empty()),
            );
        }
        let chunked = |t: &&str| t.eq_ignore_ascii_case("chunked");
        return match codings.split_last() {
            Some((last, rest)) if chunked(last) && !rest.iter().any(chunked) => {
                if rest.is_empty() {
                    Ok(Some(BodyState::ChunkSize))
                } else {
                    Err(ParseError::UnsupportedTransferCoding)
                }
            }
            _ => Err(ParseError::InvalidTransferEncoding),
        };
    }
    let mut length: Option<u64> = None;
    for line in request.headers_all("content-length") {
        for element in line.split(|&b| b == b',') {
            let element = trim_ows(element);
            if element.is_empty() || !element.iter().all(u8::is_ascii_digit) {
                return Err(ParseError::InvalidContentLength);
            }
            // Saturating: a number too big for u64 is over any limit anyway.
            let value = element.iter().fold(0u64, |n, &d| {
                n.saturating_mul(10).saturating_add(u64::from(d - b'0'))
            });
            match length {
                Some(seen) if seen != value => return Err(ParseError::ConflictingContentLength),
                _ => length = Some(value),
            }
        }
    }
    match length {
        None | Some(0) => Ok(None),
        Some(n) => match usize::try_from(n) {
            Ok(n) if n <= limits.max_body_bytes => Ok(Some(BodyState::Length { remaining: n })),
            _ => Err(ParseError::BodyTooLarge {
                limit: limits.max_body_bytes,
            }),
        },
    }
}

fn trim_ows(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

/// Moves body bytes from `buf` into the request. `Ok(true)` when the body is
/// complete.
fn advance_body(
    buf: &mut Vec<u8>,
    request: &mut Request,
    state: &mut BodyState,
    limits: &Limits,
) -> Result<bool, ParseError> {
    loop {
        match state {
            BodyState::Length { remaining } => {
                let take = (*remaining).min(buf.len());
                // Room for what arrived, not for what `Content-Length`
                // promised: a client that announces 64 KiB and sends one
                // byte must not make us hold 64 KiB.
                if request.body.is_empty() {
                    request.body.reserve_exact(take);
                }
                request.body.extend(buf.drain(..take));
                *remaining -= take;
                return Ok(*remaining == 0);
            }
            BodyState::ChunkSize => {
                let window = buf.get(..buf.len().min(MAX_CHUNK_LINE)).unwrap_or_default();
                let Some(lf) = window.iter().position(|&b| b == b'\n') else {
                    if buf.len() >= MAX_CHUNK_LINE {
                        return Err(ParseError::InvalidChunk {
                            what: "chunk size line too long",
                        });
                    }
                    return Ok(false);
                };
                let line = window.get(..lf).and_then(|l| l.strip_suffix(b"\r")).ok_or(
                    ParseError::InvalidChunk {
                        what: "chunk size line must end with CRLF",
                    },
                )?;
                let size = parse_chunk_size(line)?;
                let room = limits.max_body_bytes.saturating_sub(request.body.len());
                let size = match usize::try_from(size) {
                    Ok(size) if size <= room => size,
                    _ => {
                        return Err(ParseError::BodyTooLarge {
                            limit: limits.max_body_bytes,
                        });
                    }
                };
                buf.drain(..=lf);
                *state = if size == 0 {
                    BodyState::Trailers { scanned: 0 }
                } else {
                    BodyState::ChunkData { remaining: size }
                };
            }
            BodyState::ChunkData { remaining } => {
                let take = (*remaining).min(buf.len());
                request.body.extend(buf.drain(..take));
                *remaining -= take;
                if *remaining > 0 {
                    return Ok(false);
                }
                *state = BodyState::ChunkEnd;
            }
            BodyState::ChunkEnd => match buf.as_slice() {
                [] | [b'\r'] => return Ok(false),
                [b'\r', b'\n', ..] => {
                    buf.drain(..2);
                    *state = BodyState::ChunkSize;
                }
                _ => {
                    return Err(ParseError::InvalidChunk {
                        what: "chunk data not followed by CRLF",
                    });
                }
            },
            BodyState::Trailers { scanned } => {
                let max = limits.max_head_bytes;
                let end = match scan_head(buf, scanned, max) {
                    Scan::Blank(end) => end,
                    Scan::Invalid => buf.len().min(max),
                    Scan::More if buf.len() >= max => {
                        return Err(ParseError::TrailersTooLarge { limit: max });
                    }
                    Scan::More => return Ok(false),
                };
                let mut stack = [httparse::EMPTY_HEADER; STACK_HEADERS];
                let mut heap;
                let slots: &mut [httparse::Header<'_>] = if limits.max_headers <= STACK_HEADERS {
                    &mut stack[..limits.max_headers]
                } else {
                    heap = vec![httparse::EMPTY_HEADER; limits.max_headers];
                    &mut heap
                };
                match httparse::parse_headers(buf.get(..end).unwrap_or_default(), slots) {
                    Ok(httparse::Status::Complete(_)) => {}
                    Err(httparse::Error::TooManyHeaders) => {
                        return Err(ParseError::TooManyHeaders {
                            limit: limits.max_headers,
                        });
                    }
                    _ => {
                        return Err(ParseError::InvalidChunk {
                            what: "malformed trailer section",
                        });
                    }
                }
                // Trailers are checked and dropped (see the module docs).
                buf.drain(..end);
                return Ok(true);
            }
        }
    }
}

/// `1*HEXDIG [BWS] [";" extensions]` (RFC 9112 §7.1). Saturates: a size too
/// big for u64 is over the body limit anyway.
fn parse_chunk_size(line: &[u8]) -> Result<u64, ParseError> {
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if digits == 0 {
        return Err(ParseError::InvalidChunk {
            what: "chunk size is not hexadecimal",
        });
    }
    let (size, rest) = line.split_at(digits);
    let size = size.iter().fold(0u64, |n, &d| {
        let v = match d {
            b'0'..=b'9' => d - b'0',
            b'a'..=b'f' => d - b'a' + 10,
            _ => d.wrapping_sub(b'A').wrapping_add(10),
        };
        n.saturating_mul(16).saturating_add(u64::from(v))
    });
    let rest = trim_ows(rest);
    match rest {
        [] => Ok(size),
        [b';', ext @ ..]
            if ext
                .iter()
                .all(|&b| b == b'\t' || (b' '..=b'~').contains(&b) || b >= 0x80) =>
        {
            Ok(size)
        }
        [b';', ..] => Err(ParseError::InvalidChunk {
            what: "invalid byte in chunk extension",
        }),
        _ => Err(ParseError::InvalidChunk {
            what: "chunk size is not hexadecimal",
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan(buf: &[u8], from: usize, max: usize) -> (Scan, usize) {
        let mut scanned = from;
        let found = scan_head(buf, &mut scanned, max);
        (found, scanned)
    }

    #[test]
    fn head_scanner() {
        assert_eq!(scan(b"a\r\n\r\n", 0, 100).0, Scan::Blank(5));
        assert_eq!(scan(b"a\n\nb", 0, 100).0, Scan::Blank(3));
        assert_eq!(scan(b"\r\n", 0, 100).0, Scan::Blank(2));
        assert_eq!(scan(b"\n", 0, 100).0, Scan::Blank(1));
        assert_eq!(scan(b"a\r\n\r", 0, 100), (Scan::More, 3));
        assert_eq!(scan(b"a\r\nb\r\n", 0, 100), (Scan::More, 6));
        assert_eq!(scan(b"a\r\n\r\n", 0, 4), (Scan::More, 3));
        assert_eq!(scan(b"a\r\n\r\n", 0, 5).0, Scan::Blank(5));
        assert_eq!(scan(b"a\r\n\r\n", 3, 5).0, Scan::Blank(5));
        assert_eq!(scan(b"a\tb\x80\xff", 0, 100), (Scan::More, 5));
        assert_eq!(scan(b"a\x00", 0, 100).0, Scan::Invalid);
        assert_eq!(scan(b"a\x7f", 0, 100).0, Scan::Invalid);
        assert_eq!(scan(b"a\rb", 0, 100).0, Scan::Invalid);
        assert_eq!(scan(b"\x16\x03\x01", 0, 100).0, Scan::Invalid);
    }

    #[test]
    fn first_control_matches_the_plain_loop() {
        let mut bytes: Vec<u8> = (0..=255u8).collect();
        bytes.extend((0..=255u8).rev());
        for start in 0..bytes.len() {
            for len in [0, 1, 7, 8, 9, 17, 40] {
                let slice = &bytes[start..(start + len).min(bytes.len())];
                let plain = slice.iter().position(|&b| b < 0x20 || b == 0x7F);
                assert_eq!(first_control(slice), plain, "{slice:?}");
            }
        }
        assert_eq!(first_control(b"GET / HTTP/1.1\r\n"), Some(14));
        assert_eq!(first_control(b"abcdefgh\x80\xff\x7e ~"), None);
        assert_eq!(first_control(b"abcdefgh\x80\xff\x7f"), Some(10));
    }

    #[test]
    fn leading_blank_lines_are_counted() {
        assert_eq!(leading_blank_lines(b"\r\n\nG"), 3);
        assert_eq!(leading_blank_lines(b"\r"), 0);
        assert_eq!(leading_blank_lines(b"\r\n\r"), 2);
        assert_eq!(leading_blank_lines(b"G"), 0);
    }

    #[test]
    fn chunk_sizes() {
        let ok: &[(&[u8], u64)] = &[
            (b"0", 0),
            (b"a", 10),
            (b"1F", 31),
            (b"10 ;x=y", 16),
            (b"10;name=\"quoted value\"", 16),
            (b"ffffffffffffffffffff", u64::MAX),
            (b"5\t", 5),
        ];
        for (line, size) in ok {
            assert_eq!(parse_chunk_size(line), Ok(*size), "{line:?}");
        }
        for line in [
            &b""[..],
            b";x",
            b"g",
            b"5 5",
            b"-1",
            b"0x5",
            b"5;\x01",
            b"5;a\rb",
        ] {
            assert!(parse_chunk_size(line).is_err(), "{line:?}");
        }
    }
}
