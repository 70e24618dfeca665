//! Running a server binary as an operator runs it, for the binaries' own
//! tests (each crate includes this file and names its executable): the
//! command with a clean environment and JSON logs, the log read line by
//! line, requests, SIGTERM, the exit. [`boots_serves_metrics_apart_and_exits_on_sigterm`]
//! is the boot every server binary is held to.
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, ChildStderr, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// `exe` on an ephemeral port of 127.0.0.1, JSON logs on a piped stderr,
/// nothing from the test's environment but `PATH`, then `envs`.
pub fn command(exe: &str, envs: &[(&str, &str)]) -> Command {
    let mut command = Command::new(exe);
    command
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOST", "127.0.0.1")
        .env("PORT", "0")
        .env("LOG_FORMAT", "json")
        .envs(envs.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    command
}

/// The lines of `stderr`, as a thread reads them.
pub fn lines(stderr: impl std::io::Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    lines
}

/// The log lines still to come, each within 2 s of the last.
pub fn rest(lines: &mpsc::Receiver<String>) -> Vec<serde_json::Value> {
    let mut v = Vec::new();
    while let Ok(l) = lines.recv_timeout(Duration::from_secs(2)) {
        v.push(serde_json::from_str(&l).unwrap_or_else(|e| panic!("log line not JSON ({e}): {l}")));
    }
    v
}

/// Sends `raw` and reads the answer until the server closes.
pub fn request(addr: SocketAddr, raw: &str) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(raw.as_bytes()).unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

/// Sends SIGTERM, as a platform stopping the server does.
pub fn sigterm(child: &Child) {
    let ok = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill -TERM failed");
}

/// Waits for the child to exit, at most `limit`; kills it past that.
pub fn exit_within(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let until = Instant::now() + limit;
    while Instant::now() < until {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

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
    let mut command = command(exe, envs);
    command.env("METRICS", "127.0.0.1:0");
    let mut server = Server(command.spawn().expect("spawn the server"));
    let stderr: ChildStderr = server.0.stderr.take().expect("stderr");
    let lines = lines(stderr);
    let address = |v: &serde_json::Value, field: &str| -> SocketAddr {
        v[field]
            .as_str()
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("{field}: {v}"))
    };
    let (mut bind, mut metrics, mut unseen) = (None, None, messages.to_vec());
    while bind.is_none() || metrics.is_none() || !unseen.is_empty() {
        let Ok(line) = lines.recv_timeout(Duration::from_secs(20)) else {
            panic!("no log line in 20 s: bind {bind:?}, metrics {metrics:?}, unseen {unseen:?}");
        };
        let v: serde_json::Value =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        let message = v["message"].as_str().unwrap_or_default();
        if message == "callstream starting" {
            bind = Some(address(&v, "bind"));
        } else if message.starts_with("/metrics is served on its own listener") {
            metrics = Some(address(&v, "metrics"));
        } else if bind.is_some() {
            unseen.retain(|m| !message.starts_with(m));
        }
    }
    let get = |addr, path: &str| {
        request(
            addr,
            &format!("GET {path} HTTP/1.1\r\nHost: x.test\r\nConnection: close\r\n\r\n"),
        )
    };
    let (bind, metrics) = (bind.unwrap(), metrics.unwrap());
    let health = get(bind, "/healthz");
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    let text = get(metrics, "/metrics");
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.contains(r#"route="/healthz",status="200""#), "{text}");
    sigterm(&server.0);
    let status = exit_within(&mut server.0, Duration::from_secs(20))
        .expect("an exit within 20 s of SIGTERM");
    assert!(status.success(), "{status}");
    let rest = rest(&lines);
    assert!(
        rest.iter().any(|v| v["message"] == "callstream stopped"),
        "{rest:?}"
    );
}
