//! TwiML documents: exact bytes for each verb, Twilio's published examples
//! read back by a real XML parser, and one test per rule the builder enforces.

use callstream_core::twiml::{
    Connect, MAX_DOCUMENT_BYTES, MAX_PARAMETER_CHARS, Method, Play, Redirect, Response, Say, Start,
    Stream, Track, TwimlError, XML_DECLARATION,
};

fn stream(url: &str) -> Stream {
    Stream::new(url).unwrap()
}

#[test]
fn exact_documents() {
    let cases: Vec<(Response, &str)> = vec![
        (Response::new(), "<Response/>"),
        (
            Response::new().say("Hello World"),
            "<Response><Say>Hello World</Say></Response>",
        ),
        // twilio-python's test_say_all, attributes in the same (alphabetical) order.
        (
            Response::new().say(
                Say::new("Hello Monkey")
                    .loop_count(3)
                    .voice("man")
                    .language("fr"),
            ),
            r#"<Response><Say language="fr" loop="3" voice="man">Hello Monkey</Say></Response>"#,
        ),
        (
            Response::new().say(Say::new("n\u{e9}cessaire et d'autres")),
            "<Response><Say>n\u{e9}cessaire et d&apos;autres</Say></Response>",
        ),
        (
            Response::new().play(Play::new("http://hellomonkey.mp3").loop_count(3)),
            r#"<Response><Play loop="3">http://hellomonkey.mp3</Play></Response>"#,
        ),
        (
            Response::new().play("https://example.com/a.mp3"),
            "<Response><Play>https://example.com/a.mp3</Play></Response>",
        ),
        (
            Response::new().pause(5),
            r#"<Response><Pause length="5"/></Response>"#,
        ),
        (
            Response::new().pause_default(),
            "<Response><Pause/></Response>",
        ),
        // twilio-python's test_redirect_method_params.
        (
            Response::new()
                .redirect(Redirect::new("example.com?id=34&action=hey").method(Method::Post)),
            r#"<Response><Redirect method="POST">example.com?id=34&amp;action=hey</Redirect></Response>"#,
        ),
        (
            Response::new().redirect("https://example.com/next"),
            "<Response><Redirect>https://example.com/next</Redirect></Response>",
        ),
        (Response::new().hangup(), "<Response><Hangup/></Response>"),
        (
            Response::new()
                .connect(Connect::new().stream(stream("wss://mystream.ngrok.io/audiostream"))),
            r#"<Response><Connect><Stream url="wss://mystream.ngrok.io/audiostream"/></Connect></Response>"#,
        ),
        (
            Response::new()
                .connect(
                    Connect::new()
                        .action("https://example.com/done?a=1&b=2")
                        .method(Method::Get)
                        .stream(
                            stream("wss://example.com:8443/ws/twilio-media")
                                .name("call <1>")
                                .track(Track::InboundTrack)
                                .status_callback("https://example.com/status")
                                .status_callback_method(Method::Get)
                                .parameter("a\"b", "x'y")
                                .unwrap(),
                        ),
                )
                .hangup(),
            concat!(
                r#"<Response><Connect action="https://example.com/done?a=1&amp;b=2" method="GET">"#,
                r#"<Stream name="call &lt;1&gt;" statusCallback="https://example.com/status" "#,
                r#"statusCallbackMethod="GET" track="inbound_track" url="wss://example.com:8443/ws/twilio-media">"#,
                r#"<Parameter name="a&quot;b" value="x&apos;y"/></Stream></Connect><Hangup/></Response>"#,
            ),
        ),
        (
            Response::new()
                .start(Start::new(
                    stream("wss://mystream.ngrok.io/audiostream")
                        .name("Example Audio Stream")
                        .track(Track::BothTracks),
                ))
                .say("The stream has started."),
            concat!(
                r#"<Response><Start><Stream name="Example Audio Stream" track="both_tracks" "#,
                r#"url="wss://mystream.ngrok.io/audiostream"/></Start>"#,
                "<Say>The stream has started.</Say></Response>",
            ),
        ),
    ];
    for (response, body) in cases {
        let xml = response.to_xml().unwrap();
        assert_eq!(xml, format!("{XML_DECLARATION}{body}"));
        assert!(roxmltree::Document::parse(&xml).is_ok(), "{xml}");
    }
}

#[test]
fn output_begins_with_the_declaration_and_nothing_else() {
    let xml = Response::new().hangup().to_xml().unwrap();
    assert!(xml.starts_with(r#"<?xml version="1.0" encoding="UTF-8"?>"#));
    assert!(!xml.contains('\n'));
}

/// An element tree with attributes sorted and whitespace-only text dropped,
/// so that documents compare by content, not layout.
fn canonical(xml: &str) -> String {
    fn walk(node: roxmltree::Node<'_, '_>, out: &mut String) {
        for child in node.children() {
            if child.is_element() {
                out.push('<');
                out.push_str(child.tag_name().name());
                let mut attrs: Vec<_> = child.attributes().map(|a| (a.name(), a.value())).collect();
                attrs.sort();
                for (k, v) in attrs {
                    out.push_str(&format!(" {k}={v:?}"));
                }
                out.push('>');
                walk(child, out);
                out.push_str("</>");
            } else if let Some(text) = child.text().filter(|t| !t.trim().is_empty()) {
                out.push_str(&format!("{text:?}"));
            }
        }
    }
    let doc = roxmltree::Document::parse(xml).unwrap();
    let mut out = String::new();
    walk(doc.root(), &mut out);
    out
}

/// Twilio's published TwiML examples (docs.twilio.com and the
/// TwilioDevEd/api-snippets `output/*.twiml` files), rebuilt with the builder.
#[test]
fn twilios_published_examples() {
    let cases: Vec<(Response, &str)> = vec![
        // twiml/voice/connect/stream/output/connect_stream.twiml
        (
            Response::new()
                .connect(Connect::new().stream(stream("wss://mystream.ngrok.io/audiostream"))),
            r#"<?xml version="1.0" encoding="UTF-8"?>
<Response>
   <Connect>
       <Stream url="wss://mystream.ngrok.io/audiostream" />
   </Connect>
</Response>"#,
        ),
        // twiml/voice/stream/stream-1/output/stream-1.twiml
        (
            Response::new().start(Start::new(
                stream("wss://mystream.ngrok.io/audiostream").name("Example Audio Stream"),
            )),
            r#"<?xml version="1.0" encoding="UTF-8"?>
<Response>
    <Start>
        <Stream name="Example Audio Stream" url="wss://mystream.ngrok.io/audiostream" />
    </Start>
</Response>"#,
        ),
        // twiml/voice/stream/stream-2/output/stream-2.twiml
        (
            Response::new().start(Start::new(
                stream("wss://mystream.ngrok.io/example")
                    .parameter("FirstName", "Jane")
                    .unwrap()
                    .parameter("LastName", "Doe")
                    .unwrap(),
            )),
            r#"<?xml version="1.0" encoding="UTF-8" ?>
<Response>
    <Start>
        <Stream url="wss://mystream.ngrok.io/example">
            <Parameter name="FirstName" value="Jane" />
            <Parameter name="LastName" value="Doe" />
        </Stream>
    </Start>
</Response>"#,
        ),
        // The <Stream> reference page: <Start><Stream> then <Say>.
        (
            Response::new()
                .start(Start::new(
                    stream("wss://example.com/audiostream").name("Example Audio Stream"),
                ))
                .say("The stream has started."),
            r#"<?xml version="1.0" encoding="UTF-8"?>
<Response>
<Start>
<Stream name="Example Audio Stream" url="wss://example.com/audiostream" />
</Start>
<Say>The stream has started.</Say>
</Response>"#,
        ),
    ];
    for (response, published) in cases {
        let ours = response.to_xml().unwrap();
        assert_eq!(canonical(&ours), canonical(published), "{ours}");
    }
}

#[test]
fn stream_url_rules() {
    let check = |url: &str| Stream::new(url).map(|_| ()).unwrap_err();
    let err = check("ws://example.com/ws");
    assert!(
        matches!(err, TwimlError::InsecureStreamUrl { .. }),
        "{err:?}"
    );
    assert_eq!(err.twilio_code(), Some(31922));
    assert!(err.to_string().contains("31922"), "{err}");
    assert!(matches!(
        check("WS://example.com/ws"),
        TwimlError::InsecureStreamUrl { .. }
    ));
    for url in [
        "https://example.com/ws",
        "/ws/twilio-media",
        "example.com/ws",
        "",
        "wss:/x.example/ws",
    ] {
        assert!(
            matches!(check(url), TwimlError::StreamUrlNotWss { .. }),
            "{url}"
        );
    }
    for url in [
        "wss://example.com/ws?token=1",
        "wss://example.com?x",
        "wss://example.com/ws?",
    ] {
        let err = check(url);
        assert!(matches!(err, TwimlError::StreamUrlHasQuery { .. }), "{url}");
        assert!(err.to_string().contains("<Parameter>"), "{err}");
    }
    for url in [
        "wss://example.com/ws#frag",
        "wss:///ws",
        "wss://",
        "wss://exa mple.com/ws",
        "wss://user@example.com/ws",
        "wss://example.com:0/ws",
        "wss://example.com/w s",
        "wss://example.com/ws\"",
        "wss://example.com/\u{e9}",
    ] {
        assert!(
            matches!(check(url), TwimlError::InvalidStreamUrl { .. }),
            "{url}"
        );
    }
    for url in [
        "wss://example.com",
        "wss://example.com/",
        "WSS://example.com/ws",
        "wss://example.com:8443/ws/twilio-media/",
        "wss://[::1]:8443/ws",
        "wss://10.0.0.1/ws",
        "wss://example.com/a%20b/~c",
    ] {
        assert!(Stream::new(url).is_ok(), "{url}");
    }
}

#[test]
fn connect_allows_only_inbound_track() {
    for track in [Track::OutboundTrack, Track::BothTracks] {
        let err = Response::new()
            .connect(Connect::new().stream(stream("wss://x.example/ws").track(track)))
            .to_xml()
            .unwrap_err();
        assert_eq!(err, TwimlError::ConnectTrack { track });
        assert_eq!(err.twilio_code(), Some(31941));
    }
    assert!(
        Response::new()
            .connect(Connect::new().stream(stream("wss://x.example/ws").track(Track::InboundTrack)))
            .to_xml()
            .is_ok()
    );
}

#[test]
fn start_allows_every_track() {
    for track in [Track::InboundTrack, Track::OutboundTrack, Track::BothTracks] {
        let xml = Response::new()
            .start(Start::new(stream("wss://x.example/ws").track(track)))
            .to_xml()
            .unwrap();
        assert!(
            xml.contains(&format!(r#"track="{}""#, track.as_str())),
            "{xml}"
        );
    }
}

#[test]
fn one_connect_stream_per_response() {
    let connect = || Connect::new().stream(stream("wss://x.example/ws"));
    let err = Response::new()
        .connect(connect())
        .connect(connect())
        .to_xml()
        .unwrap_err();
    assert_eq!(err, TwimlError::MultipleConnectStreams { count: 2 });
    // A <Start><Stream> beside the one <Connect><Stream> is fine.
    assert!(
        Response::new()
            .start(Start::new(stream("wss://x.example/fork")))
            .connect(connect())
            .to_xml()
            .is_ok()
    );
}

#[test]
fn connect_needs_a_stream() {
    let err = Response::new()
        .connect(Connect::new().action("https://x.example/a"))
        .to_xml()
        .unwrap_err();
    assert_eq!(err, TwimlError::ConnectWithoutStream);
    assert_eq!(err.twilio_code(), Some(12100));
}

#[test]
fn parameter_length_limit() {
    let s = stream("wss://x.example/ws");
    // Name plus value at one under the limit is accepted...
    let name = "n".repeat(100);
    let ok_value = "v".repeat(MAX_PARAMETER_CHARS - 1 - 100);
    assert!(
        s.clone()
            .parameter(name.as_str(), ok_value.as_str())
            .is_ok()
    );
    // ...at the limit it is not.
    let long_value = "v".repeat(MAX_PARAMETER_CHARS - 100);
    let err = s
        .clone()
        .parameter(name.as_str(), long_value.as_str())
        .unwrap_err();
    assert_eq!(
        err,
        TwimlError::ParameterTooLong {
            name: "n".repeat(80),
            chars: MAX_PARAMETER_CHARS
        }
    );
    // Counted in characters, not bytes: 499 two-byte characters pass.
    let wide = "\u{e9}".repeat(MAX_PARAMETER_CHARS - 2);
    assert!(s.clone().parameter("k", wide.as_str()).is_ok());
    let wide = "\u{e9}".repeat(MAX_PARAMETER_CHARS - 1);
    assert!(matches!(
        s.parameter("k", wide.as_str()),
        Err(TwimlError::ParameterTooLong { chars: 500, .. })
    ));
}

#[test]
fn document_size_limit() {
    let overhead = Response::new().say("").to_xml().unwrap().len();
    let fits = "a".repeat(MAX_DOCUMENT_BYTES - overhead);
    let xml = Response::new().say(fits.as_str()).to_xml().unwrap();
    assert_eq!(xml.len(), MAX_DOCUMENT_BYTES);
    let over = "a".repeat(MAX_DOCUMENT_BYTES - overhead + 1);
    let err = Response::new().say(over.as_str()).to_xml().unwrap_err();
    assert_eq!(
        err,
        TwimlError::DocumentTooLarge {
            bytes: MAX_DOCUMENT_BYTES + 1
        }
    );
    assert_eq!(err.twilio_code(), Some(11750));
    // Escaping counts: 13,000 '&' are 65,000 bytes once written.
    let amps = "&".repeat(13_000);
    assert!(matches!(
        Response::new().say(amps.as_str()).to_xml(),
        Err(TwimlError::DocumentTooLarge { .. })
    ));
    // Many verbs: the size check stops early and still reports an error.
    let mut many = Response::new();
    for _ in 0..10_000 {
        many = many.say("0123456789");
    }
    assert!(matches!(
        many.to_xml(),
        Err(TwimlError::DocumentTooLarge { .. })
    ));
}

#[test]
fn invalid_xml_characters_name_their_field() {
    let s = |f: fn(Stream) -> Stream| {
        Response::new()
            .connect(Connect::new().stream(f(stream("wss://x.example/ws"))))
            .to_xml()
            .unwrap_err()
    };
    let cases = [
        (s(|s| s.name("a\u{1}")), "Stream@name"),
        (s(|s| s.status_callback("\u{0}")), "Stream@statusCallback"),
        (s(|s| s.parameter("\u{1b}", "v").unwrap()), "Parameter@name"),
        (
            s(|s| s.parameter("k", "\u{FFFE}").unwrap()),
            "Parameter@value",
        ),
        (
            Response::new()
                .connect(
                    Connect::new()
                        .action("\u{8}")
                        .stream(stream("wss://x.example/ws")),
                )
                .to_xml()
                .unwrap_err(),
            "Connect@action",
        ),
        (Response::new().say("\u{c}").to_xml().unwrap_err(), "Say"),
        (
            Response::new()
                .say(Say::new("x").language("\u{b}"))
                .to_xml()
                .unwrap_err(),
            "Say@language",
        ),
        (Response::new().play("\u{7}").to_xml().unwrap_err(), "Play"),
        (
            Response::new().redirect("\u{1f}").to_xml().unwrap_err(),
            "Redirect",
        ),
    ];
    for (err, want) in cases {
        match err {
            TwimlError::InvalidXmlChar { field, .. } => assert_eq!(field, want),
            other => panic!("{want}: {other:?}"),
        }
    }
}

#[test]
fn errors_say_what_was_wrong() {
    let err = Stream::new(format!("ws://{}", "a".repeat(1000))).unwrap_err();
    let TwimlError::InsecureStreamUrl { url } = &err else {
        panic!("{err:?}")
    };
    assert_eq!(url.chars().count(), 80, "excerpt is bounded");
    let err = Response::new().say("\u{1}").to_xml().unwrap_err();
    assert_eq!(
        err.to_string(),
        "Say holds U+0001, which XML 1.0 cannot carry (Twilio error 12100)"
    );
}

#[test]
fn dial_transfers_to_an_e164_number_and_refuses_anything_else() {
    use callstream_core::twiml::{Dial, Response, TwimlError};
    let xml = Response::new()
        .say("Transferring you")
        .dial(
            Dial::number("+14155550100")
                .unwrap()
                .caller_id("+15550001111"),
        )
        .to_xml()
        .unwrap();
    assert_eq!(
        xml,
        r#"<?xml version="1.0" encoding="UTF-8"?><Response><Say>Transferring you</Say><Dial callerId="+15550001111"><Number>+14155550100</Number></Dial></Response>"#
    );
    for bad in [
        "14155550100",
        "+",
        "+1",
        "+1415555010012345",
        "+1415<x>",
        "",
        "+1 415 555",
    ] {
        assert!(
            matches!(Dial::number(bad), Err(TwimlError::InvalidNumber { .. })),
            "{bad:?}"
        );
    }
}
