//! The request check (`callstream_core::verify`) through the engine: shared
//! keys, JSON bodies, ambiguous requests, `Forwarded`, `Expect:
//! 100-continue`. Bytes in, bytes and events out.

mod connection_support;

use callstream_core::connection::{Config, Event, Route};
use callstream_core::form;
use callstream_core::http::Limits;
use callstream_core::public_url::PublicBase;
use callstream_core::sid::AccountSid;
use callstream_core::signature::{self, Algorithm};
use callstream_core::verify::{Reason, SharedKey};
use connection_support::{Peer, TOKEN};

const NO_CONTENT: &str = "HTTP/1.1 204 No Content\r\n\r\n";
const FORBIDDEN: &str = "HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain; charset=utf-8\r\n\
Content-Length: 10\r\n\r\nforbidden\n";
const CONTINUE: &str = "HTTP/1.1 100 Continue\r\n\r\n";

const ACCOUNT: &str = "AC0123456789abcdef0123456789abcdef";
const KEY_ID: &str = "webhooks_sharedkey_1";
const SECRET: &str = "shared-secret-1";
const URL: &str = "https://voice.example.com/webhook/call_status";

const PARAMS: [(&str, &str); 3] = [
    ("AccountSid", ACCOUNT),
    ("CallSid", "CA0123456789abcdef0123456789abcdef"),
    ("CallStatus", "completed"),
];

fn config() -> Config {
    Config {
        auth_tokens: vec![TOKEN.to_owned()],
        shared_keys: vec![SharedKey::new(KEY_ID, SECRET)],
        public_base_url: Some(PublicBase::parse("https://voice.example.com").unwrap()),
        ..connection_support::defaults()
    }
}

/// A POST to `target` with `extra` header lines (each ending in CRLF).
fn post(target: &str, content_type: &str, body: &str, extra: &str) -> Vec<u8> {
    format!(
        "POST {target} HTTP/1.1\r\nHost: internal:8080\r\nContent-Type: {content_type}\r\n\
         {extra}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

fn form_post(extra: &str) -> Vec<u8> {
    post(
        "/webhook/call_status",
        "application/x-www-form-urlencoded",
        &form::encode(&PARAMS),
        extra,
    )
}

fn rejection(peer: &mut Peer) -> (Vec<String>, Reason) {
    let events = peer.take_app_events();
    match &events[..] {
        [
            Event::SignatureRejected {
                urls_tried, reason, ..
            },
        ] => (urls_tried.clone(), reason.clone()),
        other => panic!("{other:?}"),
    }
}

fn owned(params: &[(&str, &str)]) -> Vec<(String, String)> {
    params
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

// --- Shared keys -----------------------------------------------------------

#[test]
fn a_shared_key_signature_is_accepted_with_its_settings_header() {
    for alg in [Algorithm::HmacSha256, Algorithm::HmacSha1] {
        let sig = signature::compute_with(alg, SECRET, URL, &PARAMS);
        let mut peer = Peer::new(config());
        peer.send(&form_post(&format!(
            "X-Twilio-Signature: {sig}\r\n\
             X-Twilio-Webhooks-Signature-Settings: key={KEY_ID},algorithm={}\r\n",
            alg.name()
        )));
        assert_eq!(peer.take_text(), NO_CONTENT, "{alg}");
        assert_eq!(
            peer.take_app_events(),
            [Event::Webhook {
                route: Route::CallStatus,
                params: owned(&PARAMS)
            }]
        );
    }
}

#[test]
fn the_secondary_shared_key_is_accepted_during_a_rotation() {
    let mut config = config();
    config
        .shared_keys
        .push(SharedKey::new("webhooks_sharedkey_2", "secret-2"));
    let sig = signature::compute_with(Algorithm::HmacSha256, "secret-2", URL, &PARAMS);
    let mut peer = Peer::new(config);
    peer.send(&form_post(&format!(
        "X-Twilio-Signature: {sig}\r\n\
         x-twilio-webhooks-signature-settings: key=webhooks_sharedkey_2,algorithm=HMAC_SHA256\r\n"
    )));
    assert_eq!(peer.take_text(), NO_CONTENT);
}

#[test]
fn a_shared_key_signature_without_its_header_is_not_an_auth_token_signature() {
    let sig = signature::compute_with(Algorithm::HmacSha256, SECRET, URL, &PARAMS);
    let mut peer = Peer::new(config());
    peer.send(&form_post(&format!("X-Twilio-Signature: {sig}\r\n")));
    assert_eq!(peer.take_text(), FORBIDDEN);
    let (urls, reason) = rejection(&mut peer);
    // 44 characters of base64 are not an HMAC-SHA1.
    assert!(matches!(reason, Reason::Malformed { .. }), "{reason:?}");
    assert!(urls.contains(&URL.to_owned()), "{urls:?}");
}

#[test]
fn an_unknown_algorithm_or_a_malformed_header_is_refused_never_a_fallback() {
    // Signed with the auth token, as a fallback would check it.
    let sig = signature::compute(TOKEN, URL, &PARAMS);
    for (settings, check) in [
        (
            "key=webhooks_sharedkey_1,algorithm=HMAC_SHA512",
            (|r| matches!(r, Reason::UnsupportedAlgorithm { .. })) as fn(&Reason) -> bool,
        ),
        // No algorithm: HMAC-SHA1 under the shared key, never the token.
        ("key=webhooks_sharedkey_1", |r| {
            matches!(r, Reason::Mismatch)
        }),
        ("algorithm=HMAC_SHA1", |r| {
            matches!(r, Reason::BadSettings { .. })
        }),
        ("key=webhooks_sharedkey_9,algorithm=HMAC_SHA1", |r| {
            matches!(r, Reason::UnknownSharedKey { .. })
        }),
    ] {
        let mut peer = Peer::new(config());
        peer.send(&form_post(&format!(
            "X-Twilio-Signature: {sig}\r\nX-Twilio-Webhooks-Signature-Settings: {settings}\r\n"
        )));
        assert_eq!(peer.take_text(), FORBIDDEN, "{settings}");
        let (_, reason) = rejection(&mut peer);
        assert!(check(&reason), "{settings}: {reason:?}");
    }
}

#[test]
fn no_auth_token_configured_is_its_own_reason() {
    // Only a shared key: a request without the settings header cannot be checked.
    let mut config = config();
    config.auth_tokens.clear();
    let mut peer = Peer::new(config);
    peer.send(&form_post(&format!(
        "X-Twilio-Signature: {}\r\n",
        signature::compute(TOKEN, URL, &PARAMS)
    )));
    assert_eq!(peer.take_text(), FORBIDDEN);
    assert_eq!(rejection(&mut peer), (Vec::new(), Reason::NoAuthToken));
    assert_eq!(Reason::NoAuthToken.to_string(), "no auth token configured");
}

// --- JSON bodies -------------------------------------------------------------

const JSON: &str = r#"{"AccountSid":"AC0123456789abcdef0123456789abcdef","CallStatus":"completed","SequenceNumber":3}"#;

/// A JSON POST whose signature covers `URL{query}` with no parameters.
fn json_post(body: &str, query: &str) -> Vec<u8> {
    let url = format!("{URL}{query}");
    let sig = signature::compute_url(TOKEN, &url);
    post(
        &format!("/webhook/call_status{query}"),
        "application/json; charset=utf-8",
        body,
        &format!("X-Twilio-Signature: {sig}\r\n"),
    )
}

fn body_query(body: &str) -> String {
    format!("?bodySHA256={}", signature::body_sha256(body.as_bytes()))
}

#[test]
fn a_json_status_webhook_is_checked_against_its_body_hash() {
    let mut config = config();
    config.account_sid = Some(AccountSid::parse(ACCOUNT).unwrap());
    let mut peer = Peer::new(config);
    peer.send(&json_post(JSON, &body_query(JSON)));
    assert_eq!(peer.take_text(), NO_CONTENT);
    let events = peer.take_app_events();
    match &events[..] {
        [
            Event::Webhook {
                route: Route::CallStatus,
                params,
            },
        ] => {
            assert!(
                params.contains(&("CallStatus".into(), "completed".into())),
                "{params:?}"
            );
            assert!(
                params.contains(&("SequenceNumber".into(), "3".into())),
                "{params:?}"
            );
            assert!(
                params.contains(&("AccountSid".into(), ACCOUNT.into())),
                "{params:?}"
            );
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_json_body_that_does_not_hash_to_body_sha256_is_refused() {
    let forged = JSON.replace("completed", "busy");
    for body in [forged.as_str(), ""] {
        let mut peer = Peer::new(config());
        // The signature over the URL (with the original hash) is valid.
        peer.send(&json_post(body, &body_query(JSON)));
        assert_eq!(peer.take_text(), FORBIDDEN, "{body:?}");
        let (urls, reason) = rejection(&mut peer);
        assert_eq!(reason, Reason::BodyHashMismatch, "{body:?}");
        assert_eq!(urls, [format!("{URL}{}", body_query(JSON))]);
    }
}

#[test]
fn a_json_body_without_or_with_two_body_sha256_is_refused() {
    let mut peer = Peer::new(config());
    peer.send(&json_post(JSON, ""));
    assert_eq!(peer.take_text(), FORBIDDEN);
    assert_eq!(rejection(&mut peer).1, Reason::BodyHashMissing);

    let twice = format!("{}&bodySHA256=00", body_query(JSON));
    let mut peer = Peer::new(config());
    peer.send(&json_post(JSON, &twice));
    assert_eq!(peer.take_text(), FORBIDDEN);
    assert_eq!(
        rejection(&mut peer).1,
        Reason::DuplicateParameter { name: "bodySHA256" }
    );
}

// --- Ambiguity ---------------------------------------------------------------

#[test]
fn a_duplicated_signature_header_is_refused_even_when_the_first_is_valid() {
    let good = signature::compute(TOKEN, URL, &PARAMS);
    let mut peer = Peer::new(config());
    peer.send(&form_post(&format!(
        "X-Twilio-Signature: {good}\r\nx-twilio-SIGNATURE: AAAAAAAAAAAAAAAAAAAAAAAAAAA=\r\n"
    )));
    assert_eq!(peer.take_text(), FORBIDDEN);
    assert_eq!(
        rejection(&mut peer).1,
        Reason::DuplicateHeader {
            name: "X-Twilio-Signature"
        }
    );
    // The same valid signature twice is still two headers.
    let mut peer = Peer::new(config());
    peer.send(&form_post(&format!(
        "X-Twilio-Signature: {good}\r\nX-Twilio-Signature: {good}\r\n"
    )));
    assert_eq!(peer.take_text(), FORBIDDEN);
}

#[test]
fn a_duplicated_settings_header_is_refused() {
    let sig = signature::compute_with(Algorithm::HmacSha256, SECRET, URL, &PARAMS);
    let mut peer = Peer::new(config());
    peer.send(&form_post(&format!(
        "X-Twilio-Signature: {sig}\r\n\
         X-Twilio-Webhooks-Signature-Settings: key={KEY_ID},algorithm=HMAC_SHA256\r\n\
         X-Twilio-Webhooks-Signature-Settings: key={KEY_ID},algorithm=HMAC_SHA1\r\n"
    )));
    assert_eq!(peer.take_text(), FORBIDDEN);
    assert_eq!(
        rejection(&mut peer).1,
        Reason::DuplicateHeader {
            name: "X-Twilio-Webhooks-Signature-Settings"
        }
    );
}

#[test]
fn a_duplicated_account_sid_is_refused_never_first_wins() {
    let mut config = config();
    config.account_sid = Some(AccountSid::parse(ACCOUNT).unwrap());
    let params = [
        ("AccountSid", ACCOUNT),
        ("AccountSid", "AC11111111111111111111111111111111"),
        ("CallStatus", "completed"),
    ];
    let sig = signature::compute(TOKEN, URL, &params);
    let mut peer = Peer::new(config);
    peer.send(&post(
        "/webhook/call_status",
        "application/x-www-form-urlencoded",
        &form::encode(&params),
        &format!("X-Twilio-Signature: {sig}\r\n"),
    ));
    assert_eq!(peer.take_text(), FORBIDDEN);
    assert_eq!(
        peer.take_app_events(),
        [Event::AccountRejected {
            route: Route::CallStatus,
            account_sid: String::new()
        }]
    );
}

// --- Forwarded ---------------------------------------------------------------

fn forwarded_config() -> Config {
    Config {
        auth_tokens: vec![TOKEN.to_owned()],
        trust_forwarded: true,
        ..connection_support::defaults()
    }
}

fn forwarded_post(headers: &str) -> Vec<u8> {
    let sig = signature::compute(TOKEN, URL, &PARAMS);
    form_post(&format!("X-Twilio-Signature: {sig}\r\n{headers}"))
}

#[test]
fn a_trusted_forwarded_header_rebuilds_the_signed_url() {
    for header in [
        "Forwarded: for=192.0.2.60;proto=https;host=voice.example.com\r\n",
        "Forwarded: For=\"[2001:db8::1]\";PROTO=https;Host=\"voice.example.com\", for=10.0.0.1;proto=http\r\n",
        "forwarded: proto=https;host=voice.example.com\r\nX-Forwarded-Proto: https\r\n",
    ] {
        let mut peer = Peer::new(forwarded_config());
        peer.send(&forwarded_post(header));
        assert_eq!(peer.take_text(), NO_CONTENT, "{header}");
    }
    // Untrusted: ignored, so the URL is built from Host and does not match.
    let mut config = forwarded_config();
    config.trust_forwarded = false;
    let mut peer = Peer::new(config);
    peer.send(&forwarded_post(
        "Forwarded: proto=https;host=voice.example.com\r\n",
    ));
    assert_eq!(peer.take_text(), FORBIDDEN);
}

#[test]
fn a_hostile_or_conflicting_forwarded_header_is_400() {
    let long = format!("Forwarded: for=\"{}\";proto=https\r\n", "a".repeat(600));
    for header in [
        "Forwarded: proto=https;host=voice.example.com\r\nX-Forwarded-Proto: http\r\n",
        "Forwarded: host=voice.example.com\r\nX-Forwarded-Host: evil.example\r\n",
        "Forwarded: proto=https;proto=http\r\n",
        "Forwarded: host=\"voice.example.com\r\n",
        "Forwarded: host=\"a\\\"b\"\r\n",
        "Forwarded: host=\"evil.example/<x>\"\r\n",
        "Forwarded: proto=gopher\r\n",
        "Forwarded: , proto=https\r\n",
        "Forwarded: proto\r\n",
        long.as_str(),
    ] {
        let mut peer = Peer::new(forwarded_config());
        peer.send(&forwarded_post(header));
        let text = peer.take_text();
        assert!(
            text.starts_with("HTTP/1.1 400 Bad Request\r\n"),
            "{header}: {text}"
        );
        assert!(!text.contains("evil") && !text.contains("gopher"), "{text}");
    }
}

// --- Expect: 100-continue ----------------------------------------------------

fn expect_head(len: usize, version: &str) -> Vec<u8> {
    let sig = signature::compute(TOKEN, URL, &PARAMS);
    format!(
        "POST /webhook/call_status {version}\r\nHost: internal:8080\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nX-Twilio-Signature: {sig}\r\n\
         Expect: 100-Continue\r\nContent-Length: {len}\r\n\r\n"
    )
    .into_bytes()
}

#[test]
fn expect_100_continue_is_answered_before_the_body() {
    let body = form::encode(&PARAMS);
    let mut peer = Peer::new(config());
    peer.send(&expect_head(body.len(), "HTTP/1.1"));
    assert_eq!(peer.take_text(), CONTINUE);
    // Half the body, then the rest: one 100 only.
    let (a, b) = body.split_at(5);
    peer.send(a.as_bytes());
    assert_eq!(peer.take_text(), "");
    peer.send(b.as_bytes());
    assert_eq!(peer.take_text(), NO_CONTENT);
}

#[test]
fn no_100_continue_when_the_body_came_along_or_is_too_large_or_http_1_0() {
    let body = form::encode(&PARAMS);
    let mut peer = Peer::new(config());
    let mut wire = expect_head(body.len(), "HTTP/1.1");
    wire.extend_from_slice(body.as_bytes());
    peer.send(&wire);
    assert_eq!(peer.take_text(), NO_CONTENT);

    let mut small = config();
    small.limits = Limits {
        max_body_bytes: 10,
        ..Limits::default()
    };
    let mut peer = Peer::new(small);
    peer.send(&expect_head(body.len(), "HTTP/1.1"));
    let text = peer.take_text();
    assert!(text.starts_with("HTTP/1.1 413 "), "{text}");
    assert!(!text.contains("100 Continue"), "{text}");

    // RFC 9110 §10.1.1: a 1.0 client's expectation is ignored.
    let mut peer = Peer::new(config());
    peer.send(&expect_head(body.len(), "HTTP/1.0"));
    assert_eq!(peer.take_text(), "");
}

// --- Absolute-form targets ---------------------------------------------------

/// RFC 9112 §3.2.2: a server accepts an absolute-form target, and its
/// authority stands for `Host`. Signed as Twilio signs (the public URL), a
/// request sent that way is as good as one in origin form.
#[test]
fn an_absolute_form_target_is_checked_like_its_origin_form() {
    let sig = signature::compute(TOKEN, URL, &PARAMS);
    let body = form::encode(&PARAMS);
    for target in [
        "https://voice.example.com/webhook/call_status",
        "HTTPS://voice.example.com/webhook/call_status",
        "http://internal:8080/webhook/call_status",
    ] {
        let mut peer = Peer::new(config());
        peer.send(&post(
            target,
            "application/x-www-form-urlencoded",
            &body,
            &format!("X-Twilio-Signature: {sig}\r\n"),
        ));
        assert_eq!(peer.take_text(), NO_CONTENT, "{target}");
    }
    // Without a configured base the target's authority is the host signed.
    let unbased = || Config {
        public_base_url: None,
        ..config()
    };
    let mut peer = Peer::new(unbased());
    peer.send(&post(
        "https://voice.example.com/webhook/call_status",
        "application/x-www-form-urlencoded",
        &body,
        &format!("X-Twilio-Signature: {sig}\r\n"),
    ));
    assert_eq!(peer.take_text(), NO_CONTENT);
    // ... and a wrong one is refused like any other.
    let mut peer = Peer::new(unbased());
    peer.send(&post(
        "https://other.example.com/webhook/call_status",
        "application/x-www-form-urlencoded",
        &body,
        &format!("X-Twilio-Signature: {sig}\r\n"),
    ));
    assert_eq!(peer.take_text(), FORBIDDEN);
}

/// A settings header with a key and no algorithm is HMAC-SHA1 under that
/// key, as twilio-python reads it; a key's name with a no-break space is
/// another key's.
#[test]
fn a_settings_header_without_an_algorithm_means_hmac_sha1() {
    let sig = signature::compute_with(Algorithm::HmacSha1, SECRET, URL, &PARAMS);
    for settings in [format!("key={KEY_ID}"), format!("key={KEY_ID},algorithm=")] {
        let mut peer = Peer::new(config());
        peer.send(&form_post(&format!(
            "X-Twilio-Signature: {sig}\r\nX-Twilio-Webhooks-Signature-Settings: {settings}\r\n"
        )));
        assert_eq!(peer.take_text(), NO_CONTENT, "{settings}");
    }
    let sig = signature::compute_with(Algorithm::HmacSha256, SECRET, URL, &PARAMS);
    let mut peer = Peer::new(config());
    let mut request = form_post(&format!("X-Twilio-Signature: {sig}\r\n"));
    // The header's value as raw bytes: a UTF-8 no-break space after the id.
    let at = request.len() - form::encode(&PARAMS).len() - 2;
    let header = format!(
        "X-Twilio-Webhooks-Signature-Settings: key={KEY_ID}\u{a0},algorithm=HMAC_SHA256\r\n"
    );
    request.splice(at..at, header.into_bytes());
    peer.send(&request);
    assert_eq!(peer.take_text(), FORBIDDEN);
    let (_, reason) = rejection(&mut peer);
    assert!(
        matches!(reason, Reason::UnknownSharedKey { .. }),
        "{reason:?}"
    );
}
