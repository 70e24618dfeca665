//! Arbitrary text through the `X-Twilio-Webhooks-Signature-Settings` parser:
//! it must never panic, and what it accepts must be what the header said.
#![no_main]
use callstream_core::signature::Algorithm;
use callstream_core::verify::{MAX_SETTINGS_LEN, Reason, parse_signature_settings};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(value) = std::str::from_utf8(data) else {
        return;
    };
    match parse_signature_settings(value) {
        Ok(s) => {
            assert!(value.len() <= MAX_SETTINGS_LEN);
            // A key id is one element's value: trimmed of ASCII whitespace
            // (only), non-empty, no comma.
            assert!(!s.key_id.is_empty() && !s.key_id.contains(','));
            assert_eq!(s.key_id, s.key_id.trim_matches(|c: char| c.is_ascii_whitespace()));
            assert!(value.contains(s.key_id));
            // The algorithm was named (in some ASCII case), or none was and
            // it is HMAC-SHA1, as twilio-python reads it.
            let lower = value.to_ascii_lowercase();
            assert!(
                lower.contains(&s.algorithm.name().to_ascii_lowercase())
                    || s.algorithm == Algorithm::HmacSha1
            );
            assert_eq!(Algorithm::from_name(s.algorithm.name()), Some(s.algorithm));
        }
        Err(Reason::BadSettings { .. }) => {}
        Err(Reason::UnsupportedAlgorithm { algorithm }) => {
            assert!(algorithm.chars().count() <= 64);
            assert!(Algorithm::from_name(&algorithm).is_none() || algorithm.chars().count() == 64);
        }
        Err(other) => panic!("unexpected refusal {other:?}"),
    }
});
