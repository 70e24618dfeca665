//! The conformance suite: each server (smol, blocking, epoll and uring), started on an
//! ephemeral port and driven by real, independent clients: raw HTTP over TCP, Twilio's exact upgrade request,
//! tungstenite for WebSocket framing, audio made by espeak-ng and sox
//! (committed fixtures: `tests/fixtures/make_speech.sh`), and Python's
//! audioop as the reference decoder (its committed table; one test, run by
//! `.ci/run` with `--ignored`, asks a live audioop).
use callstream_tests::*;
use std::io::Write as _;
use std::time::{Duration, Instant};

const HOST: &str = "callstream.test";

fn get(addr: std::net::SocketAddr, path: &str) -> HttpResponse {
    http_raw(
        addr,
        format!("GET {path} HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .expect("answer")
}

fn every_route_answers_as_documented(adapter: Adapter) {
    let srv = RunningServer::start_on(adapter, |_| {});
    let a = srv.addr;

    for p in ["/healthz", "/healthz/"] {
        let r = get(a, p);
        assert_eq!((r.status, r.body.as_str()), (200, "ok"), "{p}");
    }
    let v = get(a, "/version");
    assert_eq!(v.status, 200);
    let j: serde_json::Value = serde_json::from_str(&v.body).expect("version is JSON");
    assert!(
        j["name"].as_str().is_some_and(|n| n.contains("callstream")),
        "{j}"
    );
    assert!(j["version"].is_string(), "{j}");

    // The preview is unsigned and shows the TwiML a call would get.
    let p = get(a, "/webhook/incoming_call_preview");
    assert_eq!(p.status, 200);
    assert!(
        p.header("content-type")
            .is_some_and(|c| c.starts_with("application/xml"))
    );
    assert!(p.body.starts_with("<?xml"), "{}", p.body);
    assert!(
        p.body
            .contains(r#"url="wss://callstream.test/ws/twilio-media""#),
        "{}",
        p.body
    );

    // The incoming-call webhook, signed as Twilio signs it.
    let call = [
        ("CallSid", "CA0123456789abcdef0123456789abcdef"),
        ("AccountSid", ACCOUNT),
        ("From", "+14155550100"),
        ("To", "+14155550199"),
        ("CallStatus", "ringing"),
    ];
    for path in ["/webhook/incoming_call", "/webhook/incoming_call/"] {
        let r = post_signed(a, HOST, path, &call).expect("answer");
        assert_eq!(r.status, 200, "{path}: {}", r.body);
        assert_eq!(r.header("cache-control"), Some("no-store"));
        assert!(r.body.starts_with("<?xml"));
        assert!(
            r.body.contains(
                r#"<Parameter name="call_sid" value="CA0123456789abcdef0123456789abcdef"/>"#
            ),
            "{}",
            r.body
        );
        assert!(r.body.contains("+14155550100"), "{}", r.body);
        assert!(
            r.body
                .contains(r#"action="https://callstream.test/webhook/stream_ended""#),
            "{}",
            r.body
        );
        assert!(
            r.body
                .contains(r#"statusCallback="https://callstream.test/webhook/stream_status""#),
            "{}",
            r.body
        );
    }

    // Unsigned, or signed for another URL: 403.
    let body = form(&call);
    let unsigned = format!(
        "POST /webhook/incoming_call HTTP/1.1\r\nHost: {HOST}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    assert_eq!(http_raw(a, unsigned.as_bytes()).unwrap().status, 403);
    let wrong = post_signed(a, "other.example", "/webhook/incoming_call", &call).unwrap();
    assert_eq!(wrong.status, 403);

    for path in [
        "/webhook/stream_status",
        "/webhook/stream_ended",
        "/webhook/call_status",
        "/webhook/handle_recording",
    ] {
        let params = [
            ("AccountSid", ACCOUNT),
            ("CallSid", "CA0123456789abcdef0123456789abcdef"),
            ("StreamEvent", "stream-started"),
        ];
        let r = post_signed(a, HOST, path, &params).unwrap();
        assert_eq!(r.status, 204, "{path}");
    }

    assert_eq!(get(a, "/nope").status, 404);
    let r = http_raw(
        a,
        format!("DELETE /healthz HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .unwrap();
    assert_eq!(r.status, 405);
    assert!(
        r.header("allow").is_some_and(|v| v.contains("GET")),
        "{r:?}"
    );

    let m = get(a, "/metrics");
    assert_eq!(m.status, 200);
    assert!(
        m.body.contains(
            r#"callstream_http_requests_total{route="/webhook/call_status",status="204"} 1"#
        ),
        "{}",
        m.body
    );
    assert!(
        m.body.contains("callstream_signature_failures_total{"),
        "{}",
        m.body
    );
    srv.stop().unwrap();
}

fn upgrade_follows_twilio_and_rfc6455(adapter: Adapter) {
    let srv = RunningServer::start_on(adapter, |_| {});
    // Twilio's request, no subprotocol offered: none named.
    let s = TwilioStream::connect(srv.addr, &StreamOpts::default(), 1).expect("101");
    assert_eq!(s.subprotocol, None);
    // Trailing slash served too, never redirected.
    let s2 = TwilioStream::connect(
        srv.addr,
        &StreamOpts {
            path: "/ws/twilio-media/",
            ..Default::default()
        },
        2,
    )
    .expect("101 with slash");
    // Offered in a list, odd case: echoed as spelled.
    let s3 = TwilioStream::connect(
        srv.addr,
        &StreamOpts {
            offer_protocol: Some("chat, Audio.Twilio.Com"),
            ..Default::default()
        },
        3,
    )
    .expect("101");
    assert_eq!(s3.subprotocol.as_deref(), Some("Audio.Twilio.Com"));
    // Unsigned: refused.
    let e = TwilioStream::connect(
        srv.addr,
        &StreamOpts {
            token: None,
            ..Default::default()
        },
        4,
    )
    .err()
    .expect("refused");
    assert!(e.to_string().contains("403"), "{e}");
    drop((s, s2, s3));
    srv.stop().unwrap();
}

/// Two streams with the same CallSid and StreamSid, one after the other and
/// then side by side: every recording is kept whole, none overwritten.
fn reused_sids_never_overwrite_a_recording(adapter: Adapter) {
    let dir = tempfile::tempdir().unwrap();
    let rec = dir.path().to_owned();
    let srv = RunningServer::start_on(adapter, |s| {
        s.handler = callstream_server::handlers::HandlerSpec::Shipped("echo");
        s.recordings_dir = Some(rec);
    });
    let frames = |n: usize| vec![0x55u8; 160 * n];
    // A first call of 50 frames, completed.
    let mut first = TwilioStream::connect(srv.addr, &StreamOpts::default(), 9).unwrap();
    first.start(&[]).unwrap();
    for f in frames(50).chunks(160) {
        first.media(f).unwrap();
    }
    first.stop().unwrap();
    let mut got = Vec::new();
    first
        .read_until(Instant::now() + Duration::from_millis(300), &mut got)
        .unwrap();
    // Then the same SIDs twice at once, 10 frames each.
    let mut a = TwilioStream::connect(srv.addr, &StreamOpts::default(), 9).unwrap();
    let mut b = TwilioStream::connect(srv.addr, &StreamOpts::default(), 9).unwrap();
    a.start(&[]).unwrap();
    b.start(&[]).unwrap();
    for f in frames(10).chunks(160) {
        a.media(f).unwrap();
        b.media(f).unwrap();
    }
    a.stop().unwrap();
    b.stop().unwrap();
    a.read_until(Instant::now() + Duration::from_millis(300), &mut got)
        .unwrap();
    b.read_until(Instant::now() + Duration::from_millis(300), &mut got)
        .unwrap();
    drop((first, a, b));
    srv.stop().unwrap();
    let lengths: Vec<(String, u32)> = std::fs::read_dir(dir.path())
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "wav"))
        .map(|p| {
            let frames = hound::WavReader::open(&p).unwrap().duration();
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                frames,
            )
        })
        .collect();
    assert_eq!(lengths.len(), 3, "{lengths:?}");
    let len = |suffix: &str| {
        lengths
            .iter()
            .find(|(name, _)| name.ends_with(suffix))
            .map(|(_, n)| *n)
            .unwrap_or_else(|| panic!("no *{suffix} in {lengths:?}"))
    };
    // The first call's file still holds its 50 frames, the later two theirs.
    assert_eq!(len("abc009.wav"), 50 * 160, "{lengths:?}");
    assert_eq!(len("-2.wav"), 10 * 160, "{lengths:?}");
    assert_eq!(len("-3.wav"), 10 * 160, "{lengths:?}");
}

/// The echo handler plays every frame straight back: what comes back decodes to
/// what was sent, and the recording's caller channel is the reference decoding.
fn echo_call_with_recording(adapter: Adapter) {
    let dir = tempfile::tempdir().unwrap();
    let rec = dir.path().to_owned();
    let srv = RunningServer::start_on(adapter, |s| {
        s.handler = callstream_server::handlers::HandlerSpec::Shipped("echo");
        s.recordings_dir = Some(rec);
    });
    let speech = speech_ulaw("Hello, this is a test call.").expect("speech fixture");
    let mut call = TwilioStream::connect(srv.addr, &StreamOpts::default(), 5).unwrap();
    call.start(&[("caller", "test")]).unwrap();
    let mut got = call.stream_audio(&speech).unwrap();
    // Generous: on a loaded machine the last echoes may lag.
    call.read_media(speech.len() / 160 * 160, Duration::from_secs(10), &mut got)
        .unwrap();
    call.stop().unwrap();
    call.read_until(Instant::now() + Duration::from_millis(500), &mut got)
        .unwrap();

    let echoed = media_bytes(&got);
    let sent_pcm = reference_ulaw2lin(&speech);
    let echoed_pcm = reference_ulaw2lin(&echoed);
    // Whole frames only (the last partial frame is padded by the jitter buffer).
    let whole = speech.len() / 160 * 160;
    assert!(
        echoed_pcm.len() >= whole,
        "echoed {} of {} samples",
        echoed_pcm.len(),
        whole
    );
    assert_eq!(
        &echoed_pcm[..whole],
        &sent_pcm[..whole],
        "echo differs from what was sent"
    );

    // The recording is complete once the stream has stopped.
    let deadline = Instant::now() + Duration::from_secs(5);
    let wav = loop {
        let files: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .collect();
        if let Some(f) = files
            .iter()
            .find(|p| p.extension().is_some_and(|e| e == "wav"))
            && let Ok(r) = hound::WavReader::open(f)
            && r.len() as usize >= whole * 2
        {
            break f.clone();
        }
        assert!(
            Instant::now() < deadline,
            "no complete recording in {:?}",
            dir.path()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let name = wav.file_name().unwrap().to_string_lossy().into_owned();
    assert!(
        name.contains(&call.call_sid) && name.contains(&call.stream_sid),
        "{name}"
    );
    let mut r = hound::WavReader::open(&wav).unwrap();
    assert_eq!(
        (
            r.spec().channels,
            r.spec().sample_rate,
            r.spec().bits_per_sample
        ),
        (2, 8000, 16)
    );
    let samples: Vec<i16> = r.samples::<i16>().map(Result::unwrap).collect();
    let caller: Vec<i16> = samples.iter().step_by(2).copied().collect();
    assert_eq!(
        &caller[..whole],
        &sent_pcm[..whole],
        "recorded caller channel differs from audioop's decoding"
    );
    // The server counted the call and its frames.
    let m = get(srv.addr, "/metrics").body;
    let counter = |name: &str| -> u64 {
        m.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in\n{m}"))
    };
    assert_eq!(counter("callstream_calls_total"), 1);
    assert_eq!(counter("callstream_active_calls"), 0);
    assert!(
        counter("callstream_frames_in_total") >= (whole / 160) as u64,
        "{m}"
    );
    assert!(
        counter("callstream_frames_out_total") >= (whole / 160) as u64,
        "{m}"
    );
    assert!(
        m.contains(r#"callstream_calls_ended_total{reason="stop"} 1"#),
        "{m}"
    );
    srv.stop().unwrap();
}

/// The parrot plays the caller's words back after they stop speaking;
/// speech during the playback clears it (barge-in).
fn parrot_plays_back_and_yields_to_barge_in(adapter: Adapter) {
    let srv = RunningServer::start_on(adapter, |_| {});
    let speech = speech_ulaw("Please repeat after me one two three four five").expect("speech");
    let mut call = TwilioStream::connect(srv.addr, &StreamOpts::default(), 6).unwrap();
    call.start(&[]).unwrap();
    let mut got = call.stream_audio(&speech).unwrap();
    // espeak-ng may pause between words long enough to end an utterance, so the
    // parrot may already answer part of it; what matters is that it answers.
    // Silence after the speech: the VAD ends the utterance and playback starts.
    got.extend(call.stream_audio(&silence(50)).unwrap());
    let played = media_bytes(&got).len();
    assert!(played > 0, "no playback after the caller stopped: {got:?}");
    // Barge in with speech while the reply is still playing.
    got.extend(
        call.stream_audio(&speech[..speech.len().min(8000)])
            .unwrap(),
    );
    assert!(got.contains(&ServerMessage::Clear), "no clear on barge-in");
    let clear_at = got.iter().position(|m| *m == ServerMessage::Clear).unwrap();
    assert!(
        got[..clear_at]
            .iter()
            .any(|m| matches!(m, ServerMessage::Media(_)))
    );
    call.stop().unwrap();
    srv.stop().unwrap();
}

/// A full playback ends with a mark; echoing it back is accepted.
fn parrot_marks_the_end_of_its_reply(adapter: Adapter) {
    let srv = RunningServer::start_on(adapter, |_| {});
    let speech = speech_ulaw("Testing marks.").expect("speech");
    let mut call = TwilioStream::connect(srv.addr, &StreamOpts::default(), 7).unwrap();
    call.start(&[]).unwrap();
    let mut got = call.stream_audio(&speech).unwrap();
    got.extend(call.stream_audio(&silence(150)).unwrap());
    let mark = got.iter().find_map(|m| {
        if let ServerMessage::Mark(n) = m {
            Some(n.clone())
        } else {
            None
        }
    });
    let mark = mark.unwrap_or_else(|| panic!("no mark after the reply: {got:?}"));
    let before = got
        .iter()
        .position(|m| *m == ServerMessage::Mark(mark.clone()))
        .unwrap();
    assert!(
        got[..before]
            .iter()
            .any(|m| matches!(m, ServerMessage::Media(_))),
        "mark before any audio"
    );
    call.mark_echo(&mark).unwrap();
    call.stop().unwrap();
    srv.stop().unwrap();
}

/// Shutdown with a call in progress: new connections are refused, the call
/// keeps running through the drain period, then is closed with 1001.
fn graceful_shutdown_drains_then_closes_1001(adapter: Adapter) {
    let srv = RunningServer::start_on(adapter, |s| {
        // Calls run for the drain period less the close wait (1 s).
        s.drain_seconds = 3;
        s.handler = callstream_server::handlers::HandlerSpec::Shipped("echo");
    });
    let addr = srv.addr;
    let mut call = TwilioStream::connect(addr, &StreamOpts::default(), 8).unwrap();
    call.start(&[]).unwrap();
    let mut got = call.stream_audio(&silence(10)).unwrap();
    srv.begin_shutdown();
    // The call still echoes during the drain.
    let during = call.stream_audio(&silence(20)).unwrap();
    assert!(
        !media_bytes(&during).is_empty(),
        "call stopped before the drain period ended"
    );
    assert!(
        std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_err(),
        "still accepting during shutdown"
    );
    got.extend(during);
    call.read_until(Instant::now() + Duration::from_secs(3), &mut got)
        .unwrap();
    assert!(
        got.contains(&ServerMessage::Closed(Some(1001))),
        "no 1001 close: {:?}",
        got.last()
    );
    srv.stop().unwrap();
}

/// Shutdown with a call that has gone quiet (no frame in, nothing to send,
/// no deadline near): the shutdown itself must wake the connection, which is
/// then closed with 1001 at the end of the drain period like any other.
fn a_silent_call_is_closed_1001_when_the_drain_ends(adapter: Adapter) {
    let srv = RunningServer::start_on(adapter, |s| {
        s.drain_seconds = 2;
        s.handler = callstream_server::handlers::HandlerSpec::Shipped("echo");
    });
    let mut call = TwilioStream::connect(srv.addr, &StreamOpts::default(), 9).unwrap();
    call.start(&[]).unwrap();
    let mut got = call.stream_audio(&silence(5)).unwrap();
    // Let the echo play out, so that the call has nothing left to do.
    call.read_until(Instant::now() + Duration::from_millis(500), &mut got)
        .unwrap();
    let begun = Instant::now();
    srv.begin_shutdown();
    let read = call.read_until(begun + Duration::from_secs(4), &mut got);
    assert!(
        got.contains(&ServerMessage::Closed(Some(1001))),
        "no 1001 close for a silent call within the drain: {read:?}, {:.80}",
        format!("last {:?}", got.last())
    );
    srv.stop().unwrap();
}

/// Past the call slots (every connection a call), a new connection is still
/// taken in for health checks and webhooks, but its upgrade gets 503 with
/// `Retry-After`; the call goes on. (A connection that is not a call gives
/// way instead: tests/tests/limits.rs.)
fn connection_limit_answers_503(adapter: Adapter) {
    let srv = RunningServer::start_on(adapter, |s| s.max_connections = 1);
    let mut call = TwilioStream::connect(srv.addr, &StreamOpts::default(), 1).unwrap();
    call.start(&[]).unwrap();
    let health = get(srv.addr, "/healthz");
    assert_eq!((health.status, health.body.as_str()), (200, "ok"));
    let upgrade = callstream_twilio::Upgrade::new(HOST, "/ws/twilio-media", Some(TOKEN), 2);
    let refused = http_raw(srv.addr, &upgrade.to_bytes()).unwrap();
    assert_eq!(refused.status, 503, "{}", refused.body);
    assert!(refused.header("retry-after").is_some());
    // The call goes on.
    let mut got = Vec::new();
    call.media(&[0xFF; 160]).unwrap();
    call.read_until(Instant::now() + Duration::from_millis(200), &mut got)
        .unwrap();
    assert!(
        !got.iter().any(|m| matches!(m, ServerMessage::Closed(_))),
        "{got:?}"
    );
    drop(call);
    srv.stop().unwrap();
}

/// A handler that blocks inside `on_event` (the mistake of doing slow work
/// inline) must not stop the server answering webhooks or serving other calls.
fn a_blocked_handler_does_not_stall_the_server(adapter: Adapter) {
    use callstream_core::call::CallEvent;
    use callstream_core::handler::{Control, Handler, session_factory};
    use std::sync::{Arc, Mutex, mpsc};

    struct Stuck(Arc<Mutex<mpsc::Receiver<()>>>, mpsc::Sender<()>);
    impl Handler for Stuck {
        fn on_event(&mut self, event: &CallEvent, _: &mut Control<'_>) {
            if matches!(event, CallEvent::Started(_)) {
                let _ = self.1.send(());
                let _ = self.0.lock().unwrap().recv_timeout(Duration::from_secs(20));
            }
        }
    }
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let release_rx = Arc::new(Mutex::new(release_rx));
    let (stuck_tx, stuck_rx) = mpsc::channel::<()>();
    let stuck_tx = Mutex::new(stuck_tx);
    let srv = RunningServer::start_custom(
        adapter,
        |s| s.threads = Some(2),
        move |c| {
            let echo = callstream_core::handler::by_name("echo").unwrap();
            let first = std::sync::atomic::AtomicBool::new(true);
            let handlers: callstream_core::handler::HandlerFactory =
                Arc::new(move |start: &callstream_core::wire::StreamStart| {
                    if first.swap(false, std::sync::atomic::Ordering::SeqCst) {
                        let tx = stuck_tx.lock().unwrap().clone();
                        Box::new(Stuck(release_rx.clone(), tx)) as Box<dyn Handler>
                    } else {
                        echo(start)
                    }
                });
            c.session = Some(session_factory(Default::default(), handlers));
        },
    );
    let mut stuck = TwilioStream::connect(srv.addr, &StreamOpts::default(), 20).unwrap();
    stuck.start(&[]).unwrap();
    stuck_rx
        .recv_timeout(Duration::from_secs(10))
        .expect("the handler is now blocked");
    // While it is blocked: a webhook is answered, and another call echoes.
    let params = [
        ("AccountSid", ACCOUNT),
        ("CallSid", "CA0123456789abcdef0123456789abcdef"),
        ("CallStatus", "completed"),
    ];
    assert_eq!(
        post_signed(srv.addr, HOST, "/webhook/call_status", &params)
            .unwrap()
            .status,
        204
    );
    let mut other = TwilioStream::connect(srv.addr, &StreamOpts::default(), 21).unwrap();
    other.start(&[]).unwrap();
    let mut got = other.stream_audio(&silence(10)).unwrap();
    other
        .read_until(Instant::now() + Duration::from_millis(300), &mut got)
        .unwrap();
    assert!(
        !media_bytes(&got).is_empty(),
        "the other call was stalled by the blocked handler"
    );
    release_tx.send(()).unwrap();
    drop((stuck, other));
    srv.stop().unwrap();
}

/// A handler that panics (a bug in an application's handler), in a call
/// and again in its `Drop` when its connection goes, ends its own call only:
/// another call on the same thread goes on echoing, and new calls are
/// served.
fn a_panicking_handler_ends_only_its_call(adapter: Adapter) {
    use callstream_core::call::CallEvent;
    use callstream_core::handler::{Control, Handler, session_factory};
    use std::sync::Arc;

    struct Bomb;
    impl Handler for Bomb {
        fn on_event(&mut self, event: &CallEvent, _: &mut Control<'_>) {
            if matches!(event, CallEvent::Audio(_)) {
                panic!("a handler's bug (the test's own)");
            }
        }
    }
    impl Drop for Bomb {
        fn drop(&mut self) {
            if !std::thread::panicking() {
                panic!("a handler's bug in drop (the test's own)");
            }
        }
    }
    let srv = RunningServer::start_custom(
        adapter,
        // One thread: every call shares it.
        |s| s.threads = Some(1),
        move |c| {
            let echo = callstream_core::handler::by_name("echo").unwrap();
            let handlers: callstream_core::handler::HandlerFactory =
                Arc::new(move |start: &callstream_core::wire::StreamStart| {
                    if start.parameter("role") == Some("bomb") {
                        Box::new(Bomb) as Box<dyn Handler>
                    } else {
                        echo(start)
                    }
                });
            c.session = Some(session_factory(Default::default(), handlers));
        },
    );
    let echoes = |s: &mut TwilioStream| {
        let mut got = s.stream_audio(&silence(10)).unwrap();
        s.read_media(160, Duration::from_secs(2), &mut got).unwrap();
        !media_bytes(&got).is_empty()
    };
    let mut steady = TwilioStream::connect(srv.addr, &StreamOpts::default(), 30).unwrap();
    steady.start(&[]).unwrap();
    assert!(echoes(&mut steady), "the steady call echoes");

    let mut bomb = TwilioStream::connect(srv.addr, &StreamOpts::default(), 31).unwrap();
    bomb.start(&[("role", "bomb")]).unwrap();
    // Its first audio sets the handler off; the server closes that socket.
    let mut got = Vec::new();
    let ended = bomb.media(&silence(1)).is_err()
        || match bomb.read_until(Instant::now() + Duration::from_secs(5), &mut got) {
            Err(_) => true,
            Ok(()) => got.iter().any(|m| matches!(m, ServerMessage::Closed(_))),
        };
    assert!(ended, "the panicking call is closed: {got:?}");
    // Its socket's end lets the server drop the connection, and with it the
    // handler, whose `Drop` panics again.
    drop(bomb);
    std::thread::sleep(Duration::from_millis(200));

    assert!(echoes(&mut steady), "the other call on that thread goes on");
    let mut later = TwilioStream::connect(srv.addr, &StreamOpts::default(), 32).unwrap();
    later.start(&[]).unwrap();
    assert!(echoes(&mut later), "a new call is served");
    drop((steady, later));
    srv.stop().unwrap();
}

/// A client that sends and never reads must not hold the server: its
/// connection is closed and shutdown still completes.
fn a_client_that_never_reads_cannot_block_shutdown(adapter: Adapter) {
    let srv = RunningServer::start_on(adapter, |s| s.drain_seconds = 2);
    let mut s = std::net::TcpStream::connect(srv.addr).unwrap();
    s.set_write_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let req = format!("GET /version HTTP/1.1\r\nHost: {HOST}\r\n\r\n").repeat(64);
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until {
        if s.write_all(req.as_bytes()).is_err() {
            break;
        }
    }
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || tx.send(srv.stop().is_ok()));
    // A bound for a hang, not a measurement: the drain period is 2 s.
    let stopped = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("shutdown hung on a client that never reads");
    assert!(stopped);
    drop(s);
}

/// The pattern for slow work: the handler hands the call's remote control to
/// its own thread, which later sends audio and a mark; the server wakes the
/// connection and sends them.
fn audio_from_another_thread_reaches_the_caller(adapter: Adapter) {
    use callstream_core::call::CallEvent;
    use callstream_core::handler::{Control, Handler, session_factory};
    use std::sync::Arc;

    struct Worker;
    impl Handler for Worker {
        fn on_event(&mut self, event: &CallEvent, control: &mut Control<'_>) {
            if matches!(event, CallEvent::Started(_)) {
                let remote = control.remote();
                std::thread::spawn(move || {
                    // Stands in for speech synthesis or a language model.
                    std::thread::sleep(Duration::from_millis(200));
                    remote.play_ulaw(&[0x55; 1600]).unwrap();
                    remote.mark("reply-done").unwrap();
                });
            }
        }
    }
    let srv = RunningServer::start_custom(
        adapter,
        |_| {},
        |c| {
            let handlers: callstream_core::handler::HandlerFactory =
                Arc::new(|_: &callstream_core::wire::StreamStart| {
                    Box::new(Worker) as Box<dyn Handler>
                });
            c.session = Some(session_factory(Default::default(), handlers));
        },
    );
    let mut call = TwilioStream::connect(srv.addr, &StreamOpts::default(), 30).unwrap();
    call.start(&[]).unwrap();
    // The caller says nothing: only the worker thread can make the server speak.
    let mut got = Vec::new();
    call.read_media(1600, Duration::from_secs(10), &mut got)
        .unwrap();
    let end = Instant::now() + Duration::from_secs(10);
    while !got.contains(&ServerMessage::Mark("reply-done".into())) && Instant::now() < end {
        call.read_until(Instant::now() + Duration::from_millis(100), &mut got)
            .unwrap();
    }
    assert_eq!(media_bytes(&got), vec![0x55; 1600]);
    assert!(
        got.contains(&ServerMessage::Mark("reply-done".into())),
        "{got:?}"
    );
    call.stop().unwrap();
    srv.stop().unwrap();
}

/// The end-to-end check against a live `audioop` rather than its committed
/// table: an echo call's audio, both ways, decoded by Python. Needs python3
/// with `audioop` (`pip install audioop-lts` on Python 3.13 and later), so it
/// is not part of `cargo test --workspace`; `.ci/run` runs it with `--ignored`.
#[test]
#[ignore = "needs python3 with audioop (pip install audioop-lts on Python >= 3.13); .ci/run runs it"]
fn echo_call_decodes_alike_under_live_audioop() {
    let srv = RunningServer::start(|s| {
        s.handler = callstream_server::handlers::HandlerSpec::Shipped("echo");
    });
    let speech = speech_ulaw("Hello, this is a test call.").expect("speech fixture");
    let mut call = TwilioStream::connect(srv.addr, &StreamOpts::default(), 9).unwrap();
    call.start(&[]).unwrap();
    let mut got = call.stream_audio(&speech).unwrap();
    let whole = speech.len() / 160 * 160;
    call.read_media(whole, Duration::from_secs(10), &mut got)
        .unwrap();
    call.stop().unwrap();
    let echoed = media_bytes(&got);
    let live_sent = audioop_ulaw2lin(&speech).unwrap_or_else(|e| panic!("{e}"));
    let live_echoed = audioop_ulaw2lin(&echoed).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        live_sent,
        reference_ulaw2lin(&speech),
        "live audioop differs from its committed table"
    );
    assert!(
        live_echoed.len() >= whole,
        "echoed {} of {whole}",
        live_echoed.len()
    );
    assert_eq!(&live_echoed[..whole], &live_sent[..whole], "echo differs");
    srv.stop().unwrap();
}

/// Waits (at most `limit`) until `metric` reads `want`; the last reading.
fn metric_settles(addr: std::net::SocketAddr, name: &str, want: u64, limit: Duration) -> u64 {
    let until = Instant::now() + limit;
    loop {
        let v = metric(addr, name);
        if v == want || Instant::now() >= until {
            return v;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Reads until the server closes; `None` when it has not within `limit`.
fn read_to_close(s: &mut std::net::TcpStream, limit: Duration) -> Option<String> {
    use std::io::Read as _;
    s.set_read_timeout(Some(limit)).unwrap();
    let mut out = Vec::new();
    match s.read_to_end(&mut out) {
        Ok(_) => Some(String::from_utf8_lossy(&out).into_owned()),
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
            Some(String::from_utf8_lossy(&out).into_owned())
        }
        Err(_) => None,
    }
}

/// A peer's FIN or RST that arrives with its last data is seen at once, on
/// every runtime (an edge-triggered reactor gets one edge for both): the
/// request before a FIN is answered and the socket closed, a half body
/// before a FIN or RST frees its connection without waiting for the
/// request timeout, and a stream whose peer half-closes without a close
/// frame ends its call. The limits below are ten times what any of this
/// takes and well under the timeouts it used to wait for (10 s, 60 s).
fn a_peers_end_that_comes_with_its_data_is_seen_at_once(adapter: Adapter) {
    use std::io::Write as _;
    let srv = RunningServer::start_on(adapter, |_| {});
    let a = srv.addr;
    let soon = Duration::from_secs(3);

    // A request and its FIN in one go: answered, then closed.
    let mut s = std::net::TcpStream::connect(a).unwrap();
    s.write_all(format!("GET /healthz HTTP/1.1\r\nHost: {HOST}\r\n\r\n").as_bytes())
        .unwrap();
    s.shutdown(std::net::Shutdown::Write).unwrap();
    let answer = read_to_close(&mut s, soon).expect("answered and closed at once");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");

    // A chunked body cut short by a FIN: closed at once, never a 408.
    let mut s = std::net::TcpStream::connect(a).unwrap();
    s.write_all(
        format!(
            "POST /webhook/stream_status HTTP/1.1\r\nHost: {HOST}\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n"
        )
        .as_bytes(),
    )
    .unwrap();
    s.shutdown(std::net::Shutdown::Write).unwrap();
    let answer = read_to_close(&mut s, soon).expect("closed at once");
    assert!(!answer.contains(" 408 "), "{answer}");

    // Half a body, then a reset: the connection is let go at once. The
    // scrapes below are connections too; at rest only the scrape's own is
    // open.
    for _ in 0..20 {
        let mut s = std::net::TcpStream::connect(a).unwrap();
        s.write_all(
            format!(
                "POST /webhook/stream_status HTTP/1.1\r\nHost: {HOST}\r\nContent-Length: 100\r\n\r\nhalf"
            )
            .as_bytes(),
        )
        .unwrap();
        // Linger 0: close sends RST.
        socket2::SockRef::from(&s)
            .set_linger(Some(Duration::ZERO))
            .unwrap();
        drop(s);
    }
    let open = metric_settles(a, "callstream_active_connections", 1, soon);
    assert_eq!(open, 1, "reset connections still held");

    // A stream whose peer half-closes without a close frame: the call ends.
    let mut call = TwilioStream::connect(a, &StreamOpts::default(), 3).unwrap();
    call.start(&[]).unwrap();
    call.media(&silence(1)).unwrap();
    assert_eq!(metric_settles(a, "callstream_active_calls", 1, soon), 1);
    call.shutdown_write().unwrap();
    let calls = metric_settles(a, "callstream_active_calls", 0, soon);
    assert_eq!(calls, 0, "a half-closed stream still counts as a live call");
    srv.stop().unwrap();
}

/// A signed upgrade can be replayed by anyone who saw it (the signature
/// covers only the URL). Replayed upgrades that never send `start` turn
/// over among themselves (their own budget, the oldest closed with 1013)
/// and crowd out neither calls nor health checks: `/healthz` is answered
/// at once, a replay that finds the server full gets 503, and a new call
/// gets in as soon as the replays have waited past the start grace. When
/// every slot holds a call, `/healthz` and `/metrics` are still answered
/// while one more upgrade gets 503.
fn replayed_upgrades_crowd_out_neither_calls_nor_health_checks(adapter: Adapter) {
    const MAX: usize = 20;
    const REPLAYS: usize = 3 * MAX / 2;
    let srv = RunningServer::start_on(adapter, |s| {
        s.max_connections = MAX;
        s.handler = callstream_server::handlers::HandlerSpec::Shipped("echo");
    });
    let a = srv.addr;
    let mut first = TwilioStream::connect(a, &StreamOpts::default(), 1).unwrap();
    first.start(&[]).unwrap();
    let replays: Vec<std::io::Result<TwilioStream>> = (0..REPLAYS)
        .map(|_| TwilioStream::connect(a, &StreamOpts::default(), 2))
        .collect();
    // Shed replays still count while their sockets close; past the limit
    // the newest are refused.
    for r in &replays {
        if let Err(e) = r {
            assert!(e.to_string().contains("upgrade refused: 503"), "{e}");
        }
    }
    let upgraded = replays.iter().filter(|r| r.is_ok()).count();
    assert!(upgraded > MAX / 4, "{upgraded} replays upgraded");
    let health = get(a, "/healthz");
    assert_eq!((health.status, health.body.as_str()), (200, "ok"));
    // A stream that has waited for `start` past the grace gives way to a
    // newcomer; the shed replays' sockets are closed by then.
    std::thread::sleep(callstream_server::limits::START_GRACE + Duration::from_millis(200));
    let mut second = TwilioStream::connect(a, &StreamOpts::default(), 3).unwrap();
    second.start(&[]).unwrap();
    for call in [&mut first, &mut second] {
        let mut got = call.stream_audio(&silence(3)).unwrap();
        call.read_media(3 * 160, Duration::from_secs(5), &mut got)
            .unwrap();
        assert_eq!(media_bytes(&got).len(), 3 * 160, "{got:?}");
    }
    assert_eq!(metric(a, "callstream_active_calls"), 2);
    let waiting = metric(a, "callstream_unstarted_streams");
    assert!(
        waiting <= (MAX / 4) as u64,
        "{waiting} streams without start"
    );
    // The oldest replay was closed with "try again later".
    let mut got = Vec::new();
    let mut oldest = replays.into_iter().next().unwrap().expect("upgraded");
    oldest
        .read_until(Instant::now() + Duration::from_secs(3), &mut got)
        .unwrap();
    assert_eq!(got, [ServerMessage::Closed(Some(1013))]);
    let shed = metric(a, "callstream_connections_shed_total");
    assert!(shed >= (upgraded - MAX / 4) as u64, "{shed} shed");

    // Every slot a call: health, metrics are answered; a stream is not.
    let mut calls = vec![first, second];
    for n in 4..(MAX as u32 + 2) {
        let mut c = TwilioStream::connect(a, &StreamOpts::default(), n).unwrap();
        c.start(&[]).unwrap();
        calls.push(c);
    }
    assert_eq!(
        metric_settles(
            a,
            "callstream_active_calls",
            MAX as u64,
            Duration::from_secs(5)
        ),
        MAX as u64
    );
    let health = get(a, "/healthz");
    assert_eq!((health.status, health.body.as_str()), (200, "ok"));
    match TwilioStream::connect(a, &StreamOpts::default(), 99) {
        Err(e) => assert!(e.to_string().contains("upgrade refused: 503"), "{e}"),
        Ok(_) => panic!("a stream past every call slot was upgraded"),
    }
    for mut c in calls {
        c.stop().unwrap();
    }
    srv.stop().unwrap();
}

macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        mod smol {
            $(#[test] fn $name() { super::$name(super::Adapter::Smol) })*
        }
        mod blocking {
            $(#[test] fn $name() { super::$name(super::Adapter::Blocking) })*
        }
        mod epoll {
            $(#[test] fn $name() { super::$name(super::Adapter::Epoll) })*
        }
        mod uring {
            $(#[test] fn $name() { super::$name(super::Adapter::Uring) })*
        }
    };
}

conformance!(
    every_route_answers_as_documented,
    upgrade_follows_twilio_and_rfc6455,
    echo_call_with_recording,
    reused_sids_never_overwrite_a_recording,
    parrot_plays_back_and_yields_to_barge_in,
    parrot_marks_the_end_of_its_reply,
    graceful_shutdown_drains_then_closes_1001,
    a_silent_call_is_closed_1001_when_the_drain_ends,
    connection_limit_answers_503,
    a_blocked_handler_does_not_stall_the_server,
    a_panicking_handler_ends_only_its_call,
    a_client_that_never_reads_cannot_block_shutdown,
    audio_from_another_thread_reaches_the_caller,
    a_peers_end_that_comes_with_its_data_is_seen_at_once,
    replayed_upgrades_crowd_out_neither_calls_nor_health_checks,
);
