//! Writing answers: status line, headers, `Content-Length`, body.

use super::ParseError;

/// The standard reason phrase for `status` (RFC 9110 §15), `""` for codes
/// this server never sends (a reason phrase is optional, RFC 9112 §4).
#[must_use]
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        101 => "Switching Protocols",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        301 => "Moved Permanently",
        302 => "Found",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        411 => "Length Required",
        413 => "Content Too Large",
        414 => "URI Too Long",
        415 => "Unsupported Media Type",
        426 => "Upgrade Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        _ => "",
    }
}

/// The complete answer an adapter writes, without involving the engine, when
/// it refuses a connection over its limit: a 503 with `Retry-After: 1` and
/// `Connection: close` (then close the socket).
#[must_use]
pub fn overloaded_response() -> &'static [u8] {
    OVERLOADED
}

const OVERLOADED: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\n\
Content-Type: text/plain; charset=utf-8\r\n\
Retry-After: 1\r\n\
Content-Length: 11\r\n\
Connection: close\r\n\
\r\n\
overloaded\n";

const TEXT: &str = "text/plain; charset=utf-8";

/// An HTTP/1.1 response, built then written with [`write_to`](Response::write_to).
///
/// The writer owns the framing headers: it always writes `Content-Length`
/// (except on 1xx, 204 and 304, which carry neither it nor a body, RFC 9110
/// §8.6 and §15.3.5), and `Connection: close` when [`close`](Response::close)
/// was asked for. So [`header`](Response::header) ignores `Content-Length`,
/// `Transfer-Encoding` and `Connection`: a second framing header would break
/// the answer. Header values have control characters (CR, LF, NUL, …) replaced
/// by spaces and names that are not RFC 9110 tokens are dropped, so text that
/// came from a request can never split the response. No `Date` header: the
/// core has no clock, and RFC 9110 §6.6.1 lets a server without one omit it.
///
/// ```
/// use callstream_core::http::Response;
/// let bytes = Response::ok_text("ok").header("Cache-Control", "no-store").to_bytes();
/// assert_eq!(
///     bytes,
///     b"HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\n\
///       Cache-Control: no-store\r\nContent-Length: 2\r\n\r\nok"
/// );
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    close: bool,
    // A 426 names `Upgrade`, and a sender of `Upgrade` must list the `upgrade`
    // connection option (RFC 9110 §7.8).
    upgrade_option: bool,
}

impl Response {
    /// A response with `status`, no headers and an empty body.
    #[must_use]
    pub fn new(status: u16) -> Self {
        Response {
            status,
            headers: Vec::new(),
            body: Vec::new(),
            close: false,
            upgrade_option: false,
        }
    }

    /// Adds a header line (see the type docs for what is ignored or cleaned).
    #[must_use]
    pub fn header(mut self, name: &str, value: &str) -> Self {
        let managed = ["content-length", "transfer-encoding", "connection"]
            .iter()
            .any(|m| name.eq_ignore_ascii_case(m));
        if !managed && is_token(name) {
            let value = value
                .chars()
                .map(|c| {
                    if c.is_ascii_control() && c != '\t' {
                        ' '
                    } else {
                        c
                    }
                })
                .collect();
            self.headers.push((name.to_owned(), value));
        }
        self
    }

    /// Sets the body.
    #[must_use]
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    /// Marks the answer as the connection's last: writes `Connection: close`.
    #[must_use]
    pub fn close(mut self) -> Self {
        self.close = true;
        self
    }

    /// The status code.
    #[must_use]
    pub fn status(&self) -> u16 {
        self.status
    }

    /// Whether the connection must close after this answer.
    #[must_use]
    pub fn closes(&self) -> bool {
        self.close
    }

    /// The body.
    #[must_use]
    pub fn body_bytes(&self) -> &[u8] {
        &self.body
    }

    /// The first value of header `name` (case-insensitive), as added.
    #[must_use]
    pub fn header_value(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Appends the complete response (head and body) to `out`.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        self.write_head_to(out);
        if !self.is_bodiless() {
            out.extend_from_slice(&self.body);
        }
    }

    /// Appends the head only (status line, headers, the empty line): the
    /// answer to a `HEAD` request. Its `Content-Length` still says what a
    /// `GET` would carry (RFC 9110 §9.3.2, §8.6), but no content may follow:
    /// the client stops reading at the empty line (RFC 9112 §6.3), so body
    /// bytes would be read as the start of the next response on the connection.
    pub fn write_head_to(&self, out: &mut Vec<u8>) {
        let bodiless = self.is_bodiless();
        out.extend_from_slice(b"HTTP/1.1 ");
        push_decimal(out, u64::from(self.status));
        out.push(b' ');
        out.extend_from_slice(reason_phrase(self.status).as_bytes());
        out.extend_from_slice(b"\r\n");
        for (name, value) in &self.headers {
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(value.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        if !bodiless {
            out.extend_from_slice(b"Content-Length: ");
            push_decimal(out, self.body.len() as u64);
            out.extend_from_slice(b"\r\n");
        }
        match (self.upgrade_option, self.close) {
            (true, true) => out.extend_from_slice(b"Connection: Upgrade, close\r\n"),
            (true, false) => out.extend_from_slice(b"Connection: Upgrade\r\n"),
            (false, true) => out.extend_from_slice(b"Connection: close\r\n"),
            (false, false) => {}
        }
        out.extend_from_slice(b"\r\n");
    }

    /// 1xx, 204 and 304 carry neither `Content-Length` nor content (RFC 9110
    /// §8.6, §15.3.5).
    fn is_bodiless(&self) -> bool {
        self.status < 200 || self.status == 204 || self.status == 304
    }

    /// The complete response as a new buffer.
    #[must_use]
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(128 + self.body.len());
        self.write_to(&mut out);
        out
    }

    /// `status` with a `text/plain; charset=utf-8` body.
    #[must_use]
    pub fn text(status: u16, body: &str) -> Self {
        Response::new(status)
            .header("Content-Type", TEXT)
            .body(body)
    }

    /// 200 with a plain-text body.
    #[must_use]
    pub fn ok_text(body: &str) -> Self {
        Response::text(200, body)
    }

    /// 204 No Content (the answer to status callbacks).
    #[must_use]
    pub fn no_content() -> Self {
        Response::new(204)
    }

    /// 400 with `reason` (and a newline) as the plain-text body. Does not
    /// close by itself; add [`close`](Response::close) when the framing is lost.
    #[must_use]
    pub fn bad_request(reason: &str) -> Self {
        Response::text(400, &format!("{reason}\n"))
    }

    /// 403 Forbidden (a failed signature check).
    #[must_use]
    pub fn forbidden() -> Self {
        Response::text(403, "forbidden\n")
    }

    /// 404 Not Found.
    #[must_use]
    pub fn not_found() -> Self {
        Response::text(404, "not found\n")
    }

    /// 405 with `Allow` listing `allow` (e.g. `&["GET", "POST"]`).
    #[must_use]
    pub fn method_not_allowed(allow: &[&str]) -> Self {
        Response::text(405, "method not allowed\n").header("Allow", &allow.join(", "))
    }

    /// 408, closing: the request did not arrive in time.
    #[must_use]
    pub fn request_timeout() -> Self {
        Response::text(408, "request timeout\n").close()
    }

    /// 413, closing: the body is over the limit.
    #[must_use]
    pub fn content_too_large() -> Self {
        Response::text(413, "content too large\n").close()
    }

    /// 426 for a WebSocket version other than 13: `Sec-WebSocket-Version: 13`
    /// (RFC 6455 §4.2.2) and `Upgrade: websocket` (RFC 9110 §15.5.22).
    #[must_use]
    pub fn upgrade_required() -> Self {
        let mut r = Response::text(426, "upgrade required: WebSocket version 13\n")
            .header("Upgrade", "websocket")
            .header("Sec-WebSocket-Version", "13");
        r.upgrade_option = true;
        r
    }

    /// 431, closing: the head is over a limit.
    #[must_use]
    pub fn header_fields_too_large() -> Self {
        Response::text(431, "request header fields too large\n").close()
    }

    /// 503 with `Retry-After: 1`, closing.
    #[must_use]
    pub fn service_unavailable() -> Self {
        Response::text(503, "service unavailable\n")
            .header("Retry-After", "1")
            .close()
    }

    /// The answer to a parse error: its status, its description as the body,
    /// and `Connection: close`.
    #[must_use]
    pub fn for_parse_error(error: &ParseError) -> Self {
        Response::text(error.status(), &format!("{error}\n")).close()
    }
}

fn push_decimal(out: &mut Vec<u8>, n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    let mut n = n;
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

/// RFC 9110 §5.6.2 token: what a header name or a subprotocol must be.
pub(crate) fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wire(r: &Response) -> String {
        String::from_utf8(r.to_bytes()).unwrap()
    }

    #[test]
    fn helpers_byte_exact() {
        let cases: &[(Response, &str)] = &[
            (
                Response::ok_text("ok"),
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 2\r\n\r\nok",
            ),
            (Response::no_content(), "HTTP/1.1 204 No Content\r\n\r\n"),
            (
                Response::bad_request("missing CallSid"),
                "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 16\r\n\r\nmissing CallSid\n",
            ),
            (
                Response::forbidden(),
                "HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 10\r\n\r\nforbidden\n",
            ),
            (
                Response::not_found(),
                "HTTP/1.1 404 Not Found\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 10\r\n\r\nnot found\n",
            ),
            (
                Response::method_not_allowed(&["GET", "POST"]),
                "HTTP/1.1 405 Method Not Allowed\r\nContent-Type: text/plain; charset=utf-8\r\nAllow: GET, POST\r\nContent-Length: 19\r\n\r\nmethod not allowed\n",
            ),
            (
                Response::request_timeout(),
                "HTTP/1.1 408 Request Timeout\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 16\r\nConnection: close\r\n\r\nrequest timeout\n",
            ),
            (
                Response::content_too_large(),
                "HTTP/1.1 413 Content Too Large\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 18\r\nConnection: close\r\n\r\ncontent too large\n",
            ),
            (
                Response::upgrade_required(),
                "HTTP/1.1 426 Upgrade Required\r\nContent-Type: text/plain; charset=utf-8\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nContent-Length: 39\r\nConnection: Upgrade\r\n\r\nupgrade required: WebSocket version 13\n",
            ),
            (
                Response::header_fields_too_large(),
                "HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 32\r\nConnection: close\r\n\r\nrequest header fields too large\n",
            ),
            (
                Response::service_unavailable(),
                "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\nRetry-After: 1\r\nContent-Length: 20\r\nConnection: close\r\n\r\nservice unavailable\n",
            ),
        ];
        for (response, want) in cases {
            assert_eq!(wire(response), *want);
        }
    }

    #[test]
    fn head_answers_are_the_head_without_content() {
        // Content-Length still says what GET would carry; nothing follows
        // the empty line (RFC 9112 §6.3).
        let cases: &[(Response, &str)] = &[
            (
                Response::method_not_allowed(&["GET"]),
                "HTTP/1.1 405 Method Not Allowed\r\nContent-Type: text/plain; charset=utf-8\r\nAllow: GET\r\nContent-Length: 19\r\n\r\n",
            ),
            (
                Response::ok_text("ok").close(),
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 2\r\nConnection: close\r\n\r\n",
            ),
            (Response::no_content(), "HTTP/1.1 204 No Content\r\n\r\n"),
        ];
        for (response, want) in cases {
            let mut out = b"before".to_vec();
            response.write_head_to(&mut out);
            assert_eq!(String::from_utf8(out).unwrap(), format!("before{want}"));
            // The full answer is the head and then the body.
            let full = response.to_bytes();
            assert_eq!(&full[..want.len()], want.as_bytes());
            assert_eq!(&full[want.len()..], response.body_bytes());
        }
    }

    #[test]
    fn overloaded_is_a_well_formed_closing_503() {
        let built = Response::text(503, "overloaded\n")
            .header("Retry-After", "1")
            .close()
            .to_bytes();
        assert_eq!(overloaded_response(), built.as_slice());
    }

    #[test]
    fn upgrade_required_can_close_too() {
        assert!(
            wire(&Response::upgrade_required().close())
                .contains("\r\nConnection: Upgrade, close\r\n")
        );
    }

    #[test]
    fn framing_headers_are_the_writers() {
        let r = Response::ok_text("abc")
            .header("Content-Length", "99")
            .header("transfer-encoding", "chunked")
            .header("CONNECTION", "keep-alive");
        assert_eq!(
            wire(&r),
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 3\r\n\r\nabc"
        );
    }

    #[test]
    fn injected_line_breaks_are_neutralised() {
        let r = Response::new(200)
            .header("X-Reason", "a\r\nSet-Cookie: x=1\0")
            .header("Bad Name", "v")
            .header("", "v")
            .header("X:Y", "v");
        assert_eq!(
            wire(&r),
            "HTTP/1.1 200 OK\r\nX-Reason: a  Set-Cookie: x=1 \r\nContent-Length: 0\r\n\r\n"
        );
    }

    #[test]
    fn bodiless_statuses_carry_no_length_or_body() {
        for status in [101, 204, 304] {
            let w = wire(&Response::new(status).body("x"));
            assert!(!w.contains("Content-Length"), "{w}");
            assert!(w.ends_with("\r\n\r\n"), "{w}");
        }
        assert_eq!(
            wire(&Response::new(599)),
            "HTTP/1.1 599 \r\nContent-Length: 0\r\n\r\n"
        );
    }

    #[test]
    fn parse_errors_answer_with_their_status_and_close() {
        let e = ParseError::BodyTooLarge { limit: 10 };
        let r = Response::for_parse_error(&e);
        assert_eq!(r.status(), 413);
        assert!(r.closes());
        assert_eq!(r.body_bytes(), b"body longer than 10 bytes\n");
    }

    #[test]
    fn accessors() {
        let r = Response::method_not_allowed(&["GET"]);
        assert_eq!(r.header_value("allow"), Some("GET"));
        assert!(!r.closes());
    }
}
