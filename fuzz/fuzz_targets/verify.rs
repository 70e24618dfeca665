//! Arbitrary requests through the whole check (`verify::Verifier`), JSON
//! bodies, shared keys and `Forwarded` included: it must never panic, refuse
//! only with 400 or 403, never name a secret, and accept what Twilio would
//! sign.
//!
//! Input layout: the first byte holds flags; the rest is split on 0x00 into
//! the target, the body, `Content-Type`, `X-Twilio-Signature`, the settings
//! header, `Forwarded` and `Host`. Flag bit 0 trusts forwarded headers, bit 1
//! configures a public base URL, bit 2 an account, bit 3 makes it a WebSocket
//! upgrade, bit 4 duplicates the signature header; bit 5 replaces the
//! signature with a valid one for a JSON body (the oracle: then it must be
//! accepted unless the input is ambiguous).
#![no_main]
use callstream_core::public_url::PublicBase;
use callstream_core::sid::AccountSid;
use callstream_core::signature::{self, Algorithm};
use callstream_core::verify::{Parts, Reason, Settings, SharedKey, Verifier};
use libfuzzer_sys::fuzz_target;

const TOKEN: &str = "fuzz-auth-token";
const SECRET: &str = "fuzz-shared-secret";

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let mut fields = rest.split(|&b| b == 0);
    let mut next = || fields.next().unwrap_or_default();
    let (target, body, content_type, sig, settings, forwarded, host) =
        (next(), next(), next(), next(), next(), next(), next());
    let raw_target = String::from_utf8_lossy(target);
    let base = PublicBase::parse("https://voice.example.com").ok();
    let verifier = Verifier::new(Settings {
        insecure_no_signatures: false,
        auth_tokens: vec![TOKEN.to_owned()],
        shared_keys: vec![SharedKey::new("k1", SECRET)],
        public_base_url: base.filter(|_| flags & 2 != 0),
        trust_forwarded: flags & 1 != 0,
        account_sid: (flags & 4 != 0)
            .then(|| AccountSid::parse("AC0123456789abcdef0123456789abcdef").ok())
            .flatten(),
    });

    let oracle = flags & 32 != 0 && flags & 2 != 0 && flags & 8 == 0 && raw_target.starts_with('/');
    let (target, good_sig) = if oracle {
        // A JSON webhook exactly as Twilio sends it.
        let path = raw_target.split(['?', '#']).next().unwrap_or("/");
        let target = signature::with_body_sha256(path, body);
        let url = format!("https://voice.example.com{target}");
        let sig =
            signature::compute_with(Algorithm::HmacSha256, SECRET, &url, &[] as &[(&str, &str)]);
        (target, sig)
    } else {
        (raw_target.into_owned(), String::new())
    };
    let mut headers: Vec<(&str, &[u8])> = vec![("Host", host), ("Forwarded", forwarded)];
    if oracle {
        headers.push(("Content-Type", b"application/json"));
        headers.push(("X-Twilio-Signature", good_sig.as_bytes()));
        headers.push((
            "X-Twilio-Webhooks-Signature-Settings",
            b"key=k1,algorithm=HMAC_SHA256",
        ));
    } else {
        headers.push(("Content-Type", content_type));
        headers.push(("X-Twilio-Signature", sig));
        if !settings.is_empty() {
            headers.push(("X-Twilio-Webhooks-Signature-Settings", settings));
        }
    }
    if flags & 16 != 0 {
        headers.push(("x-twilio-signature", sig));
    }
    let request = Parts {
        method: if flags & 8 != 0 { "GET" } else { "POST" },
        target: &target,
        headers: &headers,
        body,
        websocket: flags & 8 != 0,
    };
    match verifier.verify(&request) {
        Ok(_) => {}
        Err(refusal) => {
            assert!(matches!(refusal.status(), 400 | 403), "{refusal:?}");
            let shown = format!("{refusal} {refusal:?}");
            assert!(!shown.contains(TOKEN) && !shown.contains(SECRET), "{shown}");
            if oracle {
                // Only the account or a duplicated header may stop a good request.
                assert!(
                    flags & 16 != 0
                        || refusal.reason.is_account()
                        || matches!(
                            refusal.reason,
                            Reason::DuplicateParameter { .. } | Reason::InvalidOrigin
                        ),
                    "a request Twilio signed was refused: {refusal:?}"
                );
            }
        }
    }
});
