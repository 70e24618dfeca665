//! Property: arbitrary strings in every attribute and text give a document a
//! real XML parser (roxmltree) reads back to the same values — or, when a
//! string holds a character XML 1.0 cannot carry, a typed error. `<Say
//! language>` and `<Say voice>` are names with a shape of their own: any
//! well-shaped one reads back, any other is refused.

use callstream_core::twiml::{
    Connect, Method, Play, Redirect, Response, Say, Start, Stream, Track, TwimlError,
    XML_DECLARATION, is_language_tag, is_voice_name, is_xml_char, strip_invalid_xml_chars,
};
use proptest::prelude::*;

/// Characters escaping must handle: markup characters, quotes, whitespace
/// that attribute normalisation would eat, control characters, non-ASCII, and
/// the non-characters U+FFFE / U+FFFF.
const NASTY: [char; 24] = [
    '&',
    '<',
    '>',
    '"',
    '\'',
    '\t',
    '\n',
    '\r',
    ' ',
    ';',
    '#',
    '\u{0}',
    '\u{1}',
    '\u{1f}',
    '\u{7f}',
    '\u{85}',
    '\u{e9}',
    '\u{2028}',
    '\u{FFFD}',
    '\u{FFFE}',
    '\u{FFFF}',
    '\u{1F600}',
    ']',
    'a',
];

/// Half the time a character from [`NASTY`], otherwise any BMP character
/// (surrogates become U+FFFD) or an astral one.
fn to_char(x: u16) -> char {
    match x >> 14 {
        0 | 1 => NASTY[usize::from(x) % NASTY.len()],
        2 => char::from_u32(u32::from(x.wrapping_mul(40503))).unwrap_or('\u{FFFD}'),
        _ => char::from_u32(0x1_0000 + u32::from(x & 0x3FFF) * 61).unwrap_or('\u{FFFD}'),
    }
}

/// Strings of up to 24 such characters. (Built from `u16`s: a union of
/// `Just`s is an order of magnitude slower to generate in a debug build.)
fn nasty() -> impl Strategy<Value = String> {
    proptest::collection::vec(any::<u16>(), 0..24)
        .prop_map(|xs| xs.into_iter().map(to_char).collect())
}

/// Every free-form value the builder takes, one per field.
#[derive(Debug, Clone)]
struct Values {
    say: String,
    voice: String,
    language: String,
    play: String,
    redirect: String,
    action: String,
    stream_name: String,
    status_callback: String,
    fork_name: String,
    params: Vec<(String, String)>,
}

fn values() -> impl Strategy<Value = Values> {
    (
        (
            nasty(),
            "[A-Za-z0-9._-]{1,64}",
            "[a-zA-Z]{2,3}(-[A-Za-z0-9]{1,8}){0,2}",
            nasty(),
            nasty(),
        ),
        (nasty(), nasty(), nasty(), nasty()),
        proptest::collection::vec((nasty(), nasty()), 0..4),
    )
        .prop_map(
            |(
                (say, voice, language, play, redirect),
                (action, stream_name, status_callback, fork_name),
                params,
            )| Values {
                say,
                voice,
                language,
                play,
                redirect,
                action,
                stream_name,
                status_callback,
                fork_name,
                params,
            },
        )
}

impl Values {
    fn all(&self) -> Vec<&str> {
        let mut v = vec![
            self.say.as_str(),
            &self.voice,
            &self.language,
            &self.play,
            &self.redirect,
            &self.action,
            &self.stream_name,
            &self.status_callback,
            &self.fork_name,
        ];
        for (k, val) in &self.params {
            v.push(k);
            v.push(val);
        }
        v
    }

    fn stripped(&self) -> Values {
        let s = |x: &String| strip_invalid_xml_chars(x).into_owned();
        Values {
            say: s(&self.say),
            voice: s(&self.voice),
            language: s(&self.language),
            play: s(&self.play),
            redirect: s(&self.redirect),
            action: s(&self.action),
            stream_name: s(&self.stream_name),
            status_callback: s(&self.status_callback),
            fork_name: s(&self.fork_name),
            params: self.params.iter().map(|(k, v)| (s(k), s(v))).collect(),
        }
    }

    fn response(&self) -> Response {
        let mut stream = Stream::new("wss://voice.example.com/ws/twilio-media")
            .unwrap()
            .name(self.stream_name.as_str())
            .status_callback(self.status_callback.as_str())
            .status_callback_method(Method::Post)
            .track(Track::InboundTrack);
        for (k, v) in &self.params {
            stream = stream.parameter(k.as_str(), v.as_str()).unwrap();
        }
        Response::new()
            .start(Start::new(
                Stream::new("wss://fork.example.com/ws")
                    .unwrap()
                    .name(self.fork_name.as_str())
                    .track(Track::BothTracks),
            ))
            .say(
                Say::new(self.say.as_str())
                    .voice(self.voice.as_str())
                    .language(self.language.as_str()),
            )
            .play(Play::new(self.play.as_str()).loop_count(2))
            .pause(1)
            .connect(
                Connect::new()
                    .action(self.action.as_str())
                    .method(Method::Get)
                    .stream(stream),
            )
            .redirect(Redirect::new(self.redirect.as_str()).method(Method::Get))
            .hangup()
    }
}

/// Reads the document back and compares every value.
fn check_round_trip(v: &Values, xml: &str) -> Result<(), TestCaseError> {
    prop_assert!(xml.starts_with(XML_DECLARATION));
    let doc =
        roxmltree::Document::parse(xml).map_err(|e| TestCaseError::fail(format!("{e}: {xml}")))?;
    let root = doc.root_element();
    prop_assert_eq!(root.tag_name().name(), "Response");
    let verbs: Vec<_> = root.children().filter(|n| n.is_element()).collect();
    let names: Vec<_> = verbs.iter().map(|n| n.tag_name().name()).collect();
    prop_assert_eq!(
        names,
        [
            "Start", "Say", "Play", "Pause", "Connect", "Redirect", "Hangup"
        ]
    );
    let text = |n: roxmltree::Node<'_, '_>| n.text().unwrap_or("").to_owned();
    fn elem<'a, 'i>(
        n: roxmltree::Node<'a, 'i>,
        name: &str,
    ) -> Result<roxmltree::Node<'a, 'i>, TestCaseError> {
        n.children()
            .find(|c| c.has_tag_name(name))
            .ok_or_else(|| TestCaseError::fail(format!("no <{name}>")))
    }

    let fork = elem(verbs[0], "Stream")?;
    prop_assert_eq!(fork.attribute("name"), Some(v.fork_name.as_str()));
    prop_assert_eq!(fork.attribute("track"), Some("both_tracks"));

    prop_assert_eq!(text(verbs[1]), v.say.as_str());
    prop_assert_eq!(verbs[1].attribute("voice"), Some(v.voice.as_str()));
    prop_assert_eq!(verbs[1].attribute("language"), Some(v.language.as_str()));
    prop_assert_eq!(text(verbs[2]), v.play.as_str());
    prop_assert_eq!(verbs[2].attribute("loop"), Some("2"));
    prop_assert_eq!(verbs[3].attribute("length"), Some("1"));

    let connect = verbs[4];
    prop_assert_eq!(connect.attribute("action"), Some(v.action.as_str()));
    prop_assert_eq!(connect.attribute("method"), Some("GET"));
    let stream = elem(connect, "Stream")?;
    prop_assert_eq!(
        stream.attribute("url"),
        Some("wss://voice.example.com/ws/twilio-media")
    );
    prop_assert_eq!(stream.attribute("name"), Some(v.stream_name.as_str()));
    prop_assert_eq!(
        stream.attribute("statusCallback"),
        Some(v.status_callback.as_str())
    );
    prop_assert_eq!(stream.attribute("statusCallbackMethod"), Some("POST"));
    prop_assert_eq!(stream.attribute("track"), Some("inbound_track"));
    let params: Vec<(String, String)> = stream
        .children()
        .filter(|c| c.has_tag_name("Parameter"))
        .map(|p| {
            (
                p.attribute("name").unwrap_or_default().to_owned(),
                p.attribute("value").unwrap_or_default().to_owned(),
            )
        })
        .collect();
    prop_assert_eq!(&params, &v.params);

    prop_assert_eq!(text(verbs[5]), v.redirect.as_str());
    prop_assert_eq!(verbs[5].attribute("method"), Some("GET"));
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Any strings: a document that reads back the same, or InvalidXmlChar
    /// exactly when some value holds a character XML cannot carry.
    #[test]
    fn arbitrary_values_round_trip_or_are_refused(v in values()) {
        let has_invalid = v.all().iter().any(|s| !s.chars().all(is_xml_char));
        match v.response().to_xml() {
            Ok(xml) => {
                prop_assert!(!has_invalid);
                check_round_trip(&v, &xml)?;
            }
            Err(TwimlError::InvalidXmlChar { code, .. }) => {
                prop_assert!(has_invalid);
                let c = char::from_u32(code).unwrap();
                prop_assert!(!is_xml_char(c));
            }
            Err(e) => prop_assert!(false, "unexpected error {e:?}"),
        }
    }

    /// Any strings as `<Say language>` and `<Say voice>`: accepted exactly
    /// when they have the shape of a language tag and of a voice name.
    #[test]
    fn say_language_and_voice_are_accepted_exactly_when_well_shaped(
        language in nasty(),
        voice in nasty(),
    ) {
        let xml_ok = language.chars().chain(voice.chars()).all(is_xml_char);
        let got = Response::new()
            .say(Say::new("x").language(language.as_str()).voice(voice.as_str()))
            .to_xml();
        match got {
            Ok(_) => prop_assert!(is_language_tag(&language) && is_voice_name(&voice)),
            Err(TwimlError::InvalidXmlChar { .. }) => prop_assert!(!xml_ok),
            Err(TwimlError::InvalidLanguage { .. }) => {
                prop_assert!(xml_ok && !is_language_tag(&language));
            }
            Err(TwimlError::InvalidVoice { .. }) => {
                prop_assert!(xml_ok && is_language_tag(&language) && !is_voice_name(&voice));
            }
            Err(e) => prop_assert!(false, "unexpected error {e:?}"),
        }
    }

    /// With the unrepresentable characters stripped, every document reads back.
    #[test]
    fn stripped_values_always_round_trip(v in values()) {
        let v = v.stripped();
        let xml = v.response().to_xml().map_err(|e| TestCaseError::fail(e.to_string()))?;
        check_round_trip(&v, &xml)?;
    }
}
