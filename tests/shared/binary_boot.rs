//! A server binary booted as an operator runs it, shared by the adapters'
//! binary tests (each includes this file and names its own executable): the
//! boot record names the bound address, a line names where `/metrics` is
//! served when it has a listener of its own, both answer, and SIGTERM drains
//! and exits with status 0.
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Kills the server if the test fails before it exits.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs `exe` with `/metrics` on a listener of its own and `envs`, and
/// checks the boot, both listeners, a log line with each of `messages`
/// after the boot record, and the exit on SIGTERM.
pub fn boots_serves_metrics_apart_and_exits_on_sigterm(
    exe: &str,
    envs: &[(&str, &str)],
    messages: &[&str],
) {
    let mut command = Command::new(exe);
    command
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOST", "127.0.0.1")
        .env("PORT", "0")
        .env("LOG_FORMAT", "json")
        .env("METRICS", "127.0.0.1:0")
        .envs(envs.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut server = Server(command.spawn().expect("spawn the server"));
    let stderr = server.0.stderr.take().expect("stderr");
    let (tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let next = |wait: u64| -> Option<serde_json::Value> {
        let line = lines.recv_timeout(Duration::from_secs(wait)).ok()?;
        let v = serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        Some(v)
    };
    let address = |v: &serde_json::Value, field: &str| -> SocketAddr {
        v[field]
            .as_str()
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("{field}: {v}"))
    };
    let (mut bind, mut metrics, mut unseen) = (None, None, messages.to_vec());
    while bind.is_none() || metrics.is_none() || !unseen.is_empty() {
        let Some(v) = next(20) else {
            panic!("no log line in 20 s: bind {bind:?}, metrics {metrics:?}, unseen {unseen:?}");
        };
        let message = v["message"].as_str().unwrap_or_default();
        if message == "callstream starting" {
            bind = Some(address(&v, "bind"));
        } else if message.starts_with("/metrics is served on its own listener") {
            metrics = Some(address(&v, "metrics"));
        } else if bind.is_some() {
            unseen.retain(|m| !message.starts_with(m));
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
        .args(["-TERM", &server.0.id().to_string()])
        .status()
        .expect("kill");
    assert!(killed.success(), "kill -TERM failed");
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = server.0.try_wait().expect("wait") {
            break status;
        }
        assert!(Instant::now() < deadline, "no exit within 20 s of SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status}");
    let mut rest = Vec::new();
    while let Some(v) = next(2) {
        rest.push(v);
    }
    assert!(
        rest.iter().any(|v| v["message"] == "callstream stopped"),
        "{rest:?}"
    );
}
