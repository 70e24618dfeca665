//! The messages Twilio sends on a media stream (docs/protocol.md §2), written
//! with its exact field shapes and order: `sequenceNumber`, `media.chunk`,
//! `media.timestamp` and `dtmf.digit` are JSON strings, only
//! `mediaFormat.sampleRate` and `channels` are numbers; `connected` has no
//! `streamSid` and no `sequenceNumber`; `dtmf.track` is `inbound_track` while
//! `media.track` is `inbound`.
//!
//! [`Message`] holds any value a field may take (to write odd messages too);
//! [`Stream`] writes the usual ones for one stream.

use base64::Engine as _;
use callstream_core::message::{Inbound, Track};

/// One message from Twilio. Strings are written as JSON strings, escaped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// `connected`, first on every socket.
    Connected {
        /// `protocol`: `Call`.
        protocol: String,
        /// `version`: `1.0.0`.
        version: String,
    },
    /// `start`, sequence `1`.
    Start {
        /// `sequenceNumber`.
        sequence_number: u64,
        /// `streamSid` and `start.streamSid`.
        stream_sid: String,
        /// `start.accountSid`.
        account_sid: String,
        /// `start.callSid`.
        call_sid: String,
        /// `start.tracks`.
        tracks: Vec<String>,
        /// `start.customParameters`, in `<Parameter>` order.
        custom_parameters: Vec<(String, String)>,
        /// `start.mediaFormat.encoding`.
        encoding: String,
        /// `start.mediaFormat.sampleRate`.
        sample_rate: u64,
        /// `start.mediaFormat.channels`.
        channels: u64,
    },
    /// `media`: one chunk of the caller's audio.
    Media {
        /// `sequenceNumber`.
        sequence_number: u64,
        /// `streamSid`.
        stream_sid: String,
        /// `media.track`: `inbound`.
        track: String,
        /// `media.chunk`, counting media messages from 1.
        chunk: u64,
        /// `media.timestamp`: milliseconds since the stream started.
        timestamp: u64,
        /// `media.payload`: base64 μ-law, as written.
        payload: String,
    },
    /// `dtmf`: a key the caller pressed.
    Dtmf {
        /// `sequenceNumber`.
        sequence_number: u64,
        /// `streamSid`.
        stream_sid: String,
        /// `dtmf.track`: `inbound_track`.
        track: String,
        /// `dtmf.digit`.
        digit: String,
    },
    /// `mark`: a server's mark, echoed.
    Mark {
        /// `sequenceNumber`.
        sequence_number: u64,
        /// `streamSid`.
        stream_sid: String,
        /// `mark.name`.
        name: String,
    },
    /// `stop`: the stream ended.
    Stop {
        /// `sequenceNumber`.
        sequence_number: u64,
        /// `streamSid`.
        stream_sid: String,
        /// `stop.accountSid`.
        account_sid: String,
        /// `stop.callSid`.
        call_sid: String,
    },
}

/// A JSON string literal.
fn json(text: &str) -> String {
    serde_json::Value::from(text).to_string()
}

impl Message {
    /// The text frame Twilio sends.
    #[must_use]
    pub fn to_text(&self) -> String {
        let head = |event: &str, seq: u64, sid: &str| {
            format!(
                r#"{{"event":"{event}","sequenceNumber":"{seq}","streamSid":{}"#,
                json(sid)
            )
        };
        match self {
            Message::Connected { protocol, version } => format!(
                r#"{{"event":"connected","protocol":{},"version":{}}}"#,
                json(protocol),
                json(version)
            ),
            Message::Start {
                sequence_number,
                stream_sid,
                account_sid,
                call_sid,
                tracks,
                custom_parameters,
                encoding,
                sample_rate,
                channels,
            } => {
                let tracks: Vec<String> = tracks.iter().map(|t| json(t)).collect();
                let custom: Vec<String> = custom_parameters
                    .iter()
                    .map(|(k, v)| format!("{}:{}", json(k), json(v)))
                    .collect();
                format!(
                    r#"{},"start":{{"accountSid":{},"streamSid":{},"callSid":{},"tracks":[{}],"customParameters":{{{}}},"mediaFormat":{{"encoding":{},"sampleRate":{sample_rate},"channels":{channels}}}}}}}"#,
                    head("start", *sequence_number, stream_sid),
                    json(account_sid),
                    json(stream_sid),
                    json(call_sid),
                    tracks.join(","),
                    custom.join(","),
                    json(encoding),
                )
            }
            Message::Media {
                sequence_number,
                stream_sid,
                track,
                chunk,
                timestamp,
                payload,
            } => format!(
                r#"{},"media":{{"track":{},"chunk":"{chunk}","timestamp":"{timestamp}","payload":{}}}}}"#,
                head("media", *sequence_number, stream_sid),
                json(track),
                json(payload)
            ),
            Message::Dtmf {
                sequence_number,
                stream_sid,
                track,
                digit,
            } => format!(
                r#"{},"dtmf":{{"track":{},"digit":{}}}}}"#,
                head("dtmf", *sequence_number, stream_sid),
                json(track),
                json(digit)
            ),
            Message::Mark {
                sequence_number,
                stream_sid,
                name,
            } => format!(
                r#"{},"mark":{{"name":{}}}}}"#,
                head("mark", *sequence_number, stream_sid),
                json(name)
            ),
            Message::Stop {
                sequence_number,
                stream_sid,
                account_sid,
                call_sid,
            } => format!(
                r#"{},"stop":{{"accountSid":{},"callSid":{}}}}}"#,
                head("stop", *sequence_number, stream_sid),
                json(account_sid),
                json(call_sid)
            ),
        }
    }
}

/// A message the core parsed, as Twilio would have written it: for round
/// trips (`parse(text) → Message::from → to_text → parse`).
impl From<&Inbound<'_>> for Message {
    fn from(m: &Inbound<'_>) -> Message {
        // The core knows `inbound`/`outbound`; Twilio spells a DTMF track
        // with `_track`.
        let dtmf_track = |t: Track| format!("{}_track", t.as_str());
        match m {
            Inbound::Connected(c) => Message::Connected {
                protocol: c.protocol.clone(),
                version: c.version.clone(),
            },
            Inbound::Start(s) => Message::Start {
                sequence_number: s.sequence_number,
                stream_sid: s.stream_sid.as_str().to_owned(),
                account_sid: s.account_sid.as_str().to_owned(),
                call_sid: s.call_sid.as_str().to_owned(),
                tracks: s.tracks.clone(),
                custom_parameters: s.custom_parameters.clone(),
                encoding: s.media_format.encoding.clone(),
                sample_rate: u64::from(s.media_format.sample_rate),
                channels: u64::from(s.media_format.channels),
            },
            Inbound::Media(x) => Message::Media {
                sequence_number: x.sequence_number,
                stream_sid: x.stream_sid.as_str().to_owned(),
                track: x.track.as_str().to_owned(),
                chunk: x.chunk,
                timestamp: x.timestamp,
                payload: x.payload.clone().into_owned(),
            },
            Inbound::Dtmf(d) => Message::Dtmf {
                sequence_number: d.sequence_number,
                stream_sid: d.stream_sid.as_str().to_owned(),
                track: dtmf_track(d.track),
                digit: d.digit.to_string(),
            },
            Inbound::Mark(k) => Message::Mark {
                sequence_number: k.sequence_number,
                stream_sid: k.stream_sid.as_str().to_owned(),
                name: k.name.clone(),
            },
            Inbound::Stop(s) => Message::Stop {
                sequence_number: s.sequence_number,
                stream_sid: s.stream_sid.as_str().to_owned(),
                account_sid: s.account_sid.as_str().to_owned(),
                call_sid: s.call_sid.as_str().to_owned(),
            },
            // A message kind added to the core later: Twilio sends nothing
            // this model knows for it; `connected` keeps the socket's order.
            #[allow(unreachable_patterns)]
            _ => Message::Connected {
                protocol: String::new(),
                version: String::new(),
            },
        }
    }
}

/// The SIDs of one stream. SIDs are a two-letter prefix and 32 hex digits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stream {
    /// `AC…`: the account.
    pub account_sid: String,
    /// `CA…`: the call.
    pub call_sid: String,
    /// `MZ…`: the stream.
    pub stream_sid: String,
}

impl Default for Stream {
    /// The stream most tests use: `…0123456789abcdef0123456789abcdef`.
    fn default() -> Self {
        Stream {
            account_sid: "AC0123456789abcdef0123456789abcdef".to_owned(),
            call_sid: "CA0123456789abcdef0123456789abcdef".to_owned(),
            stream_sid: "MZ0123456789abcdef0123456789abcdef".to_owned(),
        }
    }
}

impl Stream {
    /// Distinct, valid SIDs for call number `n` (so concurrent calls differ).
    #[must_use]
    pub fn numbered(n: u32) -> Stream {
        Stream {
            account_sid: "AC0123456789abcdef0123456789abcdef".to_owned(),
            call_sid: format!("CA{:032x}", 0xdef000 + u128::from(n)),
            stream_sid: format!("MZ{:032x}", 0xabc000 + u128::from(n)),
        }
    }

    /// `start` with these `<Parameter>`s, sequence `1`, μ-law 8 kHz mono.
    #[must_use]
    pub fn start(&self, params: &[(&str, &str)]) -> String {
        Message::Start {
            sequence_number: 1,
            stream_sid: self.stream_sid.clone(),
            account_sid: self.account_sid.clone(),
            call_sid: self.call_sid.clone(),
            tracks: vec!["inbound".to_owned()],
            custom_parameters: params
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            encoding: "audio/x-mulaw".to_owned(),
            sample_rate: 8000,
            channels: 1,
        }
        .to_text()
    }

    /// `media` carrying `ulaw` on the inbound track.
    #[must_use]
    pub fn media(&self, seq: u64, chunk: u64, timestamp: u64, ulaw: &[u8]) -> String {
        Message::Media {
            sequence_number: seq,
            stream_sid: self.stream_sid.clone(),
            track: "inbound".to_owned(),
            chunk,
            timestamp,
            payload: base64::engine::general_purpose::STANDARD.encode(ulaw),
        }
        .to_text()
    }

    /// `dtmf` for `digit` on `inbound_track`.
    #[must_use]
    pub fn dtmf(&self, seq: u64, digit: &str) -> String {
        Message::Dtmf {
            sequence_number: seq,
            stream_sid: self.stream_sid.clone(),
            track: "inbound_track".to_owned(),
            digit: digit.to_owned(),
        }
        .to_text()
    }

    /// The echo of the server's mark `name`.
    #[must_use]
    pub fn mark(&self, seq: u64, name: &str) -> String {
        Message::Mark {
            sequence_number: seq,
            stream_sid: self.stream_sid.clone(),
            name: name.to_owned(),
        }
        .to_text()
    }

    /// `stop`.
    #[must_use]
    pub fn stop(&self, seq: u64) -> String {
        Message::Stop {
            sequence_number: seq,
            stream_sid: self.stream_sid.clone(),
            account_sid: self.account_sid.clone(),
            call_sid: self.call_sid.clone(),
        }
        .to_text()
    }
}

/// `connected`, exactly as Twilio sends it.
#[must_use]
pub fn connected() -> String {
    Message::Connected {
        protocol: "Call".to_owned(),
        version: "1.0.0".to_owned(),
    }
    .to_text()
}

#[cfg(test)]
mod tests {
    use super::*;

    const MZ: &str = "MZ0123456789abcdef0123456789abcdef";
    const AC: &str = "AC0123456789abcdef0123456789abcdef";
    const CA: &str = "CA0123456789abcdef0123456789abcdef";

    fn sids(template: &str) -> String {
        template
            .replace("MZ…", MZ)
            .replace("AC…", AC)
            .replace("CA…", CA)
    }

    /// The shapes of docs/protocol.md §2, byte for byte.
    #[test]
    fn documented_shapes() {
        let s = Stream::default();
        let cases = [
            (
                connected(),
                r#"{"event":"connected","protocol":"Call","version":"1.0.0"}"#,
            ),
            (
                s.start(&[("k", "v")]),
                r#"{"event":"start","sequenceNumber":"1","streamSid":"MZ…","start":{"accountSid":"AC…","streamSid":"MZ…","callSid":"CA…","tracks":["inbound"],"customParameters":{"k":"v"},"mediaFormat":{"encoding":"audio/x-mulaw","sampleRate":8000,"channels":1}}}"#,
            ),
            (
                s.media(3, 2, 40, &[0xFF, 0x7F, 0x00]),
                r#"{"event":"media","sequenceNumber":"3","streamSid":"MZ…","media":{"track":"inbound","chunk":"2","timestamp":"40","payload":"/38A"}}"#,
            ),
            (
                s.dtmf(5, "1"),
                r#"{"event":"dtmf","sequenceNumber":"5","streamSid":"MZ…","dtmf":{"track":"inbound_track","digit":"1"}}"#,
            ),
            (
                s.mark(6, "label"),
                r#"{"event":"mark","sequenceNumber":"6","streamSid":"MZ…","mark":{"name":"label"}}"#,
            ),
            (
                s.stop(7),
                r#"{"event":"stop","sequenceNumber":"7","streamSid":"MZ…","stop":{"accountSid":"AC…","callSid":"CA…"}}"#,
            ),
        ];
        for (got, want) in cases {
            assert_eq!(got, sids(want));
        }
    }

    #[test]
    fn strings_are_escaped() {
        let s = Stream::default();
        let text = s.start(&[("a\"b", "c\\d\n")]);
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["start"]["customParameters"]["a\"b"], "c\\d\n");
        let v: serde_json::Value = serde_json::from_str(&s.mark(2, "é\u{1}")).unwrap();
        assert_eq!(v["mark"]["name"], "é\u{1}");
    }

    #[test]
    fn numbered_streams_have_valid_distinct_sids() {
        let (a, b) = (Stream::numbered(1), Stream::numbered(2));
        assert_ne!(a.stream_sid, b.stream_sid);
        for sid in [&a.account_sid, &a.call_sid, &a.stream_sid] {
            assert_eq!(sid.len(), 34);
            assert!(sid[2..].bytes().all(|b| b.is_ascii_hexdigit()));
        }
    }
}
