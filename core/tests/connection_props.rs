//! Properties of `Connection` over arbitrary input: it never panics, it
//! always ends in an answer or a close, and how bytes are split never
//! changes what comes out.

mod connection_support;

use std::time::Duration;

use callstream_core::call::CallConfig;
use callstream_core::connection::{Config, Event};
use callstream_core::handler;
use connection_support::{Peer, TOKEN, text_frame};
use proptest::prelude::*;

fn config(signed: bool) -> Config {
    Config {
        auth_tokens: if signed {
            vec![TOKEN.to_owned()]
        } else {
            Vec::new()
        },
        ..connection_support::unsigned()
    }
}

/// Requests that exercise most routes (and one upgrade, unsigned).
fn requests() -> Vec<Vec<u8>> {
    vec![
        b"GET /healthz HTTP/1.1\r\nHost: a.example\r\n\r\n".to_vec(),
        b"POST /webhook/call_status HTTP/1.1\r\nHost: a.example\r\nContent-Length: 19\r\n\r\nCallStatus=ringing".to_vec(),
        b"POST /webhook/stream_status HTTP/1.1\r\nHost: a.example\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nA=b&c\r\n0\r\n\r\n".to_vec(),
        b"GET /webhook/incoming_call?CallSid=CA1&From=%2B1&To=%2B2 HTTP/1.1\r\nHost: a.example\r\n\r\n".to_vec(),
        b"GET /nope HTTP/1.1\r\nHost: a.example\r\n\r\n".to_vec(),
        b"DELETE /version HTTP/1.1\r\nHost: a.example\r\n\r\n".to_vec(),
        b"GET /ws/twilio-media HTTP/1.1\r\nHost: a.example\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
            .to_vec(),
    ]
}

fn run_split(config: Config, bytes: &[u8], cuts: &[usize]) -> (Vec<u8>, Vec<Event>, bool) {
    let mut peer = Peer::new(config);
    let mut last = 0;
    for &cut in cuts {
        peer.send(&bytes[last..cut]);
        last = cut;
    }
    peer.send(&bytes[last..]);
    let events = peer.take_app_events();
    (peer.take_wire(), events, peer.closed)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Arbitrary bytes in arbitrary pieces never panic, and the connection
    /// always ends: with an answer or a close once the peer goes quiet.
    #[test]
    fn arbitrary_bytes_end_in_an_answer_or_a_close(
        signed in any::<bool>(),
        chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..200), 0..8),
    ) {
        let mut peer = Peer::new(config(signed));
        for chunk in &chunks {
            peer.send(chunk);
        }
        // A silent peer: every timer fires in turn; a live stream answers
        // nothing, so the idle limits close it too.
        for _ in 0..10 {
            if peer.closed {
                break;
            }
            let deadline = peer.deadline.expect("an open connection names a deadline");
            let wait = deadline.saturating_duration_since(peer.now);
            peer.wait(wait.max(Duration::from_millis(1)));
        }
        prop_assert!(peer.closed, "still open after every deadline: {:?}", peer.events);
        // Exactly one `Closed`, and it is the last event.
        let closes = peer.events.iter().filter(|e| matches!(e, Event::Closed { .. })).count();
        prop_assert_eq!(closes, 1);
        let last_is_closed = matches!(peer.events.last(), Some(Event::Closed { .. }));
        prop_assert!(last_is_closed);
        // Every answered request put bytes on the wire, starting with a status line.
        if !peer.statuses().is_empty() {
            prop_assert!(peer.wire.starts_with(b"HTTP/1.1 "));
        }
    }

    /// Arbitrary bytes after a valid upgrade: frames, garbage, anything,
    /// with or without a call machine behind the stream.
    #[test]
    fn arbitrary_bytes_on_a_stream_never_panic(
        with_session in any::<bool>(),
        chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 0..8),
    ) {
        let mut config = config(false);
        if with_session {
            config.session = Some(handler::session_factory(
                CallConfig::default(),
                handler::by_name("echo").unwrap(),
            ));
        }
        let mut peer = Peer::new(config);
        peer.send(&requests()[6]);
        prop_assert!(peer.conn.is_stream());
        for chunk in &chunks {
            peer.send(chunk);
            peer.wait(Duration::from_millis(20));
        }
        peer.eof();
        prop_assert!(peer.closed);
    }

    /// Masked text frames of arbitrary (often Twilio-shaped) text: parsed or
    /// refused one by one, never the end of the stream.
    #[test]
    fn arbitrary_text_messages_keep_the_stream_open(
        texts in proptest::collection::vec(
            prop_oneof![
                any::<String>(),
                "\\{\"event\":\"(media|start|stop|mark|dtmf|connected)\"[ -~]{0,80}\\}",
            ],
            0..10,
        ),
    ) {
        let mut peer = Peer::new(config(false));
        peer.send(&requests()[6]);
        for text in &texts {
            peer.send(&text_frame(text));
        }
        prop_assert!(!peer.closed, "{:?}", peer.events);
        let per_message = peer
            .events
            .iter()
            .filter(|e| matches!(e, Event::StreamMessage(_) | Event::InvalidStreamMessage { .. }))
            .count();
        prop_assert_eq!(per_message, texts.len());
    }

    /// Any split of a pipelined sequence of valid requests gives the same
    /// bytes and events.
    #[test]
    fn any_split_gives_the_same_result(
        picks in proptest::collection::vec(0usize..6, 1..5),
        upgrade_last in any::<bool>(),
        cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..10),
    ) {
        let all = requests();
        let mut bytes: Vec<u8> = picks.iter().flat_map(|&i| all[i].clone()).collect();
        if upgrade_last {
            bytes.extend(&all[6]);
            bytes.extend(text_frame(r#"{"event":"connected","protocol":"Call","version":"1.0.0"}"#));
        }
        let mut cuts: Vec<usize> = cuts.iter().map(|c| c.index(bytes.len() + 1)).collect();
        cuts.sort_unstable();
        let whole = run_split(config(false), &bytes, &[]);
        let split = run_split(config(false), &bytes, &cuts);
        prop_assert_eq!(&split.0, &whole.0);
        prop_assert_eq!(&split.1, &whole.1);
        prop_assert_eq!(split.2, whole.2);
    }
}
