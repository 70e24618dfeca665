//! Excerpts of text from the network, for errors and logs: a hostile value
//! is never quoted whole (a 100 kB header in a log line is a flood of its
//! own). One helper for every such place.

use std::borrow::Cow;

/// At most `max` characters of `s`, from its start (borrowed).
///
/// ```
/// use callstream_core::excerpt::prefix;
/// assert_eq!(prefix("héllo", 2), "hé");
/// assert_eq!(prefix("hi", 80), "hi");
/// ```
#[must_use]
pub fn prefix(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => s.get(..i).unwrap_or(s),
        None => s,
    }
}

/// `s` if it has at most `max` characters, else its first `max` and `…`,
/// which says that it was cut.
///
/// ```
/// use callstream_core::excerpt::cut;
/// assert_eq!(cut("hello", 3), "hel…");
/// assert_eq!(cut("hello", 5), "hello");
/// ```
#[must_use]
pub fn cut(s: &str, max: usize) -> Cow<'_, str> {
    let p = prefix(s, max);
    if p.len() == s.len() {
        Cow::Borrowed(s)
    } else {
        Cow::Owned(format!("{p}…"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn excerpts_count_characters_not_bytes() {
        assert_eq!(prefix("", 3), "");
        assert_eq!(prefix("abc", 0), "");
        assert_eq!(prefix("ééé", 2), "éé");
        assert_eq!(cut("ééé", 3), "ééé");
        assert_eq!(cut("éééé", 3), "ééé…");
        assert!(matches!(cut("abc", 9), Cow::Borrowed(_)));
    }
}
