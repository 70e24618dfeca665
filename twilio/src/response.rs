//! Reading a server's HTTP/1.1 answer as Twilio's client does: a push reader
//! over bytes (`Ok(None)` until the answer is complete), framed by
//! `Content-Length` (RFC 9112 §6.3: no content after 1xx, 204, 304, or any
//! answer to `HEAD`).

use std::fmt;

/// The most header lines an answer may carry here.
pub const MAX_HEADERS: usize = 64;

/// The head of an answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    /// HTTP minor version (`1` for HTTP/1.1).
    pub version: u8,
    /// Status code.
    pub status: u16,
    /// Header lines in order, names lower-cased, values as sent (trimmed).
    pub headers: Vec<(String, String)>,
    /// Bytes the head took, blank line included.
    pub len: usize,
}

/// A whole answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Header lines in order, names lower-cased.
    pub headers: Vec<(String, String)>,
    /// The content, read lossily as UTF-8.
    pub body: String,
}

/// Why bytes are not an answer a client can read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResponseError {
    /// Not an HTTP/1.x status line and headers (httparse's description).
    Malformed(String),
    /// `Content-Length` is not one decimal number, or appears twice.
    BadContentLength,
    /// `Transfer-Encoding`: a server answering Twilio frames by length.
    TransferEncoding,
    /// An answer that needs content has no `Content-Length`.
    NoContentLength,
}

impl fmt::Display for ResponseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ResponseError::Malformed(e) => write!(f, "not an HTTP response: {e}"),
            ResponseError::BadContentLength => f.write_str("bad or repeated Content-Length"),
            ResponseError::TransferEncoding => f.write_str("Transfer-Encoding in a response"),
            ResponseError::NoContentLength => {
                f.write_str("a response with content but no Content-Length")
            }
        }
    }
}

impl std::error::Error for ResponseError {}

impl Head {
    /// The first value of header `name` (any case).
    #[must_use]
    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }

    /// How many lines carry header `name` (any case).
    #[must_use]
    pub fn count(&self, name: &str) -> usize {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .count()
    }

    /// `Connection: close` among the connection options.
    #[must_use]
    pub fn closes(&self) -> bool {
        self.headers.iter().any(|(k, v)| {
            k == "connection" && v.split(',').any(|o| o.trim().eq_ignore_ascii_case("close"))
        })
    }

    /// Content bytes that follow this head, for a request made with `method`.
    ///
    /// # Errors
    /// A [`ResponseError`] when the framing is one a client cannot follow.
    pub fn body_len(&self, method: &str) -> Result<usize, ResponseError> {
        if self.count("transfer-encoding") > 0 {
            return Err(ResponseError::TransferEncoding);
        }
        let length = match self.count("content-length") {
            0 => None,
            1 => Some(
                self.header("content-length")
                    .and_then(|v| v.parse::<usize>().ok())
                    .ok_or(ResponseError::BadContentLength)?,
            ),
            _ => return Err(ResponseError::BadContentLength),
        };
        let bodiless = self.status < 200 || self.status == 204 || self.status == 304;
        // Methods are case-sensitive (RFC 9110 §9.1): `head` is not HEAD.
        if bodiless || method == "HEAD" {
            return Ok(0);
        }
        length.ok_or(ResponseError::NoContentLength)
    }
}

impl Response {
    /// The first value of header `name` (any case).
    #[must_use]
    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// Reads the head at the front of `bytes`; `Ok(None)` while it is incomplete.
///
/// # Errors
/// [`ResponseError::Malformed`] for bytes that are no HTTP/1.x answer.
pub fn parse_head(bytes: &[u8]) -> Result<Option<Head>, ResponseError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut r = httparse::Response::new(&mut headers);
    let len = match r.parse(bytes) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(ResponseError::Malformed(e.to_string())),
    };
    Ok(Some(Head {
        version: r.version.unwrap_or(0),
        status: r.code.unwrap_or(0),
        headers: r
            .headers
            .iter()
            .map(|h| {
                (
                    h.name.to_ascii_lowercase(),
                    String::from_utf8_lossy(h.value).trim().to_owned(),
                )
            })
            .collect(),
        len,
    }))
}

/// Reads one whole answer to a request made with `method` at the front of
/// `bytes`: the answer and the bytes it took, or `Ok(None)` while incomplete.
///
/// # Errors
/// A [`ResponseError`] when the bytes are no answer a client can frame.
pub fn parse(bytes: &[u8], method: &str) -> Result<Option<(Response, usize)>, ResponseError> {
    let Some(head) = parse_head(bytes)? else {
        return Ok(None);
    };
    let body_len = head.body_len(method)?;
    let Some(body) = bytes.get(head.len..head.len.saturating_add(body_len)) else {
        return Ok(None);
    };
    let used = head.len + body_len;
    Ok(Some((
        Response {
            status: head.status,
            body: String::from_utf8_lossy(body).into_owned(),
            headers: head.headers,
        },
        used,
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_an_answer_split_anywhere() {
        let wire =
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello+next";
        let end = wire.len() - 5;
        for cut in 0..end {
            assert_eq!(parse(&wire[..cut], "GET"), Ok(None), "cut at {cut}");
        }
        let (r, n) = parse(wire, "GET").unwrap().unwrap();
        assert_eq!((r.status, r.body.as_str(), n), (200, "hello", end));
        assert_eq!(r.header("CONTENT-TYPE"), Some("text/plain"));
    }

    #[test]
    fn no_content_after_head_204_304_or_1xx() {
        let head = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n";
        assert_eq!(parse(head, "HEAD").unwrap().unwrap().1, head.len());
        // `head` is another method: its answer's content follows.
        assert_eq!(parse(head, "head"), Ok(None));
        for status in [
            "101 Switching Protocols",
            "204 No Content",
            "304 Not Modified",
        ] {
            let wire = format!("HTTP/1.1 {status}\r\n\r\n");
            let (r, n) = parse(wire.as_bytes(), "GET").unwrap().unwrap();
            assert_eq!((r.body.as_str(), n), ("", wire.len()));
        }
    }

    #[test]
    fn framing_a_client_cannot_follow_is_refused() {
        let cases: [(&[u8], ResponseError); 4] = [
            (b"HTTP/1.1 200 OK\r\n\r\n", ResponseError::NoContentLength),
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx",
                ResponseError::BadContentLength,
            ),
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
                ResponseError::BadContentLength,
            ),
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
                ResponseError::TransferEncoding,
            ),
        ];
        for (wire, want) in cases {
            assert_eq!(parse(wire, "GET"), Err(want));
        }
        assert!(matches!(
            parse(b"HTTP/1.1 2x0 OK\r\n\r\n", "GET"),
            Err(ResponseError::Malformed(_))
        ));
    }

    #[test]
    fn connection_close_is_seen_among_options() {
        let head = parse_head(b"HTTP/1.1 200 OK\r\nConnection: keep-alive, Close\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(head.closes());
    }
}
