//! The call machine plugged into the connection: a simulated Twilio talks to
//! the engine's shipped handlers through bytes and simulated time.

mod connection_support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use callstream_core::call::{CallConfig, CallEvent, StopReason};
use callstream_core::connection::{CloseReason, Config, Event};
use callstream_core::handler::{self, Control, Handler, RemoteControl};
use callstream_core::websocket::Initiator;
use callstream_twilio::Stream;
use connection_support::{Peer, server_frames, text_frame};

const SID: &str = "MZ18ad3ab5a668481ce02b83e7395059f0";
const ACCOUNT: &str = "AC11111111111111111111111111111111";

/// The stream these tests open, with the model writing Twilio's messages.
fn stream(account: &str) -> Stream {
    Stream {
        account_sid: account.to_owned(),
        call_sid: "CA33333333333333333333333333333333".to_owned(),
        stream_sid: SID.to_owned(),
    }
}

fn start(account: &str) -> String {
    stream(account).start(&[("call_sid", "CA33333333333333333333333333333333")])
}

fn media(seq: u64, chunk: u64, ulaw: &[u8]) -> String {
    stream(ACCOUNT).media(seq, chunk, (chunk - 1) * 20, ulaw)
}

fn stop(seq: u64) -> String {
    stream(ACCOUNT).stop(seq)
}

fn with_handler(factory: handler::HandlerFactory) -> Config {
    Config {
        session: Some(handler::session_factory(CallConfig::default(), factory)),
        ..connection_support::unsigned()
    }
}

/// A connection upgraded to a media stream (signatures off), nothing sent yet.
fn upgraded(config: Config) -> Peer {
    let mut peer = Peer::new(config);
    peer.send(
        b"GET /ws/twilio-media HTTP/1.1\r\nHost: voice.example.com\r\nConnection: Upgrade\r\n\
Upgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    );
    assert!(peer.conn.is_stream());
    peer.take_wire();
    peer
}

/// A connection upgraded to a media stream (signatures off), `connected`
/// and `start` already sent.
fn call(config: Config) -> Peer {
    let mut peer = upgraded(config);
    peer.send(&text_frame(
        r#"{"event":"connected","protocol":"Call","version":"1.0.0"}"#,
    ));
    peer.send(&text_frame(&start(ACCOUNT)));
    peer
}

/// The payloads of the media messages the server sent.
fn sent_media(wire: &[u8]) -> Vec<Vec<u8>> {
    server_frames(wire)
        .into_iter()
        .filter(|(opcode, _)| *opcode == 1)
        .filter_map(|(_, payload)| {
            let json: serde_json::Value = serde_json::from_slice(&payload).unwrap();
            (json["event"] == "media").then(|| {
                assert_eq!(json["streamSid"], SID);
                STANDARD
                    .decode(json["media"]["payload"].as_str().unwrap())
                    .unwrap()
            })
        })
        .collect()
}

#[test]
fn events_of_the_call_come_out_and_no_stream_messages() {
    let mut peer = call(with_handler(handler::by_name("silent").unwrap()));
    let events = peer.take_app_events();
    let upgraded = events
        .iter()
        .position(|e| matches!(e, Event::Upgraded { .. }));
    let connected = events
        .iter()
        .position(|e| *e == Event::Call(CallEvent::Connected));
    assert!(upgraded.is_some() && upgraded < connected, "{events:?}");
    assert!(
        events.contains(&Event::Call(CallEvent::Connected)),
        "{events:?}"
    );
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::Call(CallEvent::Started(s)) if s.stream_id == SID)),
        "{events:?}"
    );
    assert!(!events.iter().any(|e| matches!(e, Event::StreamMessage(_))));
    assert!(peer.conn.call_stats().is_some());
}

#[test]
fn echo_handler_plays_the_callers_audio_back_exactly() {
    let mut peer = call(with_handler(handler::by_name("echo").unwrap()));
    // Frames with distinct μ-law bytes (never 0x7F, which μ-law maps to the
    // same sample as 0xFF, so every byte survives decode + encode).
    let frames: Vec<Vec<u8>> = (0..50u8).map(|i| vec![0x10 + i; 160]).collect();
    for (i, frame) in frames.iter().enumerate() {
        let n = i as u64 + 1;
        peer.send(&text_frame(&media(n + 1, n, frame)));
        peer.wait(Duration::from_millis(20));
    }
    for _ in 0..50 {
        peer.wait(Duration::from_millis(20));
    }
    let echoed: Vec<Vec<u8>> = sent_media(&peer.take_wire())
        .concat()
        .chunks(160)
        .map(<[u8]>::to_vec)
        .filter(|f| f.iter().any(|&b| b != 0xFF))
        .collect();
    assert_eq!(echoed, frames, "every frame back, in order, unchanged");
    let stats = peer.conn.call_stats().unwrap();
    assert_eq!(stats.received, 50);
    assert!(stats.frames_sent >= 50, "{stats:?}");
}

#[test]
fn twilio_stop_ends_the_call_with_close_1000() {
    let mut peer = call(with_handler(handler::by_name("silent").unwrap()));
    peer.take_events();
    peer.send(&text_frame(&stop(3)));
    let frames = server_frames(&peer.take_wire());
    let close = frames
        .iter()
        .find(|(op, _)| *op == 8)
        .expect("a close frame");
    assert_eq!(&close.1[..2], &1000u16.to_be_bytes());
    assert!(peer.events.iter().any(|e| matches!(
        e,
        Event::Call(CallEvent::Stopped {
            reason: StopReason::Stop,
            ..
        })
    )));
    assert!(!peer.closed, "waits for Twilio's close");
    peer.send(&connection_support::client_frame(
        0x88,
        &1000u16.to_be_bytes(),
    ));
    assert!(peer.closed);
    assert_eq!(
        peer.close_reason(),
        Some(CloseReason::WebSocketClosed {
            code: Some(1000),
            initiator: Initiator::Local
        })
    );
}

#[test]
fn the_call_hears_of_an_abrupt_end_before_the_connection_closes() {
    let mut peer = call(with_handler(handler::by_name("parrot").unwrap()));
    peer.take_events();
    peer.eof();
    let events = peer.take_events();
    let stopped = events.iter().position(|e| {
        matches!(
            e,
            Event::Call(CallEvent::Stopped {
                reason: StopReason::Closed,
                ..
            })
        )
    });
    let closed = events
        .iter()
        .position(|e| matches!(e, Event::Closed { .. }));
    assert!(stopped.is_some() && stopped < closed, "{events:?}");
}

#[test]
fn protocol_failure_is_reported_to_the_call_as_an_error() {
    let mut peer = call(with_handler(handler::by_name("silent").unwrap()));
    peer.take_events();
    peer.send(b"\x81\x02hi"); // unmasked
    assert!(peer.closed);
    assert!(
        peer.events.iter().any(|e| matches!(
            e,
            Event::Call(CallEvent::Stopped {
                reason: StopReason::Error(_),
                ..
            })
        )),
        "{:?}",
        peer.events
    );
}

/// Keeps the call's remote control for the test.
struct Grab(Arc<Mutex<Option<RemoteControl>>>);

impl Handler for Grab {
    fn on_event(&mut self, event: &CallEvent, control: &mut Control<'_>) {
        if matches!(event, CallEvent::Started(_)) {
            *self.0.lock().unwrap() = Some(control.remote());
        }
    }
}

#[test]
fn a_remote_hangup_wakes_the_connection_and_closes_the_stream() {
    let slot = Arc::new(Mutex::new(None));
    let grab = slot.clone();
    let factory: handler::HandlerFactory =
        Arc::new(move |_: &callstream_core::wire::StreamStart| {
            Box::new(Grab(grab.clone())) as Box<dyn Handler>
        });
    let wakes = Arc::new(AtomicUsize::new(0));
    let mut peer = Peer::new(with_handler(factory));
    let counter = wakes.clone();
    peer.conn.set_waker(Arc::new(move || {
        counter.fetch_add(1, Ordering::SeqCst);
    }));
    peer.send(
        b"GET /ws/twilio-media HTTP/1.1\r\nHost: x.example\r\nConnection: Upgrade\r\n\
Upgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    );
    peer.send(&text_frame(&start(ACCOUNT)));
    peer.take_wire();
    let remote = slot.lock().unwrap().take().expect("the handler saw start");
    // From another thread, as an application would.
    std::thread::spawn(move || remote.hangup().unwrap())
        .join()
        .unwrap();
    assert_eq!(wakes.load(Ordering::SeqCst), 1, "the waker fired");
    // The adapter, woken, calls handle_timeout and drains.
    peer.wait(Duration::ZERO);
    let frames = server_frames(&peer.take_wire());
    assert!(
        frames
            .iter()
            .any(|(op, p)| *op == 8 && p[..2] == 1000u16.to_be_bytes()),
        "{frames:?}"
    );
    assert!(peer.events.iter().any(|e| matches!(
        e,
        Event::Call(CallEvent::Stopped {
            reason: StopReason::Hangup,
            ..
        })
    )));
}

#[test]
fn shutdown_closes_the_stream_and_the_call_stops() {
    let mut peer = call(with_handler(handler::by_name("silent").unwrap()));
    peer.shutdown();
    let frames = server_frames(&peer.take_wire());
    assert!(
        frames
            .iter()
            .any(|(op, p)| *op == 8 && p[..2] == 1001u16.to_be_bytes())
    );
    peer.send(&connection_support::client_frame(
        0x88,
        &1001u16.to_be_bytes(),
    ));
    assert!(peer.closed);
    assert!(
        peer.events
            .iter()
            .any(|e| matches!(e, Event::Call(CallEvent::Stopped { .. })))
    );
}

#[test]
fn a_stream_for_another_account_never_reaches_the_call() {
    let mut config = with_handler(handler::by_name("silent").unwrap());
    config.account_sid = Some(
        callstream_core::sid::AccountSid::parse("AC99999999999999999999999999999999").unwrap(),
    );
    let mut peer = call(config);
    let frames = server_frames(&peer.take_wire());
    assert!(
        frames
            .iter()
            .any(|(op, p)| *op == 8 && p[..2] == 1008u16.to_be_bytes()),
        "{frames:?}"
    );
    let events = peer.take_app_events();
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::AccountRejected { .. }))
    );
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, Event::Call(CallEvent::Started(_)))),
        "{events:?}"
    );
}

/// Found in review: after a refused `start`, a second one went straight to
/// the call machine (the check ran only until the first `start`).
#[test]
fn a_second_start_after_a_refused_one_never_reaches_the_call() {
    let mut config = with_handler(handler::by_name("silent").unwrap());
    config.account_sid = Some(
        callstream_core::sid::AccountSid::parse("AC99999999999999999999999999999999").unwrap(),
    );
    let mut peer = call(config);
    peer.send(&text_frame(&start(ACCOUNT)));
    peer.send(&text_frame(&start("AC99999999999999999999999999999999")));
    let events = peer.take_app_events();
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, Event::Call(CallEvent::Started(_)))),
        "{events:?}"
    );
    assert!(!peer.conn.is_call_live());
}

/// Plays a second of audio when the call starts.
struct Greeter;

impl Handler for Greeter {
    fn on_event(&mut self, event: &CallEvent, control: &mut Control<'_>) {
        if matches!(event, CallEvent::Started(_)) {
            control.play_pcm(&[1000; 8000]).unwrap();
        }
    }
}

#[test]
fn the_call_deadline_is_the_connections_deadline() {
    let factory: handler::HandlerFactory =
        Arc::new(|_: &callstream_core::wire::StreamStart| Box::new(Greeter) as Box<dyn Handler>);
    let mut peer = call(with_handler(factory));
    // Audio is queued, so the pacer names a slot well before the idle limit;
    // at each deadline more frames go out, until the second is sent.
    let mut sent = sent_media(&peer.take_wire()).concat().len();
    assert!(sent < 8000, "paced, not all at once");
    for _ in 0..100 {
        let deadline = peer.deadline.unwrap();
        assert!(
            deadline < peer.now + Duration::from_secs(1),
            "the pacer's timer, not the idle limit"
        );
        let wait = deadline.saturating_duration_since(peer.now);
        peer.wait(wait);
        sent += sent_media(&peer.take_wire()).concat().len();
        if sent == 8000 {
            break;
        }
    }
    assert_eq!(sent, 8000);
    assert!(peer.now - peer.start < Duration::from_secs(2));
}

#[test]
fn shutdown_lets_a_live_call_finish_within_the_grace_then_closes_it_with_1001() {
    let mut config = with_handler(handler::by_name("silent").unwrap());
    config.shutdown_grace = Duration::from_secs(8);
    let mut peer = call(config);
    assert!(peer.conn.is_call_live());
    peer.take_wire();
    peer.shutdown();
    // The call goes on: media is still taken, nothing is closed.
    for k in 1..=50 {
        peer.send(&text_frame(&media(k + 1, k, &[0xFF; 160])));
    }
    peer.wait(Duration::from_secs(7));
    assert!(peer.close_reason().is_none());
    assert!(
        server_frames(&peer.take_wire())
            .iter()
            .all(|(opcode, _)| *opcode != 8),
        "no close frame before the grace ends"
    );
    // The grace ends: close 1001.
    peer.wait(Duration::from_secs(1));
    assert_eq!(close_codes(&peer.take_wire()), [1001]);
}

#[test]
fn shutdown_closes_a_stream_without_a_call_at_once_whatever_the_grace() {
    let mut config = with_handler(handler::by_name("silent").unwrap());
    config.shutdown_grace = Duration::from_secs(8);
    let mut peer = upgraded(config);
    assert!(!peer.conn.is_call_live());
    peer.shutdown();
    assert_eq!(close_codes(&peer.take_wire()), [1001]);
}

#[test]
fn a_call_that_stopped_is_not_live() {
    let mut peer = call(with_handler(handler::by_name("silent").unwrap()));
    peer.send(&text_frame(&stop(2)));
    assert!(!peer.conn.is_call_live());
}

/// The codes of the close frames the server sent.
fn close_codes(wire: &[u8]) -> Vec<u16> {
    server_frames(wire)
        .into_iter()
        .filter(|(opcode, _)| *opcode == 8)
        .map(|(_, payload)| u16::from_be_bytes([payload[0], payload[1]]))
        .collect()
}
