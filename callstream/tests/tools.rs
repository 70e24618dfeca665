//! The binary's tool subcommands as an operator types them: `callstream
//! check`, `sim` and `sign` against `callstream serve`, exit codes included.
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

const TOKEN: &str = "binary-tools-token";
const PUBLIC: &str = "https://callstream.test";

struct Server(Child, String);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `callstream` (serving, echo handler, signatures on) on an ephemeral port.
fn serve() -> Server {
    let mut child = Command::new(env!("CARGO_BIN_EXE_callstream"))
        .env_clear()
        .envs([
            ("HOST", "127.0.0.1"),
            ("PORT", "0"),
            ("LOG_FORMAT", "json"),
            ("CALLSTREAM_HANDLER", "echo"),
            ("TWILIO_AUTH_TOKEN", TOKEN),
            ("PUBLIC_BASE_URL", PUBLIC),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn callstream");
    let mut boot = String::new();
    let stderr = child.stderr.take().expect("stderr");
    let mut reader = BufReader::new(stderr);
    reader.read_line(&mut boot).expect("a boot line");
    // Keep draining the log so the server never blocks on it.
    std::thread::spawn(move || for _ in reader.lines() {});
    let v: serde_json::Value = serde_json::from_str(&boot).expect("JSON boot line");
    let bind = v["bind"].as_str().expect("bind").to_owned();
    Server(child, bind)
}

fn tool(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_callstream"))
        .args(args)
        .env_remove("TWILIO_AUTH_TOKEN")
        .output()
        .expect("run callstream");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn check_sim_and_sign_through_the_binary() {
    let srv = serve();
    let base = format!("http://{}", srv.1);
    let (code, out) = tool(&[
        "check",
        &base,
        "--token",
        TOKEN,
        "--public-url",
        PUBLIC,
        "--json",
    ]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&out).unwrap()["ok"],
        true
    );
    // Signed with the wrong token: failures, exit code 1.
    let (code, out) = tool(&["check", &base, "--token", "wrong", "--public-url", PUBLIC]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("FAIL"), "{out}");

    let ws = format!("ws://{}/ws/twilio-media", srv.1);
    let stream = "wss://callstream.test/ws/twilio-media";
    let (code, out) = tool(&[
        "sim",
        &ws,
        "--token",
        TOKEN,
        "--public-url",
        stream,
        "--tone",
        "440",
        "--duration",
        "0.5",
        "--json",
    ]);
    assert_eq!(code, 0, "{out}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (v["echo"].as_bool(), v["frames_sent"].as_u64()),
        (Some(true), Some(25)),
        "{v}"
    );
    let (code, out) = tool(&["sim", &ws, "--duration", "0.1"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("Twilio error 31920"), "{out}");

    let (code, out) = tool(&[
        "sign",
        "--token",
        "12345",
        "--url",
        "https://mycompany.com/myapp.php?foo=1&bar=2",
        "CallSid=CA1234567890ABCDE",
        "Caller=+14158675309",
        "Digits=1234",
        "From=+14158675309",
        "To=+18005551212",
    ]);
    assert_eq!(code, 0);
    assert!(
        out.starts_with("X-Twilio-Signature: RSOYDt4T1cUTdK1PDd93/VVr8B8=\ncurl "),
        "{out}"
    );
    let (code, _) = tool(&["sign", "--url", "https://h/"]);
    assert_eq!(code, 2, "a missing --token is a usage error");
}

/// The program bridge through the real binary, as an operator runs it: the
/// dependency-free echo bot behind `--handler exec:`, and `callstream sim`
/// playing Twilio with committed speech. The caller's turn goes to the
/// program and its reply comes back as audio, paced and marked.
#[test]
fn the_bridge_through_the_binary_with_the_echo_bot() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let handler = format!("exec:sh {root}/examples/bots/echo/echo.sh");
    let mut child = Command::new(env!("CARGO_BIN_EXE_callstream"))
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs([
            ("HOST", "127.0.0.1"),
            ("PORT", "0"),
            ("LOG_FORMAT", "json"),
            ("CALLSTREAM_HANDLER", handler.as_str()),
            ("TWILIO_AUTH_TOKEN", TOKEN),
            ("PUBLIC_BASE_URL", PUBLIC),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn callstream");
    let mut reader = BufReader::new(child.stderr.take().expect("stderr"));
    let mut boot = String::new();
    reader.read_line(&mut boot).expect("a boot line");
    let (tx, log) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in reader.lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let srv = Server(child, {
        let v: serde_json::Value = serde_json::from_str(&boot).expect("JSON boot line");
        v["bind"].as_str().expect("bind").to_owned()
    });
    let ws = format!("ws://{}/ws/twilio-media", srv.1);
    let speech = format!("{root}/tests/fixtures/speech/test_call.ulaw");
    let (code, out) = tool(&[
        "sim",
        &ws,
        "--token",
        TOKEN,
        "--public-url",
        "wss://callstream.test/ws/twilio-media",
        "--audio",
        &speech,
        "--duration",
        "5",
        "--json",
    ]);
    assert_eq!(code, 0, "{out}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    // The echo bot plays each turn back: about as much audio as was spoken.
    let received = v["frames_received"].as_u64().unwrap_or(0);
    assert!(received >= 40, "{v}");
    assert!(v["turn_ms"].as_f64().is_some(), "{v}");
    assert!(v["marks_echoed"].as_u64().unwrap_or(0) >= 1, "{v}");
    assert!(v["warnings"].as_array().is_some_and(Vec::is_empty), "{v}");
    // The program was started for the call and ended with it.
    let mut lines = Vec::new();
    while !lines
        .iter()
        .any(|l: &String| l.contains("BRIDGE_EXEC ended"))
    {
        match log.recv_timeout(std::time::Duration::from_secs(10)) {
            Ok(line) => lines.push(line),
            Err(_) => break,
        }
    }
    drop(srv);
    for what in ["BRIDGE_EXEC started", "BRIDGE_EXEC ended"] {
        assert!(lines.iter().any(|l| l.contains(what)), "{what}: {lines:?}");
    }
}
