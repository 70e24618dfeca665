//! Twilio SIDs (`MZ…` stream, `CA…` call, `AC…` account) as validated, copyable values.
//!
//! A SID is a two-letter prefix naming the resource type followed by 32 hex
//! digits: 34 ASCII bytes. Twilio's API definitions spell the pattern
//! `^MZ[0-9a-fA-F]{32}$` (and likewise for `CA`, `AC`), so both cases of hex
//! digit are accepted.
//!
//! Contract:
//! - [`StreamSid::parse`] (and the same on [`CallSid`], [`AccountSid`]) accepts
//!   exactly the right prefix plus 32 hex digits, nothing else: no whitespace,
//!   no other prefix, no other length. The error says which rule failed.
//! - A parsed SID keeps the exact bytes it was given: [`StreamSid::as_str`]
//!   returns them unchanged, because Twilio warns (31951) about a `streamSid`
//!   that does not match the stream, and we echo the SID back in every message.
//! - Equality, ordering and hashing are byte-wise (case-sensitive), matching
//!   what `as_str` returns.
//! - No heap: a SID is 34 bytes inline, `Copy`, so it can live in every event.
//!
//! ```
//! use callstream_core::sid::{SidError, StreamSid};
//!
//! let sid = StreamSid::parse("MZ18ad3ab5a668481ce02b83e7395059f0")?;
//! assert_eq!(sid.as_str(), "MZ18ad3ab5a668481ce02b83e7395059f0");
//! assert_eq!(sid.to_string(), sid.as_str());
//!
//! assert!(matches!(
//!     StreamSid::parse("CA18ad3ab5a668481ce02b83e7395059f0"),
//!     Err(SidError::WrongPrefix { .. })
//! ));
//! # Ok::<(), SidError>(())
//! ```

use std::fmt;
use std::str::FromStr;

/// Length in bytes of every Twilio SID: two prefix letters and 32 hex digits.
pub const SID_LEN: usize = 34;

/// Why a string is not a SID of the expected kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SidError {
    /// The text is not 34 bytes long.
    WrongLength {
        /// The kind of SID expected, e.g. `"StreamSid"`.
        kind: &'static str,
        /// The length found, in bytes.
        len: usize,
    },
    /// The text does not start with the kind's prefix (`MZ`, `CA`, `AC`).
    WrongPrefix {
        /// The kind of SID expected, e.g. `"StreamSid"`.
        kind: &'static str,
        /// The prefix required.
        expected: &'static str,
    },
    /// A byte after the prefix is not a hex digit.
    NotHex {
        /// The kind of SID expected, e.g. `"StreamSid"`.
        kind: &'static str,
        /// Byte offset of the first bad byte (2..34).
        at: usize,
    },
}

impl fmt::Display for SidError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SidError::WrongLength { kind, len } => {
                write!(f, "{kind} must be {SID_LEN} characters, got {len}")
            }
            SidError::WrongPrefix { kind, expected } => {
                write!(f, "{kind} must start with {expected}")
            }
            SidError::NotHex { kind, at } => {
                write!(
                    f,
                    "{kind} must be its prefix and 32 hex digits; byte {at} is not a hex digit"
                )
            }
        }
    }
}

impl std::error::Error for SidError {}

/// Checks `text` against one SID kind; shared by every SID type.
fn validate(
    text: &str,
    kind: &'static str,
    prefix: &'static str,
) -> Result<[u8; SID_LEN], SidError> {
    let bytes = text.as_bytes();
    // Length first: hostile input of any size is refused without scanning it.
    let Ok(array) = <[u8; SID_LEN]>::try_from(bytes) else {
        return Err(SidError::WrongLength {
            kind,
            len: bytes.len(),
        });
    };
    if !array.starts_with(prefix.as_bytes()) {
        return Err(SidError::WrongPrefix {
            kind,
            expected: prefix,
        });
    }
    if let Some(at) = array.iter().skip(2).position(|b| !b.is_ascii_hexdigit()) {
        return Err(SidError::NotHex { kind, at: at + 2 });
    }
    Ok(array)
}

/// The bytes of a SID whose hex digits (lower case) spell `value`.
const fn from_value(prefix: &[u8; 2], value: u128) -> [u8; SID_LEN] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = [0u8; SID_LEN];
    out[0] = prefix[0];
    out[1] = prefix[1];
    let mut i = 0;
    while i < 32 {
        let nibble = (value >> (4 * (31 - i))) & 0xF;
        out[2 + i] = HEX[nibble as usize];
        i += 1;
    }
    out
}

macro_rules! sid_type {
    ($(#[$doc:meta])* $name:ident, $prefix:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name([u8; SID_LEN]);

        impl $name {
            /// The two-letter prefix every SID of this kind starts with.
            pub const PREFIX: &'static str = $prefix;

            /// Validates `text`: the prefix and exactly 32 hex digits (either case).
            pub fn parse(text: &str) -> Result<Self, SidError> {
                validate(text, stringify!($name), $prefix).map(Self)
            }

            /// The SID whose 32 hex digits (lower case) spell `value`:
            /// `from_u128(1)` is the prefix, 31 zeros and `1`. Handy for tests
            /// and simulations that need many distinct, valid SIDs.
            #[must_use]
            pub const fn from_u128(value: u128) -> Self {
                let prefix = $prefix.as_bytes();
                Self(from_value(&[prefix[0], prefix[1]], value))
            }

            /// The SID exactly as parsed.
            #[must_use]
            pub fn as_str(&self) -> &str {
                // Only `validate` and `from_value` build the bytes, and both
                // guarantee ASCII, so this never takes the `Err` arm; it exists
                // because proving that to the compiler would take `unsafe`.
                std::str::from_utf8(&self.0).unwrap_or_default()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = SidError;
            fn from_str(text: &str) -> Result<Self, SidError> {
                Self::parse(text)
            }
        }

        impl TryFrom<&str> for $name {
            type Error = SidError;
            fn try_from(text: &str) -> Result<Self, SidError> {
                Self::parse(text)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                self.as_str()
            }
        }
    };
}

sid_type!(
    /// A media stream's SID: `MZ` and 32 hex digits (`streamSid` in every message).
    StreamSid,
    "MZ"
);
sid_type!(
    /// A call's SID: `CA` and 32 hex digits.
    CallSid,
    "CA"
);
sid_type!(
    /// An account's SID: `AC` and 32 hex digits.
    AccountSid,
    "AC"
);

#[cfg(test)]
mod tests {
    use super::*;

    const HEX32: &str = "18ad3ab5a668481ce02b83e7395059f0";

    #[test]
    fn accepts_each_kind_with_its_prefix() {
        let stream = format!("MZ{HEX32}");
        let call = format!("CA{HEX32}");
        let account = format!("AC{HEX32}");
        assert_eq!(
            StreamSid::parse(&stream).map(|s| s.to_string()),
            Ok(stream.clone())
        );
        assert_eq!(CallSid::parse(&call).map(|s| s.to_string()), Ok(call));
        assert_eq!(
            AccountSid::parse(&account).map(|s| s.to_string()),
            Ok(account)
        );
        assert_eq!(
            stream.parse::<StreamSid>().map(|s| s.as_str().len()),
            Ok(SID_LEN)
        );
    }

    #[test]
    fn table_of_good_and_bad_stream_sids() {
        let kind = "StreamSid";
        let cases: &[(&str, Result<(), SidError>)] = &[
            ("MZ18ad3ab5a668481ce02b83e7395059f0", Ok(())),
            ("MZ18AD3AB5A668481CE02B83E7395059F0", Ok(())),
            ("MZ00000000000000000000000000000000", Ok(())),
            ("MZffffffffffffffffffffffffffffffff", Ok(())),
            ("", Err(SidError::WrongLength { kind, len: 0 })),
            ("MZ", Err(SidError::WrongLength { kind, len: 2 })),
            (
                "MZ18ad3ab5a668481ce02b83e7395059f",
                Err(SidError::WrongLength { kind, len: 33 }),
            ),
            (
                "MZ18ad3ab5a668481ce02b83e7395059f00",
                Err(SidError::WrongLength { kind, len: 35 }),
            ),
            (
                " MZ18ad3ab5a668481ce02b83e7395059f",
                Err(SidError::WrongPrefix {
                    kind,
                    expected: "MZ",
                }),
            ),
            (
                "mz18ad3ab5a668481ce02b83e7395059f0",
                Err(SidError::WrongPrefix {
                    kind,
                    expected: "MZ",
                }),
            ),
            (
                "CA18ad3ab5a668481ce02b83e7395059f0",
                Err(SidError::WrongPrefix {
                    kind,
                    expected: "MZ",
                }),
            ),
            (
                "MZXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX",
                Err(SidError::NotHex { kind, at: 2 }),
            ),
            (
                "MZ18ad3ab5a668481ce02b83e7395059fg",
                Err(SidError::NotHex { kind, at: 33 }),
            ),
            (
                "MZ18ad3ab5a668481ce02b83e7395059f ",
                Err(SidError::NotHex { kind, at: 33 }),
            ),
            (
                "MZ18ad3ab5a668481c-02b83e7395059f0",
                Err(SidError::NotHex { kind, at: 18 }),
            ),
            // 33 characters but 34 bytes: length is counted in bytes.
            (
                "MZ18ad3ab5a668481ce02b83e7395059é",
                Err(SidError::NotHex { kind, at: 32 }),
            ),
        ];
        for (text, want) in cases {
            assert_eq!(StreamSid::parse(text).map(|_| ()), *want, "{text:?}");
        }
    }

    #[test]
    fn keeps_the_exact_spelling_and_compares_bytewise() {
        let lower = StreamSid::parse("MZ18ad3ab5a668481ce02b83e7395059f0").unwrap();
        let upper = StreamSid::parse("MZ18AD3AB5A668481CE02B83E7395059F0").unwrap();
        assert_eq!(upper.as_str(), "MZ18AD3AB5A668481CE02B83E7395059F0");
        assert_ne!(lower, upper);
    }

    #[test]
    fn long_input_is_refused_by_length() {
        let long = "MZ".repeat(100_000);
        assert_eq!(
            StreamSid::parse(&long),
            Err(SidError::WrongLength {
                kind: "StreamSid",
                len: 200_000
            })
        );
    }

    #[test]
    fn from_u128_spells_the_value_and_parses_back() {
        let sid = CallSid::from_u128(0x1234);
        assert_eq!(sid.as_str(), "CA00000000000000000000000000001234");
        assert_eq!(CallSid::parse(sid.as_str()), Ok(sid));
        assert_eq!(
            AccountSid::from_u128(u128::MAX).as_str(),
            "ACffffffffffffffffffffffffffffffff"
        );
        assert_ne!(StreamSid::from_u128(1), StreamSid::from_u128(2));
    }

    #[test]
    fn errors_say_what_was_wrong() {
        let text = |r: Result<StreamSid, SidError>| r.map(|_| ()).unwrap_err().to_string();
        assert_eq!(
            text(StreamSid::parse("MZ1")),
            "StreamSid must be 34 characters, got 3"
        );
        assert_eq!(
            text(StreamSid::parse(&format!("AC{HEX32}"))),
            "StreamSid must start with MZ"
        );
        assert!(text(StreamSid::parse(&format!("MZ{}", "z".repeat(32)))).contains("byte 2"));
    }

    #[test]
    fn is_small_and_copy() {
        fn assert_copy<T: Copy + Send + Sync + 'static>() {}
        assert_copy::<StreamSid>();
        assert_eq!(std::mem::size_of::<StreamSid>(), SID_LEN);
        let sid = StreamSid::from_u128(7);
        assert_eq!(
            format!("{sid:?}"),
            "StreamSid(MZ00000000000000000000000000000007)"
        );
    }

    mod prop {
        use super::super::*;
        use proptest::prelude::*;

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(256))]

            #[test]
            fn arbitrary_text_never_panics_and_valid_means_pattern(
                text in prop_oneof![".{0,40}", "(MZ|CA|mz|M)[0-9a-fA-Fg é]{30,34}"]
            ) {
                let ok = StreamSid::parse(&text).is_ok();
                let pattern = text.len() == SID_LEN
                    && text.starts_with("MZ")
                    && text.bytes().skip(2).all(|b| b.is_ascii_hexdigit());
                prop_assert_eq!(ok, pattern);
            }

            #[test]
            fn hex_sids_round_trip(hex in "[0-9a-fA-F]{32}") {
                let text = format!("AC{hex}");
                let sid = AccountSid::parse(&text).unwrap();
                prop_assert_eq!(sid.as_str(), text.as_str());
            }
        }
    }
}
