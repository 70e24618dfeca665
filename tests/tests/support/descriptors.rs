//! A server out of file descriptors: its accept fails (EMFILE), it backs
//! off instead of spinning, and takes the waiting connection once a
//! descriptor is free; its calls go on meanwhile, and a shutdown still
//! reaches them. Each adapter runs these from a test binary of its own: they
//! lower the whole process's file limit, so they take [`SERIAL`] in turn.
use callstream_tests::*;
use rlimit::Resource;
use std::fs::File;
use std::io::Write as _;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// One test at a time: the file limit and the descriptors are the process's.
static SERIAL: Mutex<()> = Mutex::new(());

/// EMFILE: the process is out of descriptors.
const EMFILE: i32 = 24;

pub fn out_of_descriptors_the_server_backs_off_then_serves(adapter: Adapter) {
    let _serial = SERIAL.lock().unwrap_or_else(PoisonError::into_inner);
    // The limit is lowered before the server starts: io_uring reads it when
    // an accept is submitted, so a multishot accept armed earlier would go on
    // accepting past a limit lowered later. 64 spare descriptors are plenty
    // for the server's start (listener, ring or epoll, eventfd, threads).
    let count = || std::fs::read_dir("/proc/self/fd").unwrap().count() as u64;
    let limit = Limit::lower_to(count() + 64);
    let srv = RunningServer::start_on(adapter, |s| s.threads = Some(1));
    let healthz = b"GET /healthz HTTP/1.1\r\nHost: callstream.test\r\nConnection: close\r\n\r\n";
    // No request before this one: a closing connection would free a
    // descriptor at a moment of its own. The server's thread opens its
    // descriptors as it starts: wait until their count holds still.
    let mut open = count();
    for _ in 0..40 {
        std::thread::sleep(Duration::from_millis(50));
        let now = count();
        if now == open {
            break;
        }
        open = now;
    }
    // Every descriptor taken but one, which the client's socket takes: the
    // server has none left to accept with.
    let mut filler = Vec::new();
    while let Ok(f) = std::fs::File::open("/dev/null") {
        filler.push(f);
    }
    filler.pop();
    // Should the server's thread, still starting, have taken the one left
    // (for its ring or eventfd), free another (bounded).
    let mut client = None;
    for _ in 0..4 {
        match std::net::TcpStream::connect(srv.addr) {
            Ok(c) => {
                client = Some(c);
                break;
            }
            Err(e) if e.raw_os_error() == Some(EMFILE) => drop(filler.pop()),
            Err(e) => panic!("connect: {e}"),
        }
    }
    let mut client = client.expect("a descriptor for the client");
    client
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    client.write_all(healthz).unwrap();
    // Wait for the server's accept to fail: nothing can come back until then.
    let mut peek = [0u8; 1];
    client
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    assert!(
        client.peek(&mut peek).is_err(),
        "answered without a descriptor"
    );
    // Free descriptors: after its back-off the server accepts and answers.
    drop(filler);
    drop(limit);
    client
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let answer = read_response(&mut std::io::BufReader::new(client)).unwrap();
    assert_eq!(answer.status, 200);
    srv.stop().unwrap();
}

/// The process's file limit, lowered until dropped (a failed assertion
/// included: the next test of the binary must not start starved).
struct Limit {
    soft: u64,
    hard: u64,
}

impl Limit {
    fn lower_to(soft: u64) -> Limit {
        let (was, hard) = rlimit::getrlimit(Resource::NOFILE).unwrap();
        let limit = Limit { soft: was, hard };
        rlimit::setrlimit(Resource::NOFILE, soft, hard).unwrap();
        limit
    }

    /// No descriptor can be opened anywhere in the process while it lives:
    /// the soft limit is at most 3 and at most the lowest free descriptor
    /// number, so neither a free number nor one freed later (all above it)
    /// can be taken; what is open stays open. Two exceptions, both by
    /// design of the kernel: an `accept()` already blocked reserved its
    /// descriptor when it began to wait and takes one connection (every
    /// accept after fails with EMFILE); and io_uring holds the limit an
    /// accept was submitted under, so a multishot accept armed before goes
    /// on accepting.
    fn starve() -> Limit {
        // A new descriptor takes the lowest free number.
        let lowest_free = {
            use std::os::fd::AsRawFd as _;
            File::open("/dev/null").unwrap().as_raw_fd() as u64
        };
        let limit = Limit::lower_to(lowest_free.min(3));
        assert!(
            File::open("/dev/null").is_err(),
            "still a descriptor to open"
        );
        limit
    }
}

impl Drop for Limit {
    fn drop(&mut self) {
        let _ = rlimit::setrlimit(Resource::NOFILE, self.soft, self.hard);
    }
}

/// A client's socket, made now (with its descriptor) to connect later.
fn socket() -> socket2::Socket {
    socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap()
}

/// Connects `s`, made by [`socket`], to `addr` (no new descriptor: it can
/// be done while starved) and sends `request`.
fn connect(s: socket2::Socket, addr: std::net::SocketAddr, request: &[u8]) -> std::net::TcpStream {
    s.connect(&addr.into()).unwrap();
    let mut s = std::net::TcpStream::from(s);
    s.write_all(request).unwrap();
    s
}

/// Out of descriptors while connections wait (a scrape on the metrics
/// listener; with `waiting_caller`, a caller on the public port), the call
/// in progress goes on; once descriptors free, the waiting are answered, and
/// `/metrics` counts the failed accepts: a few per 50 ms back-off, not a
/// spinning thread's hundreds of thousands. Then out of descriptors again, a
/// shutdown still closes the call with 1001 within the drain (a listener
/// that fails at once must not keep the shutdown from the calls, and a
/// blocked `accept()` must not need a descriptor to be woken), and the
/// server stops once descriptors free.
///
/// Where the public listener is polled (smol, epoll) the caller must also
/// wait unanswered while starved. The blocking server's blocked `accept()`
/// answers it with its reserved descriptor, and io_uring's multishot accept,
/// armed under the normal limit, goes on accepting (see [`Limit::starve`]):
/// their own out-of-descriptors back-off is what the older test checks with
/// the limit lowered before the server starts (io_uring), or not at all
/// (blocking: only the accepts after the reserved one fail, which phase two
/// meets).
pub fn out_of_descriptors_calls_go_on_and_a_shutdown_reaches_them(
    adapter: Adapter,
    waiting_caller: bool,
) {
    let _serial = SERIAL.lock().unwrap_or_else(PoisonError::into_inner);
    let srv = RunningServer::start_on(adapter, |s| {
        s.threads = Some(1);
        s.drain_seconds = 2;
        s.handler = callstream_server::handlers::HandlerSpec::Shipped("echo");
        s.metrics =
            callstream_server::metrics_listener::MetricsAt::Listen(([127, 0, 0, 1], 0).into());
    });
    let metrics = srv.metrics_addr.expect("a metrics listener");
    let mut call = TwilioStream::connect(srv.addr, &StreamOpts::default(), 7).unwrap();
    call.start(&[]).unwrap();
    let mut got = call.stream_audio(&silence(5)).unwrap();
    call.read_media(5 * 160, Duration::from_secs(5), &mut got)
        .unwrap();
    let scrape_request =
        b"GET /metrics HTTP/1.1\r\nHost: callstream.test\r\nConnection: close\r\n\r\n";
    let healthz = b"GET /healthz HTTP/1.1\r\nHost: callstream.test\r\nConnection: close\r\n\r\n";
    let answer = |c: std::net::TcpStream| {
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        read_response(&mut std::io::BufReader::new(c)).unwrap()
    };

    // Phase one. The metrics listener's accept, blocked with a descriptor
    // reserved, takes `first`, which holds it in its answer until asked.
    // The sockets to wait in the backlogs are made now and connected once
    // starved, so that no accept can take them before.
    let mut first = std::net::TcpStream::connect(metrics).unwrap();
    let (second, caller) = (socket(), socket());
    let starved = Limit::starve();
    let second = connect(second, metrics, scrape_request);
    let caller = waiting_caller.then(|| connect(caller, srv.addr, healthz));
    let starved_at = Instant::now();
    // `first` answered and closed, every accept of the metrics listener
    // fails until the end of the phase.
    first.write_all(scrape_request).unwrap();
    assert_eq!(answer(first).status, 200);
    if let Some(c) = &caller
        && matches!(adapter, Adapter::Smol | Adapter::Epoll)
    {
        c.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        assert!(
            c.peek(&mut [0u8; 1]).is_err(),
            "the caller was answered without a descriptor"
        );
    }
    // Half a second of the call meanwhile, every frame echoed.
    let mut during = call.stream_audio(&silence(25)).unwrap();
    call.read_media(25 * 160, Duration::from_secs(5), &mut during)
        .unwrap();
    let echoed = media_bytes(&during).len();
    assert!(
        echoed >= 25 * 160 && !during.iter().any(|m| matches!(m, ServerMessage::Closed(_))),
        "the call stalled while out of descriptors: {echoed} bytes echoed, last {:?}",
        during.last()
    );
    // A second out of descriptors at least, so that every listener has
    // tried and failed, however the machine schedules its threads.
    std::thread::sleep(Duration::from_secs(1).saturating_sub(starved_at.elapsed()));
    drop(starved);
    let scraped = answer(second);
    assert_eq!(scraped.status, 200, "{}", scraped.body);
    let failures: u64 = scraped
        .body
        .lines()
        .find_map(|l| l.strip_prefix("callstream_accept_failures_total "))
        .expect("the failure counter")
        .parse()
        .unwrap();
    // About a second out of descriptors, a failure per listener per
    // back-off: tens. A listener retrying at once would count hundreds of
    // thousands; the bound leaves room for a stalled machine.
    assert!((1..=2_000).contains(&failures), "{failures} failed accepts");
    if let Some(c) = caller {
        assert_eq!(answer(c).status, 200);
    }

    // Phase two: the shutdown while out of descriptors.
    let caller = socket();
    let starved = Limit::starve();
    let _caller = waiting_caller.then(|| connect(caller, srv.addr, healthz));
    let begun = Instant::now();
    srv.begin_shutdown();
    let mut end = Vec::new();
    let read = call.read_until(begun + Duration::from_secs(5), &mut end);
    assert!(
        end.contains(&ServerMessage::Closed(Some(1001))),
        "no 1001 close within the drain while out of descriptors: {read:?}, last {:?}",
        end.last()
    );
    drop(starved);
    // The server stops once descriptors free (bounded: a run blocked in
    // accept() for good would hang the test).
    let (done_tx, done) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = done_tx.send(srv.stop().is_ok());
    });
    assert_eq!(
        done.recv_timeout(Duration::from_secs(15)),
        Ok(true),
        "the server did not stop after the shutdown"
    );
}

/// A flood of connections that each send a request and their FIN in one go,
/// far more than the server has descriptors for: each is answered and let
/// go at once, so its descriptor comes back, the whole flood is served, and
/// every `/healthz` probe after it is answered. (A reactor that missed a FIN
/// arriving with data held each such connection until its idle timeout,
/// and with it a descriptor: the flood starved the server for a minute.)
pub fn a_flood_of_ended_connections_gives_its_descriptors_back(adapter: Adapter) {
    const FLOOD: usize = 200;
    const PROBES: usize = 20;
    let _serial = SERIAL.lock().unwrap_or_else(PoisonError::into_inner);
    // The clients' sockets first (they are this process's descriptors too),
    // then a limit that leaves the server about forty of its own, set
    // before it starts (io_uring keeps the limit an accept was armed under).
    let mut clients: Vec<socket2::Socket> = (0..FLOOD + PROBES).map(|_| socket()).collect();
    let count = || std::fs::read_dir("/proc/self/fd").unwrap().count() as u64;
    let limit = Limit::lower_to(count() + 64);
    let srv = RunningServer::start_on(adapter, |s| s.threads = Some(1));
    let keep_alive = b"GET /healthz HTTP/1.1\r\nHost: callstream.test\r\n\r\n";
    let flood: Vec<std::net::TcpStream> = clients
        .drain(..FLOOD)
        .map(|s| {
            let c = connect(s, srv.addr, keep_alive);
            c.shutdown(std::net::Shutdown::Write).unwrap();
            c
        })
        .collect();
    // Each answered, then closed by the server. The bound is a hundred times
    // what the flood takes, and far under the idle timeout it waited for.
    let until = Instant::now() + Duration::from_secs(20);
    for (i, mut c) in flood.into_iter().enumerate() {
        use std::io::Read as _;
        let left = until.saturating_duration_since(Instant::now());
        c.set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .unwrap();
        let mut answer = Vec::new();
        let read = c.read_to_end(&mut answer);
        assert!(
            read.is_ok() && answer.starts_with(b"HTTP/1.1 200"),
            "flood connection {i} of {FLOOD}: {read:?}, {:?}",
            String::from_utf8_lossy(&answer)
        );
    }
    let healthz = b"GET /healthz HTTP/1.1\r\nHost: callstream.test\r\nConnection: close\r\n\r\n";
    for (i, s) in clients.into_iter().enumerate() {
        let c = connect(s, srv.addr, healthz);
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let answer = read_response(&mut std::io::BufReader::new(c));
        assert!(
            answer.as_ref().is_ok_and(|a| a.status == 200),
            "probe {i} after the flood: {answer:?}"
        );
    }
    drop(limit);
    srv.stop().unwrap();
}
