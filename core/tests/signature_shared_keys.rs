//! Shared-key signatures (`X-Twilio-Webhooks-Signature-Settings`) against
//! vectors made by twilio-python, the reference implementation.
//!
//! The vectors live in `fixtures/signature_vectors.json`, written by
//! `fixtures/make_signature_vectors.py` (which CI reruns with the real
//! library and diffs against the committed file); this test needs cargo
//! alone.

use callstream_core::form;
use callstream_core::public_url::PublicBase;
use callstream_core::signature::{self, Algorithm};
use callstream_core::verify::{
    Check, Parts, Reason, SETTINGS_HEADER, Settings, SharedKey, Verifier, parse_signature_settings,
};
use serde_json::Value;

const VECTORS: &str = include_str!("fixtures/signature_vectors.json");

/// The auth token configured beside the shared key: never what a
/// shared-key vector is signed with, so a fallback to it cannot pass.
const OTHER_TOKEN: &str = "an-auth-token-not-the-shared-secret";

fn text(v: &Value) -> &str {
    v.as_str().expect("a string")
}

#[test]
fn verifier_agrees_with_twilio_python() {
    let doc: Value = serde_json::from_str(VECTORS).unwrap();
    let vectors = doc["vectors"].as_array().unwrap();
    assert!(vectors.len() >= 15, "{}", vectors.len());
    for v in vectors {
        let name = text(&v["name"]);
        let url = text(&v["url"]);
        let secret = text(&v["secret"]);
        let key_id = text(&v["key_id"]);
        let header = v["header"].as_str();
        let params: Vec<(String, String)> = v["params"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| (text(&p[0]).to_owned(), text(&p[1]).to_owned()))
            .collect();
        let sig = v["signature"].as_str();

        // Our compute gives the library's signature under the algorithm it read.
        if let (Some(sig), Some(alg)) = (sig, Algorithm::from_name(text(&v["python_algorithm"]))) {
            assert_eq!(
                signature::compute_with(alg, secret, url, &params),
                sig,
                "{name}"
            );
        }

        // The whole check, as a server sees the request.
        let (origin, target) = {
            let after = url.find("://").unwrap() + 3;
            let slash = url[after..].find('/').map_or(url.len(), |i| after + i);
            (&url[..slash], &url[slash..])
        };
        let verifier = Verifier::new(Settings {
            auth_tokens: vec![
                if header.is_none() {
                    secret
                } else {
                    OTHER_TOKEN
                }
                .to_owned(),
            ],
            shared_keys: vec![SharedKey::new(key_id, secret)],
            public_base_url: Some(PublicBase::parse(origin).unwrap()),
            ..Settings::default()
        });
        let body = form::encode(&params);
        let sig_bytes = sig.unwrap_or("").as_bytes();
        let mut headers: Vec<(&str, &[u8])> = vec![
            ("Host", b"internal:8080"),
            ("Content-Type", b"application/x-www-form-urlencoded"),
            ("X-Twilio-Signature", sig_bytes),
        ];
        if let Some(h) = header {
            headers.push((SETTINGS_HEADER, h.as_bytes()));
        }
        let request = Parts {
            method: "POST",
            target,
            headers: &headers,
            body: body.as_bytes(),
            websocket: false,
        };
        let got = verifier.verify(&request);
        match (&v["expect"]["algorithm"], &v["expect"]["refused"]) {
            (Value::String(alg), _) => {
                let alg = Algorithm::from_name(alg).unwrap();
                let verified = got.unwrap_or_else(|r| panic!("{name}: refused: {r}"));
                let want = match header {
                    None => Check::AuthToken,
                    Some(_) => Check::SharedKey {
                        key_id: key_id.to_owned(),
                        algorithm: alg,
                    },
                };
                assert_eq!(verified.check, want, "{name}");
                assert_eq!(verified.params, params, "{name}");
                if let Some(h) = header {
                    assert_eq!(
                        parse_signature_settings(h).unwrap().algorithm,
                        alg,
                        "{name}"
                    );
                }
            }
            (_, Value::String(kind)) => {
                let refusal = got.expect_err(name);
                assert_eq!(refusal.status(), 403, "{name}");
                let ok = match kind.as_str() {
                    "unsupported_algorithm" => {
                        matches!(refusal.reason, Reason::UnsupportedAlgorithm { .. })
                    }
                    "bad_settings" => matches!(refusal.reason, Reason::BadSettings { .. }),
                    "unknown_shared_key" => {
                        matches!(refusal.reason, Reason::UnknownSharedKey { .. })
                    }
                    other => panic!("{name}: unknown expectation {other}"),
                };
                assert!(ok, "{name}: {:?}", refusal.reason);
            }
            other => panic!("{name}: bad expectation {other:?}"),
        }
    }
}

#[test]
fn the_committed_vectors_cover_both_algorithms_and_the_refusals() {
    let doc: Value = serde_json::from_str(VECTORS).unwrap();
    let expects: Vec<String> = doc["vectors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["expect"].to_string())
        .collect();
    for want in [
        r#"{"algorithm":"HMAC_SHA1"}"#,
        r#"{"algorithm":"HMAC_SHA256"}"#,
        r#"{"refused":"unsupported_algorithm"}"#,
        r#"{"refused":"bad_settings"}"#,
        r#"{"refused":"unknown_shared_key"}"#,
    ] {
        assert!(expects.iter().any(|e| e == want), "{want}");
    }
    // Twilio's worked example is among them, with its documented signature.
    assert!(VECTORS.contains("RSOYDt4T1cUTdK1PDd93/VVr8B8="));
}
