//! `callstream sign`: the `X-Twilio-Signature` Twilio would send for a URL
//! and form parameters (docs/protocol.md §5), with commands that replay the
//! request: `curl` for an `http(s)` URL (a POST of the parameters, or a GET
//! when there are none), `wscat` for a `ws(s)` URL.

use std::io;

use callstream_core::signature;
use clap::Args;
use serde_json::json;

/// `callstream sign`: sign a request as Twilio does.
#[derive(Debug, Clone, Args)]
pub struct SignArgs {
    /// The auth token.
    #[arg(long, env = "TWILIO_AUTH_TOKEN", hide_env_values = true)]
    pub token: String,
    /// The full URL Twilio requests, exactly as configured (query included).
    #[arg(long)]
    pub url: String,
    /// Form parameters, as `name=value`.
    #[arg(value_parser = parse_param)]
    pub params: Vec<(String, String)>,
    /// Print one JSON line.
    #[arg(long)]
    pub json: bool,
}

fn parse_param(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("expected name=value, got {s:?}"))
}

/// What `sign` prints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signed {
    /// The signature.
    pub signature: String,
    /// A `curl` command sending the signed request (for `http(s)` URLs).
    pub curl: Option<String>,
    /// A `wscat` command opening the signed upgrade (for `ws(s)` URLs).
    pub wscat: Option<String>,
}

/// Signs `url` and `params` with `token`, the core's own computation.
#[must_use]
pub fn sign(token: &str, url: &str, params: &[(String, String)]) -> Signed {
    let sig = signature::compute(token, url, params);
    let lower = url.to_ascii_lowercase();
    let header = format!("X-Twilio-Signature: {sig}");
    let (curl, wscat) = if lower.starts_with("ws://") || lower.starts_with("wss://") {
        let cmd = format!(
            "wscat -c {} -H {}",
            quote(url),
            quote(&format!("x-twilio-signature:{sig}"))
        );
        (None, Some(cmd))
    } else {
        let mut cmd = format!("curl -sS -i -H {}", quote(&header));
        if params.is_empty() {
            cmd += &format!(" {}", quote(url));
        } else {
            cmd += " -X POST";
            for (k, v) in params {
                cmd += &format!(" --data-urlencode {}", quote(&format!("{k}={v}")));
            }
            cmd += &format!(" {}", quote(url));
        }
        (Some(cmd), None)
    };
    Signed {
        signature: sig,
        curl,
        wscat,
    }
}

/// `s` in single quotes for a POSIX shell.
#[must_use]
pub fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// Runs `callstream sign`.
///
/// # Errors
/// Writing the output fails.
pub fn run(args: &SignArgs, out: &mut dyn io::Write) -> io::Result<()> {
    let s = sign(&args.token, &args.url, &args.params);
    if args.json {
        let v =
            json!({"url": args.url, "signature": s.signature, "curl": s.curl, "wscat": s.wscat});
        writeln!(out, "{v}")
    } else {
        writeln!(out, "X-Twilio-Signature: {}", s.signature)?;
        for cmd in [&s.curl, &s.wscat].into_iter().flatten() {
            writeln!(out, "{cmd}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
        p.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    /// Twilio's documented example (docs/protocol.md §5), and the model's
    /// independent signer agrees.
    #[test]
    fn twilio_documentation_example() {
        let params = pairs(&[
            ("CallSid", "CA1234567890ABCDE"),
            ("Caller", "+14158675309"),
            ("Digits", "1234"),
            ("From", "+14158675309"),
            ("To", "+18005551212"),
        ]);
        let url = "https://mycompany.com/myapp.php?foo=1&bar=2";
        let s = sign("12345", url, &params);
        assert_eq!(s.signature, "RSOYDt4T1cUTdK1PDd93/VVr8B8=");
        let with_port = "https://mycompany.com:443/myapp.php?foo=1&bar=2";
        assert_eq!(
            sign("12345", with_port, &params).signature,
            "kvajT1Ptam85bY51eRf/AJRuM3w="
        );
        let refs: Vec<(&str, &str)> = params
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(
            callstream_twilio::signature::sign("12345", url, &refs),
            s.signature
        );
        let curl = s.curl.unwrap();
        assert!(curl.starts_with("curl -sS -i -H 'X-Twilio-Signature: RSOYDt4T1cUTdK1PDd93/VVr8B8=' -X POST --data-urlencode 'CallSid=CA1234567890ABCDE'"), "{curl}");
        assert!(curl.ends_with(" 'https://mycompany.com/myapp.php?foo=1&bar=2'"));
        assert!(s.wscat.is_none());
    }

    #[test]
    fn websocket_urls_get_wscat() {
        let s = sign("12345", "wss://bot.example.com/ws/twilio-media", &[]);
        assert_eq!(
            s.signature,
            callstream_twilio::signature::sign(
                "12345",
                "wss://bot.example.com/ws/twilio-media",
                &[]
            )
        );
        assert_eq!(
            s.wscat.unwrap(),
            format!(
                "wscat -c 'wss://bot.example.com/ws/twilio-media' -H 'x-twilio-signature:{}'",
                s.signature
            )
        );
        assert!(s.curl.is_none());
    }

    #[test]
    fn quoting_survives_quotes() {
        assert_eq!(quote("it's"), r"'it'\''s'");
        let s = sign("t", "https://h/x", &pairs(&[("Body", "it's")]));
        assert!(s.curl.unwrap().contains(r"--data-urlencode 'Body=it'\''s'"));
    }

    #[test]
    fn json_output() {
        let args = SignArgs {
            token: "12345".into(),
            url: "https://h/voice".into(),
            params: vec![],
            json: true,
        };
        let mut out = Vec::new();
        run(&args, &mut out).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(
            v["signature"],
            signature::compute_url("12345", "https://h/voice")
        );
        assert!(v["curl"].as_str().unwrap().ends_with(" 'https://h/voice'"));
    }
}
