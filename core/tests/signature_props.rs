//! Properties of `X-Twilio-Signature` validation: sign-then-validate holds;
//! changing any byte of the URL, a parameter name or value, or the signature
//! makes it fail; and the URLs `signed_urls` builds validate what Twilio
//! signs. Also: arbitrary input to the public-URL functions never panics.

use callstream_core::public_url::{PublicBase, RequestParts, signed_urls, valid_host};
use callstream_core::signature::{SignatureError, Validator, compute, compute_url};
use proptest::prelude::*;

/// Printable ASCII, so one byte is one character and can be swapped for another.
fn ascii(max: usize) -> impl Strategy<Value = String> {
    proptest::collection::vec(0x20u8..0x7F, 0..max)
        .prop_map(|b| b.into_iter().map(char::from).collect())
}

fn url() -> impl Strategy<Value = String> {
    (
        prop_oneof![Just("https"), Just("http"), Just("wss"), Just("ws")],
        "[a-z]{1,8}(\\.[a-z]{1,8}){0,2}",
        prop_oneof![Just(String::new()), (1u16..).prop_map(|p| format!(":{p}"))],
        ascii(30),
    )
        .prop_map(|(scheme, host, port, rest)| format!("{scheme}://{host}{port}/{rest}"))
}

fn params() -> impl Strategy<Value = Vec<(String, String)>> {
    proptest::collection::vec((ascii(12), ascii(12)), 0..6)
}

/// A different printable ASCII byte than `b`.
fn other(b: u8, delta: u8) -> u8 {
    0x20 + ((b - 0x20 + 1 + delta % 94) % 95)
}

fn replace_byte(s: &str, at: usize, delta: u8) -> String {
    let mut bytes = s.as_bytes().to_vec();
    let i = at % bytes.len();
    bytes[i] = other(bytes[i], delta);
    String::from_utf8(bytes).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn sign_then_validate(token in "[ -~]{1,40}", url in url(), params in params()) {
        let sig = compute(&token, &url, &params);
        let v = Validator::new(vec!["someone-else".into(), token]);
        prop_assert_eq!(v.validate(&[url.as_str()], &params, sig.as_str()), Ok(()));
    }

    #[test]
    fn any_url_byte_change_fails(
        token in "[ -~]{1,20}", url in url(), params in params(), at in any::<usize>(), delta in any::<u8>(),
    ) {
        let sig = compute(&token, &url, &params);
        let changed = replace_byte(&url, at, delta);
        let v = Validator::new(vec![token]);
        let res = v.validate(&[changed.as_str()], &params, sig.as_str());
        prop_assert!(matches!(res, Err(SignatureError::Mismatch { .. })), "{changed}: {res:?}");
    }

    #[test]
    fn any_param_byte_change_fails(
        token in "[ -~]{1,20}",
        url in url(),
        params in proptest::collection::vec((ascii(12), ascii(12)), 1..6),
        which in any::<usize>(),
        name_side in any::<bool>(),
        at in any::<usize>(),
        delta in any::<u8>(),
    ) {
        let i = which % params.len();
        let target = if name_side { &params[i].0 } else { &params[i].1 };
        prop_assume!(!target.is_empty());
        let mut changed = params.clone();
        let new = replace_byte(target, at, delta);
        if name_side { changed[i].0 = new } else { changed[i].1 = new }
        // Names and values are concatenated without separators (Twilio's
        // scheme), so a change that leaves the signed string the same is
        // indistinguishable by design; skip those rare cases.
        let signed = |p: &[(String, String)]| {
            let mut p: Vec<_> = p.to_vec();
            p.sort();
            p.dedup();
            p.into_iter().map(|(k, v)| k + &v).collect::<String>()
        };
        prop_assume!(signed(&changed) != signed(&params));
        let sig = compute(&token, &url, &params);
        let v = Validator::new(vec![token]);
        let res = v.validate(&[url.as_str()], &changed, sig.as_str());
        prop_assert!(matches!(res, Err(SignatureError::Mismatch { .. })), "{res:?}");
    }

    #[test]
    fn any_signature_byte_change_fails(
        token in "[ -~]{1,20}", url in url(), params in params(), at in any::<usize>(), delta in any::<u8>(),
    ) {
        let sig = compute(&token, &url, &params);
        let changed = replace_byte(&sig, at, delta);
        let v = Validator::new(vec![token]);
        let res = v.validate(&[url.as_str()], &params, changed.as_str());
        prop_assert!(
            matches!(res, Err(SignatureError::Mismatch { .. } | SignatureError::Malformed { .. })),
            "{changed}: {res:?}"
        );
    }

    /// Whatever a trusted front or the Host header says, the URL Twilio
    /// signed (the public one) validates through the candidates
    /// `signed_urls` builds, with or without the trailing slash, with or
    /// without :443.
    #[test]
    fn signed_urls_cover_twilios_url(
        host in "[a-z]{1,10}\\.example",
        slash_signed in any::<bool>(),
        slash_requested in any::<bool>(),
        port_signed in any::<bool>(),
        via_base in any::<bool>(),
    ) {
        let path = if slash_requested { "/ws/twilio-media/" } else { "/ws/twilio-media" };
        let port = if port_signed { ":443" } else { "" };
        let slash = if slash_signed { "/" } else { "" };
        let twilio_url = format!("wss://{host}{port}/ws/twilio-media{slash}");
        let sig = compute_url("tok", &twilio_url);
        let base = PublicBase::parse(&format!("https://{host}")).unwrap();
        let req = RequestParts {
            path_and_query: path,
            host: Some("10.0.0.5:8080"),
            forwarded_proto: Some("https"),
            forwarded_host: Some(&host),
            forwarded: None,
            websocket: true,
        };
        let urls = if via_base {
            signed_urls(Some(&base), &req, false).unwrap()
        } else {
            signed_urls(None, &req, true).unwrap()
        };
        let none: [(&str, &str); 0] = [];
        prop_assert_eq!(Validator::new(vec!["tok".into()]).validate(&urls, &none, sig.as_str()), Ok(()));
    }

    /// Arbitrary strings through every public-URL function: no panic, and
    /// whatever is accepted holds only URL-safe characters.
    #[test]
    fn public_url_never_panics(
        a in any::<String>(),
        b in any::<String>(),
        c in any::<String>(),
        d in any::<String>(),
        flags in any::<(bool, bool, bool, bool, bool)>(),
    ) {
        if valid_host(&a) {
            prop_assert!(a.bytes().all(|x| x.is_ascii_alphanumeric() || b".-:[]".contains(&x)), "{a:?}");
        }
        let base = PublicBase::parse(&a).ok();
        if let Some(base) = &base {
            prop_assert!(valid_host(base.host()));
            let _ = base.http_url(&b);
            let _ = base.ws_url(&b);
        }
        let req = RequestParts {
            path_and_query: &b,
            host: flags.0.then_some(c.as_str()),
            forwarded_proto: flags.1.then_some(d.as_str()),
            forwarded_host: flags.2.then_some(a.as_str()),
            forwarded: None,
            websocket: flags.3,
        };
        if let Ok(urls) = signed_urls(base.as_ref().filter(|_| flags.4), &req, flags.4) {
            prop_assert!(!urls.is_empty() && urls.len() <= 4);
        }
        let v = Validator::new(vec![c.clone()]);
        let none: [(&str, &str); 0] = [];
        let _ = v.validate(&[a.as_str(), b.as_str()], &none, d.as_str());
        let _ = v.validate_json(&[a.as_str()], b.as_bytes(), d.as_str());
    }

    /// Hostile-looking hosts from a character set rich in URL and XML
    /// specials: whatever passes `valid_host` makes a valid stream URL.
    #[test]
    fn valid_hosts_make_valid_stream_urls(h in "[a-z0-9.:\\[\\]@/ \"<>%-]{0,20}") {
        if valid_host(&h) {
            let url = format!("wss://{h}/ws");
            prop_assert!(callstream_core::twiml::Stream::new(url).is_ok());
        }
    }
}
