//! What only the io_uring server has: receive buffers provided to the
//! kernel, and a tick that gathers completions. (Everything the servers
//! share is in the conformance suite.)
use callstream_tests::*;
use std::sync::mpsc;
use std::time::{Duration, Instant};

const HOST: &str = "callstream.test";

/// `frames` frames of μ-law, each filled with a byte of its own, so a lost,
/// repeated or reordered frame shows.
fn numbered_frames(frames: usize) -> Vec<u8> {
    (0..frames)
        .flat_map(|k| [(k as u8).wrapping_mul(7) | 0x80; 160])
        .collect()
}

/// With a single 2 KiB receive buffer, a burst of frames and a request
/// bigger than the buffer both arrive while every buffer is taken: the
/// kernel ends the connection's receive (`ENOBUFS`) again and again, and the
/// server arms it again each time. Every byte still arrives, in order.
#[test]
fn one_receive_buffer_still_carries_every_byte() {
    let srv = RunningServer::start_on(
        Adapter::UringTuned {
            tick: Duration::ZERO,
            buffers: 1,
        },
        |s| {
            s.threads = Some(1);
            s.handler = callstream_server::handlers::HandlerSpec::Shipped("echo");
        },
    );
    // A signed request of some 8 KiB: four buffers' worth.
    let filler = "x".repeat(8000);
    let params = [
        ("AccountSid", ACCOUNT),
        ("CallSid", "CA0123456789abcdef0123456789abcdef"),
        ("CallStatus", "completed"),
        ("Filler", filler.as_str()),
    ];
    let answer = post_signed(srv.addr, HOST, "/webhook/call_status", &params).unwrap();
    assert_eq!(answer.status, 204);

    let audio = numbered_frames(50);
    let mut call = TwilioStream::connect(srv.addr, &StreamOpts::default(), 40).unwrap();
    call.start(&[]).unwrap();
    // All at once, not paced: some 20 KiB land before the server reads.
    for frame in audio.chunks(160) {
        call.media(frame).unwrap();
    }
    let mut got = Vec::new();
    call.read_media(audio.len(), Duration::from_secs(10), &mut got)
        .unwrap();
    let echoed = media_bytes(&got);
    assert_eq!(echoed.len(), audio.len(), "echoed {} bytes", echoed.len());
    assert!(echoed == audio, "the echo differs from what was sent");
    call.stop().unwrap();
    srv.stop().unwrap();
}

/// Fifty calls on two reactors, each loop gathering completions for 2 ms:
/// every frame of every call is echoed, in order, and once the calls have
/// ended the shutdown returns without waiting out the drain period.
#[test]
fn a_tick_serves_many_calls_on_two_reactors() {
    let srv = RunningServer::start_on(
        Adapter::UringTuned {
            tick: Duration::from_millis(2),
            buffers: 2048,
        },
        |s| {
            s.threads = Some(2);
            s.drain_seconds = 600;
            s.handler = callstream_server::handlers::HandlerSpec::Shipped("echo");
        },
    );
    let audio = numbered_frames(10);
    let mut calls: Vec<TwilioStream> = (0..50)
        .map(|n| {
            let mut call =
                TwilioStream::connect(srv.addr, &StreamOpts::default(), 100 + n).unwrap();
            call.start(&[]).unwrap();
            call
        })
        .collect();
    for frame in audio.chunks(160) {
        for call in &mut calls {
            call.media(frame).unwrap();
        }
    }
    std::thread::scope(|scope| {
        for (n, call) in calls.iter_mut().enumerate() {
            let audio = &audio;
            scope.spawn(move || {
                let mut got = Vec::new();
                call.read_media(audio.len(), Duration::from_secs(10), &mut got)
                    .unwrap();
                assert!(media_bytes(&got) == *audio, "call {n}: the echo differs");
            });
        }
    });
    for call in &mut calls {
        call.stop().unwrap();
    }
    let (tx, rx) = mpsc::channel();
    let asked = Instant::now();
    std::thread::spawn(move || tx.send(srv.stop().is_ok()));
    // A bound for a hang, not a measurement: the drain period is 600 s, the
    // calls end within a few seconds (close handshake, then the linger).
    let stopped = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("shutdown waited for calls that had ended");
    assert!(stopped, "stopped after {:?}", asked.elapsed());
    drop(calls);
}
