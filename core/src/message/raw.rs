//! The JSON shapes, deserialised leniently: every scalar is kept as found
//! ([`Scalar`]) and judged afterwards by the field's own rule, so an error can
//! name the field (`media.chunk`) and say what it held, and a field we do not
//! use may hold anything.

use serde::Deserialize;
use serde::de::value::MapAccessDeserializer;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

/// A body that must be a JSON object. serde's derived structs also accept a
/// JSON array (fields by position); Twilio never sends that, and accepting
/// `["media", …]` as a message would be a surprise, so bodies go through here.
#[derive(Debug)]
pub(super) struct Obj<T>(pub T);

/// What an [`Obj`] says it expected, for the error message.
pub(super) trait Expecting {
    const EXPECTING: &'static str;
}

impl<'de, T: Deserialize<'de> + Expecting> Deserialize<'de> for Obj<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct ObjVisitor<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de> + Expecting> Visitor<'de> for ObjVisitor<T> {
            type Value = T;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(T::EXPECTING)
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
                T::deserialize(MapAccessDeserializer::new(map))
            }
        }
        d.deserialize_map(ObjVisitor(PhantomData)).map(Obj)
    }
}

macro_rules! expecting {
    ($($t:ident => $text:literal,)*) => {
        $(impl Expecting for $t<'_> {
            const EXPECTING: &'static str = $text;
        })*
    };
}

expecting! {
    Message => "a JSON object (a media stream message)",
    StartBody => "an object for `start`",
    MediaFormatBody => "an object for `start.mediaFormat`",
    MediaBody => "an object for `media`",
    DtmfBody => "an object for `dtmf`",
    MarkBody => "an object for `mark`",
    StopBody => "an object for `stop`",
}

/// A JSON value as found where a scalar was expected.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Scalar<'a> {
    /// A string; borrowed from the input unless it contained escapes.
    Str(Cow<'a, str>),
    /// A non-negative integer that fits in `u64`.
    Uint(u64),
    /// Anything else, by kind (`"a boolean"`, `"an object"`, …).
    Other(&'static str),
}

impl Scalar<'_> {
    /// What was found, for an error message: the kind, or a short quote.
    pub(super) fn describe(&self) -> String {
        match self {
            Scalar::Str(s) => {
                let quoted: String = s.chars().take(32).collect();
                if quoted.len() < s.len() {
                    format!("the string {quoted:?}…")
                } else {
                    format!("the string {quoted:?}")
                }
            }
            Scalar::Uint(n) => format!("the number {n}"),
            Scalar::Other(kind) => (*kind).to_owned(),
        }
    }
}

struct ScalarVisitor;

impl<'de> Visitor<'de> for ScalarVisitor {
    type Value = Scalar<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Scalar::Str(Cow::Borrowed(v)))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        // Only reached when the JSON string held escapes: the unescaped text
        // does not exist in the input, so it must be copied.
        Ok(Scalar::Str(Cow::Owned(v.to_owned())))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(Scalar::Str(Cow::Owned(v)))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Scalar::Uint(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Ok(u64::try_from(v).map_or(Scalar::Other("a negative number"), Scalar::Uint))
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(Scalar::Other("a fractional or out-of-range number"))
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(Scalar::Other("a boolean"))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Scalar::Other("null"))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Scalar::Other("an object"))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Scalar::Other("an array"))
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Scalar<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ScalarVisitor)
    }
}

/// A JSON array of scalars (`start.tracks`), or what was found instead.
#[derive(Debug)]
pub(super) enum List<'a> {
    Items(Vec<Scalar<'a>>),
    Other(&'static str),
}

struct ListVisitor;

impl<'de> Visitor<'de> for ListVisitor {
    type Value = List<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Scalar<'de>>()? {
            items.push(item);
        }
        Ok(List::Items(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        ScalarVisitor
            .visit_map(map)
            .map(|_| List::Other("an object"))
    }
    fn visit_borrowed_str<E: de::Error>(self, _: &'de str) -> Result<Self::Value, E> {
        Ok(List::Other("a string"))
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
        Ok(List::Other("a string"))
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Ok(List::Other("a number"))
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Ok(List::Other("a number"))
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(List::Other("a number"))
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(List::Other("a boolean"))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(List::Other("null"))
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for List<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ListVisitor)
    }
}

/// A JSON object of name → scalar in document order (`start.customParameters`),
/// or what was found instead. Repeated names are all kept.
#[derive(Debug)]
pub(super) enum Pairs<'a> {
    Entries(Vec<(Cow<'a, str>, Scalar<'a>)>),
    Other(&'static str),
}

struct PairsVisitor;

/// A map key, borrowed when it holds no escapes.
struct Key<'a>(Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for Key<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match d.deserialize_str(ScalarVisitor)? {
            Scalar::Str(s) => Ok(Key(s)),
            // JSON object keys are always strings; serde_json never gets here.
            _ => Err(de::Error::custom("object key is not a string")),
        }
    }
}

impl<'de> Visitor<'de> for PairsVisitor {
    type Value = Pairs<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut entries = Vec::new();
        while let Some((Key(k), v)) = map.next_entry::<Key<'de>, Scalar<'de>>()? {
            entries.push((k, v));
        }
        Ok(Pairs::Entries(entries))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        ScalarVisitor
            .visit_seq(seq)
            .map(|_| Pairs::Other("an array"))
    }
    fn visit_borrowed_str<E: de::Error>(self, _: &'de str) -> Result<Self::Value, E> {
        Ok(Pairs::Other("a string"))
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
        Ok(Pairs::Other("a string"))
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Ok(Pairs::Other("a number"))
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Ok(Pairs::Other("a number"))
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(Pairs::Other("a number"))
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(Pairs::Other("a boolean"))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Pairs::Other("null"))
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Pairs<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(PairsVisitor)
    }
}

/// A message from Twilio, every field optional and lenient.
///
/// The bodies (`start`, `media`, …) must be objects when present: a body of
/// another type is a JSON-level error, with the position. Parse it as an
/// `Obj<Message>` so the message itself must be an object too.
#[derive(Debug, Deserialize)]
pub(super) struct Message<'a> {
    #[serde(borrow, default)]
    pub event: Option<Scalar<'a>>,
    #[serde(rename = "sequenceNumber", borrow, default)]
    pub sequence_number: Option<Scalar<'a>>,
    #[serde(rename = "streamSid", borrow, default)]
    pub stream_sid: Option<Scalar<'a>>,
    #[serde(borrow, default)]
    pub protocol: Option<Scalar<'a>>,
    #[serde(borrow, default)]
    pub version: Option<Scalar<'a>>,
    #[serde(borrow, default)]
    pub start: Option<Obj<StartBody<'a>>>,
    #[serde(borrow, default)]
    pub media: Option<Obj<MediaBody<'a>>>,
    #[serde(borrow, default)]
    pub dtmf: Option<Obj<DtmfBody<'a>>>,
    #[serde(borrow, default)]
    pub mark: Option<Obj<MarkBody<'a>>>,
    #[serde(borrow, default)]
    pub stop: Option<Obj<StopBody<'a>>>,
}

/// `start: {…}`.
#[derive(Debug, Deserialize)]
pub(super) struct StartBody<'a> {
    #[serde(rename = "accountSid", borrow, default)]
    pub account_sid: Option<Scalar<'a>>,
    #[serde(rename = "streamSid", borrow, default)]
    pub stream_sid: Option<Scalar<'a>>,
    #[serde(rename = "callSid", borrow, default)]
    pub call_sid: Option<Scalar<'a>>,
    #[serde(borrow, default)]
    pub tracks: Option<List<'a>>,
    #[serde(rename = "customParameters", borrow, default)]
    pub custom_parameters: Option<Pairs<'a>>,
    #[serde(rename = "mediaFormat", borrow, default)]
    pub media_format: Option<Obj<MediaFormatBody<'a>>>,
}

/// `start.mediaFormat: {…}`.
#[derive(Debug, Deserialize)]
pub(super) struct MediaFormatBody<'a> {
    #[serde(borrow, default)]
    pub encoding: Option<Scalar<'a>>,
    #[serde(rename = "sampleRate", borrow, default)]
    pub sample_rate: Option<Scalar<'a>>,
    #[serde(borrow, default)]
    pub channels: Option<Scalar<'a>>,
}

/// `media: {…}`.
#[derive(Debug, Deserialize)]
pub(super) struct MediaBody<'a> {
    #[serde(borrow, default)]
    pub track: Option<Scalar<'a>>,
    #[serde(borrow, default)]
    pub chunk: Option<Scalar<'a>>,
    #[serde(borrow, default)]
    pub timestamp: Option<Scalar<'a>>,
    #[serde(borrow, default)]
    pub payload: Option<Scalar<'a>>,
}

/// `dtmf: {…}`.
#[derive(Debug, Deserialize)]
pub(super) struct DtmfBody<'a> {
    #[serde(borrow, default)]
    pub track: Option<Scalar<'a>>,
    #[serde(borrow, default)]
    pub digit: Option<Scalar<'a>>,
}

/// `mark: {…}`.
#[derive(Debug, Deserialize)]
pub(super) struct MarkBody<'a> {
    #[serde(borrow, default)]
    pub name: Option<Scalar<'a>>,
}

/// `stop: {…}`.
#[derive(Debug, Deserialize)]
pub(super) struct StopBody<'a> {
    #[serde(rename = "accountSid", borrow, default)]
    pub account_sid: Option<Scalar<'a>>,
    #[serde(rename = "callSid", borrow, default)]
    pub call_sid: Option<Scalar<'a>>,
}
