//! Twilio's strict reading of what a server sends on a bidirectional stream
//! (docs/protocol.md §2): only `media`, `mark` and `clear`, with exactly the
//! documented fields, on the stream's `streamSid`, in text frames. Anything
//! else is a warning Twilio logs: 31950 for a binary frame, 31951 for an
//! invalid message. Written with `serde_json` values, apart from the core's
//! writers, so that it checks them rather than repeats them.

use base64::Engine as _;
use serde_json::{Map, Value};

/// A message the server sent, as Twilio understood it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerMessage {
    /// `media`: μ-law bytes to play.
    Media(Vec<u8>),
    /// `mark`: echo this name when the audio before it is done.
    Mark(String),
    /// `clear`: drop the audio not yet played.
    Clear,
}

/// A warning Twilio logs about what a server sent (the message is dropped).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Warning {
    /// 31950: a binary frame (Twilio reads only text).
    BinaryFrame,
    /// 31951: an invalid message; says what was wrong and quotes the text.
    InvalidMessage(String),
}

impl Warning {
    /// Twilio's warning code.
    #[must_use]
    pub fn code(&self) -> u16 {
        match self {
            Warning::BinaryFrame => 31950,
            Warning::InvalidMessage(_) => 31951,
        }
    }
}

impl std::fmt::Display for Warning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Warning::BinaryFrame => f.write_str("31950: binary frame"),
            Warning::InvalidMessage(why) => write!(f, "31951: {why}"),
        }
    }
}

impl std::error::Error for Warning {}

/// Whether `sid` looks like a stream SID: `MZ` and 32 hex digits.
#[must_use]
pub fn is_stream_sid(sid: &str) -> bool {
    sid.len() == 34 && sid.starts_with("MZ") && sid.bytes().skip(2).all(|b| b.is_ascii_hexdigit())
}

/// Reads one text frame from the server. `stream_sid`: the stream it must
/// name (`None`: any well-formed stream SID, when the checker does not know
/// which stream started).
///
/// # Errors
/// [`Warning::InvalidMessage`] saying what Twilio would object to.
pub fn check_text(text: &str, stream_sid: Option<&str>) -> Result<ServerMessage, Warning> {
    let bad = |why: &str| {
        let quote: String = text.chars().take(200).collect();
        Warning::InvalidMessage(format!("{why}: {quote}"))
    };
    let value: Value = serde_json::from_str(text).map_err(|_| bad("not JSON"))?;
    let obj = value.as_object().ok_or_else(|| bad("not an object"))?;
    let sid = obj
        .get("streamSid")
        .and_then(Value::as_str)
        .ok_or_else(|| bad("no streamSid"))?;
    let right_sid = match stream_sid {
        Some(want) => sid == want,
        None => is_stream_sid(sid),
    };
    if !right_sid {
        return Err(bad("wrong streamSid"));
    }
    let body = |name: &str, field: &str| -> Result<String, Warning> {
        if keys(obj) != ["event", name, "streamSid"] {
            return Err(bad("fields other than the documented ones"));
        }
        let inner: &Map<String, Value> = obj
            .get(name)
            .and_then(Value::as_object)
            .ok_or_else(|| bad("body not an object"))?;
        if keys(inner) != [field] {
            return Err(bad("body fields other than the documented ones"));
        }
        inner
            .get(field)
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| bad("body field not a string"))
    };
    match obj.get("event").and_then(Value::as_str) {
        Some("media") => {
            let payload = body("media", "payload")?;
            base64::engine::general_purpose::STANDARD
                .decode(payload)
                .map(ServerMessage::Media)
                .map_err(|_| bad("payload not standard base64"))
        }
        Some("mark") => body("mark", "name").map(ServerMessage::Mark),
        Some("clear") if keys(obj) == ["event", "streamSid"] => Ok(ServerMessage::Clear),
        Some("clear") => Err(bad("fields other than the documented ones")),
        _ => Err(bad("not one of media, mark, clear")),
    }
}

fn keys(obj: &Map<String, Value>) -> Vec<&str> {
    let mut keys: Vec<&str> = obj.keys().map(String::as_str).collect();
    keys.sort_unstable();
    keys
}

/// All μ-law bytes in the `media` messages of `msgs`, in order.
#[must_use]
pub fn media_bytes<'a>(msgs: impl IntoIterator<Item = &'a ServerMessage>) -> Vec<u8> {
    msgs.into_iter()
        .filter_map(|m| match m {
            ServerMessage::Media(b) => Some(b.as_slice()),
            _ => None,
        })
        .flatten()
        .copied()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const MZ: &str = "MZ18ad3ab5a668481ce02b83e7395059f0";

    fn sids(t: &str) -> String {
        t.replace("MZ…", MZ)
    }

    #[test]
    fn the_three_documented_messages() {
        let cases = [
            (
                r#"{"event":"media","streamSid":"MZ…","media":{"payload":"/38A"}}"#,
                ServerMessage::Media(vec![0xFF, 0x7F, 0x00]),
            ),
            (
                r#"{"event":"mark","streamSid":"MZ…","mark":{"name":"label"}}"#,
                ServerMessage::Mark("label".into()),
            ),
            (
                r#"{"event":"clear","streamSid":"MZ…"}"#,
                ServerMessage::Clear,
            ),
        ];
        for (text, want) in cases {
            assert_eq!(check_text(&sids(text), Some(MZ)), Ok(want.clone()));
            assert_eq!(check_text(&sids(text), None), Ok(want));
        }
    }

    #[test]
    fn anything_else_is_31951() {
        let bad = [
            r#"{"event":"media","streamSid":"MZ…","media":{"payload":""},"sequenceNumber":"1"}"#,
            r#"{"event":"media","streamSid":"MZ…","media":{"payload":"","track":"inbound"}}"#,
            r#"{"event":"media","streamSid":"MZ…"}"#,
            r#"{"event":"media","media":{"payload":""}}"#,
            r#"{"event":"media","streamSid":"MZ…","media":{"payload":"!!"}}"#,
            r#"{"event":"media","streamSid":"MZ…","media":{"payload":7}}"#,
            r#"{"event":"mark","streamSid":"MZ…","mark":{}}"#,
            r#"{"event":"mark","streamSid":"MZ…","mark":"x"}"#,
            r#"{"event":"mark","streamSid":"MZ…","mark":{"name":"x"},"media":{"payload":""}}"#,
            r#"{"event":"clear","streamSid":"MZ…","mark":{"name":"x"}}"#,
            r#"{"event":"stop","streamSid":"MZ…"}"#,
            r#"{"streamSid":"MZ…"}"#,
            r#"{"event":"clear","streamSid":"CA18ad3ab5a668481ce02b83e7395059f0"}"#,
            r#"{"event":"clear","streamSid":"MZ00000000000000000000000000000000"}"#,
            r#"["clear"]"#,
            "clear",
        ];
        for template in bad {
            let text = sids(template);
            let got = check_text(&text, Some(MZ));
            assert!(
                matches!(&got, Err(w @ Warning::InvalidMessage(_)) if w.code() == 31951),
                "{text}: {got:?}"
            );
        }
        // Without a started stream, any well-formed stream SID passes, and
        // nothing else.
        let other = r#"{"event":"clear","streamSid":"MZ00000000000000000000000000000000"}"#;
        assert_eq!(check_text(other, None), Ok(ServerMessage::Clear));
        let not_hex = r#"{"event":"clear","streamSid":"MZXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX"}"#;
        assert!(check_text(not_hex, None).is_err());
        assert_eq!(Warning::BinaryFrame.code(), 31950);
    }

    #[test]
    fn media_bytes_joins_in_order() {
        let msgs = [
            ServerMessage::Media(vec![1, 2]),
            ServerMessage::Mark("m".into()),
            ServerMessage::Media(vec![3]),
        ];
        assert_eq!(media_bytes(&msgs), [1, 2, 3]);
    }
}
