use super::*;

const MZ: &str = "MZ18ad3ab5a668481ce02b83e7395059f0";
const AC: &str = "AC25e16e9a716a4a1786a7c83f58e30482";
const CA: &str = "CA2b7ec9f0bd3e4d4b83f7ad1d2a1e0c6e";

fn stream() -> StreamSid {
    StreamSid::parse(MZ).unwrap()
}
fn account() -> AccountSid {
    AccountSid::parse(AC).unwrap()
}
fn call() -> CallSid {
    CallSid::parse(CA).unwrap()
}

/// docs/protocol.md §2 uses `MZ…` placeholders; real SIDs are hex.
fn sids(template: &str) -> String {
    template
        .replace("MZ…", MZ)
        .replace("AC…", AC)
        .replace("CA…", CA)
}

fn err(text: &str) -> MessageError {
    match parse(text) {
        Ok(m) => panic!("parsed {m:?} from {text}"),
        Err(e) => e,
    }
}

// ---- the documented messages ----

#[test]
fn protocol_md_examples_parse_to_every_field() {
    let cases: Vec<(&str, Inbound<'static>)> = vec![
        (
            r#"{"event":"connected","protocol":"Call","version":"1.0.0"}"#,
            Inbound::Connected(Connected {
                protocol: "Call".into(),
                version: "1.0.0".into(),
            }),
        ),
        (
            r#"{"event":"start","sequenceNumber":"1","streamSid":"MZ…","start":{"accountSid":"AC…","streamSid":"MZ…","callSid":"CA…","tracks":["inbound"],"customParameters":{"k":"v"},"mediaFormat":{"encoding":"audio/x-mulaw","sampleRate":8000,"channels":1}}}"#,
            Inbound::Start(Start {
                sequence_number: 1,
                stream_sid: stream(),
                account_sid: account(),
                call_sid: call(),
                tracks: vec!["inbound".into()],
                custom_parameters: vec![("k".into(), "v".into())],
                media_format: MediaFormat {
                    encoding: "audio/x-mulaw".into(),
                    sample_rate: 8000,
                    channels: 1,
                },
            }),
        ),
        (
            r#"{"event":"media","sequenceNumber":"3","streamSid":"MZ…","media":{"track":"inbound","chunk":"2","timestamp":"40","payload":"/38A"}}"#,
            Inbound::Media(Media {
                sequence_number: 3,
                stream_sid: stream(),
                track: Track::Inbound,
                chunk: 2,
                timestamp: 40,
                payload: Cow::Borrowed("/38A"),
            }),
        ),
        (
            r#"{"event":"dtmf","sequenceNumber":"5","streamSid":"MZ…","dtmf":{"track":"inbound_track","digit":"1"}}"#,
            Inbound::Dtmf(Dtmf {
                sequence_number: 5,
                stream_sid: stream(),
                track: Track::Inbound,
                digit: '1',
            }),
        ),
        (
            r#"{"event":"mark","sequenceNumber":"6","streamSid":"MZ…","mark":{"name":"label"}}"#,
            Inbound::Mark(Mark {
                sequence_number: 6,
                stream_sid: stream(),
                name: "label".into(),
            }),
        ),
        (
            r#"{"event":"stop","sequenceNumber":"7","streamSid":"MZ…","stop":{"accountSid":"AC…","callSid":"CA…"}}"#,
            Inbound::Stop(Stop {
                sequence_number: 7,
                stream_sid: stream(),
                account_sid: account(),
                call_sid: call(),
            }),
        ),
    ];
    for (template, want) in cases {
        let text = sids(template);
        assert_eq!(parse(&text), Ok(want.clone()), "{text}");
        assert_eq!(parse_full(&text), Ok(want), "full parser: {text}");
    }
}

/// Twilio's documentation prints its examples pretty, with `streamSid` last
/// and the start body's fields in another order.
#[test]
fn twilio_documentation_examples_pretty_printed_parse() {
    let start = sids(
        r#"{
  "event": "start",
  "sequenceNumber": "1",
  "start": {
    "accountSid": "AC…",
    "streamSid": "MZ…",
    "callSid": "CA…",
    "tracks": [ "inbound" ],
    "mediaFormat": { "encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1 },
    "customParameters": { "FirstName": "Jane", "LastName": "Doe", "RemoteParty": "Bob" }
  },
  "streamSid": "MZ…"
}"#,
    );
    let Ok(Inbound::Start(s)) = parse(&start) else {
        panic!("{:?}", parse(&start))
    };
    assert_eq!(
        s.custom_parameters,
        [
            ("FirstName", "Jane"),
            ("LastName", "Doe"),
            ("RemoteParty", "Bob")
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
    );
    assert_eq!(s.parameter("LastName"), Some("Doe"));
    assert!(s.media_format.is_ulaw_8k_mono());

    let media = sids(
        r#"{
  "event": "media",
  "sequenceNumber": "3",
  "media": {
    "track": "outbound",
    "chunk": "1",
    "timestamp": "5",
    "payload": "no+JhoaJjpzSHxAKBgYJ"
  },
  "streamSid": "MZ…"
}"#,
    );
    let Ok(Inbound::Media(m)) = parse(&media) else {
        panic!("{:?}", parse(&media))
    };
    assert_eq!(
        (m.sequence_number, m.track, m.chunk, m.timestamp),
        (3, Track::Outbound, 1, 5)
    );
    assert_eq!(m.decoded_len(), 15);
    let mut ulaw = [0u8; 15];
    assert_eq!(m.decode_payload(&mut ulaw), Ok(15));
    assert_eq!(ulaw[..3], [0x9e, 0x8f, 0x89]);

    for text in [
        r#"{ "event": "stop", "sequenceNumber": "5", "stop": { "accountSid": "AC…", "callSid": "CA…" }, "streamSid": "MZ…" }"#,
        r#"{ "event": "dtmf", "streamSid": "MZ…", "sequenceNumber": "5", "dtmf": { "track": "inbound_track", "digit": "1" } }"#,
        r#"{ "event": "mark", "sequenceNumber": "4", "streamSid": "MZ…", "mark": { "name": "my label" } }"#,
    ] {
        let text = sids(text);
        assert!(parse(&text).is_ok(), "{text}: {:?}", parse(&text));
    }
}

#[test]
fn start_keeps_custom_parameters_in_document_order_with_repeats() {
    let text = sids(
        r#"{"event":"start","sequenceNumber":"1","streamSid":"MZ…","start":{"accountSid":"AC…","callSid":"CA…","tracks":["inbound","outbound"],"customParameters":{"z":"1","a":"2","z":"3","é \"q\"":"\u00e9\n"},"mediaFormat":{"encoding":"audio/x-mulaw","sampleRate":8000,"channels":1}}}"#,
    );
    let Ok(Inbound::Start(s)) = parse(&text) else {
        panic!("{:?}", parse(&text))
    };
    let names: Vec<_> = s
        .custom_parameters
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(
        names,
        [("z", "1"), ("a", "2"), ("z", "3"), ("é \"q\"", "é\n")]
    );
    assert_eq!(s.parameter("z"), Some("1"));
    assert_eq!(s.tracks, ["inbound", "outbound"]);
}

#[test]
fn start_without_custom_parameters_has_none() {
    let text = sids(
        r#"{"event":"start","sequenceNumber":"1","streamSid":"MZ…","start":{"accountSid":"AC…","callSid":"CA…","tracks":["inbound"],"mediaFormat":{"encoding":"audio/x-mulaw","sampleRate":8000,"channels":1}}}"#,
    );
    let Ok(Inbound::Start(s)) = parse(&text) else {
        panic!("{:?}", parse(&text))
    };
    assert!(s.custom_parameters.is_empty());
}

#[test]
fn unknown_fields_are_ignored_at_every_level() {
    let cases = [
        r#"{"event":"connected","protocol":"Call","version":"1.0.0","extra":{"deep":[1,{"x":null}]}}"#,
        r#"{"event":"start","sequenceNumber":"1","streamSid":"MZ…","new":true,"start":{"accountSid":"AC…","callSid":"CA…","tracks":["inbound"],"mediaFormat":{"encoding":"audio/x-mulaw","sampleRate":8000,"channels":1,"bits":8},"later":[]}}"#,
        r#"{"event":"media","sequenceNumber":"3","streamSid":"MZ…","media":{"track":"inbound","chunk":"2","timestamp":"40","payload":"/38A","extra":"x"},"extra":"y"}"#,
        r#"{"event":"media","sequenceNumber":"3","streamSid":"MZ…","media":{"track":"inbound","chunk":"2","timestamp":"40","payload":"/38A","n":1.5},"n":[1,2]}"#,
        r#"{"event":"dtmf","sequenceNumber":"5","streamSid":"MZ…","dtmf":{"track":"inbound_track","digit":"1","duration":"100"}}"#,
        r#"{"event":"mark","sequenceNumber":"6","streamSid":"MZ…","mark":{"name":"label","at":0}}"#,
        r#"{"event":"stop","sequenceNumber":"7","streamSid":"MZ…","stop":{"accountSid":"AC…","callSid":"CA…","reason":"hangup"}}"#,
        // A known field of another event is ignored too (values of any type).
        r#"{"event":"media","sequenceNumber":"3","streamSid":"MZ…","protocol":7,"mark":{"name":1},"media":{"track":"inbound","chunk":"2","timestamp":"40","payload":""}}"#,
    ];
    for template in cases {
        let text = sids(template);
        assert!(parse(&text).is_ok(), "{text}: {:?}", parse(&text));
    }
}

#[test]
fn numbers_are_accepted_as_digit_strings_or_integers() {
    let media = |seq: &str| {
        sids(&format!(
            r#"{{"event":"media","sequenceNumber":{seq},"streamSid":"MZ…","media":{{"track":"inbound","chunk":"1","timestamp":"0","payload":""}}}}"#
        ))
    };
    let good: &[(&str, u64)] = &[
        (r#""0""#, 0),
        (r#""3""#, 3),
        (r#""007""#, 7),
        (r#""18446744073709551615""#, u64::MAX),
        (r#""00000000000000000001""#, 1),
        ("3", 3),
        ("0", 0),
        ("18446744073709551615", u64::MAX),
    ];
    for (seq, want) in good {
        assert_eq!(
            parse(&media(seq)).map(|m| m.sequence_number()),
            Ok(Some(*want)),
            "{seq}"
        );
    }
    let bad = [
        r#""""#,
        r#""-1""#,
        r#""+1""#,
        r#"" 1""#,
        r#""1 ""#,
        r#""1.0""#,
        r#""1e3""#,
        r#""0x10""#,
        r#""18446744073709551616""#,
        r#""000000000000000000001""#,
        r#""١""#,
        "-1",
        "1.5",
        "1e3",
        "18446744073709551616",
        "true",
        "null",
        "[]",
        "{}",
    ];
    for seq in bad {
        let e = err(&media(seq));
        assert!(
            matches!(
                e,
                MessageError::InvalidField {
                    field: "sequenceNumber",
                    ..
                } | MessageError::MissingField {
                    field: "sequenceNumber"
                }
            ),
            "{seq}: {e:?}"
        );
    }
}

#[test]
fn media_format_numbers_must_fit() {
    let start = |rate: &str, channels: &str| {
        sids(&format!(
            r#"{{"event":"start","sequenceNumber":"1","streamSid":"MZ…","start":{{"accountSid":"AC…","callSid":"CA…","tracks":["inbound"],"mediaFormat":{{"encoding":"audio/x-mulaw","sampleRate":{rate},"channels":{channels}}}}}}}"#
        ))
    };
    let Ok(Inbound::Start(s)) = parse(&start(r#""16000""#, "2")) else {
        panic!()
    };
    assert_eq!(
        (s.media_format.sample_rate, s.media_format.channels),
        (16000, 2)
    );
    assert!(!s.media_format.is_ulaw_8k_mono());
    assert_eq!(parse(&start("4294967295", "65535")).map(|_| ()), Ok(()));
    assert!(matches!(
        err(&start("4294967296", "1")),
        MessageError::InvalidField {
            field: "start.mediaFormat.sampleRate",
            ..
        }
    ));
    assert!(matches!(
        err(&start("8000", "65536")),
        MessageError::InvalidField {
            field: "start.mediaFormat.channels",
            ..
        }
    ));
}

#[test]
fn dtmf_digits() {
    let dtmf = |digit: &str| {
        sids(&format!(
            r#"{{"event":"dtmf","sequenceNumber":"5","streamSid":"MZ…","dtmf":{{"track":"inbound_track","digit":{digit}}}}}"#
        ))
    };
    for (digit, want) in [
        ("0", '0'),
        ("9", '9'),
        ("*", '*'),
        ("#", '#'),
        ("A", 'A'),
        ("d", 'D'),
    ] {
        let Ok(Inbound::Dtmf(d)) = parse(&dtmf(&format!("{digit:?}"))) else {
            panic!("{digit}")
        };
        assert_eq!(d.digit, want);
    }
    for digit in [r#""""#, r#""12""#, r#""E""#, r#""x""#, "1", r#"" ""#] {
        let e = err(&dtmf(digit));
        assert!(
            matches!(
                e,
                MessageError::InvalidField {
                    field: "dtmf.digit",
                    ..
                }
            ),
            "{digit}: {e:?}"
        );
    }
}

#[test]
fn escaped_strings_are_unescaped_exactly() {
    // `\/` is legal JSON for `/`, and base64 is full of slashes.
    let text = sids(
        r#"{"event":"media","sequenceNumber":"3","streamSid":"MZ…","media":{"track":"inbound","chunk":"2","timestamp":"40","payload":"\/38A"}}"#,
    );
    let Ok(Inbound::Media(m)) = parse(&text) else {
        panic!("{:?}", parse(&text))
    };
    assert!(matches!(m.payload, Cow::Owned(_)));
    assert_eq!(m.payload, "/38A");
    let mut ulaw = [0u8; 3];
    assert_eq!(m.decode_payload(&mut ulaw), Ok(3));
    assert_eq!(ulaw, [0xFF, 0x7F, 0x00]);

    let mark = sids(
        r#"{"event":"mark","sequenceNumber":"6","streamSid":"MZ…","mark":{"name":"a\"b\\c\u00e9\ud83d\ude00\n"}}"#,
    );
    let Ok(Inbound::Mark(m)) = parse(&mark) else {
        panic!("{:?}", parse(&mark))
    };
    assert_eq!(m.name, "a\"b\\cé😀\n");

    // An escaped SID or event is still the same text.
    let escaped = sids(r#"{"event":"m\u0065dia","sequenceNumber":"3","streamSid":"MZ…","media":{"track":"inbound","chunk":"2","timestamp":"40","payload":""}}"#)
        .replace("MZ18", r"\u004dZ18");
    assert_eq!(parse(&escaped).map(|m| m.stream_sid()), Ok(Some(stream())));
}

// ---- malformed messages ----

#[test]
fn malformed_messages_say_what_was_wrong() {
    use MessageError as E;
    let media_with = |body: &str| {
        sids(&format!(
            r#"{{"event":"media","sequenceNumber":"3","streamSid":"MZ…","media":{body}}}"#
        ))
    };
    type Check = fn(&MessageError) -> bool;
    let cases: Vec<(String, Check)> = vec![
        ("".into(), |e| matches!(e, E::Json { .. })),
        ("not json".into(), |e| matches!(e, E::Json { .. })),
        ("[]".into(), |e| matches!(e, E::Json { .. })),
        (r#"["media","3"]"#.into(), |e| matches!(e, E::Json { .. })),
        (
            sids(r#"{"event":"mark","sequenceNumber":"6","streamSid":"MZ…","mark":["label"]}"#),
            |e| matches!(e, E::Json { detail } if detail.contains("`mark`")),
        ),
        ("\"media\"".into(), |e| matches!(e, E::Json { .. })),
        ("null".into(), |e| matches!(e, E::Json { .. })),
        ("{}".into(), |e| {
            matches!(e, E::MissingField { field: "event" })
        }),
        (r#"{"event":null}"#.into(), |e| {
            matches!(e, E::MissingField { field: "event" })
        }),
        (r#"{"event":5}"#.into(), |e| {
            matches!(e, E::InvalidField { field: "event", .. })
        }),
        (
            r#"{"event":"clear","streamSid":"MZ…"}"#.into(),
            |e| matches!(e, E::UnknownEvent { event } if event == "clear"),
        ),
        (r#"{"event":"Media"}"#.into(), |e| {
            matches!(e, E::UnknownEvent { .. })
        }),
        (
            format!(r#"{{"event":"{}"}}"#, "x".repeat(1000)),
            |e| matches!(e, E::UnknownEvent { event } if event.len() == 64),
        ),
        (r#"{"event":"connected","protocol":"Call"}"#.into(), |e| {
            matches!(e, E::MissingField { field: "version" })
        }),
        (
            r#"{"event":"connected","protocol":1,"version":"1"}"#.into(),
            |e| {
                matches!(
                    e,
                    E::InvalidField {
                        field: "protocol",
                        ..
                    }
                )
            },
        ),
        (
            r#"{"event":"media","event":"media"}"#.into(),
            |e| matches!(e, E::Json { detail } if detail.contains("duplicate")),
        ),
        (
            sids(r#"{"event":"media","sequenceNumber":"3","streamSid":"MZ…"}"#),
            |e| matches!(e, E::MissingField { field: "media" }),
        ),
        (
            media_with(r#""x""#),
            |e| matches!(e, E::Json { detail } if detail.contains("media")),
        ),
        (
            media_with(r#"{"chunk":"2","timestamp":"40","payload":""}"#),
            |e| {
                matches!(
                    e,
                    E::MissingField {
                        field: "media.track"
                    }
                )
            },
        ),
        (
            media_with(r#"{"track":"both","chunk":"2","timestamp":"40","payload":""}"#),
            |e| {
                matches!(
                    e,
                    E::InvalidField {
                        field: "media.track",
                        ..
                    }
                )
            },
        ),
        (
            media_with(r#"{"track":"inbound","timestamp":"40","payload":""}"#),
            |e| {
                matches!(
                    e,
                    E::MissingField {
                        field: "media.chunk"
                    }
                )
            },
        ),
        (
            media_with(r#"{"track":"inbound","chunk":"two","timestamp":"40","payload":""}"#),
            |e| {
                matches!(
                    e,
                    E::InvalidField {
                        field: "media.chunk",
                        ..
                    }
                )
            },
        ),
        (
            media_with(r#"{"track":"inbound","chunk":"2","payload":""}"#),
            |e| {
                matches!(
                    e,
                    E::MissingField {
                        field: "media.timestamp"
                    }
                )
            },
        ),
        (
            media_with(r#"{"track":"inbound","chunk":"2","timestamp":"-4","payload":""}"#),
            |e| {
                matches!(
                    e,
                    E::InvalidField {
                        field: "media.timestamp",
                        ..
                    }
                )
            },
        ),
        (
            media_with(r#"{"track":"inbound","chunk":"2","timestamp":"40"}"#),
            |e| {
                matches!(
                    e,
                    E::MissingField {
                        field: "media.payload"
                    }
                )
            },
        ),
        (
            media_with(r#"{"track":"inbound","chunk":"2","timestamp":"40","payload":[1]}"#),
            |e| {
                matches!(
                    e,
                    E::InvalidField {
                        field: "media.payload",
                        ..
                    }
                )
            },
        ),
        (
            sids(
                r#"{"event":"media","streamSid":"MZ…","media":{"track":"inbound","chunk":"2","timestamp":"40","payload":""}}"#,
            ),
            |e| {
                matches!(
                    e,
                    E::MissingField {
                        field: "sequenceNumber"
                    }
                )
            },
        ),
        (
            sids(
                r#"{"event":"media","sequenceNumber":"3","media":{"track":"inbound","chunk":"2","timestamp":"40","payload":""}}"#,
            ),
            |e| matches!(e, E::MissingField { field: "streamSid" }),
        ),
        (
            sids(
                r#"{"event":"media","sequenceNumber":"3","streamSid":"CA…","media":{"track":"inbound","chunk":"2","timestamp":"40","payload":""}}"#,
            ),
            |e| {
                matches!(
                    e,
                    E::InvalidSid {
                        field: "streamSid",
                        error: SidError::WrongPrefix { .. }
                    }
                )
            },
        ),
        (
            sids(
                r#"{"event":"media","sequenceNumber":"3","streamSid":"MZXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX","media":{"track":"inbound","chunk":"2","timestamp":"40","payload":""}}"#,
            ),
            |e| {
                matches!(
                    e,
                    E::InvalidSid {
                        field: "streamSid",
                        error: SidError::NotHex { .. }
                    }
                )
            },
        ),
        (
            sids(r#"{"event":"media","sequenceNumber":"3","streamSid":"MZ…"} trailing"#),
            |e| matches!(e, E::Json { .. }),
        ),
        (
            sids(r#"{"event":"media","sequenceNumber":"3","streamSid":"MZ…""#),
            |e| matches!(e, E::Json { .. }),
        ),
        (
            sids(r#"{"event":"start","sequenceNumber":"1","streamSid":"MZ…"}"#),
            |e| matches!(e, E::MissingField { field: "start" }),
        ),
        (
            sids(
                r#"{"event":"start","sequenceNumber":"1","start":{"accountSid":"AC…","callSid":"CA…","tracks":["inbound"],"mediaFormat":{"encoding":"audio/x-mulaw","sampleRate":8000,"channels":1}}}"#,
            ),
            |e| {
                matches!(
                    e,
                    E::MissingField {
                        field: "start.streamSid"
                    }
                )
            },
        ),
        (
            sids(
                r#"{"event":"start","sequenceNumber":"1","streamSid":"MZ…","start":{"streamSid":"MZ00000000000000000000000000000000","accountSid":"AC…","callSid":"CA…","tracks":["inbound"],"mediaFormat":{"encoding":"audio/x-mulaw","sampleRate":8000,"channels":1}}}"#,
            ),
            |e| matches!(e, E::StreamSidMismatch),
        ),
        (
            sids(
                r#"{"event":"start","sequenceNumber":"1","streamSid":"MZ…","start":{"accountSid":"CA…","callSid":"CA…","tracks":["inbound"],"mediaFormat":{"encoding":"audio/x-mulaw","sampleRate":8000,"channels":1}}}"#,
            ),
            |e| {
                matches!(
                    e,
                    E::InvalidSid {
                        field: "start.accountSid",
                        ..
                    }
                )
            },
        ),
        (
            sids(
                r#"{"event":"start","sequenceNumber":"1","streamSid":"MZ…","start":{"accountSid":"AC…","tracks":["inbound"],"mediaFormat":{"encoding":"audio/x-mulaw","sampleRate":8000,"channels":1}}}"#,
            ),
            |e| {
                matches!(
                    e,
                    E::MissingField {
                        field: "start.callSid"
                    }
                )
            },
        ),
        (
            sids(
                r#"{"event":"start","sequenceNumber":"1","streamSid":"MZ…","start":{"accountSid":"AC…","callSid":"CA…","mediaFormat":{"encoding":"audio/x-mulaw","sampleRate":8000,"channels":1}}}"#,
            ),
            |e| {
                matches!(
                    e,
                    E::MissingField {
                        field: "start.tracks"
                    }
                )
            },
        ),
        (
            sids(
                r#"{"event":"start","sequenceNumber":"1","streamSid":"MZ…","start":{"accountSid":"AC…","callSid":"CA…","tracks":"inbound","mediaFormat":{"encoding":"audio/x-mulaw","sampleRate":8000,"channels":1}}}"#,
            ),
            |e| {
                matches!(
                    e,
                    E::InvalidField {
                        field: "start.tracks",
                        ..
                    }
                )
            },
        ),
        (
            sids(
                r#"{"event":"start","sequenceNumber":"1","streamSid":"MZ…","start":{"accountSid":"AC…","callSid":"CA…","tracks":[1],"mediaFormat":{"encoding":"audio/x-mulaw","sampleRate":8000,"channels":1}}}"#,
            ),
            |e| {
                matches!(
                    e,
                    E::InvalidField {
                        field: "start.tracks",
                        ..
                    }
                )
            },
        ),
        (
            sids(
                r#"{"event":"start","sequenceNumber":"1","streamSid":"MZ…","start":{"accountSid":"AC…","callSid":"CA…","tracks":["inbound"],"customParameters":{"k":1},"mediaFormat":{"encoding":"audio/x-mulaw","sampleRate":8000,"channels":1}}}"#,
            ),
            |e| matches!(e, E::InvalidField { field: "start.customParameters", found, .. } if found.contains("\"k\"")),
        ),
        (
            sids(
                r#"{"event":"start","sequenceNumber":"1","streamSid":"MZ…","start":{"accountSid":"AC…","callSid":"CA…","tracks":["inbound"],"customParameters":["k"],"mediaFormat":{"encoding":"audio/x-mulaw","sampleRate":8000,"channels":1}}}"#,
            ),
            |e| {
                matches!(
                    e,
                    E::InvalidField {
                        field: "start.customParameters",
                        ..
                    }
                )
            },
        ),
        (
            sids(
                r#"{"event":"start","sequenceNumber":"1","streamSid":"MZ…","start":{"accountSid":"AC…","callSid":"CA…","tracks":["inbound"]}}"#,
            ),
            |e| {
                matches!(
                    e,
                    E::MissingField {
                        field: "start.mediaFormat"
                    }
                )
            },
        ),
        (
            sids(
                r#"{"event":"start","sequenceNumber":"1","streamSid":"MZ…","start":{"accountSid":"AC…","callSid":"CA…","tracks":["inbound"],"mediaFormat":{"sampleRate":8000,"channels":1}}}"#,
            ),
            |e| {
                matches!(
                    e,
                    E::MissingField {
                        field: "start.mediaFormat.encoding"
                    }
                )
            },
        ),
        (
            sids(r#"{"event":"dtmf","sequenceNumber":"5","streamSid":"MZ…","dtmf":{"digit":"1"}}"#),
            |e| {
                matches!(
                    e,
                    E::MissingField {
                        field: "dtmf.track"
                    }
                )
            },
        ),
        (
            sids(r#"{"event":"mark","sequenceNumber":"6","streamSid":"MZ…","mark":{}}"#),
            |e| matches!(e, E::MissingField { field: "mark.name" }),
        ),
        (
            sids(r#"{"event":"mark","sequenceNumber":"6","streamSid":"MZ…","mark":"label"}"#),
            |e| matches!(e, E::Json { .. }),
        ),
        (
            sids(
                r#"{"event":"stop","sequenceNumber":"7","streamSid":"MZ…","stop":{"accountSid":"AC…"}}"#,
            ),
            |e| {
                matches!(
                    e,
                    E::MissingField {
                        field: "stop.callSid"
                    }
                )
            },
        ),
        (
            sids(r#"{"event":"stop","sequenceNumber":"7","streamSid":"MZ…"}"#),
            |e| matches!(e, E::MissingField { field: "stop" }),
        ),
    ];
    for (text, check) in &cases {
        let e = err(text);
        assert!(check(&e), "{text}\n  gave {e:?}");
        assert!(!e.to_string().is_empty());
    }
}

#[test]
fn error_messages_name_the_field_and_what_it_held() {
    let text = sids(
        r#"{"event":"media","sequenceNumber":"3","streamSid":"MZ…","media":{"track":"inbound","chunk":"two","timestamp":"40","payload":""}}"#,
    );
    assert_eq!(
        err(&text).to_string(),
        "field `media.chunk` must be a decimal number (a string of digits or a non-negative integer), found the string \"two\""
    );
    let long = sids(&format!(
        r#"{{"event":"media","sequenceNumber":"3","streamSid":"MZ…","media":{{"track":"{}","chunk":"2","timestamp":"40","payload":""}}}}"#,
        "y".repeat(500)
    ));
    let shown = err(&long).to_string();
    assert!(shown.len() < 200, "{shown}");
    let body = sids(&format!(
        r#"{{"event":"mark","sequenceNumber":"6","streamSid":"MZ…","mark":"{}"}}"#,
        "z".repeat(5000)
    ));
    let shown = err(&body).to_string();
    assert!(
        shown.len() < 200 && shown.contains("… at line 1 column 50"),
        "{shown}"
    );
}

/// Values we ignore are skipped by serde_json without recursion, so nesting
/// costs no stack however deep: it is bounded by the size limit alone.
#[test]
fn deep_nesting_never_overflows_the_stack() {
    let levels = (MAX_MESSAGE_LEN - 100) / 2;
    let nested = |field: &str| {
        format!(
            r#"{{"event":"connected","protocol":"Call","version":"1.0.0","{field}":{}{}}}"#,
            "[".repeat(levels),
            "]".repeat(levels)
        )
    };
    assert!(nested("x").len() <= MAX_MESSAGE_LEN);
    assert!(matches!(parse(&nested("x")), Ok(Inbound::Connected(_))));
    assert!(matches!(
        parse(&nested("protocol")),
        Err(MessageError::Json { detail }) if detail.contains("duplicate")
    ));
    let unclosed = format!(
        r#"{{"event":"connected","x":{}"#,
        "{\"a\":[".repeat(levels / 3)
    );
    assert!(matches!(parse(&unclosed), Err(MessageError::Json { .. })));
    let in_body = sids(&format!(
        r#"{{"event":"mark","sequenceNumber":"6","streamSid":"MZ…","mark":{{"name":{}{}}}}}"#,
        "[".repeat(levels - 60),
        "]".repeat(levels - 60)
    ));
    assert!(
        matches!(
            parse(&in_body),
            Err(MessageError::InvalidField {
                field: "mark.name",
                ..
            })
        ),
        "{:?}",
        parse(&in_body)
    );
}

// ---- the size limit ----

#[test]
fn size_limit_is_64_kib_inclusive() {
    let base =
        sids(r#"{"event":"mark","sequenceNumber":"6","streamSid":"MZ…","mark":{"name":"label"}}"#);
    let at_limit = format!("{base}{}", " ".repeat(MAX_MESSAGE_LEN - base.len()));
    assert_eq!(at_limit.len(), MAX_MESSAGE_LEN);
    assert!(parse(&at_limit).is_ok());
    let over = format!("{at_limit} ");
    assert_eq!(
        parse(&over),
        Err(MessageError::TooLong {
            len: MAX_MESSAGE_LEN + 1,
            max: MAX_MESSAGE_LEN
        })
    );
}

#[test]
fn a_large_media_frame_within_the_limit_decodes() {
    // 48,000 bytes of audio (6 s) in one message: unusual, but any frame
    // length is accepted.
    let ulaw: Vec<u8> = (0..48_000u32).map(|i| (i % 251) as u8).collect();
    let text = sids(&format!(
        r#"{{"event":"media","sequenceNumber":"2","streamSid":"MZ…","media":{{"track":"inbound","chunk":"1","timestamp":"0","payload":"{}"}}}}"#,
        BASE64_OUT.encode(&ulaw)
    ));
    assert!(text.len() <= MAX_MESSAGE_LEN);
    let Ok(Inbound::Media(m)) = parse(&text) else {
        panic!()
    };
    let mut out = vec![0u8; m.decoded_len()];
    assert_eq!(m.decode_payload(&mut out), Ok(48_000));
    assert_eq!(out, ulaw);
    let mut pcm = vec![0i16; 48_000];
    assert_eq!(m.decode_samples(&mut pcm), Ok(48_000));
    assert!(pcm.iter().zip(&ulaw).all(|(&s, &u)| s == codec::decode(u)));
}

// ---- payload decoding ----

fn media_with_payload(payload: &str) -> Media<'_> {
    Media {
        sequence_number: 3,
        stream_sid: stream(),
        track: Track::Inbound,
        chunk: 2,
        timestamp: 40,
        payload: Cow::Borrowed(payload),
    }
}

#[test]
fn payload_decoding_table() {
    let cases: &[(&str, Result<&[u8], ()>)] = &[
        ("", Ok(&[])),
        ("/w==", Ok(&[0xFF])),
        ("/w", Ok(&[0xFF])),
        ("/38=", Ok(&[0xFF, 0x7F])),
        ("/38", Ok(&[0xFF, 0x7F])),
        ("/38A", Ok(&[0xFF, 0x7F, 0x00])),
        ("/x==", Ok(&[0xFF])), // non-zero trailing bits, accepted like Python's b64decode
        ("/", Err(())),
        ("/w=", Ok(&[0xFF])), // short padding: padding is optional, so tolerated
        ("/w===", Err(())),
        ("/w==/w==", Err(())),
        ("/38A\n", Err(())),
        (" /38A", Err(())),
        ("/3-A", Err(())),
        ("/3_A", Err(())),
    ];
    for (payload, want) in cases {
        let m = media_with_payload(payload);
        let mut out = vec![0u8; m.decoded_len()];
        let got = m.decode_payload(&mut out).map(|n| out[..n].to_vec());
        match want {
            Ok(bytes) => {
                assert_eq!(got.as_deref(), Ok(*bytes), "{payload:?}");
                assert_eq!(
                    m.decoded_len(),
                    bytes.len(),
                    "decoded_len({payload:?}) is exact"
                );
            }
            Err(()) => assert!(
                matches!(got, Err(MessageError::InvalidPayload { .. })),
                "{payload:?}: {got:?}"
            ),
        }
        let mut pcm = vec![0i16; m.decoded_len()];
        assert_eq!(
            m.decode_samples(&mut pcm).is_ok(),
            want.is_ok(),
            "samples {payload:?}"
        );
    }
}

#[test]
fn payload_buffer_limit_is_exact() {
    let ulaw = [0x55u8; 160];
    let payload = BASE64_OUT.encode(ulaw);
    assert_eq!(payload.len(), 216);
    let m = media_with_payload(&payload);
    assert_eq!(m.decoded_len(), 160);
    let mut exact = [0u8; 160];
    assert_eq!(m.decode_payload(&mut exact), Ok(160));
    assert_eq!(exact, ulaw);
    let mut short = [0u8; 159];
    assert_eq!(
        m.decode_payload(&mut short),
        Err(MessageError::BufferTooSmall {
            needed: 160,
            capacity: 159
        })
    );
    let mut pcm = [0i16; 159];
    assert_eq!(
        m.decode_samples(&mut pcm),
        Err(MessageError::BufferTooSmall {
            needed: 160,
            capacity: 159
        })
    );
    let mut roomy = [0i16; 400];
    assert_eq!(m.decode_samples(&mut roomy), Ok(160));
    assert!(roomy[..160].iter().all(|&s| s == codec::decode(0x55)));
}

#[test]
fn samples_refuse_padding_at_an_inner_chunk_boundary() {
    // 640 characters end an inner chunk of decode_samples; padding there is
    // invalid base64 even though that chunk alone would decode.
    let mut payload = "A".repeat(638);
    payload.push_str("==");
    payload.push_str("AAAA");
    let m = media_with_payload(&payload);
    let mut bytes = vec![0u8; m.decoded_len() + 3];
    assert!(matches!(
        m.decode_payload(&mut bytes),
        Err(MessageError::InvalidPayload { .. })
    ));
    let mut pcm = vec![0i16; m.decoded_len() + 3];
    assert!(matches!(
        m.decode_samples(&mut pcm),
        Err(MessageError::InvalidPayload { .. })
    ));
}

// ---- properties ----

mod prop {
    use super::*;
    use proptest::prelude::*;

    /// A media message with its fields in any order, optional whitespace and
    /// unknown fields: the shapes the fast path must handle or hand over.
    fn media_text(any_extra: bool) -> impl Strategy<Value = String> {
        let ws = || prop_oneof![Just(""), Just(" "), Just("\n  "), Just("\t")];
        (
            any::<u64>(),
            any::<u64>(),
            any::<u64>(),
            proptest::collection::vec(any::<u8>(), 0..200),
            (
                Just(vec![0usize, 1, 2, 3]).prop_shuffle(),
                Just(vec![0usize, 1, 2, 3]).prop_shuffle(),
            ),
            ws(),
            ws(),
            prop_oneof![
                Just(None),
                Just(Some(r#""extra":"x""#)),
                Just(Some(if any_extra {
                    r#""n":[1,{"a":null}]"#
                } else {
                    r#""protocol":"p""#
                })),
            ],
        )
            .prop_map(|(seq, chunk, ts, audio, (top, inner), w1, w2, extra)| {
                let payload = BASE64_OUT.encode(audio);
                let inner_fields = [
                    r#""track":"inbound""#.to_owned(),
                    format!(r#""chunk":"{chunk}""#),
                    format!(r#""timestamp":"{ts}""#),
                    format!(r#""payload":"{payload}""#),
                ];
                let media = format!(
                    "{{{w1}{}{w2}}}",
                    inner
                        .iter()
                        .map(|&i| inner_fields[i].as_str())
                        .collect::<Vec<_>>()
                        .join(&format!(",{w1}"))
                );
                let mut fields = vec![
                    r#""event":"media""#.to_owned(),
                    format!(r#""sequenceNumber":"{seq}""#),
                    format!(r#""streamSid":"{MZ}""#),
                    format!(r#""media":{w2}{media}"#),
                ];
                fields = top.iter().map(|&i| fields[i].clone()).collect();
                if let Some(extra) = extra {
                    fields.push(extra.to_owned());
                }
                format!("{w1}{{{}}}{w2}", fields.join(&format!("{w2},{w1}")))
            })
    }

    /// Edits that may break a message: the fast path must then hand over.
    fn mutate(text: &str, at: usize, edit: u8) -> String {
        let mut s = text.to_owned();
        let mut at = at % (s.len() + 1);
        while !s.is_char_boundary(at) {
            at -= 1;
        }
        let inserts = [
            "\\",
            "\"",
            "\\/",
            "\u{1}",
            ",",
            "}",
            "{",
            ":",
            " ",
            "\"media\":{}",
            "\"event\":\"media\",",
            "\"streamSid\":\"x\",",
            "\"mark\":\"x\",",
            "\"protocol\":\"p\",",
            "1",
            "é",
            "\"track\":\"inbound\",",
        ];
        match edit % 3 {
            0 => s.insert_str(at, inserts[usize::from(edit / 3) % inserts.len()]),
            1 => {
                let end = (at + 1 + usize::from(edit % 7)).min(s.len());
                let mut end = end;
                while !s.is_char_boundary(end) {
                    end += 1;
                }
                s.replace_range(at..end, "");
            }
            _ => {
                let end = (at + 1).min(s.len());
                if s.is_char_boundary(end) {
                    s.replace_range(at..end, "0");
                }
            }
        }
        s
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn arbitrary_text_never_panics(text in ".{0,300}") {
            let _ = parse(&text);
            let _ = decode_base64(&text, &mut [0u8; 64]);
            let _ = media_with_payload(&text).decode_samples(&mut [0i16; 64]);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let text = String::from_utf8_lossy(&bytes);
            if let Ok(Inbound::Media(m)) = parse(&text) {
                let mut out = vec![0u8; m.decoded_len()];
                let _ = m.decode_payload(&mut out);
            }
        }

        #[test]
        fn fast_path_takes_usual_media_and_agrees_with_full_parser(text in media_text(false)) {
            let fast = fast::parse_media(&text);
            prop_assert!(fast.is_some(), "fast path gave up on {}", text);
            prop_assert_eq!(Ok(Inbound::Media(fast.unwrap())), parse_full(&text));
        }

        #[test]
        fn fast_path_never_disagrees_on_edited_messages(
            text in media_text(true),
            edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..4),
        ) {
            let mut text = text;
            for (at, edit) in edits {
                text = mutate(&text, at, edit);
            }
            if let Some(fast) = fast::parse_media(&text) {
                prop_assert_eq!(Ok(Inbound::Media(fast)), parse_full(&text), "{}", text);
            }
        }

        #[test]
        fn decode_samples_equals_decode_payload_then_codec(payload in "[A-Za-z0-9+/=]{0,1400}") {
            let m = media_with_payload(&payload);
            let mut bytes = vec![0u8; m.decoded_len()];
            let mut pcm = vec![0i16; m.decoded_len()];
            match (m.decode_payload(&mut bytes), m.decode_samples(&mut pcm)) {
                (Ok(a), Ok(b)) => {
                    prop_assert_eq!(a, b);
                    for (s, u) in pcm.iter().zip(&bytes).take(a) {
                        prop_assert_eq!(*s, codec::decode(*u));
                    }
                }
                (Err(_), Err(_)) => {}
                (a, b) => return Err(TestCaseError::fail(format!("{a:?} vs {b:?} for {payload}"))),
            }
        }

        #[test]
        fn valid_base64_decodes_into_exactly_decoded_len(audio in proptest::collection::vec(any::<u8>(), 0..700), unpadded in any::<bool>()) {
            let mut payload = BASE64_OUT.encode(&audio);
            if unpadded {
                payload = payload.trim_end_matches('=').to_owned();
            }
            prop_assert_eq!(decoded_len(&payload), audio.len());
            let mut out = vec![0u8; audio.len()];
            prop_assert_eq!(decode_base64(&payload, &mut out), Ok(audio.len()));
            prop_assert_eq!(out, audio);
        }
    }
}
