//! Limits an unauthenticated client could exhaust, through the real servers:
//! trickling sockets past MAX_CONNECTIONS, parked request bodies against the
//! request-memory budget, and a burst of connects against the listen backlog.
use callstream_tests::*;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

const HOST: &str = "callstream.test";

fn get(addr: SocketAddr, path: &str) -> HttpResponse {
    http_raw(
        addr,
        format!("GET {path} HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .expect("answer")
}

fn signed_status(addr: SocketAddr) -> HttpResponse {
    post_signed(
        addr,
        HOST,
        "/webhook/call_status",
        &[
            ("AccountSid", ACCOUNT),
            ("CallSid", "CA0123456789abcdef0123456789abcdef"),
            ("CallStatus", "completed"),
        ],
    )
    .expect("answer")
}

fn trickling_sockets_cannot_keep_requests_out(adapter: Adapter) {
    const MAX: usize = 40;
    let srv = RunningServer::start_on(adapter, |s| {
        s.max_connections = MAX;
        // "Oldest" is the order of admission. The epoll and io_uring
        // servers' reactors accept side by side, so with several of them a
        // request can be admitted before trickling sockets that connected
        // ahead of it, and shed as the oldest: the rule below holds for one
        // acceptor.
        if matches!(
            adapter,
            Adapter::Epoll | Adapter::Uring | Adapter::UringTuned { .. }
        ) {
            s.threads = Some(1);
        }
    });
    // A call in progress first: it must survive everything below.
    let mut call = TwilioStream::connect(srv.addr, &StreamOpts::default(), 1).expect("upgrade");
    call.start(&[]).expect("start");
    // Fill every connection with heads that never complete.
    let trickling: Vec<TcpStream> = (0..MAX)
        .map(|_| {
            let mut s = TcpStream::connect(srv.addr).expect("connect");
            s.write_all(b"GET /healthz HTTP/1.1\r\nHo").expect("write");
            s
        })
        .collect();
    // Accepted in order, after the trickling ones: each finds the server
    // full of connections that are not calls, and makes room.
    let health = get(srv.addr, "/healthz");
    assert_eq!((health.status, health.body.as_str()), (200, "ok"));
    assert_eq!(signed_status(srv.addr).status, 204);
    let mut second = TwilioStream::connect(srv.addr, &StreamOpts::default(), 2).expect("upgrade");
    second.start(&[]).expect("start");
    // Past the pending limit (a quarter of MAX) the oldest trickling
    // sockets were shed, one by one, as new ones came.
    let shed = metric(srv.addr, "callstream_connections_shed_total");
    assert!(shed >= (MAX - MAX / 4) as u64, "{shed} shed");
    // The calls go on.
    let mut got = Vec::new();
    call.media(&[0xFF; 160]).expect("media still accepted");
    call.read_until(Instant::now() + Duration::from_millis(200), &mut got)
        .expect("read");
    assert!(
        !got.iter().any(|m| matches!(m, ServerMessage::Closed(_))),
        "{got:?}"
    );
    drop(trickling);
}

#[test]
fn trickling_sockets_cannot_keep_requests_out_smol() {
    trickling_sockets_cannot_keep_requests_out(Adapter::Smol);
}

#[test]
fn trickling_sockets_cannot_keep_requests_out_blocking() {
    trickling_sockets_cannot_keep_requests_out(Adapter::Blocking);
}

#[test]
fn trickling_sockets_cannot_keep_requests_out_epoll() {
    trickling_sockets_cannot_keep_requests_out(Adapter::Epoll);
}

#[test]
fn trickling_sockets_cannot_keep_requests_out_uring() {
    trickling_sockets_cannot_keep_requests_out(Adapter::Uring);
}

fn parked_bodies_are_bounded_by_the_memory_budget(adapter: Adapter) {
    const PARKED: usize = 40;
    let srv = RunningServer::start_custom(
        adapter,
        |s| s.request_memory_mib = 1,
        // Parked bodies time out soon, so the test does not wait long.
        |c| c.limits.body_timeout = Duration::from_secs(1),
    );
    // Each announces 60,000 bytes and sends 50,000 of them: about 64 KiB
    // held apiece, so 1 MiB holds some 16 of them.
    let parked: Vec<TcpStream> = (0..PARKED)
        .map(|_| {
            let mut s = TcpStream::connect(srv.addr).expect("connect");
            s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
            let head = format!(
                "POST /webhook/call_status HTTP/1.1\r\nHost: {HOST}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 60000\r\n\r\n"
            );
            s.write_all(head.as_bytes()).expect("head");
            s.write_all(&[b'a'; 50_000]).expect("body");
            s
        })
        .collect();
    let statuses: Vec<u16> = parked
        .into_iter()
        .map(|mut s| {
            let mut answer = String::new();
            let _ = s.read_to_string(&mut answer);
            answer
                .split(' ')
                .nth(1)
                .and_then(|c| c.parse().ok())
                .unwrap_or(0)
        })
        .collect();
    // Past the budget the oldest give way (503) to the newer ones; those
    // within it stay parked until the body timeout (408). Nothing else.
    let shed = statuses.iter().filter(|&&s| s == 503).count();
    let timed_out = statuses.iter().filter(|&&s| s == 408).count();
    assert_eq!(shed + timed_out, PARKED, "{statuses:?}");
    assert!(shed > 0, "no request was refused: {statuses:?}");
    assert!(timed_out > 0, "the budget held nothing: {statuses:?}");
    // Everything held is given back as the connections close.
    let mut held = u64::MAX;
    for _ in 0..100 {
        held = metric(srv.addr, "callstream_request_buffer_bytes");
        if held == 0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(held, 0);
    assert_eq!(signed_status(srv.addr).status, 204);
}

#[test]
fn parked_bodies_are_bounded_by_the_memory_budget_smol() {
    parked_bodies_are_bounded_by_the_memory_budget(Adapter::Smol);
}

#[test]
fn parked_bodies_are_bounded_by_the_memory_budget_blocking() {
    parked_bodies_are_bounded_by_the_memory_budget(Adapter::Blocking);
}

#[test]
fn parked_bodies_are_bounded_by_the_memory_budget_epoll() {
    parked_bodies_are_bounded_by_the_memory_budget(Adapter::Epoll);
}

#[test]
fn parked_bodies_are_bounded_by_the_memory_budget_uring() {
    parked_bodies_are_bounded_by_the_memory_budget(Adapter::Uring);
}

/// A value from `/metrics`, or `None` while the server answers it 503.
fn metric_if_answered(addr: SocketAddr, name: &str) -> Option<u64> {
    let m = get(addr, "/metrics");
    if m.status == 503 {
        return None;
    }
    Some(
        m.body
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("{name} missing from {}", m.body)),
    )
}

/// Parked bodies fill the request-memory budget (under the pending limit,
/// so none is shed for that); a webhook larger than any of them, whose growth
/// is what crosses the budget, is still answered: the oldest parked bodies
/// give way, not the request making progress.
fn a_webhook_gets_through_a_budget_full_of_parked_bodies(adapter: Adapter) {
    const PARKED: usize = 48;
    let srv = RunningServer::start_custom(
        adapter,
        |s| {
            s.request_memory_mib = 1;
            s.max_connections = 400;
        },
        // Parked bodies stay parked for the whole test.
        |c| c.limits.body_timeout = Duration::from_secs(60),
    );
    // Each announces 30,000 bytes and sends 25,000: some 32 KiB held apiece,
    // half again as many as 1 MiB holds.
    let parked: Vec<TcpStream> = (0..PARKED)
        .map(|_| {
            let mut s = TcpStream::connect(srv.addr).expect("connect");
            let head = format!(
                "POST /webhook/call_status HTTP/1.1\r\nHost: {HOST}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 30000\r\n\r\n"
            );
            s.write_all(head.as_bytes()).expect("head");
            s.write_all(&[b'a'; 25_000]).expect("body");
            s
        })
        .collect();
    // Until the server has read them all: the budget is full.
    let full = 1024 * 1024 - 2 * 32 * 1024;
    let mut held = Some(0);
    for _ in 0..400 {
        held = metric_if_answered(srv.addr, "callstream_request_buffer_bytes");
        if held.is_none_or(|h| h >= full) {
            break;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    assert!(
        held.is_none_or(|h| h >= full),
        "the parked bodies never filled the budget ({held:?} bytes)"
    );
    // About 60 KB of body: more than any parked request holds, so its
    // growth crosses the budget whatever room the last parked one left.
    let padding = "p".repeat(56_000);
    let hook = post_signed(
        srv.addr,
        HOST,
        "/webhook/call_status",
        &[
            ("AccountSid", ACCOUNT),
            ("CallSid", "CA0123456789abcdef0123456789abcdef"),
            ("CallStatus", "completed"),
            ("Padding", &padding),
        ],
    )
    .expect("answer");
    assert_eq!(hook.status, 204, "{}", hook.body);
    assert!(metric(srv.addr, "callstream_connections_shed_total") > 0);
    drop(parked);
}

#[test]
fn a_webhook_gets_through_a_budget_full_of_parked_bodies_smol() {
    a_webhook_gets_through_a_budget_full_of_parked_bodies(Adapter::Smol);
}

#[test]
fn a_webhook_gets_through_a_budget_full_of_parked_bodies_blocking() {
    a_webhook_gets_through_a_budget_full_of_parked_bodies(Adapter::Blocking);
}

#[test]
fn a_webhook_gets_through_a_budget_full_of_parked_bodies_epoll() {
    a_webhook_gets_through_a_budget_full_of_parked_bodies(Adapter::Epoll);
}

#[test]
fn a_webhook_gets_through_a_budget_full_of_parked_bodies_uring() {
    a_webhook_gets_through_a_budget_full_of_parked_bodies(Adapter::Uring);
}

/// Every connect of a burst completes before the server accepts any (the
/// listen backlog holds them all; with 128, connect 129 would wait for the
/// kernel to retry its SYN), then every one is answered.
#[test]
fn a_burst_of_connects_is_held_by_the_backlog_and_answered() {
    use clap::Parser as _;
    let limit = callstream_server::listen::raise_file_limit().expect("file limit");
    // Two descriptors per connection here (client and server side).
    let burst = 2000
        .min(callstream_server::listen::effective_backlog() as usize)
        .min((limit.soft.saturating_sub(200) / 2) as usize);
    if burst < 1000 {
        // An old kernel (net.core.somaxconn 128 before Linux 5.4) or a hard
        // file limit near 1024: the machine cannot hold a burst, whatever
        // the server asks for. Say so rather than fail.
        eprintln!(
            "skipped: this machine allows a burst of {burst} only (somaxconn {:?}, open files {limit:?})",
            callstream_server::listen::somaxconn()
        );
        return;
    }
    let mut s = callstream_server::config::Cli::try_parse_from([
        "callstream",
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        "--threads",
        "2",
    ])
    .unwrap()
    .settings();
    s.auth_token = Some(TOKEN.to_owned());
    use callstream_server::Pump as _;
    let (config, opts) = callstream_server::configure(&s).unwrap();
    let server =
        callstream_smol::SmolServer::bind(callstream_server::Server::new(opts, config).unwrap())
            .unwrap();
    let addr = server.local_addr().unwrap();
    let clients: Vec<TcpStream> = (0..burst)
        .map(|i| {
            TcpStream::connect_timeout(&addr, Duration::from_secs(5))
                .unwrap_or_else(|e| panic!("connect {i} of {burst}: {e}"))
        })
        .collect();
    let stop = server.shutdown_handle();
    let running = std::thread::spawn(move || server.run());
    for mut c in &clients {
        c.write_all(format!("GET /healthz HTTP/1.1\r\nHost: {HOST}\r\n\r\n").as_bytes())
            .unwrap();
    }
    for (i, c) in clients.into_iter().enumerate() {
        c.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut r = std::io::BufReader::new(c);
        let answer = read_response(&mut r).unwrap_or_else(|e| panic!("answer {i}: {e}"));
        assert_eq!((answer.status, answer.body.as_str()), (200, "ok"), "{i}");
    }
    stop.shutdown();
    running.join().unwrap().unwrap();
}

/// `/metrics` shows the open descriptors and their limit, so that an alert
/// can fire before accepts fail: fifty connections held (a hundred
/// descriptors in this process, client and server side) are in the count.
#[test]
fn open_descriptors_and_their_limit_are_in_metrics() {
    let srv = RunningServer::start(|_| {});
    let held: Vec<_> = (0..50)
        .map(|_| std::net::TcpStream::connect(srv.addr).unwrap())
        .collect();
    // The scrape's connection is accepted after them (one backlog, in
    // order): their server sides are open by then.
    let open = metric(srv.addr, "process_open_fds");
    let max = metric(srv.addr, "process_max_fds");
    let (soft, _) = rlimit::getrlimit(rlimit::Resource::NOFILE).unwrap();
    assert_eq!(max, soft);
    assert!(open >= 100 && open <= max, "open {open}, max {max}");
    drop(held);
    srv.stop().unwrap();
}
