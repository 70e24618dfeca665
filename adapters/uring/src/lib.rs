//! # callstream-uring
//!
//! callstream's server on one io_uring per core, built to spend fewer system
//! calls per media frame than a readiness loop can. Each reactor thread owns
//! the connections it accepted and drives their server-layer
//! [`Driver`](callstream_server::Driver)s, like the epoll adapter; settings,
//! logs, metrics, recordings and the shutdown policy live in
//! `callstream-server`, protocol decisions in `callstream-core`, so it
//! behaves like the other servers, and the conformance tests run against it.
//!
//! What differs is how bytes move:
//!
//! - **Receiving**: one multishot receive per connection stays armed; the
//!   kernel picks a buffer from a ring of provided buffers
//!   (`IORING_REGISTER_PBUF_RING`) for each arrival and posts a completion.
//!   No system call per frame.
//! - **Sending**: the loop collects the output of every connection it
//!   touched and submits all the sends at once, in the same
//!   `io_uring_enter` that waits for the next completions. The bytes in
//!   flight are a copy held by the ring until their completion.
//! - **Timers**: the earliest engine deadline is the timeout of that wait.
//! - **Batching** ([`UringOptions::tick`], `CALLSTREAM_URING_TICK_MS`): the
//!   wait lasts at least the tick while completions gather (the kernel's
//!   `min_wait_usec`, Linux 6.12), so each iteration serves more frames for
//!   one wake-up and one system call, and echoes leave up to a tick later.
//!   Default 0: no added latency.
//! - **Listeners**: one per reactor (SO_REUSEPORT), with a multishot accept
//!   on its own and a multishot readiness poll on the others', so a reactor
//!   stuck in a handler strands no new caller: another accepts for it.
//! - **Remote control**: a handler's thread queues the connection and writes
//!   the reactor's eventfd, which the ring is reading.
//!
//! The kernel's view of memory (buffers it reads or fills after the
//! submitting call returned) is kept in one module, `ring`, the only one
//! with unsafe code.
//!
//! ```no_run
//! use callstream_server::config::Cli;
//! use clap::Parser;
//! callstream_uring::run(Cli::parse().settings()).unwrap();
//! ```
#![deny(unsafe_code)]
#![warn(missing_docs)]

mod backend;
#[allow(unsafe_code)]
mod ring;

pub use backend::Uring;
use callstream_server::config::Settings;
use callstream_server::reactor::Reactors;
pub use callstream_server::reactor::ShutdownHandle;
use std::io;
use std::time::Duration;

/// A bound server of io_uring reactors, ready to run.
pub type UringServer = Reactors<Uring>;

/// The environment variable that sets the tick, in milliseconds.
pub const TICK_ENV: &str = "CALLSTREAM_URING_TICK_MS";
/// The environment variable that sets the receive buffers per reactor
/// ([`UringOptions::receive_buffers`]).
pub const BUFFERS_ENV: &str = "CALLSTREAM_URING_BUFFERS";
/// The longest tick accepted: a frame's period. A tick waits that long
/// before an echo can leave, on top of the network.
pub const MAX_TICK: Duration = Duration::from_millis(20);

/// What only the io_uring server has to set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UringOptions {
    /// Each loop waits at least this long (at most [`MAX_TICK`]) for
    /// completions to gather, unless an engine deadline comes first. Zero
    /// (the default) waits only for the first.
    pub tick: Duration,
    /// Receive buffers of 2 KiB each reactor provides to the kernel
    /// (default 2048: 4 MiB), rounded up to a power of two, 1 to 32768.
    /// When all hold bytes not yet taken, a connection's receive pauses
    /// until the loop gives some back; fewer cost less memory and more
    /// loops under a burst.
    pub receive_buffers: u16,
}

impl Default for UringOptions {
    fn default() -> UringOptions {
        UringOptions {
            tick: Duration::ZERO,
            receive_buffers: ring::BUF_COUNT,
        }
    }
}

impl UringOptions {
    /// The options [`TICK_ENV`] and [`BUFFERS_ENV`] name (see
    /// [`tick_from_env`] and [`buffers_from_env`]), the defaults where
    /// unset.
    pub fn from_env() -> Result<UringOptions, String> {
        let tick = tick_from_env(std::env::var(TICK_ENV).ok().as_deref())?;
        let buffers = buffers_from_env(std::env::var(BUFFERS_ENV).ok().as_deref())?;
        Ok(UringOptions {
            tick,
            receive_buffers: buffers.unwrap_or(ring::BUF_COUNT),
        })
    }

    /// Within the bounds the kernel and the frame period set.
    pub(crate) fn bounded(self) -> UringOptions {
        UringOptions {
            tick: self.tick.min(MAX_TICK),
            receive_buffers: self
                .receive_buffers
                .clamp(1, ring::MAX_BUF_COUNT)
                .checked_next_power_of_two()
                .unwrap_or(ring::MAX_BUF_COUNT),
        }
    }
}

/// The tick [`TICK_ENV`] names: whole milliseconds, 0 when unset, an error
/// for anything else or past [`MAX_TICK`].
pub fn tick_from_env(value: Option<&str>) -> Result<Duration, String> {
    let Some(v) = value else {
        return Ok(Duration::ZERO);
    };
    let ms: u64 = v
        .trim()
        .parse()
        .map_err(|_| format!("{TICK_ENV}={v:?}: whole milliseconds expected"))?;
    let tick = Duration::from_millis(ms);
    if tick > MAX_TICK {
        return Err(format!(
            "{TICK_ENV}={ms}: at most {} ms (a frame's period)",
            MAX_TICK.as_millis()
        ));
    }
    Ok(tick)
}

/// The receive buffers [`BUFFERS_ENV`] names: a count from 1 to 32768
/// ([`UringServer::bind_with`] rounds it up to a power of two); the
/// default when unset.
pub fn buffers_from_env(value: Option<&str>) -> Result<Option<u16>, String> {
    let Some(v) = value else {
        return Ok(None);
    };
    match v.trim().parse::<u16>() {
        Ok(n) if (1..=ring::MAX_BUF_COUNT).contains(&n) => Ok(Some(n)),
        _ => Err(format!(
            "{BUFFERS_ENV}={v:?}: a count from 1 to 32768 expected"
        )),
    }
}

/// Whether this process may run io_uring reactors: the kernel is 6.0 or
/// later (multishot receives, which every connection arms, came then), and
/// a ring with what a reactor needs (provided receive buffers) can be made.
/// An error (EPERM from a seccomp profile or `kernel.io_uring_disabled`,
/// ENOSYS from an old kernel or a sandbox, EINVAL from one without buffer
/// rings, Unsupported below 6.0) says why not; the `callstream` binary then
/// runs on epoll.
pub fn available() -> io::Result<()> {
    let release = rustix::system::uname();
    let release = release.release().to_string_lossy();
    if !kernel_at_least(&release, 6, 0) {
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            format!("Linux {release}: multishot receives need 6.0 or later"),
        ));
    }
    ring::Ring::new(1).map(drop)
}

/// Whether a kernel release (`6.18.44-fc`, `5.19.0-generic`) is at least
/// `major.minor`; an unreadable one is not.
fn kernel_at_least(release: &str, major: u32, minor: u32) -> bool {
    let mut parts = release
        .split(|c: char| !c.is_ascii_digit())
        .map(|p| p.parse::<u32>().ok());
    match (parts.next().flatten(), parts.next().flatten()) {
        (Some(a), Some(b)) => (a, b) >= (major, minor),
        _ => false,
    }
}

/// Runs the server with these settings until SIGTERM or SIGINT, then drains.
/// The tick comes from [`TICK_ENV`], the receive buffers from
/// [`BUFFERS_ENV`].
pub fn run(s: Settings) -> Result<(), Box<dyn std::error::Error>> {
    let uring = UringOptions::from_env()?;
    callstream_server::serve(&s, |server| UringServer::bind_with(server, uring))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_releases_are_compared_by_major_and_minor() {
        assert!(kernel_at_least("6.18.44-fc-v1300", 6, 0));
        assert!(kernel_at_least("6.0.0", 6, 0));
        assert!(!kernel_at_least("5.19.0-generic", 6, 0));
        assert!(!kernel_at_least("5.4.0", 6, 0));
        assert!(kernel_at_least("10.1", 6, 0));
        assert!(!kernel_at_least("unknown", 6, 0));
    }

    #[test]
    fn the_tick_is_whole_milliseconds_up_to_a_frame() {
        assert_eq!(tick_from_env(None), Ok(Duration::ZERO));
        assert_eq!(tick_from_env(Some("0")), Ok(Duration::ZERO));
        assert_eq!(tick_from_env(Some(" 2 ")), Ok(Duration::from_millis(2)));
        assert_eq!(tick_from_env(Some("20")), Ok(MAX_TICK));
        assert!(tick_from_env(Some("21")).is_err());
        assert!(tick_from_env(Some("1.5")).is_err());
        assert!(tick_from_env(Some("-1")).is_err());
        assert!(tick_from_env(Some("")).is_err());
    }

    #[test]
    fn the_buffers_are_a_count_the_kernel_takes() {
        assert_eq!(buffers_from_env(None), Ok(None));
        assert_eq!(buffers_from_env(Some("128")), Ok(Some(128)));
        assert_eq!(buffers_from_env(Some("32768")), Ok(Some(32768)));
        assert!(buffers_from_env(Some("0")).is_err());
        assert!(buffers_from_env(Some("32769")).is_err());
        assert!(buffers_from_env(Some("many")).is_err());
    }

    #[test]
    fn receive_buffers_round_up_to_a_power_of_two() {
        let server = |n| {
            let (engine, opts) = callstream_server::configure(&test_settings()).unwrap();
            let uring = UringOptions {
                tick: Duration::ZERO,
                receive_buffers: n,
            };
            UringServer::bind_with(callstream_server::Server::new(opts, engine).unwrap(), uring)
                .unwrap()
                .options()
                .receive_buffers
        };
        assert_eq!(server(1), 1);
        assert_eq!(server(100), 128);
        assert_eq!(server(32768), 32768);
        assert_eq!(server(u16::MAX), 32768);
    }

    fn test_settings() -> Settings {
        use clap::Parser as _;
        let mut s = callstream_server::config::Cli::try_parse_from([
            "callstream",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
        ])
        .unwrap()
        .settings();
        s.insecure_no_signatures = true;
        s
    }
}
