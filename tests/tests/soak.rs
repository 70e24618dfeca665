//! The soak load client (not a test that CI runs: it is `#[ignore]`d and
//! `scripts/soak.sh` runs it against the release binary).
//!
//! `SOAK_CALLS` worker threads each place calls back to back for
//! `SOAK_SECONDS`: a signed `incoming_call` webhook, the signed upgrade,
//! `connected` + `start`, `SOAK_CALL_SECONDS` of 20 ms silence frames on
//! absolute deadlines (reading the echo in between), `stop`, the close, and
//! a signed `call_status` webhook. So calls keep coming and going for the
//! whole run, the way a busy number's do. The server must run with
//! [`TOKEN`] as its auth token and `https://callstream.test` as its public
//! base URL. Prints one JSON line with the counts.
use callstream_tests::*;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[derive(Default)]
struct Counts {
    calls_ok: AtomicU64,
    calls_failed: AtomicU64,
    frames_sent: AtomicU64,
    echo_bytes: AtomicU64,
    webhooks_ok: AtomicU64,
    webhooks_failed: AtomicU64,
}

const HOST: &str = "callstream.test";

fn one_call(addr: SocketAddr, n: u32, call_frames: usize, c: &Counts) -> std::io::Result<()> {
    let call_sid = format!("CA{:032x}", 0xdef000 + u128::from(n));
    let hook = post_signed(
        addr,
        HOST,
        "/webhook/incoming_call",
        &[("AccountSid", ACCOUNT), ("CallSid", &call_sid)],
    )?;
    let counter = if hook.status == 200 {
        &c.webhooks_ok
    } else {
        &c.webhooks_failed
    };
    counter.fetch_add(1, Ordering::Relaxed);
    let mut s = TwilioStream::connect(addr, &StreamOpts::default(), n)?;
    s.start(&[("soak", "1")])?;
    let frame = [0xFFu8; 160];
    let mut got = Vec::new();
    let start = Instant::now();
    for k in 0..call_frames {
        let due = start + Duration::from_millis(20 * k as u64);
        s.read_until(due, &mut got)?;
        s.media(&frame)?;
        c.frames_sent.fetch_add(1, Ordering::Relaxed);
        // Count and forget, so a long call holds no memory here.
        c.echo_bytes
            .fetch_add(media_bytes(&got).len() as u64, Ordering::Relaxed);
        got.clear();
    }
    s.stop()?;
    let _ = s.ws.close(None);
    let _ = s.read_until(Instant::now() + Duration::from_secs(2), &mut got);
    let status = post_signed(
        addr,
        HOST,
        "/webhook/call_status",
        &[
            ("AccountSid", ACCOUNT),
            ("CallSid", &call_sid),
            ("CallStatus", "completed"),
        ],
    )?;
    let counter = if status.status == 204 {
        &c.webhooks_ok
    } else {
        &c.webhooks_failed
    };
    counter.fetch_add(1, Ordering::Relaxed);
    Ok(())
}

#[test]
#[ignore = "a ten-minute load run: scripts/soak.sh"]
fn soak() {
    let addr: SocketAddr = std::env::var("SOAK_ADDR")
        .expect("SOAK_ADDR")
        .parse()
        .expect("SOAK_ADDR is host:port");
    let calls: u32 = env_or("SOAK_CALLS", 100);
    let run = Duration::from_secs(env_or("SOAK_SECONDS", 600));
    let call_frames = env_or::<usize>("SOAK_CALL_SECONDS", 30) * 50;
    let counts = Arc::new(Counts::default());
    let end = Instant::now() + run;
    let workers: Vec<_> = (0..calls)
        .map(|w| {
            let c = counts.clone();
            std::thread::spawn(move || {
                // Stagger the first calls over a call's length, so calls end
                // and begin all through the run rather than in waves.
                std::thread::sleep(Duration::from_millis(
                    (call_frames as u64 * 20) * u64::from(w) / u64::from(calls.max(1)),
                ));
                let mut n = w;
                while Instant::now() < end {
                    match one_call(addr, n, call_frames, &c) {
                        Ok(()) => c.calls_ok.fetch_add(1, Ordering::Relaxed),
                        Err(e) => {
                            eprintln!("call {n}: {e}");
                            std::thread::sleep(Duration::from_millis(500));
                            c.calls_failed.fetch_add(1, Ordering::Relaxed)
                        }
                    };
                    n = n.wrapping_add(calls);
                }
            })
        })
        .collect();
    for w in workers {
        w.join().expect("worker");
    }
    let c = &counts;
    println!(
        "{}",
        serde_json::json!({
            "calls_ok": c.calls_ok.load(Ordering::Relaxed),
            "calls_failed": c.calls_failed.load(Ordering::Relaxed),
            "frames_sent": c.frames_sent.load(Ordering::Relaxed),
            "echo_bytes": c.echo_bytes.load(Ordering::Relaxed),
            "webhooks_ok": c.webhooks_ok.load(Ordering::Relaxed),
            "webhooks_failed": c.webhooks_failed.load(Ordering::Relaxed),
        })
    );
    assert_eq!(c.calls_failed.load(Ordering::Relaxed), 0, "failed calls");
}
