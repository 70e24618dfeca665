//! The handler registry: which application answers calls, by the name an
//! operator gives (`--handler`, `CALLSTREAM_HANDLER`).
use callstream_core::handler::{self, HandlerFactory};
use std::fmt;
use std::str::FromStr;

/// A handler as configured.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum HandlerSpec {
    /// One of the core's shipped handlers: `parrot`, `echo`, `silent`.
    Shipped(&'static str),
}

impl HandlerSpec {
    /// The factory that makes this handler for each call.
    #[must_use]
    pub fn factory(&self) -> HandlerFactory {
        match self {
            // `parse` only accepts names the core knows.
            HandlerSpec::Shipped(name) => handler::by_name(name).unwrap_or_else(|| {
                std::sync::Arc::new(|_: &callstream_core::message::Start| {
                    Box::new(handler::Silent) as Box<dyn handler::Handler>
                })
            }),
        }
    }
}

impl fmt::Display for HandlerSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HandlerSpec::Shipped(name) => f.write_str(name),
        }
    }
}

impl FromStr for HandlerSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        handler::NAMES
            .iter()
            .find(|n| n.eq_ignore_ascii_case(s.trim()))
            .map(|n| HandlerSpec::Shipped(n))
            .ok_or_else(|| {
                format!(
                    "unknown handler {s:?}: expected one of {}",
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
}
