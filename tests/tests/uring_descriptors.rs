//! The io_uring server out of file descriptors: the multishot accept fails
//! (EMFILE), the reactor arms it again only after a back-off instead of
//! spinning on it, and takes the waiting connection once a descriptor is
//! free. A test binary of its own: it lowers the whole process's file limit.
use callstream_tests::*;
use rlimit::Resource;
use std::io::Write as _;
use std::time::Duration;

#[test]
fn out_of_descriptors_the_server_backs_off_then_serves() {
    let srv = RunningServer::start_on(Adapter::Uring, |s| s.threads = Some(1));
    let healthz = b"GET /healthz HTTP/1.1\r\nHost: callstream.test\r\nConnection: close\r\n\r\n";
    // No request before this one: a closing connection would free a
    // descriptor at a moment of its own.
    let (soft, hard) = rlimit::getrlimit(Resource::NOFILE).unwrap();
    let open = std::fs::read_dir("/proc/self/fd").unwrap().count() as u64;
    rlimit::setrlimit(Resource::NOFILE, open + 16, hard).unwrap();
    // Every descriptor taken but one, which the client's socket takes: the
    // server has none left to accept with.
    let mut filler = Vec::new();
    while let Ok(f) = std::fs::File::open("/dev/null") {
        filler.push(f);
    }
    filler.pop();
    let mut client = std::net::TcpStream::connect(srv.addr).unwrap();
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
