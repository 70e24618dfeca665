#![no_main]
//! `form::parse` on arbitrary bytes: never panics, output never longer than
//! input, and whatever decodes re-encodes to something that decodes the same.
use callstream_core::form;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(pairs) = form::parse(data) {
        assert!(pairs.len() <= form::MAX_PAIRS);
        let decoded: usize = pairs.iter().map(|(k, v)| k.len() + v.len()).sum();
        assert!(decoded <= data.len());
        let again = form::parse(form::encode(&pairs).as_bytes()).expect("re-encoded form parses");
        assert_eq!(again, pairs);
    }
});
