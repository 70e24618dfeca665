//! A server out of file descriptors: its accept fails (EMFILE), it backs
//! off instead of spinning, and takes the waiting connection once a
//! descriptor is free. Each adapter runs this from a test binary of its own:
//! it lowers the whole process's file limit.
use callstream_tests::*;
use rlimit::Resource;
use std::io::Write as _;
use std::time::Duration;

/// EMFILE: the process is out of descriptors.
const EMFILE: i32 = 24;

pub fn out_of_descriptors_the_server_backs_off_then_serves(adapter: Adapter) {
    // The limit is lowered before the server starts: io_uring reads it when
    // an accept is submitted, so a multishot accept armed earlier would go on
    // accepting past a limit lowered later. 64 spare descriptors are plenty
    // for the server's start (listener, ring or epoll, eventfd, threads).
    let (soft, hard) = rlimit::getrlimit(Resource::NOFILE).unwrap();
    let count = || std::fs::read_dir("/proc/self/fd").unwrap().count() as u64;
    rlimit::setrlimit(Resource::NOFILE, count() + 64, hard).unwrap();
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
    rlimit::setrlimit(Resource::NOFILE, soft, hard).unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let answer = read_response(&mut std::io::BufReader::new(client)).unwrap();
    assert_eq!(answer.status, 200);
    srv.stop().unwrap();
}
