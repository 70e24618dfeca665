//! `callstream check`: a deployment's acceptance checks, as Twilio would
//! meet them. Each check makes the request Twilio makes (signed when a token
//! is given), times it, and on failure names the Twilio error it would cause
//! and the likely fix. Any redirect is a failure: Twilio follows none.

use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use callstream_twilio::response::Response;
use callstream_twilio::{Upgrade, form, signature};
use clap::Args;
use serde_json::{Value, json};

use crate::net;
use crate::target::Target;

/// The status webhooks Twilio posts to, which must answer at once.
pub const STATUS_WEBHOOKS: [&str; 4] = [
    "/webhook/stream_status",
    "/webhook/call_status",
    "/webhook/handle_recording",
    "/webhook/stream_ended",
];
/// The stream's path.
pub const STREAM_PATH: &str = "/ws/twilio-media";
/// How long a status webhook may take here. Twilio waits up to 15 s, but a
/// server that needs more than this for a 204 is doing work in the request.
pub const WEBHOOK_LIMIT: Duration = Duration::from_millis(100);
/// The subprotocol some clients offer.
pub const AUDIO_PROTOCOL: &str = "audio.twilio.com";

/// `callstream check`: run a deployment's acceptance checks.
#[derive(Debug, Clone, Args)]
pub struct CheckArgs {
    /// The server's base URL: `https://…` for a deployment, `http://…` for a
    /// local run.
    pub base_url: String,
    /// The auth token: webhooks and upgrades are signed, and a signed
    /// `incoming_call` must be accepted and an unsigned one refused.
    #[arg(long, env = "TWILIO_AUTH_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// The public URL Twilio signs and the TwiML must point at, when it
    /// differs from the address checked (e.g. a proxy in front).
    #[arg(long)]
    pub public_url: Option<String>,
    /// Trust the certificates in this PEM file too (a private CA).
    #[arg(long)]
    pub ca_file: Option<PathBuf>,
    /// Print one JSON line.
    #[arg(long)]
    pub json: bool,
}

/// A check's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// As Twilio needs it.
    Pass,
    /// Not checked as asked, for a stated reason that is no fault (e.g.
    /// signatures are on and no token was given).
    Note,
    /// Twilio would fail.
    Fail,
}

impl Verdict {
    fn label(self) -> &'static str {
        match self {
            Verdict::Pass => "PASS",
            Verdict::Note => "NOTE",
            Verdict::Fail => "FAIL",
        }
    }
}

/// One check's result.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// What was checked.
    pub name: String,
    /// The verdict.
    pub verdict: Verdict,
    /// What was seen.
    pub detail: String,
    /// The Twilio error a failure causes, if it has one.
    pub twilio_error: Option<u16>,
    /// The likely fix.
    pub fix: Option<String>,
    /// How long the answer took, in milliseconds.
    pub ms: Option<f64>,
}

impl Outcome {
    fn new(name: &str, verdict: Verdict, detail: String) -> Outcome {
        Outcome {
            name: name.to_owned(),
            verdict,
            detail,
            twilio_error: None,
            fix: None,
            ms: None,
        }
    }

    fn fail(name: &str, code: Option<u16>, detail: String, fix: &str) -> Outcome {
        Outcome {
            twilio_error: code,
            fix: Some(fix.to_owned()),
            ..Outcome::new(name, Verdict::Fail, detail)
        }
    }

    fn timed(mut self, d: Duration) -> Outcome {
        self.ms = Some((d.as_secs_f64() * 1e5).round() / 100.0);
        self
    }
}

const FIX_REDIRECT: &str = "serve the path exactly as configured, with and without a trailing slash; Twilio follows no redirect (check http→https and slash redirects in the front)";
const FIX_PUBLIC_URL: &str =
    "set PUBLIC_BASE_URL to the URL Twilio uses (scheme, host, no port) and check the auth token";

/// Where the checks go and how they are signed.
struct Checker {
    base: Target,
    public: Target,
    token: Option<String>,
    tls: Arc<rustls::ClientConfig>,
}

/// Runs every check, in order.
///
/// # Errors
/// A URL that does not parse, or a CA file that cannot be read.
pub fn checks(args: &CheckArgs) -> io::Result<Vec<Outcome>> {
    let base = Target::parse(&args.base_url).map_err(io::Error::other)?;
    let public = match &args.public_url {
        Some(u) => Target::parse(u).map_err(io::Error::other)?,
        None => base.clone(),
    };
    let c = Checker {
        base,
        public,
        token: args.token.clone().filter(|t| !t.is_empty()),
        tls: net::tls_config(args.ca_file.as_deref())?,
    };
    let mut out = Vec::new();
    for path in STATUS_WEBHOOKS {
        out.push(c.status_webhook(path));
    }
    out.push(c.preview());
    out.push(c.upgrade(STREAM_PATH, None));
    out.push(c.upgrade(&format!("{STREAM_PATH}/"), None));
    out.push(c.upgrade(STREAM_PATH, Some(AUDIO_PROTOCOL)));
    out.extend(c.incoming_call());
    Ok(out)
}

impl Checker {
    /// The `https://` URL Twilio signs for `path`.
    fn public_http(&self, path: &str) -> String {
        format!(
            "https://{}{}",
            self.public.authority,
            join(&self.public.path, path)
        )
    }

    fn post(
        &self,
        path: &str,
        params: &[(&str, &str)],
        token: Option<&str>,
    ) -> io::Result<(Response, Duration)> {
        let body = form::encode(params);
        let mut req = format!(
            "POST {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: TwilioProxy/1.1\r\nContent-Type: application/x-www-form-urlencoded\r\n",
            join(&self.base.path, path),
            self.public.authority
        );
        if let Some(t) = token {
            let sig = signature::sign(t, &self.public_http(path), params);
            req += &format!("X-Twilio-Signature: {sig}\r\n");
        }
        req += &format!(
            "Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        let mut conn = net::connect(&self.base, &self.tls, Duration::from_secs(15))?;
        net::exchange(&mut conn, req.as_bytes(), "POST")
    }

    fn status_webhook(&self, path: &str) -> Outcome {
        let name = format!("webhook {path}");
        let params = sample_call(&[
            ("StreamSid", "MZ0123456789abcdef0123456789abcdef"),
            ("StreamEvent", "stream-stopped"),
            ("CallStatus", "completed"),
            ("RecordingStatus", "completed"),
        ]);
        let (r, took) = match self.post(path, &params, self.token.as_deref()) {
            Ok(x) => x,
            Err(e) => return unreachable_outcome(&name, &e),
        };
        let o = match r.status {
            200..=299 if took <= WEBHOOK_LIMIT => {
                Outcome::new(&name, Verdict::Pass, format!("{} in time", r.status))
            }
            200..=299 => Outcome::fail(
                &name,
                Some(11205),
                format!(
                    "{} but slow: over {} ms (Twilio gives up at 15 s)",
                    r.status,
                    WEBHOOK_LIMIT.as_millis()
                ),
                "answer status webhooks at once and do the work after the answer",
            ),
            300..=399 => redirect(&name, &r, 11200),
            403 if self.token.is_none() => Outcome::new(
                &name,
                Verdict::Note,
                "403 unsigned: signatures on (give --token to check signed requests)".into(),
            ),
            403 => Outcome::fail(
                &name,
                Some(11200),
                "403 to a signed request".into(),
                FIX_PUBLIC_URL,
            ),
            s => Outcome::fail(
                &name,
                Some(11200),
                format!("{s}"),
                "the route must exist and answer 2xx (204 is best)",
            ),
        };
        o.timed(took)
    }

    fn get(&self, path: &str) -> io::Result<(Response, Duration)> {
        let req = format!(
            "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: TwilioProxy/1.1\r\nConnection: close\r\n\r\n",
            join(&self.base.path, path),
            self.public.authority
        );
        let mut conn = net::connect(&self.base, &self.tls, Duration::from_secs(15))?;
        net::exchange(&mut conn, req.as_bytes(), "GET")
    }

    fn preview(&self) -> Outcome {
        let name = "TwiML /webhook/incoming_call_preview";
        let (r, took) = match self.get("/webhook/incoming_call_preview") {
            Ok(x) => x,
            Err(e) => return unreachable_outcome(name, &e),
        };
        let o = match r.status {
            200 => self.twiml(name, &r),
            300..=399 => redirect(name, &r, 11200),
            s => Outcome::fail(
                name,
                Some(11200),
                format!("{s}"),
                "the preview route answers the TwiML a call gets; check the route and the front",
            ),
        };
        o.timed(took)
    }

    /// Checks a TwiML answer as Twilio reads it.
    fn twiml(&self, name: &str, r: &Response) -> Outcome {
        let ctype = r
            .header("content-type")
            .unwrap_or_default()
            .to_ascii_lowercase();
        let mime = ctype
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_owned();
        if mime != "application/xml" && mime != "text/xml" {
            return Outcome::fail(
                name,
                Some(12300),
                format!("Content-Type {ctype:?}"),
                "serve TwiML as application/xml (or text/xml)",
            );
        }
        let stream_url = match stream_url(&r.body) {
            Ok(u) => u,
            Err(why) => {
                return Outcome::fail(
                    name,
                    Some(12100),
                    why,
                    "TwiML must be well-formed XML with nothing before <?xml and every attribute escaped",
                );
            }
        };
        let want = format!(
            "wss://{}{}",
            self.public.authority,
            join(&self.public.path, STREAM_PATH)
        );
        if stream_url.starts_with("ws://") {
            return Outcome::fail(
                name,
                Some(31922),
                format!("stream URL {stream_url}"),
                "the stream URL must be wss://: set PUBLIC_BASE_URL to the https URL",
            );
        }
        if stream_url != want && stream_url != format!("{want}/") {
            return Outcome::fail(
                name,
                Some(31920),
                format!("stream URL {stream_url}, expected {want}"),
                "Twilio connects where the TwiML points: set PUBLIC_BASE_URL to the public https URL",
            );
        }
        Outcome::new(
            name,
            Verdict::Pass,
            format!("{mime}, <Stream url=\"{stream_url}\">"),
        )
    }

    fn upgrade(&self, path: &str, offer: Option<&str>) -> Outcome {
        let name = match offer {
            None => format!("upgrade {path}"),
            Some(p) => format!("upgrade {path} offering {p}"),
        };
        let full = join(&self.base.path, path);
        let mut up = Upgrade::new(&self.public.authority, &full, self.token.as_deref(), 7);
        up.stream_url = Some(format!(
            "wss://{}{}",
            self.public.authority,
            join(&self.public.path, path)
        ));
        up.protocol = offer.map(str::to_owned);
        let mut conn = match net::connect(&self.base, &self.tls, Duration::from_secs(15)) {
            Ok(c) => c,
            Err(e) => return unreachable_outcome(&name, &e),
        };
        let (head, _, took) = match net::upgrade(&mut conn, &up.to_bytes()) {
            Ok(x) => x,
            Err(e) => {
                return Outcome::fail(
                    &name,
                    Some(31920),
                    format!("no answer: {e}"),
                    "the upgrade must be answered with 101",
                );
            }
        };
        // Close politely: a masked close frame, code 1000.
        let _ = io::Write::write_all(
            &mut conn,
            &callstream_twilio::frame::client_frame(0x88, &1000u16.to_be_bytes()),
        );
        let o = match (head.status, up.check_answer(&head)) {
            (101, Ok(chosen)) => match (offer, chosen) {
                (None, None) => Outcome::new(&name, Verdict::Pass, "101, no subprotocol".into()),
                (Some(p), Some(c)) if c.eq_ignore_ascii_case(p) => {
                    Outcome::new(&name, Verdict::Pass, format!("101, echoes {c}"))
                }
                (Some(p), _) => Outcome::fail(
                    &name,
                    None,
                    format!("101 without {p}"),
                    "echo audio.twilio.com when a client offers it (clients that offer it may require it)",
                ),
                (None, Some(c)) => Outcome::fail(
                    &name,
                    Some(31920),
                    format!("named {c} unoffered"),
                    "never name a subprotocol the client did not offer",
                ),
            },
            (101, Err(e)) => Outcome::fail(
                &name,
                Some(31920),
                e.to_string(),
                "send Upgrade, Connection and Sec-WebSocket-Accept exactly once; name no subprotocol unless offered",
            ),
            (300..=399, _) => {
                let loc = head.header("location").unwrap_or("?");
                Outcome::fail(
                    &name,
                    Some(31920),
                    format!("{} redirect to {loc}", head.status),
                    FIX_REDIRECT,
                )
            }
            (403, _) if self.token.is_none() => Outcome::new(
                &name,
                Verdict::Note,
                "403 unsigned: signatures on (give --token to open it signed)".into(),
            ),
            (403, _) => Outcome::fail(
                &name,
                Some(31920),
                "403 to a signed upgrade".into(),
                FIX_PUBLIC_URL,
            ),
            (s, _) => Outcome::fail(
                &name,
                Some(31920),
                format!("{s}, not 101"),
                "answer 101 on this path without requiring a subprotocol, Origin or auth header (Twilio sends none)",
            ),
        };
        o.timed(took)
    }

    fn incoming_call(&self) -> Vec<Outcome> {
        let path = "/webhook/incoming_call";
        let Some(token) = self.token.as_deref() else {
            return vec![Outcome::new(
                "signatures on /webhook/incoming_call",
                Verdict::Note,
                "not checked: give --token".into(),
            )];
        };
        let params = sample_call(&[("CallStatus", "ringing"), ("Direction", "inbound")]);
        let signed = match self.post(path, &params, Some(token)) {
            Ok((r, took)) => match r.status {
                200 => self.twiml("signed /webhook/incoming_call", &r).timed(took),
                300..=399 => redirect("signed /webhook/incoming_call", &r, 11200).timed(took),
                403 => Outcome::fail(
                    "signed /webhook/incoming_call",
                    Some(11200),
                    "403: the signature was refused".into(),
                    FIX_PUBLIC_URL,
                )
                .timed(took),
                s => Outcome::fail(
                    "signed /webhook/incoming_call",
                    Some(11200),
                    format!("{s}"),
                    "the voice webhook must answer 200 with TwiML",
                )
                .timed(took),
            },
            Err(e) => unreachable_outcome("signed /webhook/incoming_call", &e),
        };
        let name = "unsigned /webhook/incoming_call refused";
        let unsigned = match self.post(path, &params, None) {
            Ok((r, took)) => match r.status {
                403 => Outcome::new(name, Verdict::Pass, "403".into()).timed(took),
                s => Outcome::fail(name, None, format!("{s}: an unsigned call was not refused"), "set TWILIO_AUTH_TOKEN and drop CALLSTREAM_INSECURE_NO_SIGNATURES: anyone who finds the URL can place calls").timed(took),
            },
            Err(e) => unreachable_outcome(name, &e),
        };
        vec![signed, unsigned]
    }
}

/// `base` (a path prefix, `/` for none) joined with `path`.
fn join(base: &str, path: &str) -> String {
    format!("{}{path}", base.trim_end_matches('/'))
}

/// The fields of a sample call, plus `extra`.
fn sample_call<'a>(extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut p = vec![
        ("AccountSid", "AC0123456789abcdef0123456789abcdef"),
        ("ApiVersion", "2010-04-01"),
        ("CallSid", "CA0123456789abcdef0123456789abcdef"),
        ("From", "+14155550100"),
        ("To", "+14155550199"),
    ];
    p.extend_from_slice(extra);
    p
}

fn redirect(name: &str, r: &Response, code: u16) -> Outcome {
    let loc = r.header("location").unwrap_or("?");
    Outcome::fail(
        name,
        Some(code),
        format!("{} redirect to {loc}", r.status),
        FIX_REDIRECT,
    )
}

fn unreachable_outcome(name: &str, e: &io::Error) -> Outcome {
    Outcome::fail(
        name,
        Some(11205),
        format!("no answer: {e}"),
        "check that the server is up, the URL and port are right, and the certificate is valid",
    )
}

/// The `url` of the `<Stream>` in a TwiML document.
///
/// # Errors
/// Why Twilio could not read it (error 12100) or it has no stream.
pub fn stream_url(body: &str) -> Result<String, String> {
    if !body.starts_with('<') {
        return Err("something before the XML".into());
    }
    let doc = roxmltree::Document::parse(body).map_err(|e| format!("not XML: {e}"))?;
    let root = doc.root_element();
    if root.tag_name().name() != "Response" {
        return Err(format!("root <{}>, not <Response>", root.tag_name().name()));
    }
    root.descendants()
        .find(|n| n.has_tag_name("Stream") && n.parent().is_some_and(|p| p.has_tag_name("Connect")))
        .and_then(|n| n.attribute("url"))
        .map(str::to_owned)
        .ok_or_else(|| "no <Connect><Stream url>".into())
}

/// The outcomes as a table for a person.
#[must_use]
pub fn table(outcomes: &[Outcome]) -> String {
    let width = outcomes.iter().map(|o| o.name.len()).max().unwrap_or(0);
    let mut s = String::new();
    for o in outcomes {
        let ms = o.ms.map_or(String::new(), |m| format!(" ({m} ms)"));
        s += &format!(
            "{}  {:width$}  {}{ms}\n",
            o.verdict.label(),
            o.name,
            o.detail
        );
        if o.verdict == Verdict::Fail {
            let code = o
                .twilio_error
                .map_or("no Twilio error, but".to_owned(), |c| {
                    format!("Twilio error {c};")
                });
            s += &format!(
                "      {:width$}  → {code} fix: {}\n",
                "",
                o.fix.as_deref().unwrap_or("")
            );
        }
    }
    let failed = outcomes
        .iter()
        .filter(|o| o.verdict == Verdict::Fail)
        .count();
    // Not "N passed, N failed": that line is a test runner's verdict.
    s += &format!(
        "{} of {} checks passed, {failed} failed\n",
        outcomes
            .iter()
            .filter(|o| o.verdict == Verdict::Pass)
            .count(),
        outcomes.len()
    );
    s
}

/// The outcomes as one JSON value.
#[must_use]
pub fn to_json(outcomes: &[Outcome]) -> Value {
    json!({
        "ok": outcomes.iter().all(|o| o.verdict != Verdict::Fail),
        "checks": outcomes.iter().map(|o| json!({
            "name": o.name,
            "verdict": o.verdict.label().to_ascii_lowercase(),
            "detail": o.detail,
            "twilio_error": o.twilio_error,
            "fix": o.fix,
            "ms": o.ms,
        })).collect::<Vec<_>>(),
    })
}

/// Runs `callstream check`; returns whether every check passed.
///
/// # Errors
/// Bad flags, or writing the output fails.
pub fn run(args: &CheckArgs, out: &mut dyn io::Write) -> io::Result<bool> {
    let outcomes = checks(args)?;
    if args.json {
        writeln!(out, "{}", to_json(&outcomes))?;
    } else {
        write!(out, "{}", table(&outcomes))?;
    }
    Ok(outcomes.iter().all(|o| o.verdict != Verdict::Fail))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn twiml_stream_urls() {
        let ok = r#"<?xml version="1.0" encoding="UTF-8"?><Response><Connect><Stream url="wss://h/ws/twilio-media"><Parameter name="a" value="b"/></Stream></Connect></Response>"#;
        assert_eq!(stream_url(ok).unwrap(), "wss://h/ws/twilio-media");
        assert!(
            stream_url(&format!(" {ok}"))
                .unwrap_err()
                .contains("before")
        );
        assert!(
            stream_url("<Response><Say>a & b</Say></Response>")
                .unwrap_err()
                .contains("not XML")
        );
        assert!(stream_url("<Reply/>").unwrap_err().contains("<Reply>"));
        assert!(
            stream_url("<Response><Start><Stream url=\"wss://h/\"/></Start></Response>").is_err()
        );
    }

    #[test]
    fn paths_join_under_a_prefix() {
        assert_eq!(join("/", "/ws"), "/ws");
        assert_eq!(join("/bot/", "/ws"), "/bot/ws");
        assert_eq!(join("/bot", "/ws"), "/bot/ws");
    }

    #[test]
    fn table_names_the_error_and_the_fix() {
        let o = vec![
            Outcome::new("a", Verdict::Pass, "fine".into()),
            Outcome::fail("b", Some(31920), "308 redirect to /x/".into(), FIX_REDIRECT)
                .timed(Duration::from_micros(1500)),
        ];
        let t = table(&o);
        assert!(t.contains("FAIL  b  308 redirect to /x/ (1.5 ms)"), "{t}");
        assert!(
            t.contains("→ Twilio error 31920; fix: serve the path"),
            "{t}"
        );
        assert!(t.ends_with("1 of 2 checks passed, 1 failed\n"), "{t}");
        let j = to_json(&o);
        assert_eq!(j["ok"], false);
        assert_eq!(j["checks"][1]["twilio_error"], 31920);
    }
}
