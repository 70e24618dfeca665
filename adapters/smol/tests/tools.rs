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
