//! The address a tool talks to, from a URL as an operator writes it:
//! `ws://`, `wss://`, `http://` or `https://`, a host (a name, an IPv4
//! address or a bracketed IPv6 one), an optional port, a path.

use std::fmt;

/// A parsed `scheme://authority/path` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Whether the connection is TLS (`wss`, `https`).
    pub tls: bool,
    /// The host as written, without brackets around IPv6.
    pub host: String,
    /// The port, explicit or the scheme's default.
    pub port: u16,
    /// The authority as written (host and, if given, port): the `Host` header.
    pub authority: String,
    /// The path and query, `/` when none.
    pub path: String,
}

/// Why a URL is not one a tool can use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UrlError(pub String);

impl fmt::Display for UrlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UrlError {}

impl Target {
    /// Parses `url`.
    ///
    /// # Errors
    /// [`UrlError`] naming what is wrong.
    pub fn parse(url: &str) -> Result<Target, UrlError> {
        let bad = |why: &str| UrlError(format!("{url:?}: {why}"));
        let (scheme, rest) = url.split_once("://").ok_or_else(|| bad("no scheme"))?;
        let tls = match scheme.to_ascii_lowercase().as_str() {
            "ws" | "http" => false,
            "wss" | "https" => true,
            _ => return Err(bad("scheme must be ws, wss, http or https")),
        };
        let (authority, path) = match rest.find(['/', '?']) {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let path = if path.starts_with('?') {
            format!("/{path}")
        } else {
            path.to_owned()
        };
        if authority.is_empty() || authority.contains('@') {
            return Err(bad("no host (or user information, which is not supported)"));
        }
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (host, after) = v6.split_once(']').ok_or_else(|| bad("unclosed '['"))?;
            (host, after.strip_prefix(':'))
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (authority, None),
            }
        };
        let port = match port {
            Some(p) => p.parse().map_err(|_| bad("bad port"))?,
            None if tls => 443,
            None => 80,
        };
        if host.is_empty() {
            return Err(bad("no host"));
        }
        Ok(Target {
            tls,
            host: host.to_owned(),
            port,
            authority: authority.to_owned(),
            path,
        })
    }

    /// The same place with `path` instead of this one's.
    #[must_use]
    pub fn with_path(&self, path: &str) -> Target {
        Target {
            path: path.to_owned(),
            ..self.clone()
        }
    }

    /// This URL with an `http`/`https` scheme.
    #[must_use]
    pub fn http_url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}{}", self.authority, self.path)
    }

    /// This URL with a `ws`/`wss` scheme.
    #[must_use]
    pub fn ws_url(&self) -> String {
        let scheme = if self.tls { "wss" } else { "ws" };
        format!("{scheme}://{}{}", self.authority, self.path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schemes_ports_and_paths() {
        let t = Target::parse("wss://bot.example.com/ws/twilio-media").unwrap();
        assert_eq!(
            (t.tls, t.host.as_str(), t.port, t.path.as_str()),
            (true, "bot.example.com", 443, "/ws/twilio-media")
        );
        let t = Target::parse("http://127.0.0.1:8080").unwrap();
        assert_eq!((t.tls, t.port, t.path.as_str()), (false, 8080, "/"));
        assert_eq!(t.authority, "127.0.0.1:8080");
        assert_eq!(t.with_path("/x").ws_url(), "ws://127.0.0.1:8080/x");
        let t = Target::parse("https://[::1]:9443/a?b=1").unwrap();
        assert_eq!((t.host.as_str(), t.port), ("::1", 9443));
        assert_eq!(t.http_url(), "https://[::1]:9443/a?b=1");
        assert_eq!(Target::parse("ws://h?x").unwrap().path, "/?x");
    }

    #[test]
    fn refusals() {
        for bad in [
            "bot.example.com",
            "ftp://h/",
            "ws:///x",
            "ws://h:99999/",
            "ws://[::1/",
            "ws://u@h/",
        ] {
            assert!(Target::parse(bad).is_err(), "{bad}");
        }
    }
}
