//! The handler registry: which application answers calls, by the name an
//! operator gives (`--handler`, `CALLSTREAM_HANDLER`): a shipped handler's
//! name, `exec:<command>` or a `ws://`/`wss://` URL (the program bridge, an
//! [`Extension`](crate::extension::Extension) of its own crate that the
//! `callstream` binary links).
use callstream_core::handler::{self, HandlerFactory};
use std::fmt;
use std::str::FromStr;

/// A handler as configured.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum HandlerSpec {
    /// One of the core's shipped handlers: `parrot`, `echo`, `silent`.
    Shipped(&'static str),
    /// `exec:<command>`: the program bridge, one `sh -c <command>` per call.
    Exec(String),
    /// `ws://…` or `wss://…`: the program bridge, one WebSocket per call.
    Remote(String),
}

impl HandlerSpec {
    /// The factory of a shipped handler; `None` for the program bridge's,
    /// which an extension makes.
    #[must_use]
    pub fn shipped(&self) -> Option<HandlerFactory> {
        match self {
            // `parse` only accepts names the core knows.
            HandlerSpec::Shipped(name) => handler::by_name(name),
            HandlerSpec::Exec(_) | HandlerSpec::Remote(_) => None,
        }
    }

    /// The setting as a log line may show it: a `ws://` URL without its
    /// credentials (user and password) or its query (a token, often).
    #[must_use]
    pub fn loggable(&self) -> String {
        match self {
            HandlerSpec::Remote(url) => loggable_url(url),
            other => other.to_string(),
        }
    }
}

/// `url` for the log: without its userinfo (`user:pass@`) and its query
/// (`?key=…`), where a service's credentials go. Anything that is not a
/// `ws://` or `wss://` URL comes back as it is.
#[must_use]
pub fn loggable_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    if !scheme.eq_ignore_ascii_case("ws") && !scheme.eq_ignore_ascii_case("wss") {
        return url.to_owned();
    }
    let end = rest.find(['?', '#']).unwrap_or(rest.len());
    let (before, after) = rest.split_at(end);
    let authority_end = before.find('/').unwrap_or(before.len());
    let (authority, path) = before.split_at(authority_end);
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let hidden = if after.is_empty() { "" } else { "?…" };
    format!("{scheme}://{host}{path}{hidden}")
}

impl fmt::Display for HandlerSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HandlerSpec::Shipped(name) => f.write_str(name),
            HandlerSpec::Exec(c) => write!(f, "exec:{c}"),
            HandlerSpec::Remote(u) => f.write_str(u),
        }
    }
}

impl FromStr for HandlerSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Some(command) = s.strip_prefix("exec:") {
            if command.trim().is_empty() {
                return Err("exec: needs a command, e.g. exec:'python3 bot.py'".to_owned());
            }
            return Ok(HandlerSpec::Exec(command.to_owned()));
        }
        let t = s.trim();
        let lower = t.to_ascii_lowercase();
        if lower.starts_with("ws://") || lower.starts_with("wss://") {
            use tungstenite::client::IntoClientRequest as _;
            return match t.into_client_request() {
                Ok(r) if r.uri().host().is_some_and(|h| !h.is_empty()) => {
                    Ok(HandlerSpec::Remote(t.to_owned()))
                }
                _ => Err(format!("{t:?} is not a usable ws:// or wss:// URL")),
            };
        }
        handler::NAMES
            .iter()
            .find(|n| n.eq_ignore_ascii_case(s.trim()))
            .map(|n| HandlerSpec::Shipped(n))
            .ok_or_else(|| {
                format!(
                    "unknown handler {s:?}: expected one of {}, exec:<command> or a ws:// or wss:// URL",
                    handler::NAMES.join(", ")
                )
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_names_parse_and_others_are_refused_with_the_list() {
        assert_eq!("echo".parse(), Ok(HandlerSpec::Shipped("echo")));
        assert_eq!("Parrot".parse(), Ok(HandlerSpec::Shipped("parrot")));
        let err = "nope".parse::<HandlerSpec>().unwrap_err();
        assert!(err.contains("echo, parrot, silent"), "{err}");
        assert_eq!(HandlerSpec::Shipped("silent").to_string(), "silent");
    }

    #[test]
    fn bridge_handlers_parse() {
        assert_eq!(
            "exec:python3 bot.py".parse(),
            Ok(HandlerSpec::Exec("python3 bot.py".into()))
        );
        assert_eq!(
            "exec:python3 bot.py"
                .parse::<HandlerSpec>()
                .unwrap()
                .to_string(),
            "exec:python3 bot.py"
        );
        assert!("exec:".parse::<HandlerSpec>().is_err());
        assert!("exec:  ".parse::<HandlerSpec>().is_err());
        assert_eq!(
            "ws://127.0.0.1:8765/".parse(),
            Ok(HandlerSpec::Remote("ws://127.0.0.1:8765/".into()))
        );
        assert_eq!(
            "wss://bot.example.com/call".parse(),
            Ok(HandlerSpec::Remote("wss://bot.example.com/call".into()))
        );
        assert!("ws://".parse::<HandlerSpec>().is_err());
        assert!("http://x/".parse::<HandlerSpec>().is_err());
        assert!(
            "exec:true"
                .parse::<HandlerSpec>()
                .unwrap()
                .shipped()
                .is_none()
        );
        assert!(HandlerSpec::Shipped("echo").shipped().is_some());
    }

    #[test]
    fn a_ws_url_is_logged_without_its_credentials_or_query() {
        let spec: HandlerSpec = "wss://user:pa55@bot.example.com/call?token=t"
            .parse()
            .unwrap();
        assert_eq!(spec.loggable(), "wss://bot.example.com/call?…");
        assert_eq!(
            HandlerSpec::Exec("python3 bot.py".into()).loggable(),
            "exec:python3 bot.py"
        );
    }
}
