//! The listening socket and the process's file limit, set up once here for
//! every adapter (an adapter only wraps the `TcpListener` it gets).
//!
//! `TcpListener::bind` listens with a backlog of 128: a burst of calls (a
//! campaign, a reconnect storm after a deploy) overflows it, and the kernel
//! then drops SYNs, which clients retry only after a second or more. And a
//! soft `RLIMIT_NOFILE` of 1024 (a common default) caps the server near a
//! thousand connections whatever `MAX_CONNECTIONS` says; past it `accept`
//! fails with `EMFILE`.
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

/// The backlog asked for; the kernel caps it at `net.core.somaxconn`
/// (4096 by default since Linux 5.4).
pub const BACKLOG: i32 = 4096;

/// File descriptors kept for everything but connections (logs, recording
/// files, the listener, the runtime's own).
pub const RESERVED_FILES: u64 = 64;

/// The process's open-file limit, as found and as left.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileLimit {
    /// The soft limit when the process started.
    pub soft_before: u64,
    /// The soft limit now.
    pub soft: u64,
    /// The hard limit (the ceiling for the soft one).
    pub hard: u64,
}

static FILE_LIMIT: OnceLock<Option<FileLimit>> = OnceLock::new();

/// Raises the soft `RLIMIT_NOFILE` to the hard limit (once per process;
/// later calls return the first result). `None` where the limit cannot be
/// read.
pub fn raise_file_limit() -> Option<FileLimit> {
    *FILE_LIMIT.get_or_init(|| {
        let (soft_before, hard) = rlimit::getrlimit(rlimit::Resource::NOFILE).ok()?;
        let soft = if soft_before < hard {
            match rlimit::setrlimit(rlimit::Resource::NOFILE, hard, hard) {
                Ok(()) => hard,
                Err(_) => soft_before,
            }
        } else {
            soft_before
        };
        Some(FileLimit {
            soft_before,
            soft,
            hard,
        })
    })
}

/// How long an accept loop stops accepting after `accept` failed for the
/// listener's sake (out of descriptors, `EMFILE`/`ENFILE`; out of memory):
/// the listener stays readable while a caller waits in the backlog, so
/// trying again at once would spin a core, and would keep a loop that races
/// the listener against its shutdown from ever seeing the shutdown.
pub const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// At most one log line about failing accepts per this period: a server out
/// of descriptors fails twenty accepts a second per listening thread.
pub const ACCEPT_LOG_EVERY: Duration = Duration::from_secs(10);

/// An accept error that concerns the one connection, not the listener: try
/// the next at once, count nothing. Besides `EINTR` and a connection
/// aborted before it was taken (std's `Interrupted` and
/// `ConnectionAborted`), Linux's `accept(2)` passes the new socket's
/// pending network errors through (`EPROTO`, `ENETDOWN`, `EHOSTUNREACH`…)
/// and asks that they be treated like `EAGAIN`. Not `EOPNOTSUPP` nor
/// `EPERM`, which its list or a firewall may mean per connection: they also
/// come from a wrong socket or a seccomp rule, on every try, and retrying
/// those at once would spin.
#[must_use]
pub fn accept_error_is_transient(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::Interrupted | io::ErrorKind::ConnectionAborted
    ) || matches!(
        error.raw_os_error(),
        Some(
            libc::EPROTO
                | libc::ENETDOWN
                | libc::ENOPROTOOPT
                | libc::EHOSTDOWN
                | libc::ENONET
                | libc::EHOSTUNREACH
                | libc::ENETUNREACH
        )
    )
}

/// Failed accept calls (not callers: out of descriptors, a listener fails
/// on every try, a caller waiting or not), counted for `/metrics`
/// (`callstream_accept_failures_total`) and logged without flooding the
/// log: at most one line per [`ACCEPT_LOG_EVERY`], failures or the end of
/// them. A failure after a quiet period is logged at once; the end of a run
/// of failures when an accept succeeds at least that long after the last
/// line (at the limit, accepts fail and succeed by turns: each does not get
/// a line). Every listener of a server (each reactor's, the metrics
/// listener) reports here.
#[derive(Debug, Default)]
pub struct AcceptFailures {
    total: AtomicU64,
    /// A run of failures not yet told over: the one thing a successful
    /// accept reads. Written under `log`'s lock only.
    failing: AtomicBool,
    log: Mutex<AcceptLog>,
}

#[derive(Debug, Default)]
struct AcceptLog {
    /// When the last line was logged.
    last: Option<Instant>,
    /// Failures since then.
    unlogged: u64,
    /// The run of failures going on: when it began, how many so far.
    run: Option<(Instant, u64)>,
}

impl AcceptFailures {
    /// Counts a failed accept and logs it as the type says. The caller then
    /// stops accepting for [`ACCEPT_BACKOFF`].
    pub fn record(&self, error: &io::Error, now: Instant) {
        self.total.fetch_add(1, Ordering::Relaxed);
        let Some(failures) = self.due(now) else {
            return;
        };
        match error.raw_os_error() {
            Some(libc::EMFILE) => tracing::warn!(
                error = %error,
                failures,
                "accept failed: this process is out of file descriptors. Calls in progress go on; new connections wait in the listen backlog until one frees. Raise the open-file limit (ulimit -n, LimitNOFILE=) or lower MAX_CONNECTIONS"
            ),
            Some(libc::ENFILE) => tracing::warn!(
                error = %error,
                failures,
                "accept failed: the system is out of file descriptors (all processes together). Calls in progress go on; new connections wait in the listen backlog until one frees. Raise fs.file-max, or find what holds them"
            ),
            _ => tracing::warn!(
                error = %error,
                failures,
                backoff_ms = ACCEPT_BACKOFF.as_millis() as u64,
                "accept failed; pausing accepts"
            ),
        }
    }

    /// An accept succeeded: after a run of failures, says so once (when
    /// the limit on lines allows; else at a later accept), with how many
    /// failed and since when.
    pub fn accepted(&self) {
        if !self.failing.load(Ordering::Relaxed) {
            return;
        }
        if let Some((failures, lasted)) = self.recovered(Instant::now()) {
            tracing::info!(
                failures,
                since_first_s = lasted.as_secs_f64(),
                "accepting again after failed accepts"
            );
        }
    }

    /// Counts one failure toward the next line; `Some(failures)` when that
    /// line is due now, with the failures it covers (this one included).
    fn due(&self, now: Instant) -> Option<u64> {
        let mut log = self.log.lock().unwrap_or_else(PoisonError::into_inner);
        self.failing.store(true, Ordering::Relaxed);
        log.unlogged += 1;
        let run = log.run.get_or_insert((now, 0));
        run.1 += 1;
        let due = log
            .last
            .is_none_or(|last| now.saturating_duration_since(last) >= ACCEPT_LOG_EVERY);
        if !due {
            return None;
        }
        log.last = Some(now);
        Some(std::mem::take(&mut log.unlogged))
    }

    /// Ends the run of failures when a line is allowed now: `Some((failures,
    /// since its first))`, once. Else the run stays, to be told at a later
    /// accept.
    fn recovered(&self, now: Instant) -> Option<(u64, Duration)> {
        let mut log = self.log.lock().unwrap_or_else(PoisonError::into_inner);
        if log.run.is_some()
            && log
                .last
                .is_some_and(|last| now.saturating_duration_since(last) < ACCEPT_LOG_EVERY)
        {
            return None;
        }
        self.failing.store(false, Ordering::Relaxed);
        let (began, failures) = log.run.take()?;
        // This line covers the run; the next failure is counted from here.
        log.last = Some(now);
        log.unlogged = 0;
        Some((failures, now.saturating_duration_since(began)))
    }

    /// Failed accepts since the server started.
    #[must_use]
    pub fn total(&self) -> u64 {
        self.total.load(Ordering::Relaxed)
    }
}

/// Connects to the listener at `addr` (a [`wake_addr`]) so that an
/// `accept()` blocked on it returns; `true` when that connect went through
/// now. Should it fail otherwise than refused (out of descriptors or ports,
/// a backlog dropping connections), a thread of its own tries again every
/// [`ACCEPT_BACKOFF`] until it goes through, the listener is gone, or
/// `done()` says the accept loop has ended: a blocked `accept()` woken by
/// nothing else would wait for a caller that may never come.
pub fn wake_accept(addr: SocketAddr, done: impl Fn() -> bool + Send + 'static) -> bool {
    let connect = move || std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200));
    match connect() {
        Ok(_) => true,
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => false,
        Err(first) => {
            let retry = std::thread::Builder::new()
                .name("callstream-wake".into())
                .spawn(move || {
                    while !done() {
                        std::thread::sleep(ACCEPT_BACKOFF);
                        match connect() {
                            Err(e) if e.kind() != io::ErrorKind::ConnectionRefused => {}
                            _ => break,
                        }
                    }
                });
            if let Err(e) = retry {
                tracing::error!(
                    error = %first,
                    thread_error = %e,
                    "cannot wake the accept loop, nor start a thread to retry: it ends at the next connection"
                );
            }
            false
        }
    }
}

/// The process's open file descriptors (not counting the one that counts
/// them) and its soft limit, for `/metrics` (`process_open_fds`,
/// `process_max_fds`): an alert on their ratio fires before accepts fail.
/// `None` where `/proc/self/fd` or the limit cannot be read (and, out of
/// descriptors, the directory cannot be opened either).
#[must_use]
pub fn descriptors() -> Option<(u64, u64)> {
    let open = std::fs::read_dir("/proc/self/fd").ok()?.count() as u64;
    let (soft, _) = rlimit::getrlimit(rlimit::Resource::NOFILE).ok()?;
    Some((open.saturating_sub(1), soft))
}

/// The kernel's cap on listen backlogs (`/proc/sys/net/core/somaxconn`), where it can be read.
#[must_use]
pub fn somaxconn() -> Option<u32> {
    std::fs::read_to_string("/proc/sys/net/core/somaxconn")
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// The backlog the listener really gets: [`BACKLOG`] capped by [`somaxconn`].
#[must_use]
pub fn effective_backlog() -> u32 {
    let asked = BACKLOG.unsigned_abs();
    somaxconn().map_or(asked, |cap| asked.min(cap))
}

/// Binds `addr` and listens with [`BACKLOG`], after raising the file limit
/// ([`raise_file_limit`]). The listener is blocking; an async adapter makes
/// it non-blocking itself.
///
/// # Errors
///
/// Whatever creating, binding or listening on the socket returns.
pub fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    bind_with(addr, false)
}

/// Like [`bind`], for pumps with a listener per reactor: the socket shares
/// its port with the others (`SO_REUSEPORT`, so the kernel spreads accepts
/// across them) and is non-blocking.
///
/// # Errors
///
/// Whatever creating, binding or listening on the socket returns.
#[cfg(unix)]
pub fn bind_shared(addr: SocketAddr) -> io::Result<TcpListener> {
    bind_with(addr, true)
}

fn bind_with(addr: SocketAddr, shared: bool) -> io::Result<TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let _ = raise_file_limit();
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    // As `TcpListener::bind` does on Unix: a restart must not wait out
    // TIME_WAIT on the port.
    #[cfg(unix)]
    socket.set_reuse_address(true)?;
    #[cfg(unix)]
    if shared {
        socket.set_reuse_port(true)?;
        socket.set_nonblocking(true)?;
    }
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    Ok(socket.into())
}

/// Where to connect to reach a listener bound to `local` from this host
/// (to wake a thread blocked in its `accept`): `local` itself, or for an
/// unspecified address the loopback of the same family. `::` may be
/// IPv6-only (`net.ipv6.bindv6only`, or `IPV6_V6ONLY` set by whoever made
/// the socket), and then `127.0.0.1` does not reach it; `::1` always does.
#[must_use]
pub fn wake_addr(local: SocketAddr) -> SocketAddr {
    let mut wake = local;
    if wake.ip().is_unspecified() {
        wake.set_ip(match wake {
            SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    wake
}

/// Logs the listener's backlog and the file limit, and warns when
/// `max_connections` (plus recording files, two per call when `recording`)
/// cannot fit under the limit.
pub fn log_limits(max_connections: usize, recording: bool) {
    let backlog = effective_backlog();
    match raise_file_limit() {
        Some(l) => {
            tracing::info!(
                backlog,
                somaxconn = somaxconn().map_or(-1, i64::from),
                nofile_soft_at_start = l.soft_before,
                nofile_soft = l.soft,
                nofile_hard = l.hard,
                "listen backlog and open-file limit"
            );
            let per_connection = if recording { 2 } else { 1 };
            let fits = l.soft.saturating_sub(RESERVED_FILES) / per_connection;
            if u64::try_from(max_connections).unwrap_or(u64::MAX) > fits {
                tracing::warn!(
                    max_connections,
                    nofile_soft = l.soft,
                    nofile_hard = l.hard,
                    connections_that_fit = fits,
                    "MAX_CONNECTIONS is more than the open-file limit allows: accept will fail (EMFILE) first. Raise the hard limit (ulimit -Hn, LimitNOFILE=) or lower MAX_CONNECTIONS"
                );
            }
        }
        None => tracing::info!(backlog, "listen backlog (open-file limit unknown)"),
    }
    if backlog < BACKLOG.unsigned_abs() {
        tracing::info!(
            backlog,
            asked = BACKLOG,
            "net.core.somaxconn caps the listen backlog; raise it for bursts of calls"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_failures_are_all_counted_and_logged_once_per_period() {
        let f = AcceptFailures::default();
        let t0 = Instant::now();
        let step = ACCEPT_BACKOFF;
        // The first is logged at once, alone.
        assert_eq!(f.due(t0), Some(1));
        // Then one failure per back-off: silent until the period is over,
        // and that line covers every failure since the first.
        let per_period = (ACCEPT_LOG_EVERY.as_millis() / step.as_millis()) as u32;
        for k in 1..per_period {
            assert_eq!(f.due(t0 + step * k), None, "failure {k}");
        }
        assert_eq!(f.due(t0 + step * per_period), Some(u64::from(per_period)));
        // A failure long after starts over with a line of its own.
        assert_eq!(f.due(t0 + ACCEPT_LOG_EVERY * 5), Some(1));
        // `record` counts every one, logged or not.
        let e = io::Error::from_raw_os_error(libc::EMFILE);
        for k in 0..3 {
            f.record(&e, t0 + ACCEPT_LOG_EVERY * 5 + step * k);
        }
        assert_eq!(f.total(), 3);
    }

    #[test]
    fn the_end_of_a_run_of_failures_is_told_once_with_all_of_it() {
        let f = AcceptFailures::default();
        let t0 = Instant::now();
        // Nothing failed: nothing to tell.
        assert_eq!(f.recovered(t0), None);
        let e = io::Error::from_raw_os_error(libc::EMFILE);
        for k in 0..7 {
            f.record(&e, t0 + ACCEPT_BACKOFF * k);
        }
        // Too soon after the first failure's line: kept for later.
        assert_eq!(f.recovered(t0 + ACCEPT_BACKOFF * 7), None);
        assert!(f.failing.load(Ordering::Relaxed));
        // A period after it: all seven, though only the first was logged,
        // and since when; once.
        let end = t0 + ACCEPT_LOG_EVERY;
        assert_eq!(f.recovered(end), Some((7, ACCEPT_LOG_EVERY)));
        assert!(!f.failing.load(Ordering::Relaxed));
        assert_eq!(f.recovered(end), None);
        f.accepted();
        // That was a line: a failure right after waits for the period, and
        // failing and succeeding by turns never makes more than one line
        // per period.
        assert_eq!(f.due(end + ACCEPT_BACKOFF), None);
        assert_eq!(f.recovered(end + ACCEPT_BACKOFF * 2), None);
        assert_eq!(f.due(end + ACCEPT_LOG_EVERY), Some(2));
        assert_eq!(f.total(), 7);
    }

    #[test]
    fn per_connection_accept_errors_are_transient_and_exhaustion_is_not() {
        for errno in [
            libc::ECONNABORTED,
            libc::EINTR,
            libc::EPROTO,
            libc::ENETDOWN,
        ] {
            let e = io::Error::from_raw_os_error(errno);
            assert!(accept_error_is_transient(&e), "{errno}");
        }
        for errno in [
            libc::EMFILE,
            libc::ENFILE,
            libc::ENOBUFS,
            libc::ENOMEM,
            libc::EPERM,
            libc::EOPNOTSUPP,
        ] {
            let e = io::Error::from_raw_os_error(errno);
            assert!(!accept_error_is_transient(&e), "{errno}");
        }
    }

    #[test]
    fn a_wake_up_goes_through_or_finds_the_listener_gone() {
        use std::sync::Arc;
        // (Out of descriptors, the retry itself: tests/tests/*_descriptors.rs.)
        let l = bind(SocketAddr::from(([127, 0, 0, 1], 0))).unwrap();
        let addr = l.local_addr().unwrap();
        // Gone: refused, no retry, nothing woken.
        drop(l);
        let done = Arc::new(AtomicBool::new(false));
        let d = done.clone();
        assert!(!wake_accept(addr, move || d.load(Ordering::SeqCst)));
        // There: the connect goes through now.
        let l = bind(SocketAddr::from(([127, 0, 0, 1], 0))).unwrap();
        assert!(wake_accept(l.local_addr().unwrap(), || true));
        let (_s, peer) = l.accept().unwrap();
        assert!(peer.ip().is_loopback());
        done.store(true, Ordering::SeqCst);
    }

    #[test]
    fn the_soft_limit_is_raised_to_the_hard_one() {
        let l = raise_file_limit().expect("the limit is readable here");
        assert!(l.soft >= l.soft_before);
        assert_eq!(
            rlimit::getrlimit(rlimit::Resource::NOFILE).unwrap(),
            (l.soft, l.hard)
        );
    }

    /// Whether this machine has an IPv6 loopback to test on.
    fn ipv6_loopback() -> bool {
        TcpListener::bind("[::1]:0").is_ok()
    }

    #[test]
    fn an_ipv6_only_listener_is_woken_on_the_ipv6_loopback() {
        if !ipv6_loopback() {
            eprintln!("skipped: no IPv6 loopback on this machine");
            return;
        }
        use socket2::{Domain, Socket, Type};
        let socket = Socket::new(Domain::IPV6, Type::STREAM, None).unwrap();
        socket.set_only_v6(true).unwrap();
        socket
            .bind(&SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, 0)).into())
            .unwrap();
        socket.listen(8).unwrap();
        let l: TcpListener = socket.into();
        let local = l.local_addr().unwrap();
        let wake = wake_addr(local);
        assert_eq!(wake.ip(), std::net::Ipv6Addr::LOCALHOST);
        std::net::TcpStream::connect(wake).expect("the wake-up reaches the listener");
        let (_s, peer) = l.accept().unwrap();
        assert!(peer.ip().is_loopback());
        // What an IPv4 wake-up would have done: nothing listens there.
        let v4 = SocketAddr::from(([127, 0, 0, 1], local.port()));
        assert!(std::net::TcpStream::connect(v4).is_err());
        // Addresses that are not unspecified are reached as they are.
        let v4_any = SocketAddr::from(([0, 0, 0, 0], 9));
        assert_eq!(wake_addr(v4_any), SocketAddr::from(([127, 0, 0, 1], 9)));
        assert_eq!(wake_addr(wake), wake);
    }

    #[test]
    fn binds_an_ephemeral_port_and_accepts() {
        let l = bind(SocketAddr::from(([127, 0, 0, 1], 0))).unwrap();
        let addr = l.local_addr().unwrap();
        let _c = std::net::TcpStream::connect(addr).unwrap();
        let (_s, peer) = l.accept().unwrap();
        assert!(peer.ip().is_loopback());
    }
}
