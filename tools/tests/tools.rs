//! The tools through their real paths: `sim`, `check` and `sign` against a
//! callstream server running in this process (plain, and behind a TLS front
//! with a self-signed certificate), and against servers broken on purpose.
mod support;

use callstream_tests::{RunningServer, TOKEN, http_raw};
use callstream_tools::check::{self, CheckArgs, Verdict};
use callstream_tools::sign;
use callstream_tools::sim::{self, SimArgs};
use clap::Parser;
use serde_json::Value;
use support::{Broken, BrokenServer, TlsFront};

const PUBLIC: &str = "https://callstream.test";
const STREAM: &str = "wss://callstream.test/ws/twilio-media";

#[derive(Parser)]
struct SimCli {
    #[command(flatten)]
    args: SimArgs,
}

#[derive(Parser)]
struct CheckCli {
    #[command(flatten)]
    args: CheckArgs,
}

/// Runs `sim` with these flags (as typed after `callstream sim`); returns
/// whether it was clean and its JSON summary.
fn sim(flags: &[&str]) -> (bool, Value) {
    let mut argv = vec!["sim", "--json"];
    argv.extend_from_slice(flags);
    let cli = SimCli::try_parse_from(argv).expect("flags parse");
    let mut out = Vec::new();
    let ok = sim::run(&cli.args, &mut out).expect("sim runs");
    let v = serde_json::from_slice(&out)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out)));
    (ok, v)
}

/// Runs `check`; returns whether all passed and the outcomes.
/// `check` against a server broken as `kind`: it must fail; its outcomes
/// and table.
fn check_fails_against(kind: Broken) -> (Vec<check::Outcome>, String) {
    let bad = BrokenServer::start(kind);
    let (ok, outcomes, table) = check(&[&format!("http://{}", bad.addr)]);
    assert!(!ok, "{table}");
    (outcomes, table)
}

fn check(flags: &[&str]) -> (bool, Vec<check::Outcome>, String) {
    let mut argv = vec!["check"];
    argv.extend_from_slice(flags);
    let cli = CheckCli::try_parse_from(argv).expect("flags parse");
    let outcomes = check::checks(&cli.args).expect("check runs");
    let table = check::table(&outcomes);
    let mut out = Vec::new();
    let ok = check::run(&cli.args, &mut out).expect("check runs");
    (ok, outcomes, table)
}

fn ws(srv: &RunningServer) -> String {
    format!("ws://{}/ws/twilio-media", srv.addr)
}

fn echo_server() -> RunningServer {
    RunningServer::start(|s| s.handler = "echo".parse().unwrap())
}

/// What went came back byte for byte, latency measured, digits sent.
#[test]
fn sim_against_the_echo_handler() {
    let srv = echo_server();
    let url = ws(&srv);
    let (ok, v) = sim(&[
        &url,
        "--token",
        TOKEN,
        "--public-url",
        STREAM,
        "--tone",
        "440",
        "--tone-seconds",
        "0.6",
        "--duration",
        "1",
        "--dtmf",
        "300:1#",
        "--param",
        "lang=en",
        "--linger-ms",
        "800",
    ]);
    assert!(ok, "{v}");
    assert_eq!(v["frames_sent"], 50, "{v}");
    assert_eq!(v["echo"], true, "{v}");
    assert_eq!(v["echo_ms"]["n"], 50, "every frame came back: {v}");
    assert!(v["echo_ms"]["p50"].as_f64().is_some(), "{v}");
    assert!(v["handshake_ms"].as_f64().is_some(), "{v}");
    assert_eq!(v["dtmf_sent"], 2, "{v}");
    assert_eq!(v["warnings"].as_array().map(Vec::len), Some(0), "{v}");
    assert_eq!(v["heard_ms"], 1000, "{v}");
}

/// The parrot answers after the caller's speech: recorded speech (a WAV
/// made from the committed espeak-ng fixture) in, its reply heard, its mark
/// echoed once the reply has played, and the reply written to a WAV.
#[test]
fn sim_against_the_parrot_hears_a_reply_and_echoes_its_mark() {
    let srv = RunningServer::start(|_| {});
    let dir = tempfile::tempdir().unwrap();
    let speech = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../core/tests/fixtures/vad/clean.ulaw"
    ))
    .unwrap();
    // The first utterance and the silence after it, as a 16 kHz WAV so the
    // resampler is on the path.
    let wav = dir.path().join("caller.wav");
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 16_000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(&wav, spec).unwrap();
    for &b in &speech[..8000 * 3] {
        let s = callstream_core::codec::decode(b);
        w.write_sample(s).unwrap();
        w.write_sample(s).unwrap();
    }
    w.finalize().unwrap();
    let heard = dir.path().join("heard.wav");
    let url = ws(&srv);
    let (ok, v) = sim(&[
        &url,
        "--token",
        TOKEN,
        "--public-url",
        STREAM,
        "--audio",
        wav.to_str().unwrap(),
        "--duration",
        "7",
        "--record",
        heard.to_str().unwrap(),
    ]);
    assert!(ok, "{v}");
    let turn = v["turn_ms"]
        .as_f64()
        .unwrap_or_else(|| panic!("no reply after the speech: {v}"));
    assert!(turn > 0.0, "{v}");
    assert!(v["speech_end_ms"].as_f64().unwrap() < 3000.0, "{v}");
    assert!(v["heard_ms"].as_u64().unwrap() > 500, "{v}");
    assert!(v["marks"].as_u64().unwrap() >= 1, "{v}");
    assert_eq!(v["marks"], v["marks_echoed"], "{v}");
    let r = hound::WavReader::open(&heard).unwrap();
    assert_eq!(r.spec().sample_rate, 8000);
    assert!(r.duration() > 4000, "{}", r.duration());
}

/// Unsigned against a server that checks signatures: Twilio's 31920.
#[test]
fn sim_reports_a_refused_upgrade_as_31920() {
    let srv = echo_server();
    let url = ws(&srv);
    let (ok, v) = sim(&[&url, "--duration", "0.1"]);
    assert!(!ok);
    assert_eq!(v["failure"]["code"], 31920, "{v}");
    assert!(
        v["failure"]["message"].as_str().unwrap().contains("403"),
        "{v}"
    );
}

/// A server that sends a binary frame and a message with an extra field:
/// Twilio's warnings 31950 and 31951.
#[test]
fn sim_reports_what_twilio_would_log() {
    let bad = BrokenServer::start(Broken::BadMessages);
    let url = format!("ws://{}/ws/twilio-media", bad.addr);
    let (ok, v) = sim(&[&url, "--duration", "1"]);
    assert!(!ok, "{v}");
    let codes: Vec<u64> = v["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["code"].as_u64().unwrap())
        .collect();
    assert_eq!(codes, [31950, 31951], "{v}");
    assert_eq!(v["server_close"], 1000, "{v}");
}

/// Load mode: concurrent calls on one thread, every frame echoed.
#[test]
fn sim_load_mode_carries_concurrent_calls() {
    let srv = echo_server();
    let url = ws(&srv);
    let (ok, v) = sim(&[
        &url,
        "--token",
        TOKEN,
        "--public-url",
        STREAM,
        "--calls",
        "40",
        "--ramp",
        "0.5",
        "--tone",
        "300",
        "--duration",
        "1",
        "--linger-ms",
        "1000",
    ]);
    assert!(ok, "{v}");
    assert_eq!(
        (v["calls"].as_u64(), v["failed"].as_u64()),
        (Some(40), Some(0)),
        "{v}"
    );
    assert_eq!(v["echo_equal"], 40, "{v}");
    assert_eq!(v["frames_sent"], 40 * 50, "{v}");
    assert_eq!(v["lost_frames"], 0, "{v}");
    assert!(v["echo_ms"]["p99"].as_f64().is_some(), "{v}");
}

/// Load mode on a 20 ms grid (`--tick-ms`): frames leave in batches, and
/// every one still arrives and comes back in order; past 20 ms is refused.
#[test]
fn sim_load_mode_on_a_tick_grid() {
    let srv = echo_server();
    let url = ws(&srv);
    let args = |tick: &'static str| {
        [
            url.clone(),
            "--token".into(),
            TOKEN.into(),
            "--public-url".into(),
            STREAM.into(),
            "--calls".into(),
            "20".into(),
            "--ramp".into(),
            "0.3".into(),
            "--tone".into(),
            "300".into(),
            "--duration".into(),
            "1".into(),
            "--linger-ms".into(),
            "1000".into(),
            "--tick-ms".into(),
            tick.into(),
        ]
    };
    let grid = args("20");
    let (ok, v) = sim(&grid.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(ok, "{v}");
    assert_eq!(
        (v["calls"].as_u64(), v["failed"].as_u64()),
        (Some(20), Some(0)),
        "{v}"
    );
    assert_eq!(v["echo_equal"], 20, "{v}");
    assert_eq!(v["frames_sent"], 20 * 50, "{v}");
    assert_eq!(v["lost_frames"], 0, "{v}");
    // A frame leaves at its tick, never before: with the calls' phases
    // spread over the grid (each starts when its connection is up), the
    // typical frame waits half a tick. Without the grid it would wait ~0.
    let late = v["sim_late_ms"]["p50"].as_f64().unwrap();
    assert!(late >= 2.0, "frames did not wait for their tick: {v}");

    // One call is not a load run: the grid is refused, not ignored.
    let argv = ["sim", &url, "--tick-ms", "1"];
    let one = SimCli::try_parse_from(argv)
        .map_err(|e| e.to_string())
        .unwrap();
    let refused = sim::run(&one.args, &mut Vec::new())
        .map(|_| ())
        .unwrap_err();
    assert!(refused.to_string().contains("--calls"), "{refused}");

    let too_coarse = args("21");
    let argv = ["sim"]
        .into_iter()
        .chain(too_coarse.iter().map(String::as_str));
    let Err(refused) = SimCli::try_parse_from(argv) else {
        panic!("a 21 ms tick is accepted");
    };
    assert!(refused.to_string().contains("--tick-ms"), "{refused}");
}

/// wss:// through a TLS front with a private CA.
#[test]
fn sim_and_check_over_tls_with_a_private_ca() {
    let srv = echo_server();
    let front = TlsFront::start(srv.addr);
    let ca = front.ca_file.to_str().unwrap().to_owned();
    let url = format!("wss://localhost:{}/ws/twilio-media", front.port);
    let (ok, v) = sim(&[
        &url,
        "--ca-file",
        &ca,
        "--token",
        TOKEN,
        "--public-url",
        STREAM,
        "--tone",
        "440",
        "--duration",
        "0.4",
    ]);
    assert!(ok, "{v}");
    assert_eq!(v["echo"], true, "{v}");

    let base = format!("https://localhost:{}", front.port);
    let (ok, outcomes, table) = check(&[
        &base,
        "--ca-file",
        &ca,
        "--token",
        TOKEN,
        "--public-url",
        PUBLIC,
    ]);
    assert!(ok, "{table}");
    assert!(
        outcomes.iter().all(|o| o.verdict == Verdict::Pass),
        "{table}"
    );

    // Without the CA the certificate is refused: no answer, named.
    let (ok, outcomes, table) = check(&[&base, "--token", TOKEN, "--public-url", PUBLIC]);
    assert!(!ok);
    assert!(
        outcomes.iter().all(|o| o.verdict == Verdict::Fail),
        "{table}"
    );
    assert!(
        table.contains("UnknownIssuer") || table.contains("certificate"),
        "{table}"
    );
}

#[test]
fn check_passes_against_our_server() {
    let srv = RunningServer::start(|_| {});
    let base = format!("http://{}", srv.addr);
    let (ok, outcomes, table) = check(&[&base, "--token", TOKEN, "--public-url", PUBLIC]);
    assert!(ok, "{table}");
    assert_eq!(outcomes.len(), 10, "{table}");
    assert!(
        outcomes.iter().all(|o| o.verdict == Verdict::Pass),
        "{table}"
    );
    assert!(
        table.ends_with("10 of 10 checks passed, 0 failed\n"),
        "{table}"
    );

    // Without a token: signatures on is a note, not a failure.
    let (ok, outcomes, table) = check(&[&base, "--public-url", PUBLIC]);
    assert!(ok, "{table}");
    let notes = outcomes
        .iter()
        .filter(|o| o.verdict == Verdict::Note)
        .count();
    assert_eq!(notes, 8, "{table}");
    assert!(table.contains("signatures on"), "{table}");

    // A wrong public URL: the TwiML points elsewhere and signed requests fail.
    let (ok, _, table) = check(&[
        &base,
        "--token",
        TOKEN,
        "--public-url",
        "https://other.test",
    ]);
    assert!(!ok);
    assert!(
        table.contains("Twilio error 31920") && table.contains("PUBLIC_BASE_URL"),
        "{table}"
    );
}

#[test]
fn check_accepts_unsigned_requests_only_as_a_failure() {
    let srv = RunningServer::start(|s| {
        s.auth_token = None;
        s.insecure_no_signatures = true;
    });
    let base = format!("http://{}", srv.addr);
    let (ok, outcomes, table) = check(&[&base, "--token", TOKEN, "--public-url", PUBLIC]);
    assert!(!ok, "{table}");
    let failed: Vec<_> = outcomes
        .iter()
        .filter(|o| o.verdict == Verdict::Fail)
        .collect();
    assert_eq!(failed.len(), 1, "{table}");
    assert_eq!(failed[0].name, "unsigned /webhook/incoming_call refused");
}

fn failures(outcomes: &[check::Outcome]) -> Vec<(String, Option<u16>)> {
    outcomes
        .iter()
        .filter(|o| o.verdict == Verdict::Fail)
        .map(|o| (o.name.clone(), o.twilio_error))
        .collect()
}

#[test]
fn check_names_a_redirecting_server() {
    let (outcomes, table) = check_fails_against(Broken::Redirect);
    let f = failures(&outcomes);
    assert_eq!(f.len(), 8, "{table}");
    assert!(
        f.iter()
            .filter(|(n, _)| n.starts_with("webhook"))
            .all(|(_, c)| *c == Some(11200)),
        "{table}"
    );
    assert!(
        f.iter()
            .filter(|(n, _)| n.starts_with("upgrade"))
            .all(|(_, c)| *c == Some(31920)),
        "{table}"
    );
    assert!(
        table.contains("308 redirect to https://elsewhere.test/ws/twilio-media/"),
        "{table}"
    );
    assert!(table.contains("Twilio follows no redirect"), "{table}");
}

#[test]
fn check_names_a_server_that_requires_a_subprotocol() {
    let (outcomes, table) = check_fails_against(Broken::RequiresSubprotocol);
    assert_eq!(
        failures(&outcomes),
        [
            ("upgrade /ws/twilio-media".to_owned(), Some(31920)),
            ("upgrade /ws/twilio-media/".to_owned(), Some(31920))
        ],
        "{table}"
    );
    assert!(table.contains("400, not 101"), "{table}");
    assert!(table.contains("without requiring a subprotocol"), "{table}");
}

#[test]
fn check_names_a_slow_server() {
    let (outcomes, table) = check_fails_against(Broken::Slow);
    let f = failures(&outcomes);
    assert_eq!(f.len(), 4, "{table}");
    assert!(
        f.iter()
            .all(|(n, c)| n.starts_with("webhook") && *c == Some(11205)),
        "{table}"
    );
    assert!(table.contains("slow"), "{table}");
}

#[test]
fn check_names_bad_twiml() {
    let (outcomes, table) = check_fails_against(Broken::BadTwiml);
    assert_eq!(
        failures(&outcomes),
        [(
            "TwiML /webhook/incoming_call_preview".to_owned(),
            Some(12100)
        )],
        "{table}"
    );
}

/// Splits a POSIX shell command of single-quoted words, as `sign` prints.
fn shell_words(cmd: &str) -> Vec<String> {
    let (mut words, mut cur, mut quoted, mut any) = (Vec::new(), String::new(), false, false);
    let mut chars = cmd.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                quoted = !quoted;
                any = true;
            }
            ' ' if !quoted => {
                if any {
                    words.push(std::mem::take(&mut cur));
                }
                any = false;
            }
            '\\' if !quoted => {
                cur.extend(chars.next());
                any = true;
            }
            c => {
                cur.push(c);
                any = true;
            }
        }
    }
    if any {
        words.push(cur);
    }
    words
}

/// The printed curl command, replayed by a Rust client, is accepted; the
/// same with one value changed is refused.
#[test]
fn sign_prints_a_curl_command_the_server_accepts() {
    let srv = RunningServer::start(|_| {});
    let url = format!("{PUBLIC}/webhook/incoming_call");
    let params: Vec<(String, String)> = [
        ("CallSid", "CA0123456789abcdef0123456789abcdef"),
        ("AccountSid", "AC0123456789abcdef0123456789abcdef"),
        ("From", "+14155550100"),
        ("Body", "it's & more"),
    ]
    .iter()
    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
    .collect();
    let signed = sign::sign(TOKEN, &url, &params);
    assert_eq!(
        signed.signature,
        callstream_core::signature::compute(TOKEN, &url, &params)
    );
    let words = shell_words(signed.curl.as_deref().unwrap());
    assert_eq!(&words[..3], ["curl", "-sS", "-i"]);
    let (mut headers, mut form, mut target) = (Vec::new(), Vec::new(), None);
    let mut it = words.iter().skip(3);
    while let Some(w) = it.next() {
        match w.as_str() {
            "-H" => headers.push(it.next().unwrap().clone()),
            "--data-urlencode" => {
                let (k, v) = it.next().unwrap().split_once('=').unwrap();
                form.push((k.to_owned(), v.to_owned()));
            }
            "-X" => assert_eq!(it.next().unwrap(), "POST"),
            u => target = Some(u.to_owned()),
        }
    }
    assert_eq!(target.as_deref(), Some(url.as_str()));
    let replay = |form: &[(String, String)]| {
        let pairs: Vec<(&str, &str)> = form.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let body = callstream_tests::form(&pairs);
        let req = format!(
            "POST /webhook/incoming_call HTTP/1.1\r\nHost: callstream.test\r\n{}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            headers.join("\r\n"),
            body.len()
        );
        http_raw(srv.addr, req.as_bytes()).unwrap()
    };
    let r = replay(&form);
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("<Connect"), "{}", r.body);
    let mut tampered = form.clone();
    tampered[2].1 = "+14155550101".into();
    assert_eq!(replay(&tampered).status, 403);
}

/// The printed wscat header opens the stream.
#[test]
fn sign_prints_a_wscat_header_the_server_accepts() {
    let srv = echo_server();
    let signed = sign::sign(TOKEN, STREAM, &[]);
    let words = shell_words(signed.wscat.as_deref().unwrap());
    assert_eq!(words[..3], ["wscat", "-c", STREAM]);
    assert_eq!(words[3], "-H");
    let (name, value) = words[4].split_once(':').unwrap();
    assert_eq!(name, "x-twilio-signature");
    // The simulator signs the same way; a different token does not open it.
    assert_eq!(
        value,
        callstream_twilio::signature::sign(TOKEN, STREAM, &[])
    );
    let url = ws(&srv);
    let (ok, v) = sim(&[
        &url,
        "--token",
        "wrong",
        "--public-url",
        STREAM,
        "--duration",
        "0.1",
    ]);
    assert!(!ok && v["failure"]["code"] == 31920, "{v}");
}
