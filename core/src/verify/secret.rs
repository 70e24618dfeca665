//! Configured secrets (auth tokens, shared keys' secrets) checked at boot.
//!
//! `echo "$TOKEN" | gcloud secrets create …` stores the token with a
//! trailing newline; a secret mounted from a file or pasted into a console
//! often carries one too. HMAC keyed with `"token\n"` never matches, and the
//! log would only say "did not match". [`clean_secret`] trims such a value
//! and says so, so the server can warn once at boot.

use std::fmt;

/// What [`clean_secret`] removed from a secret. Never holds the secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SecretWarning {
    /// Bytes of whitespace removed before the secret.
    pub leading: usize,
    /// Bytes of whitespace removed after it.
    pub trailing: usize,
    /// Whether what was removed held a line break (`\n` or `\r`).
    pub newline: bool,
}

impl fmt::Display for SecretWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = if self.newline {
            "whitespace and a line break"
        } else {
            "whitespace"
        };
        write!(
            f,
            "the configured secret had {what} around it ({} byte(s) before, {} after), \
             removed; store it without (e.g. `printf %s` instead of `echo`)",
            self.leading, self.trailing
        )
    }
}

/// Why a configured secret cannot be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SecretError {
    /// The value is empty, or only whitespace.
    Empty,
}

impl fmt::Display for SecretError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretError::Empty => write!(f, "the configured secret is empty or only whitespace"),
        }
    }
}

impl std::error::Error for SecretError {}

/// The secret without surrounding whitespace (spaces, tabs, line breaks:
/// `char::is_whitespace`), plus a warning when any was removed. Inner
/// whitespace is kept: it is part of the secret.
///
/// ```
/// use callstream_core::verify::{clean_secret, SecretError};
///
/// let (token, warning) = clean_secret("0123abcd\n")?;
/// assert_eq!(token, "0123abcd");
/// assert!(warning.is_some_and(|w| w.newline && w.trailing == 1));
/// assert_eq!(clean_secret("0123abcd")?, ("0123abcd".to_owned(), None));
/// assert_eq!(clean_secret(" \n"), Err(SecretError::Empty));
/// # Ok::<(), SecretError>(())
/// ```
///
/// # Errors
///
/// [`SecretError::Empty`] for an empty or whitespace-only value.
pub fn clean_secret(raw: &str) -> Result<(String, Option<SecretWarning>), SecretError> {
    let trimmed = raw.trim();
    if trimmed.is_empty() {
        return Err(SecretError::Empty);
    }
    let leading = raw.len() - raw.trim_start().len();
    let trailing = raw.len() - raw.trim_end().len();
    let warning = (leading + trailing > 0).then(|| {
        let removed = raw
            .get(..leading)
            .into_iter()
            .chain(raw.get(raw.len() - trailing..));
        SecretWarning {
            leading,
            trailing,
            newline: removed.flat_map(str::chars).any(|c| c == '\n' || c == '\r'),
        }
    });
    Ok((trimmed.to_owned(), warning))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_table() {
        let cases: &[(&str, &str, Option<SecretWarning>)] = &[
            ("tok", "tok", None),
            ("in ner", "in ner", None),
            (
                "tok\n",
                "tok",
                Some(SecretWarning {
                    leading: 0,
                    trailing: 1,
                    newline: true,
                }),
            ),
            (
                "tok\r\n",
                "tok",
                Some(SecretWarning {
                    leading: 0,
                    trailing: 2,
                    newline: true,
                }),
            ),
            (
                "  tok\t",
                "tok",
                Some(SecretWarning {
                    leading: 2,
                    trailing: 1,
                    newline: false,
                }),
            ),
            (
                "\ntok",
                "tok",
                Some(SecretWarning {
                    leading: 1,
                    trailing: 0,
                    newline: true,
                }),
            ),
        ];
        for (raw, clean, warning) in cases {
            assert_eq!(
                clean_secret(raw),
                Ok(((*clean).to_owned(), *warning)),
                "{raw:?}"
            );
        }
        for raw in ["", " ", "\n", "\r\n\t "] {
            assert_eq!(clean_secret(raw), Err(SecretError::Empty), "{raw:?}");
        }
        // The warning never repeats the secret.
        let (_, w) = clean_secret("s3cret-value\n").unwrap();
        assert!(!w.unwrap().to_string().contains("s3cret"));
    }
}
