//! The axum example answers Twilio as Twilio talks: a signed voice webhook,
//! then a signed media stream whose audio comes back (the echo handler),
//! driven by the Twilio-shaped client of the cross-crate tests.
use callstream_core::public_url::PublicBase;
use callstream_tests::{ServerMessage, StreamOpts, TOKEN, TwilioStream, media_bytes, post_signed};
use std::net::SocketAddr;
use std::time::Duration;

fn start() -> SocketAddr {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(listener.local_addr().unwrap()).unwrap();
            let settings = callstream_example_axum::Settings {
                public_base: PublicBase::parse("https://callstream.test").unwrap(),
                auth_tokens: vec![TOKEN.to_owned()],
            };
            axum::serve(listener, callstream_example_axum::router(settings))
                .await
                .unwrap();
        });
    });
    rx.recv_timeout(Duration::from_secs(20)).unwrap()
}

#[test]
fn a_signed_voice_webhook_gets_twiml_and_an_unsigned_one_403() {
    let addr = start();
    let params = [
        ("CallSid", "CA0123456789abcdef0123456789abcdef"),
        ("From", "+1555 <&>"),
    ];
    let resp = post_signed(addr, "callstream.test", "/voice", &params).unwrap();
    assert_eq!(resp.status, 200, "{}", resp.body);
    assert_eq!(
        resp.header("content-type"),
        Some("application/xml; charset=utf-8")
    );
    assert!(resp.body.starts_with("<?xml"), "{}", resp.body);
    assert!(
        resp.body
            .contains(r#"<Stream url="wss://callstream.test/media"><Parameter name="from" value="+1555 &lt;&amp;&gt;"/></Stream>"#),
        "{}",
        resp.body
    );
    // Signed over another URL (a proxy changed the host): refused.
    let resp = post_signed(addr, "internal.example", "/voice", &params).unwrap();
    assert_eq!(resp.status, 403);
}

#[test]
fn a_signed_media_stream_is_echoed_and_an_unsigned_upgrade_refused() {
    let addr = start();
    let unsigned = StreamOpts {
        path: "/media",
        token: None,
        ..StreamOpts::default()
    };
    let err = TwilioStream::connect(addr, &unsigned, 1).err().unwrap();
    assert!(err.to_string().contains("403"), "{err}");

    let opts = StreamOpts {
        path: "/media",
        ..StreamOpts::default()
    };
    let mut stream = TwilioStream::connect(addr, &opts, 2).unwrap();
    assert_eq!(stream.subprotocol, None);
    stream.start(&[("from", "+15550100000")]).unwrap();
    // 1 s of every μ-law byte in turn, sent on Twilio's 20 ms cadence. The
    // echo decodes and re-encodes, and the encoder (audioop's) never writes
    // 0x7F: it is sent as 0xFF, its twin (both decode to 0).
    let audio: Vec<u8> = (0..8000u32)
        .map(|i| match (i % 251) as u8 {
            0x7F => 0xFF,
            b => b,
        })
        .collect();
    let mut got = stream.stream_audio(&audio).unwrap();
    stream
        .read_media(audio.len(), Duration::from_secs(5), &mut got)
        .unwrap();
    let echoed = media_bytes(&got);
    assert_eq!(echoed.len(), audio.len());
    assert_eq!(
        echoed, audio,
        "the echo is the caller's audio, byte for byte"
    );
    stream.stop().unwrap();
    let _ = stream.read_until(
        std::time::Instant::now() + Duration::from_millis(500),
        &mut got,
    );
    assert!(
        got.iter()
            .all(|m| !matches!(m, ServerMessage::Closed(Some(code)) if *code != 1000)),
        "{got:?}"
    );
}
