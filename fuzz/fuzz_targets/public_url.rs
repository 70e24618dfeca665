//! Arbitrary bytes through the public-URL functions and the signature
//! validator that consumes their output: nothing may panic, and a host that
//! `valid_host` accepts must be safe to put into a URL and a TwiML attribute.
//!
//! Input layout: the first byte holds flags; the rest is split on 0x00 into
//! the base URL, path and query, Host, X-Forwarded-Proto, X-Forwarded-Host
//! a signature and `Forwarded` (flag bit 6).
#![no_main]
use callstream_core::public_url::{PublicBase, RequestParts, signed_urls, valid_host};
use callstream_core::signature::Validator;
use callstream_core::twiml::Stream;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let mut fields = rest.split(|&b| b == 0).map(String::from_utf8_lossy);
    let mut next = || fields.next().unwrap_or_default();
    let (base, path, host, proto, fwd_host, sig, forwarded) =
        (next(), next(), next(), next(), next(), next(), next());

    for candidate in [&base, &host, &fwd_host] {
        if valid_host(candidate) {
            assert!(
                candidate
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b))
            );
            assert!(Stream::new(format!("wss://{candidate}/ws")).is_ok());
        }
    }

    let base = PublicBase::parse(&base).ok();
    if let Some(base) = &base {
        assert!(valid_host(base.host()));
        let _ = base.http_url(&path);
        let _ = base.ws_url(&path);
    }
    let req = RequestParts {
        path_and_query: &path,
        host: (flags & 1 != 0).then_some(&*host),
        forwarded_proto: (flags & 2 != 0).then_some(&*proto),
        forwarded_host: (flags & 4 != 0).then_some(&*fwd_host),
        forwarded: (flags & 64 != 0).then_some(&*forwarded),
        websocket: flags & 8 != 0,
    };
    let configured = base.as_ref().filter(|_| flags & 16 != 0);
    if let Ok(urls) = signed_urls(configured, &req, flags & 32 != 0) {
        let validator = Validator::new(vec!["fuzz-token".to_owned()]);
        let none: [(&str, &str); 0] = [];
        let _ = validator.validate(&urls, &none, &*sig);
        let _ = validator.validate_json(&urls, path.as_bytes(), &*sig);
    }
});
