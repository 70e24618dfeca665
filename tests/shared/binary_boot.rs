//! A server binary booted as an operator runs it, shared by the adapters'
//! binary tests (each includes this file and names its own executable): the
//! boot record names the bound address, a line names where `/metrics` is
//! served when it has a listener of its own, both answer, and SIGTERM drains
//! and exits with status 0.
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Runs `exe` with `/metrics` on a listener of its own and checks the boot,
/// both listeners and the exit.
pub fn boots_serves_metrics_apart_and_exits_on_sigterm(exe: &str) {
    let mut child = Command::new(exe)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOST", "127.0.0.1")
        .env("PORT", "0")
        .env("LOG_FORMAT", "json")
        .env("METRICS", "127.0.0.1:0")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the server");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let next = || -> serde_json::Value {
        let line = lines
            .recv_timeout(Duration::from_secs(20))
            .expect("a log line");
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"))
    };
    let address = |v: &serde_json::Value, field: &str| -> SocketAddr {
        v[field]
            .as_str()
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("{field}: {v}"))
    };
    let (mut bind, mut metrics) = (None, None);
    while bind.is_none() || metrics.is_none() {
        let v = next();
        let message = v["message"].as_str().unwrap_or_default();
        if message == "callstream starting" {
            bind = Some(address(&v, "bind"));
        } else if message.starts_with("/metrics is served on its own listener") {
            metrics = Some(address(&v, "metrics"));
        }
    }
    let get = |addr: SocketAddr, path: &str| {
        let mut s = TcpStream::connect(addr).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: x.test\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        out
    };
    let (bind, metrics) = (bind.unwrap(), metrics.unwrap());
    let health = get(bind, "/healthz");
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    let text = get(metrics, "/metrics");
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.contains(r#"route="/healthz",status="200""#), "{text}");
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(killed.success(), "kill -TERM failed");
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        assert!(Instant::now() < deadline, "no exit within 20 s of SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status}");
    // The process is gone: its log ends, and the reading thread with it.
    let rest: Vec<String> = lines.iter().collect();
    assert!(
        rest.iter().any(|l| l.contains("callstream stopped")),
        "{rest:?}"
    );
}
