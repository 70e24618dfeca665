//! A complete HTTP request, as the parser hands it over.

use std::fmt;

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
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The method, e.g. `GET` (case-sensitive, as RFC 9110 says).
    pub method: String,
    /// The request target exactly as received, e.g. `/webhook/x?a=1` (what a
    /// signature is computed over, after the public base URL).
    pub target: String,
    /// The path part of the target, without the query, not percent-decoded.
    /// For an absolute-form target (`http://host/p`) this is `/p`.
    pub path: String,
    /// The raw query (after `?`, not decoded), `None` when the target has no
    /// `?`. Decode it with [`form::parse`](crate::form::parse).
    pub query: Option<String>,
    /// HTTP/1.0 or HTTP/1.1.
    pub version: Version,
    /// Header lines in order: name as sent, value bytes.
    pub headers: Vec<(String, Vec<u8>)>,
    /// The body (de-chunked when it came chunked; empty when there was none).
    pub body: Vec<u8>,
}

impl Request {
    /// The first value of header `name` (case-insensitive), when it is UTF-8.
    #[must_use]
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers_all(name)
            .next()
            .and_then(|v| std::str::from_utf8(v).ok())
    }

    /// Every value of header `name` (case-insensitive), one per line, in order.
    pub fn headers_all<'a>(&'a self, name: &str) -> impl Iterator<Item = &'a [u8]> {
        self.headers
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice())
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

/// Splits a request target into (path, query). Absolute-form targets
/// (`http://host/p?q`, RFC 9112 §3.2.2) lose their scheme and authority.
pub(super) fn split_target(target: &str) -> (String, Option<String>) {
    let mut rest = target;
    if let Some(scheme_end) = rest.find("://") {
        let scheme = &rest[..scheme_end];
        if scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https") {
            let after = &rest[scheme_end + 3..];
            let authority_end = after.find(['/', '?', '#']).unwrap_or(after.len());
            rest = &after[authority_end..];
        }
    }
    let (path, query) = match rest.split_once('?') {
        Some((p, q)) => (p, Some(q.to_owned())),
        None => (rest, None),
    };
    let path = if path.is_empty() { "/" } else { path };
    (path.to_owned(), query)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(headers: &[(&str, &[u8])]) -> Request {
        Request {
            method: "GET".into(),
            target: "/".into(),
            path: "/".into(),
            query: None,
            version: Version::Http11,
            headers: headers
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_vec()))
                .collect(),
            body: Vec::new(),
        }
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
        r.headers
            .push(("Connection".into(), b"keep-alive".to_vec()));
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
            let (p, q) = split_target(target);
            assert_eq!((p.as_str(), q.as_deref()), (*path, *query), "{target}");
        }
    }
}
