//! The example as Twilio drives it: webhooks signed and answered, an
//! unsigned one refused, the media upgrade, and an echo call whose frames
//! come back, all through `Connection` on the example's threads.
use callstream_core::connection::{Config, Route, Routes, StreamApp};
use callstream_core::handler;
use callstream_core::public_url::PublicBase;
use callstream_tests::*;
use std::sync::Arc;
use std::time::Duration;

fn start() -> std::net::SocketAddr {
    let config = Config {
        auth_tokens: vec![TOKEN.to_owned()],
        public_base_url: Some(PublicBase::parse("https://callstream.test").unwrap()),
        session: Some(handler::session_factory(
            Default::default(),
            handler::by_name("echo").unwrap(),
        )),
        routes: Routes::new()
            .route("/healthz", Route::Healthz)
            .route("/twilio/voice", Route::IncomingCall)
            .route("/twilio/media", Route::MediaStream),
        app: Arc::new(StreamApp {
            call_parameters: vec![("caller".into(), "From".into())],
            ..StreamApp::default()
        }),
        ..Config::default()
    };
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || callstream_example_threads::serve(listener, Arc::new(config)));
    addr
}

#[test]
fn webhooks_and_an_echo_call_through_the_engine_on_threads() {
    let addr = start();
    let health = http_raw(
        addr,
        b"GET /healthz HTTP/1.1\r\nHost: callstream.test\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    assert_eq!((health.status, health.body.as_str()), (200, "ok"));
    let call = [
        ("CallSid", "CA0123456789abcdef0123456789abcdef"),
        ("AccountSid", ACCOUNT),
        ("From", "+14155550100"),
    ];
    let twiml = post_signed(addr, "callstream.test", "/twilio/voice", &call).unwrap();
    assert_eq!(twiml.status, 200, "{}", twiml.body);
    assert!(
        twiml
            .body
            .contains(r#"<Stream url="wss://callstream.test/twilio/media">"#)
            && twiml
                .body
                .contains(r#"<Parameter name="caller" value="+14155550100"/>"#),
        "{}",
        twiml.body
    );
    let forged = post_signed(addr, "other.example", "/twilio/voice", &call).unwrap();
    assert_eq!(forged.status, 403);
    let elsewhere = post_signed(addr, "callstream.test", "/webhook/incoming_call", &call).unwrap();
    assert_eq!(
        elsewhere.status, 404,
        "only the application's paths are served"
    );

    let opts = StreamOpts {
        path: "/twilio/media",
        ..StreamOpts::default()
    };
    let mut stream = TwilioStream::connect(addr, &opts, 1).unwrap();
    stream.start(&[]).unwrap();
    // Every μ-law code but 0x7F, negative zero, which decodes to the same
    // sample as 0xFF and comes back as that.
    let audio: Vec<u8> = (0..10 * 160)
        .map(|i| match (i % 251) as u8 {
            0x7F => 0x7E,
            b => b,
        })
        .collect();
    let mut got = stream.stream_audio(&audio).unwrap();
    stream
        .read_media(audio.len(), Duration::from_secs(10), &mut got)
        .unwrap();
    assert_eq!(media_bytes(&got), audio);
    stream.stop().unwrap();
}
