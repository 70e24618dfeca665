//! Load mode: many [`Call`]s at once. Each call is a task on a small
//! single-threaded executor (smol); a handful of such threads share the
//! calls, and one reactor waits on all their sockets, so 500 calls need no
//! 500 threads. The task is the same byte pump as the single call's: write
//! what the call gives, wait for bytes or its next deadline, hand it either.

use std::io;
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use smol::future::FutureExt as _;
use smol::io::{AsyncReadExt as _, AsyncWriteExt as _};
use smol::{Async, Timer};

use super::call::{Call, CallReport, Failure, Plan};
use callstream_twilio::{Stream, Upgrade};

/// How a load run places its calls.
#[derive(Debug, Clone)]
pub struct Load {
    /// Where to connect.
    pub addr: SocketAddr,
    /// What each caller does.
    pub plan: Arc<Plan>,
    /// How many calls.
    pub calls: u32,
    /// Calls start evenly over this time.
    pub ramp: Duration,
    /// Executor threads.
    pub threads: usize,
    /// Deadlines are rounded up to this grid from the run's start (zero:
    /// none).
    pub tick: Duration,
}

/// `deadline` rounded up to the next multiple of `tick` after `origin` (as a
/// timer wheel of that resolution fires it); as it is when `tick` is zero or
/// the deadline is not after `origin`.
#[must_use]
pub fn on_tick(deadline: Instant, origin: Instant, tick: Duration) -> Instant {
    let (Some(since), false) = (deadline.checked_duration_since(origin), tick.is_zero()) else {
        return deadline;
    };
    let tick_ns = tick.as_nanos();
    let ticks = since.as_nanos().div_ceil(tick_ns);
    let Ok(ns) = u64::try_from(ticks.saturating_mul(tick_ns)) else {
        return deadline;
    };
    origin + Duration::from_nanos(ns)
}

/// Runs every call to its end; `upgrade(n)` and `stream(n)` give call `n`'s
/// request and SIDs. Reports come back in call order.
pub fn run(
    load: &Load,
    upgrade: &(dyn Fn(u32) -> Upgrade + Sync),
    stream: &(dyn Fn(u32) -> Stream + Sync),
) -> Vec<CallReport> {
    let t0 = Instant::now();
    let threads = load.threads.clamp(1, 64);
    let mut reports: Vec<(u32, CallReport)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                scope.spawn(move || {
                    let ex = smol::LocalExecutor::new();
                    let tasks: Vec<_> = (0..load.calls)
                        .filter(|n| *n as usize % threads == t)
                        .map(|n| {
                            let at = t0
                                + load
                                    .ramp
                                    .mul_f64(f64::from(n) / f64::from(load.calls.max(1)));
                            let (up, st) = (upgrade(n), stream(n));
                            let plan = Arc::clone(&load.plan);
                            let grid = (t0, load.tick);
                            ex.spawn(
                                async move { (n, one(load.addr, at, grid, plan, up, st).await) },
                            )
                        })
                        .collect();
                    smol::block_on(ex.run(async {
                        let mut out = Vec::with_capacity(tasks.len());
                        for task in tasks {
                            out.push(task.await);
                        }
                        out
                    }))
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_default())
            .collect()
    });
    reports.sort_by_key(|(n, _)| *n);
    reports.into_iter().map(|(_, r)| r).collect()
}

/// One call: connect at `at`, then pump until it is over, its frames on the
/// `grid` (origin, tick: see [`Call::set_grid`]).
async fn one(
    addr: SocketAddr,
    at: Instant,
    grid: (Instant, Duration),
    plan: Arc<Plan>,
    up: Upgrade,
    st: Stream,
) -> CallReport {
    Timer::at(at).await;
    let sock = match Async::<TcpStream>::connect(addr).await {
        Ok(s) => s,
        Err(e) => {
            return CallReport {
                failure: Some(Failure {
                    code: 31920,
                    message: format!("connect: {e}"),
                }),
                ..CallReport::default()
            };
        }
    };
    let _ = sock.get_ref().set_nodelay(true);
    let mut call = Call::new(plan, up, st, Instant::now());
    call.set_grid(grid.0, grid.1);
    let mut buf = vec![0u8; 16 * 1024];
    let mut sock = sock;
    loop {
        while let Some(bytes) = call.poll_transmit() {
            if sock.write_all(&bytes).await.is_err() {
                call.handle_eof(Instant::now());
            }
        }
        let Some(deadline) = call.poll_timeout() else {
            break;
        };
        let read = async { Some(sock.read(&mut buf).await) };
        let timer = async {
            Timer::at(deadline).await;
            None
        };
        match read.or(timer).await {
            Some(Ok(0)) | Some(Err(_)) => call.handle_eof(Instant::now()),
            Some(Ok(n)) => call.handle_receive(Instant::now(), buf.get(..n).unwrap_or_default()),
            None => {}
        }
        call.handle_timeout(Instant::now());
    }
    call.report()
}

/// Nearest-rank percentile `p` (0–100) of `values`, in milliseconds.
#[must_use]
pub fn percentile(values: &mut [Duration], p: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_unstable();
    let rank = ((p / 100.0) * values.len() as f64).ceil() as usize;
    let i = rank.clamp(1, values.len()) - 1;
    values.get(i).map(|d| d.as_secs_f64() * 1000.0)
}

/// Checks that `addr` takes connections before a run starts.
///
/// # Errors
/// The connection is refused.
pub fn probe(addr: SocketAddr) -> io::Result<()> {
    TcpStream::connect_timeout(&addr, Duration::from_secs(5)).map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadlines_round_up_to_the_tick() {
        let t0 = Instant::now();
        let at = |us: u64| t0 + Duration::from_micros(us);
        let ms = Duration::from_millis(1);
        assert_eq!(on_tick(at(0), t0, ms), at(0));
        assert_eq!(on_tick(at(1), t0, ms), at(1000));
        assert_eq!(on_tick(at(999), t0, ms), at(1000));
        assert_eq!(on_tick(at(1000), t0, ms), at(1000));
        assert_eq!(on_tick(at(20_001), t0, 5 * ms), at(25_000));
        // No tick, or a deadline before the origin: as it is.
        assert_eq!(on_tick(at(1234), t0, Duration::ZERO), at(1234));
        let before = t0.checked_sub(ms).unwrap_or(t0);
        assert_eq!(on_tick(before, t0, ms), before);
    }

    #[test]
    fn nearest_rank_percentiles() {
        let ms = |v: u64| Duration::from_millis(v);
        let mut v: Vec<Duration> = (1..=100).rev().map(ms).collect();
        assert_eq!(percentile(&mut v, 50.0), Some(50.0));
        assert_eq!(percentile(&mut v, 99.0), Some(99.0));
        assert_eq!(percentile(&mut v, 100.0), Some(100.0));
        assert_eq!(percentile(&mut v, 0.0), Some(1.0));
        assert_eq!(percentile(&mut [], 50.0), None);
        assert_eq!(percentile(&mut [ms(7)], 99.0), Some(7.0));
    }
}
