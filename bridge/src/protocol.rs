//! The bridge's protocol, version 2 (docs/bridge.md): the messages callstream
//! writes to a program ([`ToProgram`], one JSON object a line or text frame)
//! and the ones it reads back ([`FromProgram`], parsed from a line whose
//! every problem is a typed [`LineError`]).
//!
//! Field order in what callstream writes is fixed (`type` first, then the
//! fields in the order docs/bridge.md lists them): a program in plain `sh`
//! may match the line textually (examples/bots/echo/echo.sh does).
use base64::Engine as _;
use serde::Serialize;
use serde::ser::SerializeMap;

use callstream_core::resample::{MAX_RATE, MIN_RATE};

/// The protocol version in `start`. A program may declare the version it
/// speaks in `config` (1 or 2); version 1 programs get no `error`.
pub const VERSION: u32 = 2;

/// Most characters of `send_digits`.
pub const MAX_DIGITS: usize = 64;

/// Rates a program may ask for in `config`.
pub const CONFIG_RATES: [u32; 3] = [8000, 16000, 24000];

/// The rate of `utterance` and `audio` until `config` says otherwise.
pub const DEFAULT_RATE: u32 = 16000;

/// A message to the program.
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ToProgram<'a> {
    /// First, once: the call's facts.
    Start {
        /// Always [`VERSION`].
        version: u32,
        /// `CA…`
        call_sid: &'a str,
        /// `MZ…`
        stream_sid: &'a str,
        /// `AC…`
        account_sid: &'a str,
        /// The custom stream parameters, in document order.
        parameters: Parameters<'a>,
    },
    /// The caller started talking.
    SpeechStarted,
    /// One caller turn.
    Utterance {
        /// Sample rate of `pcm`.
        rate: u32,
        /// Base64 of 16-bit LE mono PCM.
        pcm: String,
        /// Its length.
        duration_ms: u64,
    },
    /// A key was pressed.
    Dtmf {
        /// The key.
        digit: String,
    },
    /// A mark resolved.
    Mark {
        /// The program's name for it.
        name: &'a str,
        /// `played` or `cleared`.
        outcome: &'static str,
    },
    /// The caller talked over our audio.
    BargeIn {
        /// Milliseconds heard of what was playing.
        heard_ms: u64,
        /// Marks whose audio was cut.
        cleared: &'a [String],
    },
    /// The call ended.
    Stop {
        /// Why, for the program's log.
        reason: &'a str,
    },
    /// 20 ms of the caller's raw audio (after `config` with `audio: true`).
    Audio {
        /// Sample rate of `pcm`.
        rate: u32,
        /// Base64 of 16-bit LE mono PCM.
        pcm: String,
        /// The frame's number among the call's frames, from 0.
        seq: u64,
        /// Frames dropped just before this one (the program read too
        /// slowly).
        dropped: u64,
    },
    /// A line from the program was refused or ignored (version 2).
    Error {
        /// The `type` of the line, when it had one.
        of: Option<&'a str>,
        /// Why.
        reason: &'a str,
    },
}

impl ToProgram<'_> {
    /// The message as one line, without the newline (JSON never contains a
    /// raw newline).
    #[must_use]
    pub fn to_line(&self) -> String {
        // Serialising these types cannot fail (no maps with non-string keys,
        // no floats); an empty object would be the harmless fallback.
        serde_json::to_string(self).unwrap_or_else(|_| "{}".to_owned())
    }
}

/// Custom parameters serialised as a JSON object in their order.
#[derive(Debug)]
pub struct Parameters<'a>(pub &'a [(String, String)]);

impl Serialize for Parameters<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in self.0 {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

/// Base64 of 16-bit little-endian samples.
#[must_use]
pub fn encode_pcm(samples: &[i16]) -> String {
    let bytes: Vec<u8> = samples.iter().flat_map(|s| s.to_le_bytes()).collect();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Turn-taking a program sets for its call in `config`; `None`: the
/// server's.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Turn {
    /// Whether the caller's speech cuts our audio.
    pub barge_in: Option<bool>,
    /// Silence that ends a turn, in ms (100 to 5000).
    pub end_of_turn_ms: Option<u32>,
    /// Speech before a turn (and a barge-in) starts, in ms (20 to 2000).
    pub min_speech_ms: Option<u32>,
    /// How faint a voice still counts as speech, 0.0 to 1.0 (0.5: the
    /// detector's defaults; see `VadConfig::with_sensitivity`).
    pub sensitivity: Option<f32>,
}

/// A message from the program.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum FromProgram {
    /// The optional first line.
    Config {
        /// Rate for utterances and raw audio.
        rate: u32,
        /// Whether raw frames are wanted.
        audio: bool,
        /// The protocol version the program speaks, when it says.
        version: Option<u32>,
        /// Whether whole turns are wanted (default true).
        utterances: bool,
        /// Turn-taking for this call, where the program says.
        turn: Turn,
    },
    /// Audio to queue, at `rate`.
    Play {
        /// Its sample rate.
        rate: u32,
        /// The samples.
        pcm: Vec<i16>,
    },
    /// Audio to queue from a WAV file on callstream's machine.
    PlayWav {
        /// The file.
        path: String,
    },
    /// A mark after the audio queued so far.
    Mark {
        /// Its name.
        name: String,
    },
    /// Drop queued audio.
    Clear,
    /// Play these keys as DTMF tones, in order with the audio.
    SendDigits {
        /// `0`–`9`, `*`, `#`, `A`–`D`; `w` waits half a second.
        digits: String,
    },
    /// What the program heard (logged as `ASR_TEXT`).
    Transcript {
        /// The words.
        text: String,
    },
    /// What the program says (logged as `TTS_TEXT`).
    Reply {
        /// The words.
        text: String,
    },
    /// A log line.
    Log {
        /// `debug`, `info`, `warn` or `error` (anything else is `info`).
        level: String,
        /// The line.
        message: String,
    },
    /// End the call.
    Hangup,
    /// Connect the caller to `to` (E.164 or a SIP URI) and leave the call.
    Transfer {
        /// The number or SIP URI.
        to: String,
        /// The number the callee sees (E.164), if not the call's.
        caller_id: Option<String>,
        /// Seconds to let the callee ring (5 to 600).
        timeout: Option<u32>,
    },
    /// Say this, then hang up.
    End {
        /// What Twilio says (`<Say>`), if anything.
        say: Option<String>,
        /// The `<Say voice>`.
        voice: Option<String>,
        /// The `<Say language>`.
        language: Option<String>,
    },
    /// A type this version does not know: ignored (later versions add them).
    Unknown {
        /// The type.
        kind: String,
    },
}

/// Why a line from the program was dropped. Each has a short, fixed
/// [`LineError::kind`] so a broken program is logged once per kind.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum LineError {
    /// Not valid JSON (or not UTF-8).
    NotJson,
    /// JSON, but not an object.
    NotObject,
    /// An object without a string `type`.
    NoType,
    /// A field missing or of the wrong kind.
    BadField {
        /// The message type.
        message: &'static str,
        /// The field.
        field: &'static str,
    },
    /// `pcm` is not base64 of whole 16-bit samples.
    BadPcm,
    /// A sample rate outside what the message allows.
    BadRate {
        /// The rate given.
        rate: u64,
    },
}

impl LineError {
    /// A short fixed name for the kind of problem.
    #[must_use]
    pub fn kind(&self) -> &'static str {
        match self {
            LineError::NotJson => "not JSON",
            LineError::NotObject => "not an object",
            LineError::NoType => "no type",
            LineError::BadField { .. } => "bad field",
            LineError::BadPcm => "bad pcm",
            LineError::BadRate { .. } => "bad rate",
        }
    }
}

impl std::fmt::Display for LineError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LineError::BadField { message, field } => {
                write!(f, "{message}: field {field:?} missing or of the wrong kind")
            }
            LineError::BadRate { rate } => write!(f, "rate {rate} not allowed"),
            other => f.write_str(other.kind()),
        }
    }
}

impl std::error::Error for LineError {}

type Obj = serde_json::Map<String, serde_json::Value>;

fn string(o: &Obj, message: &'static str, field: &'static str) -> Result<String, LineError> {
    o.get(field)
        .and_then(|v| v.as_str())
        .map(str::to_owned)
        .ok_or(LineError::BadField { message, field })
}

/// A string field that may be absent (or null).
fn optional_string(
    o: &Obj,
    message: &'static str,
    field: &'static str,
) -> Result<Option<String>, LineError> {
    match o.get(field) {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(v) => v
            .as_str()
            .map(|s| Some(s.to_owned()))
            .ok_or(LineError::BadField { message, field }),
    }
}

fn rate(o: &Obj, message: &'static str) -> Result<u32, LineError> {
    let r = o
        .get("rate")
        .and_then(serde_json::Value::as_u64)
        .ok_or(LineError::BadField {
            message,
            field: "rate",
        })?;
    match u32::try_from(r) {
        Ok(r) if (MIN_RATE..=MAX_RATE).contains(&r) => Ok(r),
        _ => Err(LineError::BadRate { rate: r }),
    }
}

/// Decodes base64 of 16-bit little-endian samples.
pub fn decode_pcm(text: &str) -> Result<Vec<i16>, LineError> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text)
        .map_err(|_| LineError::BadPcm)?;
    if bytes.len() % 2 != 0 {
        return Err(LineError::BadPcm);
    }
    Ok(bytes
        .chunks_exact(2)
        .map(|c| i16::from_le_bytes([c[0], c[1]]))
        .collect())
}

/// The fields each message type has (beside `type`).
fn known_fields(kind: &str) -> &'static [&'static str] {
    match kind {
        "config" => &[
            "rate",
            "audio",
            "version",
            "utterances",
            "barge_in",
            "end_of_turn_ms",
            "min_speech_ms",
            "sensitivity",
        ],
        "play" => &["rate", "pcm", "wav"],
        "mark" => &["name"],
        "send_digits" => &["digits"],
        "transcript" | "reply" => &["text"],
        "log" => &["level", "message"],
        "transfer" => &["to", "caller_id", "timeout"],
        "end" => &["say", "voice", "language"],
        _ => &[],
    }
}

/// The `type` of a line that may not parse as a message, for an `error`
/// naming it (at most 40 characters).
#[must_use]
pub fn type_of(line: &[u8]) -> Option<String> {
    let value: serde_json::Value = serde_json::from_slice(line).ok()?;
    let kind = value.get("type")?.as_str()?;
    Some(kind.chars().take(40).collect())
}

/// [`parse`], and the fields of the line its type does not have (at most
/// 8, each at most 40 characters): a later version's, or a misspelling.
/// The line is read once.
pub fn parse_with_fields(line: &[u8]) -> Result<(FromProgram, Vec<String>), LineError> {
    let value: serde_json::Value = serde_json::from_slice(line).map_err(|_| LineError::NotJson)?;
    let serde_json::Value::Object(o) = value else {
        return Err(LineError::NotObject);
    };
    let kind = o
        .get("type")
        .and_then(|t| t.as_str())
        .ok_or(LineError::NoType)?;
    let message = message(&o, kind)?;
    if matches!(message, FromProgram::Unknown { .. }) {
        return Ok((message, Vec::new()));
    }
    let known = known_fields(kind);
    let unknown = o
        .keys()
        .filter(|k| *k != "type" && !known.contains(&k.as_str()))
        .take(8)
        .map(|k| k.chars().take(40).collect())
        .collect();
    Ok((message, unknown))
}

/// Parses one line (without its newline; surrounding whitespace is allowed).
pub fn parse(line: &[u8]) -> Result<FromProgram, LineError> {
    parse_with_fields(line).map(|(message, _)| message)
}

/// The message of type `kind` an object holds.
fn message(o: &Obj, kind: &str) -> Result<FromProgram, LineError> {
    Ok(match kind {
        "config" => {
            let rate = match o.get("rate") {
                None => DEFAULT_RATE,
                Some(v) => match v.as_u64() {
                    Some(r) if CONFIG_RATES.iter().any(|&c| u64::from(c) == r) => r as u32,
                    Some(r) => return Err(LineError::BadRate { rate: r }),
                    None => {
                        return Err(LineError::BadField {
                            message: "config",
                            field: "rate",
                        });
                    }
                },
            };
            let audio = match o.get("audio") {
                None => false,
                Some(v) => v.as_bool().ok_or(LineError::BadField {
                    message: "config",
                    field: "audio",
                })?,
            };
            let version = match o.get("version") {
                None => None,
                Some(v) => match v.as_u64() {
                    Some(n @ 1..=2) => Some(n as u32),
                    _ => {
                        return Err(LineError::BadField {
                            message: "config",
                            field: "version",
                        });
                    }
                },
            };
            let flag = |field: &'static str, default: bool| match o.get(field) {
                None => Ok(default),
                Some(v) => v.as_bool().ok_or(LineError::BadField {
                    message: "config",
                    field,
                }),
            };
            let ms = |field: &'static str, range: std::ops::RangeInclusive<u64>| match o.get(field)
            {
                None => Ok(None),
                Some(v) => match v.as_u64() {
                    Some(n) if range.contains(&n) => Ok(Some(n as u32)),
                    _ => Err(LineError::BadField {
                        message: "config",
                        field,
                    }),
                },
            };
            let turn = Turn {
                barge_in: match o.get("barge_in") {
                    None => None,
                    Some(_) => Some(flag("barge_in", true)?),
                },
                end_of_turn_ms: ms("end_of_turn_ms", 100..=5000)?,
                min_speech_ms: ms("min_speech_ms", 20..=2000)?,
                sensitivity: match o.get("sensitivity") {
                    None => None,
                    Some(v) => match v.as_f64() {
                        Some(x) if (0.0..=1.0).contains(&x) => Some(x as f32),
                        _ => {
                            return Err(LineError::BadField {
                                message: "config",
                                field: "sensitivity",
                            });
                        }
                    },
                },
            };
            FromProgram::Config {
                rate,
                audio,
                version,
                utterances: flag("utterances", true)?,
                turn,
            }
        }
        "play" => {
            if let Some(path) = o.get("wav") {
                let path = path.as_str().ok_or(LineError::BadField {
                    message: "play",
                    field: "wav",
                })?;
                FromProgram::PlayWav {
                    path: path.to_owned(),
                }
            } else {
                let rate = rate(o, "play")?;
                let pcm = decode_pcm(&string(o, "play", "pcm")?)?;
                FromProgram::Play { rate, pcm }
            }
        }
        "mark" => FromProgram::Mark {
            name: string(o, "mark", "name")?,
        },
        "clear" => FromProgram::Clear,
        "send_digits" => {
            let digits = string(o, "send_digits", "digits")?;
            let valid =
                |c: char| matches!(c, '0'..='9' | '*' | '#' | 'A'..='D' | 'a'..='d' | 'w' | 'W');
            if digits.is_empty()
                || digits.chars().count() > MAX_DIGITS
                || !digits.chars().all(valid)
            {
                return Err(LineError::BadField {
                    message: "send_digits",
                    field: "digits",
                });
            }
            FromProgram::SendDigits { digits }
        }
        "transcript" => FromProgram::Transcript {
            text: string(o, "transcript", "text")?,
        },
        "reply" => FromProgram::Reply {
            text: string(o, "reply", "text")?,
        },
        "log" => FromProgram::Log {
            level: o
                .get("level")
                .and_then(|l| l.as_str())
                .unwrap_or("info")
                .to_owned(),
            message: string(o, "log", "message")?,
        },
        "hangup" => FromProgram::Hangup,
        "transfer" => FromProgram::Transfer {
            to: string(o, "transfer", "to")?,
            caller_id: optional_string(o, "transfer", "caller_id")?,
            timeout: match o.get("timeout") {
                None | Some(serde_json::Value::Null) => None,
                Some(v) => Some(v.as_u64().and_then(|t| u32::try_from(t).ok()).ok_or(
                    LineError::BadField {
                        message: "transfer",
                        field: "timeout",
                    },
                )?),
            },
        },
        "end" => FromProgram::End {
            say: optional_string(o, "end", "say")?,
            voice: optional_string(o, "end", "voice")?,
            language: optional_string(o, "end", "language")?,
        },
        other => FromProgram::Unknown {
            kind: other.chars().take(40).collect(),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utterance_fields_come_in_the_documented_order() {
        let line = ToProgram::Utterance {
            rate: 16000,
            pcm: encode_pcm(&[1, -1]),
            duration_ms: 0,
        }
        .to_line();
        assert_eq!(
            line,
            r#"{"type":"utterance","rate":16000,"pcm":"AQD//w==","duration_ms":0}"#
        );
        let params = [
            ("b".to_owned(), "1".to_owned()),
            ("a".to_owned(), "2".to_owned()),
        ];
        let start = ToProgram::Start {
            version: VERSION,
            call_sid: "CA1",
            stream_sid: "MZ1",
            account_sid: "AC1",
            parameters: Parameters(&params),
        }
        .to_line();
        assert_eq!(
            start,
            r#"{"type":"start","version":2,"call_sid":"CA1","stream_sid":"MZ1","account_sid":"AC1","parameters":{"b":"1","a":"2"}}"#
        );
        assert_eq!(
            ToProgram::SpeechStarted.to_line(),
            r#"{"type":"speech_started"}"#
        );
        let cleared = ["r-2".to_owned()];
        assert_eq!(
            ToProgram::BargeIn {
                heard_ms: 640,
                cleared: &cleared
            }
            .to_line(),
            r#"{"type":"barge_in","heard_ms":640,"cleared":["r-2"]}"#
        );
    }

    #[test]
    fn every_program_message_parses() {
        let ok = |s: &str| parse(s.as_bytes()).unwrap();
        assert_eq!(
            ok(r#"{"type":"config","rate":8000,"audio":true}"#),
            FromProgram::Config {
                rate: 8000,
                audio: true,
                version: None,
                utterances: true,
                turn: Turn::default()
            }
        );
        assert_eq!(
            ok(r#"{"type":"config","version":1}"#),
            FromProgram::Config {
                rate: 16000,
                audio: false,
                version: Some(1),
                utterances: true,
                turn: Turn::default()
            }
        );
        assert_eq!(
            ok(
                r#"{"type":"config","utterances":false,"barge_in":false,"end_of_turn_ms":700,"min_speech_ms":120,"sensitivity":0.75}"#
            ),
            FromProgram::Config {
                rate: 16000,
                audio: false,
                version: None,
                utterances: false,
                turn: Turn {
                    barge_in: Some(false),
                    end_of_turn_ms: Some(700),
                    min_speech_ms: Some(120),
                    sensitivity: Some(0.75)
                }
            }
        );
        for bad in [
            r#""end_of_turn_ms":50"#,
            r#""min_speech_ms":5000"#,
            r#""barge_in":"no""#,
            r#""sensitivity":1.5"#,
            r#""sensitivity":"high""#,
        ] {
            let line = format!(r#"{{"type":"config",{bad}}}"#);
            assert!(parse(line.as_bytes()).is_err(), "{bad}");
        }
        assert_eq!(
            ok(r#"{"type":"send_digits","digits":"12w#"}"#),
            FromProgram::SendDigits {
                digits: "12w#".into()
            }
        );
        assert_eq!(
            ok(r#" {"type":"play","rate":22050,"pcm":"AQD//w==","x":1} "#),
            FromProgram::Play {
                rate: 22050,
                pcm: vec![1, -1]
            }
        );
        assert_eq!(
            ok(r#"{"type":"play","wav":"/tmp/a.wav"}"#),
            FromProgram::PlayWav {
                path: "/tmp/a.wav".into()
            }
        );
        assert_eq!(
            ok(r#"{"type":"mark","name":"m"}"#),
            FromProgram::Mark { name: "m".into() }
        );
        assert_eq!(ok(r#"{"type":"clear"}"#), FromProgram::Clear);
        assert_eq!(ok(r#"{"type":"hangup"}"#), FromProgram::Hangup);
        assert_eq!(
            ok(r#"{"type":"transfer","to":"+14155550100"}"#),
            FromProgram::Transfer {
                to: "+14155550100".into(),
                caller_id: None,
                timeout: None
            }
        );
        assert_eq!(
            ok(r#"{"type":"transfer","to":"sip:a@b","caller_id":"+14155550100","timeout":20}"#),
            FromProgram::Transfer {
                to: "sip:a@b".into(),
                caller_id: Some("+14155550100".into()),
                timeout: Some(20)
            }
        );
        assert_eq!(
            ok(r#"{"type":"end"}"#),
            FromProgram::End {
                say: None,
                voice: None,
                language: None
            }
        );
        assert_eq!(
            ok(r#"{"type":"end","say":"Bye","voice":"Polly.Amy","language":"en-GB"}"#),
            FromProgram::End {
                say: Some("Bye".into()),
                voice: Some("Polly.Amy".into()),
                language: Some("en-GB".into())
            }
        );
        assert_eq!(
            ok(r#"{"type":"log","message":"x"}"#),
            FromProgram::Log {
                level: "info".into(),
                message: "x".into()
            }
        );
        assert_eq!(
            ok(r#"{"type":"transcript","text":"hi"}"#),
            FromProgram::Transcript { text: "hi".into() }
        );
        assert_eq!(
            ok(r#"{"type":"reply","text":"hi"}"#),
            FromProgram::Reply { text: "hi".into() }
        );
        assert_eq!(
            ok(r#"{"type":"later"}"#),
            FromProgram::Unknown {
                kind: "later".into()
            }
        );
    }

    #[test]
    fn unknown_fields_are_named_and_bad_digits_refused() {
        let (m, unknown) =
            parse_with_fields(br#"{"type":"mark","name":"m","nmae":"x","after":1}"#).unwrap();
        assert_eq!(m, FromProgram::Mark { name: "m".into() });
        assert_eq!(unknown, ["after", "nmae"]);
        let (_, none) = parse_with_fields(br#"{"type":"hang_up","x":1}"#).unwrap();
        assert!(none.is_empty(), "an unknown type is reported as such");
        for bad in ["", "12x", "1 2", &"1".repeat(65)] {
            let line = format!(r#"{{"type":"send_digits","digits":"{bad}"}}"#);
            assert_eq!(
                parse(line.as_bytes()),
                Err(LineError::BadField {
                    message: "send_digits",
                    field: "digits"
                }),
                "{bad:?}"
            );
        }
        assert_eq!(
            type_of(br#"{"type":"play","rate":"x"}"#).as_deref(),
            Some("play")
        );
        assert_eq!(type_of(b"not json"), None);
        assert_eq!(
            ToProgram::Error {
                of: Some("transfer"),
                reason: "\"123\" is not E.164"
            }
            .to_line(),
            r#"{"type":"error","of":"transfer","reason":"\"123\" is not E.164"}"#
        );
    }

    #[test]
    fn every_kind_of_garbage_is_a_typed_error() {
        let err = |s: &[u8]| parse(s).unwrap_err();
        assert_eq!(err(b"not json"), LineError::NotJson);
        assert_eq!(err(b"\xff\xfe"), LineError::NotJson);
        assert_eq!(err(b""), LineError::NotJson);
        assert_eq!(err(b"[1]"), LineError::NotObject);
        assert_eq!(err(b"{\"no\":1}"), LineError::NoType);
        assert_eq!(err(b"{\"type\":3}"), LineError::NoType);
        assert_eq!(
            err(br#"{"type":"play","rate":16000,"pcm":"!!"}"#),
            LineError::BadPcm
        );
        assert_eq!(
            err(br#"{"type":"play","rate":16000,"pcm":"AQA"}"#),
            LineError::BadPcm
        );
        assert_eq!(
            err(br#"{"type":"play","rate":16000,"pcm":"AQD/"}"#),
            LineError::BadPcm
        );
        assert_eq!(
            err(br#"{"type":"play","rate":1,"pcm":""}"#),
            LineError::BadRate { rate: 1 }
        );
        assert_eq!(
            err(br#"{"type":"play","rate":-5,"pcm":""}"#),
            LineError::BadField {
                message: "play",
                field: "rate"
            }
        );
        assert_eq!(
            err(br#"{"type":"config","rate":44100}"#),
            LineError::BadRate { rate: 44100 }
        );
        assert_eq!(
            err(br#"{"type":"mark"}"#),
            LineError::BadField {
                message: "mark",
                field: "name"
            }
        );
        assert_eq!(
            err(br#"{"type":"transfer","to":5}"#),
            LineError::BadField {
                message: "transfer",
                field: "to"
            }
        );
    }
}
