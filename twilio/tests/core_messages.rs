//! The core against the Twilio model: the core parses every message Twilio
//! writes back to the same value, and the core's writers pass Twilio's strict
//! check. Each side was written without the other, so agreement means
//! something.
//! (These lived in the core's unit tests while the core carried its own
//! simulator code.)

use std::borrow::Cow;

use base64::Engine as _;
use callstream_core::codec;
use callstream_core::message::{
    self, Connected, Dtmf, Inbound, Mark, Media, MediaFormat, Start, Stop, Track,
};
use callstream_core::sid::{AccountSid, CallSid, StreamSid};
use callstream_twilio::{Message, ServerMessage, Stream, check_text};
use proptest::prelude::*;

const BASE64_OUT: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

fn sid_text(sid: &StreamSid) -> String {
    sid.as_str().to_owned()
}

#[test]
fn core_parses_the_documented_shapes_the_model_writes() {
    let s = Stream::default();
    let text = s.media(3, 2, 40, &[0xFF, 0x7F, 0x00]);
    let Ok(Inbound::Media(m)) = message::parse(&text) else {
        panic!("media")
    };
    assert_eq!((m.sequence_number, m.chunk, m.timestamp), (3, 2, 40));
    assert_eq!(m.track, Track::Inbound);
    let Ok(Inbound::Dtmf(d)) = message::parse(&s.dtmf(5, "1")) else {
        panic!("dtmf")
    };
    assert_eq!((d.digit, d.track), ('1', Track::Inbound));
    let Ok(Inbound::Start(st)) = message::parse(&s.start(&[("k", "v")])) else {
        panic!("start")
    };
    assert_eq!(st.parameter("k"), Some("v"));
    assert!(st.media_format.is_ulaw_8k_mono());
}

#[test]
fn core_writers_pass_twilios_check() {
    let sid = StreamSid::from_u128(7);
    let mut out = String::new();
    message::write_media(&mut out, &sid, &[1, 2, 3, 4]);
    assert_eq!(
        check_text(&out, Some(sid.as_str())),
        Ok(ServerMessage::Media(vec![1, 2, 3, 4]))
    );
    out.clear();
    message::write_mark(&mut out, &sid, "a\"b\\c\n");
    assert_eq!(
        check_text(&out, Some(sid.as_str())),
        Ok(ServerMessage::Mark("a\"b\\c\n".into()))
    );
    out.clear();
    message::write_clear(&mut out, &sid);
    assert_eq!(
        check_text(&out, Some(sid.as_str())),
        Ok(ServerMessage::Clear)
    );
    // Twilio refuses it on another stream.
    let other = StreamSid::from_u128(8);
    assert!(check_text(&out, Some(other.as_str())).is_err());
}

fn track() -> impl Strategy<Value = Track> {
    prop_oneof![Just(Track::Inbound), Just(Track::Outbound)]
}

fn sid<T: std::fmt::Debug>(make: fn(u128) -> T) -> impl Strategy<Value = T> {
    any::<u128>().prop_map(make)
}

fn inbound() -> impl Strategy<Value = Inbound<'static>> {
    let text = || ".{0,12}";
    prop_oneof![
        (text(), text())
            .prop_map(|(protocol, version)| Inbound::Connected(Connected { protocol, version })),
        (
            any::<u64>(),
            sid(StreamSid::from_u128),
            sid(AccountSid::from_u128),
            sid(CallSid::from_u128),
            proptest::collection::vec(text(), 0..3),
            proptest::collection::vec((text(), text()), 0..4),
            (text(), any::<u32>(), any::<u16>()),
        )
            .prop_map(
                |(
                    seq,
                    stream_sid,
                    account_sid,
                    call_sid,
                    tracks,
                    params,
                    (encoding, sample_rate, channels),
                )| {
                    Inbound::Start(Start {
                        sequence_number: seq,
                        stream_sid,
                        account_sid,
                        call_sid,
                        tracks,
                        custom_parameters: params,
                        media_format: MediaFormat {
                            encoding,
                            sample_rate,
                            channels,
                        },
                    })
                }
            ),
        (
            any::<u64>(),
            sid(StreamSid::from_u128),
            track(),
            any::<u64>(),
            any::<u64>(),
            proptest::collection::vec(any::<u8>(), 0..400)
        )
            .prop_map(|(seq, stream_sid, track, chunk, timestamp, audio)| {
                Inbound::Media(Media {
                    sequence_number: seq,
                    stream_sid,
                    track,
                    chunk,
                    timestamp,
                    payload: Cow::Owned(BASE64_OUT.encode(audio)),
                })
            }),
        (
            any::<u64>(),
            sid(StreamSid::from_u128),
            track(),
            proptest::sample::select(b"0123456789*#ABCD".to_vec())
        )
            .prop_map(|(seq, stream_sid, track, d)| Inbound::Dtmf(Dtmf {
                sequence_number: seq,
                stream_sid,
                track,
                digit: char::from(d),
            })),
        (any::<u64>(), sid(StreamSid::from_u128), text()).prop_map(|(seq, stream_sid, name)| {
            Inbound::Mark(Mark {
                sequence_number: seq,
                stream_sid,
                name,
            })
        }),
        (
            any::<u64>(),
            sid(StreamSid::from_u128),
            sid(AccountSid::from_u128),
            sid(CallSid::from_u128)
        )
            .prop_map(
                |(seq, stream_sid, account_sid, call_sid)| Inbound::Stop(Stop {
                    sequence_number: seq,
                    stream_sid,
                    account_sid,
                    call_sid,
                })
            ),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn what_twilio_writes_the_core_parses_to_the_same_value(m in inbound()) {
        let text = Message::from(&m).to_text();
        prop_assert_eq!(message::parse(&text), Ok(m));
    }

    #[test]
    fn whatever_the_core_parses_twilio_writes_back_the_same(text in ".{0,300}") {
        if let Ok(parsed) = message::parse(&text) {
            let again = Message::from(&parsed).to_text();
            if again.len() <= message::MAX_MESSAGE_LEN {
                prop_assert_eq!(message::parse(&again), Ok(parsed));
            }
        }
    }

    #[test]
    fn core_writers_round_trip_through_twilios_check(
        audio in proptest::collection::vec(any::<u8>(), 0..600),
        pcm in proptest::collection::vec(any::<i16>(), 0..600),
        name in ".{0,40}",
        n in any::<u128>(),
    ) {
        let sid = StreamSid::from_u128(n);
        let want = Some(sid_text(&sid));
        let mut out = String::new();
        message::write_media(&mut out, &sid, &audio);
        prop_assert_eq!(check_text(&out, want.as_deref()), Ok(ServerMessage::Media(audio)));

        out.clear();
        message::write_media_pcm(&mut out, &sid, &pcm);
        let encoded: Vec<u8> = pcm.iter().map(|&s| codec::encode(s)).collect();
        prop_assert_eq!(check_text(&out, want.as_deref()), Ok(ServerMessage::Media(encoded)));

        out.clear();
        message::write_mark(&mut out, &sid, &name);
        prop_assert_eq!(check_text(&out, want.as_deref()), Ok(ServerMessage::Mark(name)));

        out.clear();
        message::write_clear(&mut out, &sid);
        prop_assert_eq!(check_text(&out, want.as_deref()), Ok(ServerMessage::Clear));
    }
}
