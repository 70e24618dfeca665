//! A bridged program that detaches a process of its own (a double fork and
//! `setsid`, as a daemon does) cannot make it outlive the call, nor make the
//! server keep a thread or a descriptor for it. A test binary of its own: it
//! counts the whole process's threads and descriptors.
use callstream_tests::*;
use std::path::Path;
use std::time::{Duration, Instant};

const CALLS: u32 = 10;
const PATIENCE: Duration = Duration::from_secs(20);

fn wait_for(f: impl FnMut() -> bool) -> bool {
    wait_until(PATIENCE, f)
}

/// This process's threads that serve bridged programs.
fn bridge_threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .filter(|comm| {
            ["bridge", "bridge-stdin", "bridge-stdout", "bridge-stderr"].contains(&comm.trim_end())
        })
        .count()
}

fn descriptors() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

/// Whether process `pid` exists at all (a zombie counts: nobody reaped it).
fn exists(pid: &str) -> bool {
    Path::new(&format!("/proc/{}", pid.trim())).exists()
}

#[test]
fn a_process_a_program_detaches_ends_with_its_call_and_holds_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("bot.sh");
    // The escapee writes its pid, leaves the program's session and group,
    // and holds the program's standard streams while it sleeps; its parent
    // subshell exits at once, so it is an orphan.
    std::fs::write(
        &script,
        format!(
            "( setsid sh -c 'echo $$ > \"$1\"; exec sleep 300' sh '{}/escaped.'\"$CALLSTREAM_CALL_SID\" & )\n\
             cat > /dev/null\n",
            dir.path().display()
        ),
    )
    .unwrap();
    let handler = format!("exec:sh '{}'", script.display());
    let srv = RunningServer::start(|s| s.handler = handler.parse().expect("handler"));
    // A call first, so that everything a bridged call sets up once (the
    // log, the metrics) is counted in the baseline.
    let mut warm = TwilioStream::connect(srv.addr, &StreamOpts::default(), 100).unwrap();
    warm.start(&[]).unwrap();
    let warm_pid = dir.path().join(format!("escaped.{}", warm.call_sid));
    assert!(wait_for(|| warm_pid.exists()));
    warm.stop().unwrap();
    assert!(
        wait_for(|| bridge_threads() == 0),
        "{} bridge threads",
        bridge_threads()
    );
    let (threads, fds) = (bridge_threads(), descriptors());

    let mut calls: Vec<TwilioStream> = (1..=CALLS)
        .map(|n| {
            let mut t = TwilioStream::connect(srv.addr, &StreamOpts::default(), n).unwrap();
            t.start(&[]).unwrap();
            t
        })
        .collect();
    let pids: Vec<String> = calls
        .iter()
        .map(|t| {
            let file = dir.path().join(format!("escaped.{}", t.call_sid));
            assert!(wait_for(
                || std::fs::read_to_string(&file).is_ok_and(|p| p.ends_with('\n'))
            ));
            std::fs::read_to_string(&file).unwrap()
        })
        .collect();
    // While its call lives, the escapee is left alone.
    assert!(
        pids.iter().all(|p| exists(p)),
        "an escapee died before its call ended"
    );
    for t in &mut calls {
        t.stop().unwrap();
    }
    for pid in &pids {
        assert!(
            wait_for(|| !exists(pid)),
            "escaped process {} outlived its call",
            pid.trim()
        );
    }
    assert!(
        wait_for(|| bridge_threads() == threads),
        "{} bridge threads left, {threads} before the calls",
        bridge_threads()
    );
    // The test's own client sockets are not the server's.
    drop(calls);
    assert!(
        wait_for(|| descriptors() <= fds),
        "{} descriptors open, {fds} before the calls",
        descriptors()
    );
    let warm_pid = std::fs::read_to_string(&warm_pid).unwrap();
    assert!(!exists(&warm_pid), "the first call's escapee outlived it");
    srv.stop().unwrap();
}

/// A helper the program orphans (its parent subshell exits at once) that
/// then exits by itself during the call is a zombie of the server's: it is
/// reaped with the call, by its process group (a zombie has no environment
/// left to read a mark from), not left to fill the process table.
#[test]
fn an_orphaned_helper_that_exits_by_itself_is_reaped() {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("bot.sh");
    std::fs::write(
        &script,
        format!(
            "( sh -c 'echo $$ > \"$1\"; sleep 0.2' sh '{}/helper.'\"$CALLSTREAM_CALL_SID\" & )\n\
             cat > /dev/null\n",
            dir.path().display()
        ),
    )
    .unwrap();
    let handler = format!("exec:sh '{}'", script.display());
    let srv = RunningServer::start(|s| s.handler = handler.parse().expect("handler"));
    let mut call = TwilioStream::connect(srv.addr, &StreamOpts::default(), 300).unwrap();
    call.start(&[]).unwrap();
    let file = dir.path().join(format!("helper.{}", call.call_sid));
    assert!(wait_for(
        || std::fs::read_to_string(&file).is_ok_and(|p| p.ends_with('\n'))
    ));
    let pid = std::fs::read_to_string(&file).unwrap();
    // The helper has exited (a zombie now, ours to reap) before the call ends.
    assert!(wait_for(|| {
        std::fs::read_to_string(format!("/proc/{}/stat", pid.trim())).map_or(true, |s| {
            s.rsplit_once(')')
                .is_some_and(|(_, r)| r.trim_start().starts_with('Z'))
        })
    }));
    call.stop().unwrap();
    assert!(
        wait_for(|| !exists(&pid)),
        "helper {} left a zombie",
        pid.trim()
    );
    srv.stop().unwrap();
}

/// The program's standard streams are pipes: a shell bot may write
/// through `/dev/stdout` and `/dev/stderr` (which cannot be opened on a
/// socket) as it would anywhere.
#[test]
fn a_program_may_write_through_dev_stdout() {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("bot.sh");
    std::fs::write(
        &script,
        "echo starting > /dev/stderr\n\
         printf '%s\\n' '{\"type\":\"mark\",\"name\":\"via-dev-stdout\"}' > /dev/stdout\n\
         cat > /dev/null\n",
    )
    .unwrap();
    let handler = format!("exec:sh '{}'", script.display());
    let srv = RunningServer::start(|s| s.handler = handler.parse().expect("handler"));
    let mut call = TwilioStream::connect(srv.addr, &StreamOpts::default(), 400).unwrap();
    call.start(&[]).unwrap();
    let mut got = Vec::new();
    let mark = ServerMessage::Mark("via-dev-stdout".into());
    let until = Instant::now() + PATIENCE;
    while !got.contains(&mark) && Instant::now() < until {
        call.read_until(Instant::now() + Duration::from_millis(100), &mut got)
            .unwrap();
    }
    assert!(got.contains(&mark), "{got:?}");
    call.stop().unwrap();
    srv.stop().unwrap();
}
