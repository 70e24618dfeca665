//! The `callstream` binary as an operator runs it: boot log, JSON logs,
//! secure defaults, and a clean exit on SIGTERM.
#[path = "support/binary.rs"]
mod binary;

use binary::{exit_within, request, rest, sigterm};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Child;
use std::sync::mpsc;
use std::time::Duration;

const EXE: &str = env!("CARGO_BIN_EXE_callstream");

struct Running {
    child: Child,
    addr: SocketAddr,
    lines: mpsc::Receiver<String>,
}

/// Starts the binary on an ephemeral port and reads the bound address from
/// its boot log.
fn start(envs: &[(&str, &str)]) -> Running {
    let (child, addr, stderr) = start_raw(envs);
    let lines = binary::lines(stderr);
    Running { child, addr, lines }
}

/// Like [`start`], allowing up to `before` log lines ahead of the boot line
/// (warnings about the settings), which are returned.
fn start_after(envs: &[(&str, &str)], before: usize) -> (Running, Vec<serde_json::Value>) {
    let mut child = binary::command(EXE, envs)
        .spawn()
        .expect("spawn callstream");
    let lines = binary::lines(child.stderr.take().unwrap());
    let mut earlier = Vec::new();
    let (boot, v) = loop {
        let boot = lines
            .recv_timeout(Duration::from_secs(20))
            .expect("a boot log line");
        let v: serde_json::Value =
            serde_json::from_str(&boot).unwrap_or_else(|e| panic!("not JSON ({e}): {boot}"));
        if earlier.len() == before || v["message"] == "callstream starting" {
            break (boot, v);
        }
        earlier.push(v);
    };
    assert_eq!(v["severity"], "INFO", "{boot}");
    assert_eq!(v["message"], "callstream starting", "{boot}");
    assert_eq!(v["version"], env!("CARGO_PKG_VERSION"), "{boot}");
    let addr = v["bind"]
        .as_str()
        .expect("bind field")
        .parse()
        .expect("an address");
    (Running { child, addr, lines }, earlier)
}

#[test]
fn no_token_starts_secure_and_sigterm_exits_cleanly() {
    let mut r = start(&[]);
    let health = request(
        r.addr,
        "GET /healthz HTTP/1.1\r\nHost: x.test\r\nConnection: close\r\n\r\n",
    );
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    // No token: a signed route is refused rather than served unchecked.
    let body = "CallSid=CA0123456789abcdef0123456789abcdef";
    let hook = request(
        r.addr,
        &format!(
            "POST /webhook/incoming_call HTTP/1.1\r\nHost: x.test\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ),
    );
    assert!(hook.starts_with("HTTP/1.1 403"), "{hook}");
    sigterm(&r.child);
    let status = r.child.wait().unwrap();
    assert!(status.success(), "exit status {status:?}");
    let logs = rest(&r.lines);
    assert!(
        logs.iter().any(|l| l["severity"] == "WARNING"
            && l["message"]
                .as_str()
                .unwrap_or("")
                .contains("no TWILIO_AUTH_TOKEN")),
        "{logs:?}"
    );
    assert!(
        logs.iter().any(|l| l["message"] == "callstream stopped"),
        "{logs:?}"
    );
}

#[test]
fn the_token_never_reaches_the_log() {
    let token = "s3cr3t-token-value-never-logged";
    let mut r = start(&[("TWILIO_AUTH_TOKEN", token), ("RUST_LOG", "debug")]);
    let body = "CallSid=CA0123456789abcdef0123456789abcdef";
    let hook = request(
        r.addr,
        &format!(
            "POST /webhook/call_status HTTP/1.1\r\nHost: x.test\r\nX-Twilio-Signature: bm90IGEgcmVhbCBzaWduYXR1cmU=\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ),
    );
    assert!(hook.starts_with("HTTP/1.1 403"), "{hook}");
    sigterm(&r.child);
    assert!(r.child.wait().unwrap().success());
    let logs = rest(&r.lines);
    let all = logs
        .iter()
        .map(|l| l.to_string())
        .collect::<Vec<_>>()
        .join("\n");
    assert!(all.contains("X-Twilio-Signature did not match"), "{all}");
    assert!(!all.contains(token), "the token was logged");
    assert!(
        !all.contains("bm90IGEgcmVhbCBzaWduYXR1cmU="),
        "the signature was logged"
    );
}

/// Starts the binary with stderr piped and returns once its boot line is
/// read; the caller owns the pipe's read end.
fn start_raw(envs: &[(&str, &str)]) -> (Child, SocketAddr, BufReader<std::process::ChildStderr>) {
    let mut child = binary::command(EXE, envs)
        .spawn()
        .expect("spawn callstream");
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let mut boot = String::new();
    err.read_line(&mut boot).unwrap();
    let v: serde_json::Value =
        serde_json::from_str(&boot).unwrap_or_else(|e| panic!("not JSON ({e}): {boot}"));
    assert_eq!(v["severity"], "INFO", "{boot}");
    assert_eq!(v["message"], "callstream starting", "{boot}");
    assert_eq!(v["version"], env!("CARGO_PKG_VERSION"), "{boot}");
    let addr = v["bind"]
        .as_str()
        .expect("bind field")
        .parse()
        .expect("an address");
    (child, addr, err)
}

#[test]
fn a_closed_log_pipe_neither_stalls_requests_nor_swallows_sigterm() {
    // `callstream 2>&1 | head -1`: the reader goes away after one line.
    let (mut child, addr, err) = start_raw(&[("DRAIN_SECONDS", "2")]);
    drop(err);
    let body = "CallSid=CA0123456789abcdef0123456789abcdef";
    // Each of these logs a warning (403, no token) into the closed pipe.
    for _ in 0..200 {
        let hook = request(
            addr,
            &format!(
                "POST /webhook/call_status HTTP/1.1\r\nHost: x.test\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            ),
        );
        assert!(hook.starts_with("HTTP/1.1 403"), "{hook}");
    }
    let metrics = request(
        addr,
        "GET /metrics HTTP/1.1\r\nHost: x.test\r\nConnection: close\r\n\r\n",
    );
    let dropped: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("callstream_log_lines_dropped_total "))
        .and_then(|n| n.trim().parse().ok())
        .expect("the dropped-lines counter");
    assert!(dropped > 0, "{metrics}");
    sigterm(&child);
    let status = exit_within(&mut child, Duration::from_secs(10)).expect("exited after SIGTERM");
    assert!(status.success(), "{status:?}");
}

#[test]
fn shutdown_ends_within_the_drain_period_with_a_partial_request_pending() {
    let (mut child, addr, err) = start_raw(&[("DRAIN_SECONDS", "3")]);
    // Keep reading the log so that nothing else is in play.
    std::thread::spawn(move || for _ in err.lines() {});
    // A request head that never completes (its own timeout is far away).
    let mut partial = TcpStream::connect(addr).unwrap();
    partial
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x.te")
        .unwrap();
    std::thread::sleep(Duration::from_millis(100));
    let asked = std::time::Instant::now();
    sigterm(&child);
    let status = exit_within(&mut child, Duration::from_secs(10)).expect("exited");
    let took = asked.elapsed();
    assert!(status.success(), "{status:?}");
    // Cloud Run kills at the end of its grace period: the process must be
    // gone by the end of DRAIN_SECONDS, not after it.
    assert!(took < Duration::from_secs(3), "exit took {took:?}");
    drop(partial);
}

/// Runs the binary with settings it must refuse: returns its exit status
/// and its log lines.
fn refused(envs: &[(&str, &str)]) -> (std::process::ExitStatus, Vec<serde_json::Value>) {
    let mut child = binary::command(EXE, envs)
        .spawn()
        .expect("spawn callstream");
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    let status = exit_within(&mut child, Duration::from_secs(10)).expect("it exits by itself");
    let lines = err
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    (status, lines)
}

/// Environment variables for one run.
type Envs<'a> = &'a [(&'a str, &'a str)];

#[test]
fn settings_that_would_break_every_call_stop_the_boot() {
    let secret = "s3cr3t-value-never-logged";
    let cases: [(Envs, &[&str]); 5] = [
        (
            &[("TWILIO_AUTH_TOKEN", " \n")],
            &["TWILIO_AUTH_TOKEN", "empty or only whitespace"],
        ),
        (
            &[
                ("TWILIO_AUTH_TOKEN", "tok"),
                ("TWILIO_AUTH_TOKEN_SECONDARY", "\t"),
            ],
            &["TWILIO_AUTH_TOKEN_SECONDARY", "empty or only whitespace"],
        ),
        (
            &[
                ("TWILIO_AUTH_TOKEN", "tok"),
                ("PUBLIC_BASE_URL", "http://voice.example.com"),
            ],
            &["PUBLIC_BASE_URL", "wss://"],
        ),
        (
            &[("TWILIO_WEBHOOK_SHARED_KEY", secret)],
            &["TWILIO_WEBHOOK_SHARED_KEY", "<keyId>:<secret>"],
        ),
        (
            &[(
                "TWILIO_WEBHOOK_SHARED_KEY_SECONDARY",
                "webhooks_sharedkey_2: \n",
            )],
            &[
                "TWILIO_WEBHOOK_SHARED_KEY_SECONDARY",
                "empty or only whitespace",
            ],
        ),
    ];
    for (envs, says) in cases {
        let (status, logs) = refused(envs);
        assert_eq!(status.code(), Some(1), "{envs:?}: {logs:?}");
        let error = logs
            .iter()
            .find(|l| l["severity"] == "ERROR")
            .unwrap_or_else(|| panic!("{envs:?}: no error line in {logs:?}"));
        let text = error.to_string();
        for s in says {
            assert!(text.contains(s), "{envs:?}: {s:?} missing from {text}");
        }
        assert!(!text.contains(secret), "a secret was logged: {text}");
        assert!(
            !logs.iter().any(|l| l["message"] == "callstream starting"),
            "{envs:?} must not get as far as starting: {logs:?}"
        );
    }
    // The insecure local mode may use http://, loudly.
    let (mut r, earlier) = start_after(
        &[
            ("PUBLIC_BASE_URL", "http://voice.example.com"),
            ("CALLSTREAM_INSECURE_NO_SIGNATURES", "1"),
        ],
        1,
    );
    assert!(
        earlier.iter().any(|l| l["severity"] == "WARNING"
            && l["message"].as_str().unwrap_or("").contains("http://")),
        "{earlier:?}"
    );
    // Answered means running, so the signal handler is in place.
    let health = request(
        r.addr,
        "GET /healthz HTTP/1.1\r\nHost: x.test\r\nConnection: close\r\n\r\n",
    );
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    sigterm(&r.child);
    assert!(r.child.wait().unwrap().success());
}

#[test]
fn a_token_stored_with_a_trailing_newline_still_verifies_real_requests() {
    // What `echo tok | gcloud secrets create` stores.
    let token = "f00dfeedf00dfeedf00dfeedf00dfeed";
    let stored = format!("{token}\n");
    let (mut r, earlier) = start_after(
        &[
            ("TWILIO_AUTH_TOKEN", stored.as_str()),
            ("PUBLIC_BASE_URL", "https://voice.example.com"),
        ],
        1,
    );
    let warning = earlier
        .iter()
        .find(|l| l["severity"] == "WARNING")
        .unwrap_or_else(|| panic!("no warning before boot: {earlier:?}"));
    assert_eq!(warning["setting"], "TWILIO_AUTH_TOKEN", "{warning}");
    assert!(!warning.to_string().contains(token), "the token was logged");
    let params = [
        ("AccountSid", "AC0123456789abcdef0123456789abcdef"),
        ("CallSid", "CA0123456789abcdef0123456789abcdef"),
        ("CallStatus", "completed"),
    ];
    let sig = callstream_core::signature::compute(
        token,
        "https://voice.example.com/webhook/call_status",
        &params,
    );
    let body = params
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&");
    let hook = request(
        r.addr,
        &format!(
            "POST /webhook/call_status HTTP/1.1\r\nHost: voice.example.com\r\nX-Twilio-Signature: {sig}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ),
    );
    assert!(hook.starts_with("HTTP/1.1 204"), "{hook}");
    sigterm(&r.child);
    assert!(r.child.wait().unwrap().success());
    let logs = rest(&r.lines);
    assert!(
        !logs.iter().any(|l| l.to_string().contains(token)),
        "the token was logged"
    );
}

/// The error the binary logged before exiting.
fn failure(lines: &[serde_json::Value]) -> String {
    lines
        .iter()
        .find(|l| l["severity"] == "ERROR" && l["message"] == "callstream failed")
        .and_then(|l| l["error"].as_str())
        .unwrap_or_else(|| panic!("no failure logged: {lines:?}"))
        .to_owned()
}

#[test]
fn a_port_in_use_is_named_with_the_setting_that_moves_it() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let port = addr.port().to_string();
    let (status, lines) = refused(&[("PORT", &port)]);
    assert_eq!(status.code(), Some(1), "{lines:?}");
    let error = failure(&lines);
    assert!(
        error.contains(&format!("cannot listen on {addr}")),
        "{error}"
    );
    assert!(error.contains("set PORT to a free port"), "{error}");
    drop(taken);
}

#[test]
fn a_missing_recordings_dir_fails_the_boot() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("not-there");
    let (status, lines) = refused(&[("RECORDINGS_DIR", missing.to_str().unwrap())]);
    assert_eq!(status.code(), Some(1), "{lines:?}");
    let error = failure(&lines);
    assert!(
        error.contains(&format!("recordings directory {}", missing.display())),
        "{error}"
    );
}

#[test]
fn a_greeting_language_that_is_no_tag_fails_the_boot() {
    let (status, lines) = refused(&[("GREETING", "Hello"), ("GREETING_LANGUAGE", "English")]);
    assert_eq!(status.code(), Some(1), "{lines:?}");
    let error = failure(&lines);
    assert!(error.contains("GREETING_LANGUAGE \"English\""), "{error}");
    let (status, lines) = refused(&[("GREETING", "Hello"), ("GREETING_VOICE", "Polly Joanna")]);
    assert_eq!(status.code(), Some(1), "{lines:?}");
    assert!(failure(&lines).contains("GREETING_VOICE"), "{lines:?}");
}

#[test]
fn the_greeting_speaks_in_the_configured_language_and_voice() {
    let mut r = start(&[
        ("GREETING", "Shalom"),
        ("GREETING_LANGUAGE", "he-IL"),
        ("GREETING_VOICE", "Google.he-IL-Standard-A"),
    ]);
    let preview = request(
        r.addr,
        "GET /webhook/incoming_call_preview HTTP/1.1\r\nHost: x.test\r\nConnection: close\r\n\r\n",
    );
    assert!(
        preview.contains(r#"<Say language="he-IL" voice="Google.he-IL-Standard-A">Shalom</Say>"#),
        "{preview}"
    );
    sigterm(&r.child);
    assert!(r.child.wait().unwrap().success());
}

#[test]
fn host_may_be_a_name() {
    let mut r = start(&[("HOST", "localhost")]);
    assert!(r.addr.ip().is_loopback(), "{}", r.addr);
    let health = request(
        r.addr,
        "GET /healthz HTTP/1.1\r\nHost: x.test\r\nConnection: close\r\n\r\n",
    );
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    sigterm(&r.child);
    assert!(r.child.wait().unwrap().success());
}

const GET_METRICS: &str = "GET /metrics HTTP/1.1\r\nHost: x.test\r\nConnection: close\r\n\r\n";

#[test]
fn metrics_can_be_off() {
    let mut r = start(&[("METRICS", "off")]);
    assert!(request(r.addr, GET_METRICS).starts_with("HTTP/1.1 404"));
    sigterm(&r.child);
    assert!(r.child.wait().unwrap().success());
}

#[test]
fn metrics_can_have_a_listener_of_their_own() {
    let mut r = start(&[("METRICS", "127.0.0.1:0")]);
    // A boot line names the metrics listener's address.
    let metrics: SocketAddr = loop {
        let line = r
            .lines
            .recv_timeout(Duration::from_secs(20))
            .expect("a log line naming the metrics address");
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        if let Some(a) = v["metrics"].as_str().and_then(|a| a.parse().ok()) {
            break a;
        }
    };
    assert!(request(r.addr, GET_METRICS).starts_with("HTTP/1.1 404"));
    let text = request(metrics, GET_METRICS);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(
        text.contains("callstream_log_lines_dropped_total "),
        "{text}"
    );
    // The public port's requests are counted there.
    assert!(text.contains(r#"route="/metrics",status="404""#), "{text}");
    sigterm(&r.child);
    assert!(r.child.wait().unwrap().success());
}

/// Resident memory of a process, in KiB.
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// A measurement (run on purpose, numbers in BENCHMARKS.md): 1,500
/// connections park request bodies before any signature is checked, then go
/// away; the memory they held goes back to the OS within the trim period.
#[test]
#[ignore = "a memory measurement of about 20 s; run on purpose"]
fn memory_held_by_parked_bodies_is_returned_after_they_close() {
    let (mut child, addr, err) = start_raw(&[
        ("MAX_CONNECTIONS", "4000"),
        ("MAX_PENDING_CONNECTIONS", "4000"),
        ("REQUEST_MEMORY_MIB", "512"),
        ("DRAIN_SECONDS", "2"),
    ]);
    std::thread::spawn(move || for _ in err.lines() {});
    std::thread::sleep(Duration::from_millis(300));
    let before = rss_kib(child.id());
    let body = vec![b'a'; 60_000];
    let mut parked = Vec::new();
    for _ in 0..1500 {
        let mut s = TcpStream::connect(addr).unwrap();
        s.write_all(
            b"POST /webhook/call_status HTTP/1.1\r\nHost: x.test\r\n\
              Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 80000\r\n\r\n",
        )
        .unwrap();
        s.write_all(&body).unwrap();
        parked.push(s);
    }
    std::thread::sleep(Duration::from_secs(1));
    let peak = rss_kib(child.id());
    drop(parked);
    // The trim runs every 10 s.
    std::thread::sleep(Duration::from_secs(12));
    let after = rss_kib(child.id());
    eprintln!("RSS KiB: before {before}, peak {peak}, after close {after}");
    sigterm(&child);
    let _ = exit_within(&mut child, Duration::from_secs(10));
    assert!(
        peak > before + 16_000,
        "the bodies were held: {before} → {peak}"
    );
    assert!(
        after < before + (peak - before) / 2,
        "memory came back: before {before}, peak {peak}, after {after}"
    );
}

/// A masked client text frame (RFC 6455 §5.3), for the tests that speak
/// WebSocket by hand.
fn masked_text(text: &str) -> Vec<u8> {
    let mask = [0x11, 0x22, 0x33, 0x44];
    let mut f = vec![0x81];
    let n = text.len();
    if n < 126 {
        f.push(0x80 | n as u8);
    } else {
        f.push(0x80 | 126);
        f.extend_from_slice(&(n as u16).to_be_bytes());
    }
    f.extend_from_slice(&mask);
    f.extend(text.bytes().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    f
}

#[test]
fn shutdown_ends_within_the_drain_period_when_a_call_ignores_the_close() {
    let (mut child, addr, err) = start_raw(&[
        ("DRAIN_SECONDS", "3"),
        ("CALLSTREAM_INSECURE_NO_SIGNATURES", "1"),
        ("CALLSTREAM_HANDLER", "silent"),
    ]);
    std::thread::spawn(move || for _ in err.lines() {});
    let mut call = TcpStream::connect(addr).unwrap();
    call.write_all(
        b"GET /ws/twilio-media HTTP/1.1\r\nHost: x.test\r\nConnection: Upgrade\r\n\
          Upgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
          Sec-WebSocket-Version: 13\r\n\r\n",
    )
    .unwrap();
    let sid = "MZ18ad3ab5a668481ce02b83e7395059f0";
    let start = format!(
        r#"{{"event":"start","sequenceNumber":"1","streamSid":"{sid}","start":{{"accountSid":"AC11111111111111111111111111111111","streamSid":"{sid}","callSid":"CA33333333333333333333333333333333","tracks":["inbound"],"customParameters":{{}},"mediaFormat":{{"encoding":"audio/x-mulaw","sampleRate":8000,"channels":1}}}}}}"#
    );
    call.write_all(&masked_text(&start)).unwrap();
    // The call is live; the peer will never answer the server's close.
    std::thread::sleep(Duration::from_millis(300));
    let asked = std::time::Instant::now();
    sigterm(&child);
    let status = exit_within(&mut child, Duration::from_secs(10)).expect("exited");
    let took = asked.elapsed();
    assert!(status.success(), "{status:?}");
    assert!(took < Duration::from_secs(3), "exit took {took:?}");
    drop(call);
}

#[test]
fn boots_serves_metrics_apart_and_exits_on_sigterm() {
    binary::boots_serves_metrics_apart_and_exits_on_sigterm(EXE, &[], &[]);
}

/// The default text log keeps one line per event whatever a caller or a bot
/// puts in it: a `start` parameter (sent by `callstream sim` as Twilio sends
/// it, from the TwiML-side `<Parameter>`), a bot's `log` and `transcript`
/// text and its stderr, each carrying a newline, a carriage return or an
/// escape sequence, come out escaped inside their own line, and no forged
/// line appears.
#[test]
fn text_logs_keep_one_line_per_event_whatever_callers_and_bots_send() {
    const TOKEN: &str = "text-log-token";
    let forged = "2026-12-07T00:00:00.000000Z  INFO forged WS_STOP call_sid=CAfake";
    let dir = tempfile::tempdir().unwrap();
    let bot = dir.path().join("bot.sh");
    std::fs::write(
        &bot,
        format!(
            "printf 'stderr\\r\\033[2Jcleared\\n' >&2\n\
             printf '%s\\n' '{{\"type\":\"log\",\"message\":\"bot\\n{forged}\"}}'\n\
             printf '%s\\n' '{{\"type\":\"transcript\",\"text\":\"heard\\r{forged}\"}}'\n\
             cat >/dev/null\n"
        ),
    )
    .unwrap();
    let handler = format!("exec:sh {}", bot.display());
    let mut command = binary::command(
        EXE,
        &[
            ("CALLSTREAM_HANDLER", handler.as_str()),
            ("TWILIO_AUTH_TOKEN", TOKEN),
            ("PUBLIC_BASE_URL", "https://callstream.test"),
        ],
    );
    command.env("LOG_FORMAT", "text");
    let mut child = command.spawn().expect("spawn callstream");
    let lines = binary::lines(child.stderr.take().unwrap());
    let boot = lines
        .recv_timeout(Duration::from_secs(20))
        .expect("a boot line");
    let bind = boot
        .split(' ')
        .find_map(|w| w.strip_prefix("bind="))
        .unwrap_or_else(|| panic!("no bind in {boot}"))
        .to_owned();
    let sim = std::process::Command::new(EXE)
        .args([
            "sim",
            &format!("ws://{bind}/ws/twilio-media"),
            "--token",
            TOKEN,
            "--public-url",
            "wss://callstream.test/ws/twilio-media",
            "--param",
            &format!("note=hello\n{forged}"),
            "--tone",
            "440",
            "--duration",
            "1",
        ])
        .output()
        .unwrap();
    assert!(sim.status.success(), "{sim:?}");
    sigterm(&child);
    assert!(exit_within(&mut child, Duration::from_secs(10)).is_some_and(|s| s.success()));
    let mut all = vec![boot];
    while let Ok(l) = lines.recv_timeout(Duration::from_secs(2)) {
        all.push(l);
    }
    // Every line is a record of its own: time, level, target.
    for l in &all {
        let (time, rest) = l.split_once(' ').unwrap_or_default();
        let level = rest.trim_start().split(' ').next().unwrap_or_default();
        assert!(
            time.len() > 20
                && time.starts_with("20")
                && time.ends_with('Z')
                && ["TRACE", "DEBUG", "INFO", "WARN", "ERROR"].contains(&level),
            "not a record of its own: {l:?}\n{all:#?}"
        );
        assert!(!l.contains('\r') && !l.contains('\u{1b}'), "{l:?}");
    }
    let escaped = format!("\\n{forged}");
    let found =
        |marker: &str, needle: &str| all.iter().any(|l| l.contains(marker) && l.contains(needle));
    assert!(found("WS_START", &escaped), "{all:#?}");
    assert!(found("BRIDGE_LOG", &escaped), "{all:#?}");
    assert!(found("ASR_TEXT", &format!("\\r{forged}")), "{all:#?}");
    assert!(
        found("BRIDGE_STDERR", "stderr\\r\\u{1b}[2Jcleared"),
        "{all:#?}"
    );
}

#[test]
fn a_bridged_programs_log_transcript_and_reply_lines_reach_the_log_with_their_text() {
    // What a program writes for the log comes out as a field of its own
    // (`text`), beside the call SID, in the JSON log an operator reads.
    let program = r#"exec:printf '%s\n' '{"type":"log","level":"warn","message":"hello from the bot"}' '{"type":"transcript","text":"what time is it"}' '{"type":"reply","text":"It is noon."}'; cat >/dev/null"#;
    let mut r = start(&[
        ("CALLSTREAM_HANDLER", program),
        ("CALLSTREAM_INSECURE_NO_SIGNATURES", "1"),
    ]);
    let sim = std::process::Command::new(EXE)
        .args(["sim", &format!("ws://{}/ws/twilio-media", r.addr)])
        .args(["--tone", "440", "--tone-seconds", "0.5", "--duration", "1"])
        .output()
        .expect("callstream sim");
    assert!(
        sim.status.success(),
        "{}",
        String::from_utf8_lossy(&sim.stderr)
    );
    sigterm(&r.child);
    assert!(r.child.wait().unwrap().success());
    let logs = rest(&r.lines);
    let find = |message: &str| {
        logs.iter()
            .find(|l| l["message"] == message)
            .unwrap_or_else(|| panic!("no {message} in {logs:?}"))
            .clone()
    };
    let log = find("BRIDGE_LOG");
    assert_eq!(log["severity"], "WARNING", "{log}");
    assert_eq!(log["text"], "hello from the bot", "{log}");
    assert!(
        log["call_sid"]
            .as_str()
            .is_some_and(|s| s.starts_with("CA")),
        "{log}"
    );
    assert_eq!(find("ASR_TEXT")["text"], "what time is it");
    assert_eq!(find("TTS_TEXT")["text"], "It is noon.");
}
