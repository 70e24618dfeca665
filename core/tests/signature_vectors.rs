//! Official test vectors for `X-Twilio-Signature`: Twilio's documented
//! example (docs/protocol.md §5) and the request-validator tests of Twilio's helper
//! libraries (twilio-python `tests/unit/test_request_validator.py`,
//! twilio-node `spec/unit/webhooks/webhooks.spec.js`), plus the behaviours
//! around them: several tokens, JSON bodies, errors.

use callstream_core::signature::{
    self, BODY_SHA256_PARAM, SignatureError, Validator, body_sha256, compute, compute_url,
    with_body_sha256,
};

const TOKEN: &str = "12345";
const URL: &str = "https://mycompany.com/myapp.php?foo=1&bar=2";
const PARAMS: [(&str, &str); 5] = [
    ("CallSid", "CA1234567890ABCDE"),
    ("Digits", "1234"),
    ("From", "+14158675309"),
    ("To", "+18005551212"),
    ("Caller", "+14158675309"),
];
const NONE: [(&str, &str); 0] = [];

fn validator() -> Validator {
    Validator::new(vec![TOKEN.to_owned()])
}

#[test]
fn twilio_documented_example() {
    assert_eq!(compute(TOKEN, URL, &PARAMS), "RSOYDt4T1cUTdK1PDd93/VVr8B8=");
    assert_eq!(
        compute(
            TOKEN,
            "https://mycompany.com:443/myapp.php?foo=1&bar=2",
            &PARAMS
        ),
        "kvajT1Ptam85bY51eRf/AJRuM3w="
    );
    assert_eq!(
        validator().validate(&[URL], &PARAMS, "RSOYDt4T1cUTdK1PDd93/VVr8B8="),
        Ok(())
    );
}

#[test]
fn parameter_order_does_not_matter() {
    let mut reversed = PARAMS;
    reversed.reverse();
    assert_eq!(
        compute(TOKEN, URL, &reversed),
        "RSOYDt4T1cUTdK1PDd93/VVr8B8="
    );
}

/// twilio-python `test_compute_signature_duplicate_multi_dict` and
/// `..._query_dict`: a repeated name's values sorted (and de-duplicated).
#[test]
fn repeated_names_sorted_values() {
    let params = [
        ("Sid", "CA123"),
        ("SidAccount", "AC123"),
        ("Digits", "5678"),
        ("Digits", "1234"),
    ];
    assert_eq!(compute(TOKEN, URL, &params), "IK+Dwps556ElfBT0I3Rgjkr1wJU=");
    // An exact duplicate pair counts once (the libraries use a set).
    let doubled = [
        ("Sid", "CA123"),
        ("Digits", "1234"),
        ("SidAccount", "AC123"),
        ("Digits", "5678"),
        ("Digits", "1234"),
    ];
    assert_eq!(
        compute(TOKEN, URL, &doubled),
        "IK+Dwps556ElfBT0I3Rgjkr1wJU="
    );
    assert_eq!(
        validator().validate(&[URL], &doubled, "IK+Dwps556ElfBT0I3Rgjkr1wJU="),
        Ok(())
    );
}

/// twilio-python `test_validation_removes_port_on_https`: a request seen on
/// :1234 validates against the signature of the URL without a port.
#[test]
fn removes_port_on_https() {
    let url = "https://mycompany.com:1234/myapp.php?foo=1&bar=2";
    assert_eq!(
        validator().validate(&[url], &PARAMS, "RSOYDt4T1cUTdK1PDd93/VVr8B8="),
        Ok(())
    );
}

/// twilio-python `test_validation_removes_port_on_http`: the signature of the
/// http URL with :1234 itself.
#[test]
fn keeps_port_on_http_when_signed_with_it() {
    let url = "http://mycompany.com:1234/myapp.php?foo=1&bar=2";
    assert_eq!(compute(TOKEN, url, &PARAMS), "Zmvh+3yNM1Phv2jhDCwEM3q5ebU=");
    assert_eq!(
        validator().validate(&[url], &PARAMS, "Zmvh+3yNM1Phv2jhDCwEM3q5ebU="),
        Ok(())
    );
}

/// twilio-python `test_validation_adds_port_on_https` / `_on_http`.
#[test]
fn adds_default_port() {
    assert_eq!(
        validator().validate(&[URL], &PARAMS, "kvajT1Ptam85bY51eRf/AJRuM3w="),
        Ok(())
    );
    let http = "http://mycompany.com/myapp.php?foo=1&bar=2";
    assert_eq!(
        compute(
            TOKEN,
            "http://mycompany.com:80/myapp.php?foo=1&bar=2",
            &PARAMS
        ),
        "0ZXoZLH/DfblKGATFgpif+LLRf4="
    );
    assert_eq!(
        validator().validate(&[http], &PARAMS, "0ZXoZLH/DfblKGATFgpif+LLRf4="),
        Ok(())
    );
}

/// twilio-node `webhooks.spec.js`: a URL signed with or without :443
/// validates against the other.
#[test]
fn node_port_cases() {
    let v = Validator::new(vec!["s3cr3t".into()]);
    let with = "https://example.com:443/path?test=param";
    let without = "https://example.com/path?test=param";
    for (server, target) in [
        (with, with),
        (with, without),
        (without, without),
        (without, with),
    ] {
        let sig = compute_url("s3cr3t", server);
        assert_eq!(
            v.validate(&[target], &NONE, sig.as_str()),
            Ok(()),
            "{server} -> {target}"
        );
    }
    // ...and a different query does not.
    let sig = compute_url("s3cr3t", without);
    assert!(matches!(
        v.validate(
            &["https://example.com/path?test=param2"],
            &NONE,
            sig.as_str()
        ),
        Err(SignatureError::Mismatch { .. })
    ));
}

/// The URL is taken verbatim (docs/protocol.md §5.1): unlike twilio-node, which
/// runs it through WHATWG URL normalisation, `'` and `%27` are different URLs.
#[test]
fn url_is_verbatim() {
    let v = Validator::new(vec!["s3cr3t".into()]);
    let sig = compute_url("s3cr3t", "https://example.com/path?test=param'WithQuote");
    assert_eq!(
        v.validate(
            &["https://example.com/path?test=param'WithQuote"],
            &NONE,
            sig.as_str()
        ),
        Ok(())
    );
    assert!(
        v.validate(
            &["https://example.com/path?test=param%27WithQuote"],
            &NONE,
            sig.as_str()
        )
        .is_err()
    );
    assert!(
        v.validate(
            &["https://EXAMPLE.com/path?test=param'WithQuote"],
            &NONE,
            sig.as_str()
        )
        .is_err()
    );
}

/// twilio-python `test_compute_hash_unicode` and `test_validation_of_body_succeeds`.
#[test]
fn json_body_python_vector() {
    let body = br#"{"property": "value", "boolean": true}"#;
    let hash = "0a1ff7634d9ab3b95db5c9a2dfe9416e41502b283a80c7cf19632632f96e6620";
    assert_eq!(body_sha256(body), hash);
    let url = format!("{URL}&{BODY_SHA256_PARAM}={hash}");
    assert_eq!(with_body_sha256(URL, body), url);
    assert_eq!(compute_url(TOKEN, &url), "a9nBmqA0ju/hNViExpshrM61xv4=");
    assert_eq!(
        validator().validate_json(&[url.as_str()], body, "a9nBmqA0ju/hNViExpshrM61xv4="),
        Ok(())
    );
}

/// The body hash in Twilio's JSON signature-validation snippets
/// (api-snippets `security/signature_validation_json`).
#[test]
fn json_body_snippet_hash() {
    assert_eq!(
        body_sha256(br#"{"CallSid":"CA1234567890ABCDE","Caller":"+12349013030"}"#),
        "5ccde7145dfb8f56479710896586cb9d5911809d83afbe34627818790db0aec9"
    );
    assert_eq!(
        with_body_sha256("https://example.com/myapp", b""),
        format!("https://example.com/myapp?bodySHA256={}", body_sha256(b""))
    );
}

#[test]
fn json_body_errors() {
    let body = br#"{"a":1}"#;
    let url = with_body_sha256("https://x.example/hook", body);
    let sig = compute_url(TOKEN, &url);
    let v = validator();
    // The body changed in transit: the URL's signature holds, the hash does not.
    assert_eq!(
        v.validate_json(&[url.as_str()], br#"{"a":2}"#, sig.as_str()),
        Err(SignatureError::BodyHashMismatch { url: url.clone() })
    );
    // No bodySHA256 in any URL.
    assert!(matches!(
        v.validate_json(&["https://x.example/hook"], body, sig.as_str()),
        Err(SignatureError::BodyHashMissing { .. })
    ));
    // The hash is right but the signature is not.
    let other = compute_url("other-token", &url);
    assert!(matches!(
        v.validate_json(&[url.as_str()], body, other.as_str()),
        Err(SignatureError::Mismatch { .. })
    ));
    // Form parameters are not part of a JSON signature.
    let with_params = compute(TOKEN, &url, &[("a", "1")]);
    assert!(
        v.validate_json(&[url.as_str()], body, with_params.as_str())
            .is_err()
    );
    // The port variant is tried for JSON too.
    let with_port = url.replace("x.example", "x.example:443");
    let sig = compute_url(TOKEN, &with_port);
    assert_eq!(v.validate_json(&[url.as_str()], body, sig.as_str()), Ok(()));
}

#[test]
fn several_tokens_during_rotation() {
    let v = Validator::new(vec!["primary".into(), "secondary".into()]);
    assert_eq!(v.token_count(), 2);
    for token in ["primary", "secondary"] {
        let sig = compute(token, URL, &PARAMS);
        assert_eq!(v.validate(&[URL], &PARAMS, sig.as_str()), Ok(()), "{token}");
    }
    let sig = compute("retired", URL, &PARAMS);
    assert!(v.validate(&[URL], &PARAMS, sig.as_str()).is_err());
}

#[test]
fn several_urls_any_may_match() {
    let v = validator();
    let sig = compute_url(TOKEN, "wss://voice.example.com/ws/twilio-media/");
    let urls = vec![
        "wss://voice.example.com/ws/twilio-media".to_owned(),
        "wss://voice.example.com/ws/twilio-media/".to_owned(),
    ];
    assert_eq!(v.validate(&urls, &NONE, sig.as_str()), Ok(()));
}

#[test]
fn mismatch_lists_urls_tried_and_never_a_token() {
    let token = "do-not-leak-this-token";
    let v = Validator::new(vec![token.into()]);
    let urls = ["https://a.example/hook", "https://a.example:8443/hook/"];
    let err = v
        .validate(&urls, &PARAMS, "RSOYDt4T1cUTdK1PDd93/VVr8B8=")
        .unwrap_err();
    assert_eq!(
        err,
        SignatureError::Mismatch {
            urls_tried: vec![
                "https://a.example/hook".into(),
                "https://a.example:443/hook".into(),
                "https://a.example:8443/hook/".into(),
                "https://a.example/hook/".into(),
            ]
        }
    );
    assert_eq!(err.status(), 403);
    let text = format!("{err} {err:?} {v:?}");
    assert!(!text.contains(token), "{text}");
    assert!(text.contains("https://a.example:443/hook"), "{text}");
}

#[test]
fn missing_and_malformed() {
    let v = validator();
    assert_eq!(
        v.validate(&[URL], &PARAMS, None),
        Err(SignatureError::Missing)
    );
    assert_eq!(
        v.validate(&[URL], &PARAMS, Some("")),
        Err(SignatureError::Missing)
    );
    assert!(matches!(
        v.validate(&[URL], &PARAMS, "not base64!"),
        Err(SignatureError::Malformed { .. })
    ));
    assert!(matches!(
        v.validate_json(&[URL], b"{}", "AAAA"),
        Err(SignatureError::Malformed { .. })
    ));
    assert_eq!(
        v.validate_json(&[URL], b"{}", None),
        Err(SignatureError::Missing)
    );
}

#[test]
fn params_are_hashed_untrimmed_and_unicode() {
    let params = [("Body", " caf\u{e9} "), ("From", "+1")];
    let trimmed = [("Body", "caf\u{e9}"), ("From", "+1")];
    let sig = compute(TOKEN, URL, &params);
    assert_ne!(sig, compute(TOKEN, URL, &trimmed));
    assert_eq!(validator().validate(&[URL], &params, sig.as_str()), Ok(()));
    // Owned strings work as well as borrowed ones.
    let owned: Vec<(String, String)> = params
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    assert_eq!(signature::compute(TOKEN, URL, &owned), sig);
}
