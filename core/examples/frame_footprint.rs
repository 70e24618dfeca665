//! What one echoed media frame costs the engine when many calls take turns,
//! as on a server: `scripts/frame-footprint.sh` runs it (see there).
//!
//! ```text
//! cargo run --release -p callstream-core --example frame_footprint -- CALLS ROUNDS [loopback [prefetch]]
//! ```
//!
//! Opens CALLS calls through the engine with the echo handler, then feeds
//! each, in turn, ROUNDS media frames 20 ms of engine time apart, draining
//! and "sending" what comes out. Prints this thread's user and system CPU
//! time per frame. With `loopback`, each frame also crosses a loopback TCP
//! connection of its own call on the way in and its echo on the way out
//! (four system calls, as between a server and Twilio): the kernel's socket
//! work between two frames of a call then evicts the call's state from the
//! caches, which is what a server's engine runs against. Without it, under
//! cachegrind, the per-frame instruction count and cache misses are exact
//! and repeatable. With `loopback prefetch`, the memory the engine names for
//! the next input (`Connection::hot_memory`) is prefetched before each read,
//! as `callstream-server`'s `Driver::prefetch` does for the pumps.
use std::hint::black_box;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use callstream_core::call::CallConfig;
use callstream_core::connection::{Config, Connection, Output, Route, Routes};
use callstream_core::handler;
use callstream_twilio::frame::text_frame;
use callstream_twilio::message::Stream;
use callstream_twilio::upgrade::Upgrade;

fn main() {
    let mut args = std::env::args().skip(1);
    let usage = "usage: frame_footprint CALLS ROUNDS [loopback [prefetch]]";
    let calls: usize = args.next().and_then(|a| a.parse().ok()).expect(usage);
    let rounds: u64 = args.next().and_then(|a| a.parse().ok()).expect(usage);
    let loopback = match args.next().as_deref() {
        None => false,
        Some("loopback") => true,
        Some(_) => panic!("{usage}"),
    };
    let prefetching = match args.next().as_deref() {
        None => false,
        Some("prefetch") if loopback => true,
        Some(_) => panic!("{usage}"),
    };
    let config = Arc::new(Config {
        session: Some(handler::session_factory(
            CallConfig::default(),
            handler::by_name("echo").expect("the echo handler"),
        )),
        routes: Routes::new().route("/ws/twilio-media", Route::MediaStream),
        ..Config::unsigned()
    });
    // One connected pair per call: (Twilio's end, the server's end).
    let pairs: Vec<(TcpStream, TcpStream)> = if loopback {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("address");
        (0..calls)
            .map(|_| {
                let twilio = TcpStream::connect(addr).expect("connect");
                let (server, _) = listener.accept().expect("accept");
                twilio.set_nodelay(true).expect("nodelay");
                server.set_nodelay(true).expect("nodelay");
                (twilio, server)
            })
            .collect()
    } else {
        Vec::new()
    };
    let start = Instant::now();
    let stream = Stream::default();
    let upgrade = Upgrade::new("x.example", "/ws/twilio-media", None, 1).to_bytes();
    let mut conns: Vec<Connection> = (0..calls)
        .map(|_| {
            let mut conn = Connection::new(config.clone(), start);
            conn.handle_receive(start, &upgrade);
            drain(&mut conn, start);
            conn.handle_receive(start, &text_frame(&stream.start(&[])));
            drain(&mut conn, start);
            conn
        })
        .collect();
    // 20 ms of a quiet tone each.
    let frames: Vec<Vec<u8>> = (1..=rounds)
        .map(|n| text_frame(&stream.media(n + 1, n, (n - 1) * 20, &[0x7e; 160])))
        .collect();
    let mut buf = vec![0u8; 8192];
    let mut now = start;
    let (user0, sys0) = cpu();
    for frame in &frames {
        now += Duration::from_millis(20);
        for (i, conn) in conns.iter_mut().enumerate() {
            match pairs.get(i) {
                Some((twilio, server)) => {
                    let (mut twilio, mut server) = (twilio, server);
                    twilio.write_all(frame).expect("write");
                    if prefetching {
                        conn.hot_memory(prefetch);
                    }
                    let n = server.read(&mut buf).expect("read");
                    conn.handle_receive(now, &buf[..n]);
                    let out = drain(conn, now);
                    server.write_all(conn.transmit()).expect("write");
                    conn.consume_transmit(out);
                    let mut echoed = 0;
                    while echoed < out {
                        echoed += twilio.read(&mut buf).expect("read");
                    }
                }
                None => {
                    conn.handle_receive(now, frame);
                    let out = drain(conn, now);
                    black_box(conn.transmit());
                    conn.consume_transmit(out);
                }
            }
        }
    }
    let (user1, sys1) = cpu();
    let sent = conns
        .iter()
        .map(|c| c.call_stats().map_or(0, |s| s.frames_sent))
        .min()
        .unwrap_or(0);
    assert!(sent + 10 >= rounds, "each call echoes: {sent} of {rounds}");
    let n = (rounds * calls as u64) as f64;
    println!(
        "{{\"calls\":{calls},\"rounds\":{rounds},\"loopback\":{loopback},\"prefetch\":{prefetching},\"user_us_per_frame\":{:.3},\"sys_us_per_frame\":{:.3}}}",
        (user1 - user0) / n,
        (sys1 - sys0) / n
    );
}

/// Handles what is due at `now`; returns how many bytes wait to go out.
fn drain(conn: &mut Connection, now: Instant) -> usize {
    loop {
        let next = loop {
            match conn.poll_output() {
                Output::Event(e) => {
                    black_box(&e);
                }
                Output::Timeout(t) => break t,
                Output::Close => panic!("the call closed"),
            }
        };
        if next > now {
            return conn.transmit().len();
        }
        conn.handle_timeout(now);
    }
}

/// Prefetches `len` bytes from `start` (at most 48 lines), as
/// `callstream_server::prefetch::region` does.
fn prefetch(start: *const u8, len: usize) {
    let mut at = start.wrapping_sub(start as usize % 64);
    let end = start.wrapping_add(len.min(48 * 64));
    while at < end {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: a prefetch is a hint; it never faults (see the server's
        // `prefetch` module).
        unsafe {
            std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(at.cast());
        }
        at = at.wrapping_add(64);
    }
}

/// This thread's user and system CPU time, in µs.
fn cpu() -> (f64, f64) {
    // SAFETY: `getrusage` only writes the struct we own.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: as above; RUSAGE_THREAD is Linux's.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut usage) };
    assert_eq!(rc, 0, "getrusage");
    let us = |t: libc::timeval| t.tv_sec as f64 * 1e6 + t.tv_usec as f64;
    (us(usage.ru_utime), us(usage.ru_stime))
}
