//! A complete HTTP request, as the parser hands it over.

use std::fmt;
use std::ops::Range;

/// The HTTP version of a request (httparse reads only these two).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Version {
    /// `HTTP/1.0`: the connection closes after the answer.
    Http10,
    /// `HTTP/1.1`: persistent unless `Connection: close`.
    Http11,
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Version::Http10 => "HTTP/1.0",
            Version::Http11 => "HTTP/1.1",
        })
    }
}

/// One complete request: head and (de-chunked) body.
///
/// Header names keep the case the client used and header lines keep their
/// order; look them up case-insensitively with [`header`](Request::header),
/// [`headers_all`](Request::headers_all) and [`tokens`](Request::tokens).
/// Values are bytes with surrounding whitespace trimmed (they may hold
/// obs-text, so they are not promised to be UTF-8).
///
/// The head lives in two buffers indexed by offsets (the text of the method,
/// target and header names; the header values' bytes) rather than in a
/// string per field: a request then costs no allocation per header line, and
/// a connection that hands its requests back with
/// [`RequestParser::recycle`](super::RequestParser::recycle) costs none per
/// request at all.
#[derive(Clone, PartialEq, Eq)]
pub struct Request {
    /// The method, the target, then every header name, back to back (all of
    /// them are text: httparse checks tokens and the target's bytes).
    text: String,
    /// `text[..method_end]` is the method.
    method_end: usize,
    /// `text[method_end..target_end]` is the target.
    target_end: usize,
    /// The path, inside the target; empty means `/` (an absolute-form target
    /// without a path).
    path: Span,
    /// The query, inside the target.
    query: Option<Span>,
    /// HTTP/1.0 or HTTP/1.1.
    pub version: Version,
    /// Every header value's bytes, back to back.
    values: Vec<u8>,
    /// One entry per header line, in order.
    fields: Vec<Field>,
    /// The body (de-chunked when it came chunked; empty when there was none).
    pub body: Vec<u8>,
}

/// A byte range in one of a request's buffers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Span {
    start: usize,
    end: usize,
}

impl Span {
    /// `range` of a piece that starts at `offset` in the buffer.
    fn within(range: Range<usize>, offset: usize) -> Span {
        Span {
            start: range.start + offset,
            end: range.end + offset,
        }
    }
}

/// One header line: its name in `text`, its value in `values`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Field {
    name: Span,
    value: Span,
}

impl fmt::Debug for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let headers: Vec<(&str, String)> = self
            .headers()
            .map(|(n, v)| (n, String::from_utf8_lossy(v).into_owned()))
            .collect();
        f.debug_struct("Request")
            .field("method", &self.method())
            .field("target", &self.target())
            .field("path", &self.path())
            .field("query", &self.query())
            .field("version", &self.version)
            .field("headers", &headers)
            .field("body", &String::from_utf8_lossy(&self.body))
            .finish()
    }
}

impl Request {
    /// An empty request whose buffers the parser fills.
    pub(super) fn empty() -> Request {
        Request {
            text: String::new(),
            method_end: 0,
            target_end: 0,
            path: Span { start: 0, end: 0 },
            query: None,
            version: Version::Http11,
            values: Vec::new(),
            fields: Vec::new(),
            body: Vec::new(),
        }
    }

    /// Refills this request with a new request line, keeping the buffers'
    /// capacity; the headers and body are cleared.
    pub(super) fn reset(&mut self, method: &str, target: &str, version: Version) {
        self.text.clear();
        self.values.clear();
        self.fields.clear();
        self.body.clear();
        self.text.push_str(method);
        self.method_end = self.text.len();
        self.text.push_str(target);
        self.target_end = self.text.len();
        let (path, query) = split_target(target);
        self.path = Span::within(path, self.method_end);
        self.query = query.map(|q| Span::within(q, self.method_end));
        self.version = version;
    }

    /// Makes room, after [`reset`](Self::reset), for `text` bytes of
    /// method, target and names, `values` bytes of values and `fields`
    /// header lines.
    pub(super) fn reserve(&mut self, text: usize, values: usize, fields: usize) {
        self.text.clear();
        self.values.clear();
        self.fields.clear();
        self.text.reserve_exact(text);
        self.values.reserve_exact(values);
        self.fields.reserve_exact(fields);
    }

    /// Appends a header line.
    pub(super) fn push_header(&mut self, name: &str, value: &[u8]) {
        let name_start = self.text.len();
        self.text.push_str(name);
        let value_start = self.values.len();
        self.values.extend_from_slice(value);
        self.fields.push(Field {
            name: Span {
                start: name_start,
                end: self.text.len(),
            },
            value: Span {
                start: value_start,
                end: self.values.len(),
            },
        });
    }

    /// Bytes of buffer capacity held (what recycling keeps alive).
    pub(super) fn capacity(&self) -> usize {
        self.text.capacity()
            + self.values.capacity()
            + self.fields.capacity() * std::mem::size_of::<Field>()
            + self.body.capacity()
    }

    fn text(&self, span: Span) -> &str {
        self.text.get(span.start..span.end).unwrap_or_default()
    }

    /// The method, e.g. `GET` (case-sensitive, as RFC 9110 says).
    #[must_use]
    pub fn method(&self) -> &str {
        self.text.get(..self.method_end).unwrap_or_default()
    }

    /// The request target exactly as received, e.g. `/webhook/x?a=1` (what a
    /// signature is computed over, after the public base URL).
    #[must_use]
    pub fn target(&self) -> &str {
        self.text
            .get(self.method_end..self.target_end)
            .unwrap_or_default()
    }

    /// The path part of the target, without the query, not percent-decoded.
    /// For an absolute-form target (`http://host/p`) this is `/p`.
    #[must_use]
    pub fn path(&self) -> &str {
        match self.text(self.path) {
            "" => "/",
            path => path,
        }
    }

    /// The raw query (after `?`, not decoded), `None` when the target has no
    /// `?`. Decode it with [`form::parse`](crate::form::parse).
    #[must_use]
    pub fn query(&self) -> Option<&str> {
        self.query.map(|q| self.text(q))
    }

    /// Header lines in order: name as sent, value bytes.
    pub fn headers(&self) -> impl ExactSizeIterator<Item = (&str, &[u8])> + '_ {
        self.fields.iter().map(|f| {
            let value = self
                .values
                .get(f.value.start..f.value.end)
                .unwrap_or_default();
            (self.text(f.name), value)
        })
    }

    /// The first value of header `name` (case-insensitive), when it is UTF-8.
    #[must_use]
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers_all(name)
            .next()
            .and_then(|v| std::str::from_utf8(v).ok())
    }

    /// Every value of header `name` (case-insensitive), one per line, in order.
    pub fn headers_all<'a>(&'a self, name: &str) -> impl Iterator<Item = &'a [u8]> {
        self.headers()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }

    /// The comma-separated elements of every `name` line (RFC 9110 §5.6.1
    /// lists), trimmed of spaces and tabs, empty elements skipped; lines that
    /// are not UTF-8 are skipped. E.g. `Connection: keep-alive, Upgrade` gives
    /// `keep-alive` and `Upgrade`.
    pub fn tokens<'a>(&'a self, name: &str) -> impl Iterator<Item = &'a str> {
        self.headers_all(name)
            .filter_map(|v| std::str::from_utf8(v).ok())
            .flat_map(|v| v.split(','))
            .map(|t| t.trim_matches([' ', '\t']))
            .filter(|t| !t.is_empty())
    }

    /// Whether some element of the `name` list equals `token`, ignoring ASCII
    /// case (e.g. `has_token("connection", "upgrade")`).
    #[must_use]
    pub fn has_token(&self, name: &str, token: &str) -> bool {
        self.tokens(name).any(|t| t.eq_ignore_ascii_case(token))
    }

    /// Whether the connection may carry another request after this one:
    /// HTTP/1.1 without `Connection: close`. HTTP/1.0 never (see the module
    /// docs).
    #[must_use]
    pub fn keep_alive(&self) -> bool {
        self.version == Version::Http11 && !self.has_token("connection", "close")
    }
}

/// Splits a request target into the byte ranges of its path and query.
/// Absolute-form targets (`http://host/p?q`, RFC 9112 §3.2.2) lose their
/// scheme and authority; an empty path range stands for `/`.
fn split_target(target: &str) -> (Range<usize>, Option<Range<usize>>) {
    let mut start = 0;
    if let Some(scheme_end) = target.find("://") {
        let scheme = target.get(..scheme_end).unwrap_or_default();
        if scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https") {
            let after = target.get(scheme_end + 3..).unwrap_or_default();
            let authority_end = after.find(['/', '?', '#']).unwrap_or(after.len());
            start = scheme_end + 3 + authority_end;
        }
    }
    let rest = target.get(start..).unwrap_or_default();
    match rest.find('?') {
        Some(q) => (start..start + q, Some(start + q + 1..target.len())),
        None => (start..target.len(), None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(headers: &[(&str, &[u8])]) -> Request {
        let mut r = Request::empty();
        r.reset("GET", "/", Version::Http11);
        for (n, v) in headers {
            r.push_header(n, v);
        }
        r
    }

    #[test]
    fn header_lookup_is_case_insensitive_and_first_wins() {
        let r = request(&[("X-A", b"1"), ("x-a", b"2"), ("X-Bin", b"\xff")]);
        assert_eq!(r.header("x-A"), Some("1"));
        assert_eq!(
            r.headers_all("X-A").collect::<Vec<_>>(),
            vec![&b"1"[..], b"2"]
        );
        assert_eq!(r.header("x-bin"), None);
        assert_eq!(r.headers_all("x-bin").count(), 1);
        assert_eq!(r.header("missing"), None);
    }

    #[test]
    fn tokens_span_lines_and_commas() {
        let r = request(&[
            ("Connection", b"keep-alive, ,Upgrade"),
            ("connection", b" close\t"),
        ]);
        assert_eq!(
            r.tokens("connection").collect::<Vec<_>>(),
            vec!["keep-alive", "Upgrade", "close"]
        );
        assert!(r.has_token("Connection", "upgrade"));
        assert!(!r.keep_alive());
    }

    #[test]
    fn keep_alive_rules() {
        let mut r = request(&[]);
        assert!(r.keep_alive());
        r.version = Version::Http10;
        assert!(!r.keep_alive());
        r.push_header("Connection", b"keep-alive");
        assert!(!r.keep_alive());
    }

    #[test]
    fn targets_split() {
        let cases: &[(&str, &str, Option<&str>)] = &[
            ("/", "/", None),
            ("/a/b?x=1&y", "/a/b", Some("x=1&y")),
            ("/a?", "/a", Some("")),
            ("/a?b?c", "/a", Some("b?c")),
            ("http://h.example/p?q=1", "/p", Some("q=1")),
            ("HTTPS://h.example", "/", None),
            ("http://h.example?x", "/", Some("x")),
            ("*", "*", None),
            ("h.example:443", "h.example:443", None),
        ];
        for (target, path, query) in cases {
            let mut r = Request::empty();
            r.reset("GET", target, Version::Http11);
            assert_eq!((r.path(), r.query()), (*path, *query), "{target}");
            assert_eq!(r.target(), *target);
        }
    }
}
