//! The exec transport: one process per call, `sh -c <command>`, JSON lines
//! on its stdin and stdout, its stderr lines in the log.
//!
//! Four threads per call, none of them the pump's: a writer (the link's
//! outbox to stdin), a reader (stdout lines, bounded by [`MAX_LINE`], applied
//! to the call), a stderr reader (lines to the log) and a supervisor that
//! owns the process. The program runs in its own process group, so the
//! supervisor's signals reach whatever `sh -c` started too. When the call
//! ends (or the bridge fails) the program gets `stop` and end of input, then
//! [`GRACE`] to exit, then SIGTERM, then [`GRACE`] more, then SIGKILL; after
//! the program exits, whatever it left in its group is killed, and the
//! process is reaped; then whatever it left outside its group (a `setsid`
//! daemon) is found and killed too ([`super::reaper`]). [`Children`] lists
//! the live programs so that a server shutdown can wait for them and kill
//! what is left.
//!
//! The stream threads read and write through [`cancel`](super::cancel):
//! once the program is reaped they are told to stop, and end at once even
//! while an escaped process still holds the program's ends. No thread or
//! descriptor of the server waits on it.
use std::collections::HashSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, killpg};
use nix::sys::wait::{Id, WaitPidFlag, WaitStatus, waitid};
use nix::unistd::Pid;

use super::cancel::{self, Reader, Writer};
use super::link::{Link, STDERR_TAIL, cut};
use super::reaper;

/// Longest line a program may write (a `play` of about 8 minutes at 16 kHz);
/// a longer one is a failure.
pub const MAX_LINE: usize = 16 * 1024 * 1024;
/// Longest stderr line logged whole (the rest of the line is cut).
pub const MAX_STDERR_LINE: usize = 4096;
/// Most stderr lines logged per call; the rest are counted.
pub const MAX_STDERR_LINES: u64 = 10_000;
/// How long a program has to exit after its end of input, and again after
/// SIGTERM.
pub const GRACE: Duration = Duration::from_secs(1);
/// How often the supervisor looks at its process.
const POLL: Duration = Duration::from_millis(50);

/// The live programs of a server, by process group.
#[derive(Default)]
pub struct Children {
    live: Mutex<HashSet<i32>>,
    changed: Condvar,
}

impl std::fmt::Debug for Children {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Children")
            .field("live", &self.count())
            .finish()
    }
}

impl Children {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashSet<i32>> {
        self.live.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn add(&self, pgid: i32) {
        self.lock().insert(pgid);
    }

    fn remove(&self, pgid: i32) {
        self.lock().remove(&pgid);
        self.changed.notify_all();
    }

    /// Programs running (or not yet reaped) now.
    #[must_use]
    pub fn count(&self) -> usize {
        self.lock().len()
    }

    /// Waits until every program is reaped, or `deadline`; `true` when none is left.
    pub fn wait_all(&self, deadline: Instant) -> bool {
        let mut live = self.lock();
        loop {
            if live.is_empty() {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            live = self
                .changed
                .wait_timeout(live, deadline - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// SIGKILLs every program's group (their supervisors then reap them).
    pub fn kill_all(&self) {
        for &pgid in self.lock().iter() {
            let _ = killpg(Pid::from_raw(pgid), Signal::SIGKILL);
        }
    }
}

/// The environment name of a custom parameter: upper-cased, every character
/// that is not an ASCII letter or digit written `_`.
#[must_use]
pub fn param_env_name(name: &str) -> String {
    let mut s = String::from("CALLSTREAM_PARAM_");
    s.extend(name.chars().map(|c| {
        if c.is_ascii_alphanumeric() {
            c.to_ascii_uppercase()
        } else {
            '_'
        }
    }));
    s
}

/// The server's secrets, kept from the programs it starts: a program that
/// needs Twilio's API gets its own credentials through its own variable.
pub const SECRET_ENV: [&str; 5] = [
    "TWILIO_AUTH_TOKEN",
    "TWILIO_AUTH_TOKEN_SECONDARY",
    "TWILIO_WEBHOOK_SHARED_KEY",
    "TWILIO_WEBHOOK_SHARED_KEY_SECONDARY",
    "CALLSTREAM_BRIDGE_WS_BEARER",
];

/// The facts a program is started with.
pub struct Facts<'a> {
    /// `CA…`
    pub call_sid: &'a str,
    /// `MZ…`
    pub stream_sid: &'a str,
    /// `AC…`
    pub account_sid: &'a str,
    /// Custom parameters.
    pub parameters: &'a [(String, String)],
}

/// Starts `command` for the call and runs its supervisor; returns when the
/// program is reaped. Run it on its own thread.
pub fn run(command: &str, facts: &Facts<'_>, link: Arc<Link>, children: Arc<Children>) {
    let sid = link.call_sid.clone();
    // However the bridge was made: processes the program detaches must come
    // back to this process to be ended with the call.
    reaper::become_subreaper();
    let (stop, canceller) = match cancel::cancel() {
        Ok(c) => c,
        Err(e) => {
            link.fail(&format!("cannot make the program's standard streams: {e}"));
            return;
        }
    };
    // Started and registered under the registry's lock: a sweep never sees
    // the new process unregistered.
    let id = reaper::next_id();
    let spawned = {
        let mut live = reaper::live();
        let spawned = program(command, facts, id).spawn();
        if let Ok(child) = &spawned {
            live.add(child.id() as i32, id);
        }
        spawned
    };
    let mut child = match spawned {
        Ok(c) => c,
        Err(e) => {
            link.fail(&format!("cannot start `sh -c {command}`: {e}"));
            return;
        }
    };
    let pid = child.id() as i32;
    children.add(pid);
    tracing::info!(call_sid = %sid, pid, command = %cut(command), "BRIDGE_EXEC started");
    let threads = [
        child
            .stdin
            .take()
            .and_then(|stdin| Writer::new(stdin, stop.clone()).ok())
            .and_then(|stdin| {
                spawn("bridge-stdin", {
                    let l = link.clone();
                    move || write_loop(stdin, &l)
                })
            }),
        child.stdout.take().and_then(|out| {
            let out = Reader::new(out, stop.clone());
            spawn("bridge-stdout", {
                let l = link.clone();
                move || read_loop(out, &l)
            })
        }),
        child.stderr.take().and_then(|err| {
            let err = Reader::new(err, stop.clone());
            spawn("bridge-stderr", {
                let l = link.clone();
                move || stderr_loop(err, &l)
            })
        }),
    ];
    if threads.iter().any(Option::is_none) {
        // The streams are always there: a missing thread is the system's refusal.
        link.fail("cannot start the bridge's threads");
    }
    supervise(&mut child, pid, &link);
    reaper::live().remove(pid, id);
    children.remove(pid);
    // What the program left outside its group goes with it too.
    reaper::sweep();
    // The threads end now, whoever still holds the program's ends: what it
    // wrote before it exited is still read; then end of input.
    drop(canceller);
    for t in threads.into_iter().flatten() {
        let _ = t.join();
    }
}

/// The program's command: `sh -c`, its streams, its own process group, its
/// mark, and the server's environment with the call's facts and without
/// its secrets.
fn program(command: &str, facts: &Facts<'_>, id: u64) -> Command {
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(command)
        .env("CALLSTREAM_CALL_SID", facts.call_sid)
        .env("CALLSTREAM_STREAM_SID", facts.stream_sid)
        .env("CALLSTREAM_ACCOUNT_SID", facts.account_sid)
        .env(reaper::PROGRAM_ID_ENV, id.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in facts.parameters {
        // A value with a NUL cannot be in an environment: left out.
        if !v.contains('\0') {
            cmd.env(param_env_name(k), v);
        }
    }
    for k in SECRET_ENV {
        cmd.env_remove(k);
    }
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    cmd
}

/// Starts a pipe's thread; `None` when the system has no thread to give.
fn spawn(name: &str, f: impl FnOnce() + Send + 'static) -> Option<std::thread::JoinHandle<()>> {
    // The default stack (2 MiB) is reserved, not used: small stacks keep a
    // thousand calls' address space modest. JSON nesting is limited by
    // serde_json (128 levels), far below this.
    match std::thread::Builder::new()
        .name(name.to_owned())
        .stack_size(256 * 1024)
        .spawn(f)
    {
        Ok(h) => Some(h),
        // Out of threads: that pipe goes unserved, but the supervisor still
        // runs (the program then looks hung, is ended with the call and is
        // reaped). Trying another thread here would panic, and the program
        // would never be reaped.
        Err(e) => {
            tracing::error!(error = %e, "cannot start a bridge thread");
            None
        }
    }
}

/// Waits for the program to exit, ending it once the call is over; kills
/// what is left of its group, reaps it and logs how it went.
fn supervise(child: &mut Child, pid: i32, link: &Link) {
    let group = Pid::from_raw(pid);
    let mut ended_at: Option<Instant> = None;
    let mut termed = false;
    let mut killed = false;
    // WNOWAIT: the zombie keeps the group's id ours until it is reaped.
    while let Ok(WaitStatus::StillAlive) = waitid(
        Id::Pid(group),
        WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG | WaitPidFlag::WNOWAIT,
    ) {
        if ended_at.is_none() && link.outbox.is_closed() {
            ended_at = Some(Instant::now());
        }
        if let Some(t) = ended_at {
            let waited = t.elapsed();
            if !termed && waited >= GRACE {
                termed = true;
                tracing::warn!(call_sid = %link.call_sid, pid, "BRIDGE_EXEC still running after the call: SIGTERM");
                let _ = killpg(group, Signal::SIGTERM);
            }
            if !killed && waited >= GRACE * 2 {
                killed = true;
                tracing::warn!(call_sid = %link.call_sid, pid, "BRIDGE_EXEC still running after SIGTERM: SIGKILL");
                let _ = killpg(group, Signal::SIGKILL);
            }
        }
        std::thread::sleep(POLL);
    }
    // Anything the program started and left behind goes with it.
    let _ = killpg(group, Signal::SIGKILL);
    let status = child.wait();
    let how = match &status {
        Ok(s) => s.to_string(),
        Err(e) => format!("cannot be reaped: {e}"),
    };
    if link.expects_end() {
        tracing::info!(call_sid = %link.call_sid, pid, status = %how, "BRIDGE_EXEC ended");
    } else {
        tracing::warn!(call_sid = %link.call_sid, pid, status = %how, "BRIDGE_EXEC ended before the call");
    }
    link.gone(&format!("the program exited ({how})"));
}

fn write_loop(mut stdin: impl Write, link: &Link) {
    while let Ok(next) = link.outbox.pop(None) {
        let Some(o) = next else { continue };
        let (mut line, utterance_at) = link.line_for(o);
        line.push('\n');
        if stdin
            .write_all(line.as_bytes())
            .and_then(|()| stdin.flush())
            .is_err()
        {
            // The program closed its input or died: its exit is the news.
            return;
        }
        if let Some(at) = utterance_at {
            link.utterance_written(at);
        }
    }
    // Dropping stdin is the program's end of input.
}

/// What reading one bounded line found.
pub enum LineRead {
    /// A line (its newline removed) is in the buffer.
    Line,
    /// End of input (a last line without newline is in the buffer, if any).
    Eof,
    /// A line longer than the limit.
    TooLong,
}

/// Reads one line of at most `limit` bytes into `buf` (cleared first),
/// without ever holding more than `limit` bytes.
pub fn read_line_limited<R: BufRead>(
    r: &mut R,
    buf: &mut Vec<u8>,
    limit: usize,
) -> std::io::Result<LineRead> {
    buf.clear();
    loop {
        let available = match r.fill_buf() {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if available.is_empty() {
            return Ok(LineRead::Eof);
        }
        let (chunk, found) = match available.iter().position(|&b| b == b'\n') {
            Some(i) => (&available[..i], Some(i + 1)),
            None => (available, None),
        };
        if buf.len() + chunk.len() > limit {
            return Ok(LineRead::TooLong);
        }
        buf.extend_from_slice(chunk);
        let used = found.unwrap_or(chunk.len());
        r.consume(used);
        if found.is_some() {
            return Ok(LineRead::Line);
        }
    }
}

/// Skips to just past the next newline, holding nothing but the reader's
/// own buffer (a program may write an endless run without one); `Ok(true)`
/// when a newline was found, `Ok(false)` at end of input.
pub fn skip_line<R: BufRead>(r: &mut R) -> std::io::Result<bool> {
    loop {
        let available = match r.fill_buf() {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if available.is_empty() {
            return Ok(false);
        }
        match available.iter().position(|&b| b == b'\n') {
            Some(i) => {
                r.consume(i + 1);
                return Ok(true);
            }
            None => {
                let n = available.len();
                r.consume(n);
            }
        }
    }
}

fn read_loop(out: impl Read, link: &Link) {
    let mut r = BufReader::with_capacity(64 * 1024, out);
    let mut buf = Vec::new();
    loop {
        match read_line_limited(&mut r, &mut buf, MAX_LINE) {
            Ok(LineRead::Line) => link.handle_line(&buf),
            Ok(LineRead::Eof) => {
                if !buf.is_empty() {
                    link.handle_line(&buf);
                }
                link.gone("it closed its output");
                return;
            }
            Ok(LineRead::TooLong) => {
                link.fail(&format!("a line longer than {MAX_LINE} bytes"));
                return;
            }
            Err(e) => {
                link.gone(&format!("reading its output failed: {e}"));
                return;
            }
        }
        if buf.capacity() > 1024 * 1024 {
            // One long play must not pin 16 MiB for the rest of the call.
            buf = Vec::new();
        }
    }
}

fn stderr_loop(err: impl Read, link: &Link) {
    let mut r = BufReader::new(err);
    let mut buf = Vec::new();
    let mut lines = 0u64;
    loop {
        let end = match read_line_limited(&mut r, &mut buf, MAX_STDERR_LINE) {
            Ok(LineRead::Line) => false,
            Ok(LineRead::Eof) => true,
            Ok(LineRead::TooLong) => {
                // Log the first part, then skip to the end of the line.
                matches!(skip_line(&mut r), Ok(false) | Err(_))
            }
            Err(_) => true,
        };
        if !buf.is_empty() {
            let line = String::from_utf8_lossy(&buf).into_owned();
            lines += 1;
            if lines <= MAX_STDERR_LINES {
                tracing::info!(call_sid = %link.call_sid, line = %line, "BRIDGE_STDERR");
            } else if lines == MAX_STDERR_LINES + 1 {
                tracing::warn!(call_sid = %link.call_sid, "BRIDGE_STDERR too many lines: the rest of this call's are not logged");
            }
            let mut tail = link.stderr_tail.lock().unwrap_or_else(|p| p.into_inner());
            if tail.len() == STDERR_TAIL {
                tail.pop_front();
            }
            tail.push_back(line);
        }
        if end {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameter_names_become_environment_names() {
        assert_eq!(param_env_name("call_sid"), "CALLSTREAM_PARAM_CALL_SID");
        assert_eq!(param_env_name("x-tenant"), "CALLSTREAM_PARAM_X_TENANT");
        assert_eq!(param_env_name("From"), "CALLSTREAM_PARAM_FROM");
        assert_eq!(param_env_name("é1"), "CALLSTREAM_PARAM__1");
    }

    #[test]
    fn skipping_a_line_stops_past_its_newline_or_at_the_end() {
        let data = b"aaaaaaaaaaaaaaaaaaaa\nnext\nlast";
        let mut r = BufReader::with_capacity(4, &data[..]);
        assert!(skip_line(&mut r).unwrap());
        let mut buf = Vec::new();
        assert!(matches!(
            read_line_limited(&mut r, &mut buf, 10).unwrap(),
            LineRead::Line
        ));
        assert_eq!(buf, b"next");
        assert!(!skip_line(&mut r).unwrap());
        assert!(!skip_line(&mut r).unwrap());
    }

    #[test]
    fn programs_get_the_call_facts_but_not_the_servers_secrets() {
        // Through the command the program is started with (setting the
        // test process's own environment would race the other tests).
        let params = [("x-tenant".to_owned(), "acme".to_owned())];
        let facts = Facts {
            call_sid: "CA1",
            stream_sid: "MZ1",
            account_sid: "AC1",
            parameters: &params,
        };
        let cmd = program("true", &facts, 5);
        let envs: Vec<(String, Option<String>)> = cmd
            .get_envs()
            .map(|(k, v)| {
                (
                    k.to_string_lossy().into_owned(),
                    v.map(|v| v.to_string_lossy().into_owned()),
                )
            })
            .collect();
        for secret in SECRET_ENV {
            assert!(
                envs.contains(&(secret.to_owned(), None)),
                "{secret} is passed on: {envs:?}"
            );
        }
        assert!(envs.contains(&("CALLSTREAM_CALL_SID".to_owned(), Some("CA1".to_owned()))));
        assert!(envs.contains(&(
            "CALLSTREAM_PARAM_X_TENANT".to_owned(),
            Some("acme".to_owned())
        )));
    }

    #[test]
    fn lines_are_bounded() {
        let data = b"short\nexactly10\nthis one is too long\nlast";
        let mut r = BufReader::with_capacity(4, &data[..]);
        let mut buf = Vec::new();
        assert!(matches!(
            read_line_limited(&mut r, &mut buf, 10).unwrap(),
            LineRead::Line
        ));
        assert_eq!(buf, b"short");
        assert!(matches!(
            read_line_limited(&mut r, &mut buf, 10).unwrap(),
            LineRead::Line
        ));
        assert_eq!(buf, b"exactly10");
        assert!(matches!(
            read_line_limited(&mut r, &mut buf, 10).unwrap(),
            LineRead::TooLong
        ));
        assert!(buf.len() <= 10);
        let mut r = BufReader::new(&b"last"[..]);
        assert!(matches!(
            read_line_limited(&mut r, &mut buf, 10).unwrap(),
            LineRead::Eof
        ));
        assert_eq!(buf, b"last");
    }
}
