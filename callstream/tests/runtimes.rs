//! Every runtime through the one binary: `--runtime` (or
//! `CALLSTREAM_RUNTIME`) chooses the pump, the boot record names it, and
//! each is held to the same boot, `/metrics` on a listener of its own, and
//! exit on SIGTERM. Without the setting the binary runs the platform's
//! default: io_uring on Linux, or epoll where io_uring is refused, saying so.
#[path = "support/binary.rs"]
mod binary;

use std::time::Duration;

const EXE: &str = env!("CARGO_BIN_EXE_callstream");

#[test]
fn every_runtime_boots_serves_metrics_apart_and_exits_on_sigterm() {
    for (runtime, extra, messages) in [
        ("epoll", None, &[][..]),
        (
            "uring",
            Some(("CALLSTREAM_URING_TICK_MS", "1")),
            &["each loop gathers completions for at least the tick"][..],
        ),
        ("smol", None, &[][..]),
        ("blocking", None, &[][..]),
    ] {
        let mut envs = vec![("CALLSTREAM_RUNTIME", runtime)];
        envs.extend(extra);
        binary::boots_serves_metrics_apart_and_exits_on_sigterm(EXE, &envs, messages);
    }
}

/// The runtime the boot record names, for a command line and environment,
/// and the messages logged before it.
fn boot(args: &[&str], envs: &[(&str, &str)]) -> (String, Vec<String>) {
    let mut command = binary::command(EXE, envs);
    command.args(args);
    let mut child = command.spawn().expect("spawn callstream");
    let lines = binary::lines(child.stderr.take().unwrap());
    let mut before = Vec::new();
    let runtime = loop {
        let line = lines
            .recv_timeout(Duration::from_secs(20))
            .expect("a boot line");
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        if v["message"] == "callstream starting" {
            break v;
        }
        before.push(v["message"].as_str().unwrap_or_default().to_owned());
    };
    // Answering: the signal handlers are in place.
    let bind: std::net::SocketAddr = runtime["bind"].as_str().unwrap().parse().unwrap();
    let health = binary::request(
        bind,
        "GET /healthz HTTP/1.1\r\nHost: x.test\r\nConnection: close\r\n\r\n",
    );
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    let runtime = runtime["runtime"].as_str().unwrap_or_default().to_owned();
    binary::sigterm(&child);
    assert!(binary::exit_within(&mut child, Duration::from_secs(20)).is_some_and(|s| s.success()));
    (runtime, before)
}

fn booted_runtime(args: &[&str], envs: &[(&str, &str)]) -> String {
    boot(args, envs).0
}

#[test]
fn the_flag_and_the_environment_choose_the_runtime_and_uring_is_the_default() {
    // io_uring, or epoll where this machine refuses it, said before the boot.
    let (default, before) = boot(&[], &[]);
    let refused = before
        .iter()
        .any(|m| m.starts_with("io_uring is not available here"));
    assert_eq!(
        default,
        if refused { "epoll" } else { "uring" },
        "{before:?}"
    );
    assert_eq!(booted_runtime(&["--runtime", "epoll"], &[]), "epoll");
    assert_eq!(booted_runtime(&["--runtime", "smol"], &[]), "smol");
    assert_eq!(
        booted_runtime(&[], &[("CALLSTREAM_RUNTIME", "blocking")]),
        "blocking"
    );
    // The flag wins over the environment, as for every setting.
    assert_eq!(
        booted_runtime(&["--runtime", "uring"], &[("CALLSTREAM_RUNTIME", "smol")]),
        "uring"
    );
}

#[test]
fn an_unknown_runtime_stops_the_boot_with_the_choices() {
    let out = binary::command(EXE, &[("CALLSTREAM_RUNTIME", "tokio")])
        .output()
        .expect("run callstream");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    for choice in ["epoll", "uring", "smol", "blocking"] {
        assert!(err.contains(choice), "{err}");
    }
}
