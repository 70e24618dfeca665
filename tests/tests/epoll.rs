//! What only the epoll server has: reactors that each own their connections.
//! (Everything the servers share is in the conformance suite.)
use callstream_core::call::CallEvent;
use callstream_core::handler::{Control, Handler, HandlerFactory, session_factory};
use callstream_tests::*;
use std::collections::BTreeSet;
use std::io::Write as _;
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

/// An echo handler that notes which reactor thread started its call.
fn noting_threads(seen: Arc<Mutex<BTreeSet<String>>>) -> HandlerFactory {
    let echo = callstream_core::handler::by_name("echo").expect("echo is shipped");
    Arc::new(move |start: &callstream_core::wire::StreamStart| {
        let name = std::thread::current().name().unwrap_or("?").to_owned();
        seen.lock().unwrap().insert(name);
        echo(start)
    })
}

/// Fifty calls at once on two reactors: every one is echoed, the kernel
/// spread them over both reactors, and once they have ended the shutdown
/// returns without waiting out the drain period.
#[test]
fn many_calls_spread_over_the_reactors() {
    let seen = Arc::new(Mutex::new(BTreeSet::new()));
    let handlers = noting_threads(seen.clone());
    let srv = RunningServer::start_custom(
        Adapter::Epoll,
        |s| {
            s.threads = Some(2);
            s.drain_seconds = 600;
        },
        move |c| c.session = Some(session_factory(Default::default(), handlers)),
    );
    let mut calls: Vec<TwilioStream> = (0..50)
        .map(|n| {
            let mut call =
                TwilioStream::connect(srv.addr, &StreamOpts::default(), 100 + n).unwrap();
            call.start(&[]).unwrap();
            call
        })
        .collect();
    let frame = [0x42u8; 160];
    for _ in 0..10 {
        for call in &mut calls {
            call.media(&frame).unwrap();
        }
    }
    std::thread::scope(|scope| {
        for (n, call) in calls.iter_mut().enumerate() {
            scope.spawn(move || {
                let mut got = Vec::new();
                call.read_media(160, Duration::from_secs(10), &mut got)
                    .unwrap();
                assert!(!media_bytes(&got).is_empty(), "call {n} got no echo");
            });
        }
    });
    let seen = seen.lock().unwrap().clone();
    assert_eq!(
        seen,
        BTreeSet::from(["callstream-0".to_owned(), "callstream-1".to_owned()]),
        "calls were not spread over both reactors"
    );
    for call in &mut calls {
        call.stop().unwrap();
    }
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || tx.send(srv.stop().is_ok()));
    // A bound for a hang, not a measurement: the drain period is 600 s, the
    // calls end within a few seconds (close handshake, then the linger).
    let stopped = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("shutdown waited for calls that had ended");
    assert!(stopped);
    drop(calls);
}

/// A handler that blocks its reactor (the mistake of slow work inline) holds
/// that reactor's calls, but no new caller: about half the new connections
/// arrive on the blocked reactor's listener, and the other reactor takes them.
#[test]
fn a_blocked_reactor_strands_no_new_caller() {
    struct Stuck(mpsc::Sender<()>, Arc<Mutex<mpsc::Receiver<()>>>);
    impl Handler for Stuck {
        fn on_event(&mut self, event: &CallEvent, _: &mut Control<'_>) {
            if matches!(event, CallEvent::Started(_)) {
                let _ = self.0.send(());
                let _ = self.1.lock().unwrap().recv_timeout(Duration::from_secs(20));
            }
        }
    }
    let (stuck_tx, stuck_rx) = mpsc::channel();
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let (stuck_tx, release_rx) = (Mutex::new(stuck_tx), Arc::new(Mutex::new(release_rx)));
    let srv = RunningServer::start_custom(
        Adapter::Epoll,
        |s| s.threads = Some(2),
        move |c| {
            let handlers: HandlerFactory =
                Arc::new(move |_: &callstream_core::wire::StreamStart| {
                    let tx = stuck_tx.lock().unwrap().clone();
                    Box::new(Stuck(tx, release_rx.clone())) as Box<dyn Handler>
                });
            c.session = Some(session_factory(Default::default(), handlers));
        },
    );
    let mut stuck = TwilioStream::connect(srv.addr, &StreamOpts::default(), 1).unwrap();
    stuck.start(&[]).unwrap();
    stuck_rx
        .recv_timeout(Duration::from_secs(10))
        .expect("the handler is now blocked");
    for n in 0..40 {
        let mut s = std::net::TcpStream::connect(srv.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: callstream.test\r\nConnection: close\r\n\r\n")
            .unwrap();
        let answer = read_response(&mut std::io::BufReader::new(s))
            .unwrap_or_else(|e| panic!("connection {n} stranded: {e}"));
        assert_eq!(answer.status, 200);
    }
    release_tx.send(()).unwrap();
    drop(stuck);
    srv.stop().unwrap();
}

/// Remote controls on threads of their own, for calls on both reactors: each
/// wake reaches its own connection, whichever reactor owns it, and only it.
#[test]
fn remote_wakes_reach_their_own_connection() {
    struct Worker(u8);
    impl Handler for Worker {
        fn on_event(&mut self, event: &CallEvent, control: &mut Control<'_>) {
            if matches!(event, CallEvent::Started(_)) {
                let (remote, fill) = (control.remote(), self.0);
                std::thread::spawn(move || {
                    for _ in 0..5 {
                        std::thread::sleep(Duration::from_millis(20));
                        remote.play_ulaw(&[fill; 160]).unwrap();
                    }
                    remote.mark("done").unwrap();
                });
            }
        }
    }
    let seen = Arc::new(Mutex::new(BTreeSet::new()));
    let s = seen.clone();
    let srv = RunningServer::start_custom(
        Adapter::Epoll,
        |s| s.threads = Some(2),
        move |c| {
            let handlers: HandlerFactory =
                Arc::new(move |start: &callstream_core::wire::StreamStart| {
                    let name = std::thread::current().name().unwrap_or("?").to_owned();
                    s.lock().unwrap().insert(name);
                    let fill = start
                        .parameter("fill")
                        .and_then(|f| f.parse().ok())
                        .unwrap_or(0);
                    Box::new(Worker(fill)) as Box<dyn Handler>
                });
            c.session = Some(session_factory(Default::default(), handlers));
        },
    );
    let fills: Vec<u8> = (0..16).map(|n| 0x10 + n).collect();
    let mut calls: Vec<TwilioStream> = fills
        .iter()
        .map(|&fill| {
            let mut call =
                TwilioStream::connect(srv.addr, &StreamOpts::default(), u32::from(fill)).unwrap();
            call.start(&[("fill", &fill.to_string())]).unwrap();
            call
        })
        .collect();
    std::thread::scope(|scope| {
        for (call, &fill) in calls.iter_mut().zip(&fills) {
            scope.spawn(move || {
                let mut got = Vec::new();
                let end = std::time::Instant::now() + Duration::from_secs(10);
                while !got.contains(&ServerMessage::Mark("done".into()))
                    && std::time::Instant::now() < end
                {
                    call.read_until(
                        std::time::Instant::now() + Duration::from_millis(100),
                        &mut got,
                    )
                    .unwrap();
                }
                assert_eq!(media_bytes(&got), vec![fill; 800], "call {fill:#x}");
            });
        }
    });
    assert_eq!(
        seen.lock().unwrap().len(),
        2,
        "the calls were all on one reactor"
    );
    for call in &mut calls {
        call.stop().unwrap();
    }
    srv.stop().unwrap();
}

/// The listeners share their port with each other (SO_REUSEPORT), never
/// with another server: a second one on the same port fails to bind.
#[test]
fn a_second_server_on_the_same_port_is_refused() {
    let first = RunningServer::start_on(Adapter::Epoll, |_| {});
    let port = first.addr.port();
    let second =
        std::panic::catch_unwind(|| RunningServer::start_on(Adapter::Epoll, |s| s.port = port));
    assert!(second.is_err(), "a second server bound port {port}");
    // The first one still answers.
    let healthz = b"GET /healthz HTTP/1.1\r\nHost: callstream.test\r\nConnection: close\r\n\r\n";
    assert_eq!(http_raw(first.addr, healthz).unwrap().status, 200);
    first.stop().unwrap();
}
