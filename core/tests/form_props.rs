//! Property tests for `form`: encode → parse round trips, and arbitrary bytes
//! never panic.

use callstream_core::form;
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn encode_then_parse_round_trips(pairs in proptest::collection::vec((".*", ".*"), 0..20)) {
        let encoded = form::encode(&pairs);
        prop_assert_eq!(form::parse(encoded.as_bytes()).unwrap(), pairs);
    }

    #[test]
    fn arbitrary_bytes_never_panic(input in proptest::collection::vec(any::<u8>(), 0..512)) {
        match form::parse(&input) {
            Ok(pairs) => {
                prop_assert!(pairs.len() <= form::MAX_PAIRS);
                // Decoding never grows the text: every byte of output comes
                // from at least one byte of input.
                let out: usize = pairs.iter().map(|(k, v)| k.len() + v.len()).sum();
                prop_assert!(out <= input.len());
            }
            Err(e) => prop_assert_eq!(e.status(), 400),
        }
    }

    #[test]
    fn form_like_bytes_never_panic(input in "[a-z%=&+0-9A-F\u{80}-\u{10FFFF}]{0,64}") {
        let _ = form::parse(input.as_bytes());
    }

    #[test]
    fn plain_ascii_pairs_decode_as_written(
        pairs in proptest::collection::vec(("[A-Za-z0-9_]{1,8}", "[A-Za-z0-9_.-]{0,8}"), 0..10)
    ) {
        let raw: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}={v}")).collect();
        prop_assert_eq!(form::parse(raw.join("&").as_bytes()).unwrap(), pairs);
    }

    #[test]
    fn pair_limit_holds(n in 0usize..40, limit in 0usize..40) {
        let input = vec!["x=1"; n].join("&");
        match form::parse_with_limit(input.as_bytes(), limit) {
            Ok(p) => prop_assert!(n <= limit && p.len() == n),
            Err(form::FormError::TooManyPairs { limit: l }) => prop_assert!(n > limit && l == limit),
            Err(e) => prop_assert!(false, "unexpected {e}"),
        }
    }
}
