//! The JSON messages of a Twilio media stream: parsed from Twilio, written to Twilio.
//!
//! Every WebSocket text frame on a media stream is one JSON object with an
//! `event` field. Twilio sends `connected`, `start`, `media`, `dtmf`, `mark` and
//! `stop` ([`parse`] → [`Inbound`]); a server on a bidirectional stream may send
//! only `media`, `mark` and `clear` ([`write_media`], [`write_mark`],
//! [`write_clear`]).
//!
//! # Parsing contract
//!
//! - **Typed values, every documented field.** SIDs are validated
//!   ([`StreamSid`], [`CallSid`], [`AccountSid`]); numbers are parsed; tracks are
//!   a [`Track`]. Every field Twilio documents for an event is required, except
//!   `start.customParameters` (absent means none).
//! - **Numbers.** Twilio sends `sequenceNumber`, `media.chunk` and
//!   `media.timestamp` as JSON *strings* of decimal digits, and
//!   `mediaFormat.sampleRate`/`channels` as JSON numbers. Each is accepted in
//!   either form, so that a change of encoding on Twilio's side does not take
//!   calls down: a string of 1 to 20 ASCII digits (leading zeros allowed) or a
//!   non-negative JSON integer, that fits the field (`u64`; `u32` for the sample
//!   rate, `u16` for channels). Signs, spaces, fractions and exponents are
//!   refused.
//! - **Unknown fields are ignored** at every level (Twilio adds fields without
//!   notice), and so are known fields of other events (a `mark` body on a
//!   `media` message). A duplicated known field is an error: the message would
//!   be ambiguous.
//! - **Unknown `event`** → [`MessageError::UnknownEvent`]; anything malformed →
//!   a [`MessageError`] naming the field and what it held.
//! - **Escapes.** Strings are borrowed from the input; a string containing JSON
//!   escapes (Twilio does not send them, but `\/` inside base64 is legal JSON) is
//!   unescaped into an owned copy, so the result is always exact.
//! - **Size.** [`parse`] refuses text longer than [`MAX_MESSAGE_LEN`] (64 KiB,
//!   the WebSocket layer's cap too) before looking at it; within that, memory
//!   used is bounded by the text's length. Values we do not use are skipped by
//!   `serde_json` without recursion, and nesting elsewhere is at most three
//!   levels, so no input can exhaust the stack. Error texts quote at most a
//!   few dozen characters of the input.
//! - **Media, the hot path.** A `media` message (50 per second per call) is
//!   parsed without allocating: the payload stays base64 text borrowed from the
//!   frame, and [`Media::decode_payload`] / [`Media::decode_samples`] decode it
//!   into the caller's buffer. Frames of any length are accepted (Twilio usually
//!   sends 160 bytes, 20 ms, but does not promise it). A specialised scanner
//!   handles the usual shape and falls back to the full parser for anything
//!   else; the two are property-tested to agree.
//!
//! A message that fails to parse came from Twilio and gets no answer: the caller
//! logs it once and drops it (Twilio has no error reply on a media stream).
//!
//! # Writing contract
//!
//! [`write_media`], [`write_mark`] and [`write_clear`] append one complete JSON
//! text to a caller's `String` with exactly the documented fields (Twilio flags
//! an extra or missing field as warning 31951). [`parse_outbound`] reads those
//! messages back, as strictly as Twilio does, for tests and simulators.
//! [`Inbound::write`] writes what Twilio would send, for the same purpose.
//!
//! # Example
//!
//! ```
//! use callstream_core::message::{self, Inbound, Track};
//! use callstream_core::codec;
//!
//! let text = r#"{"event":"media","sequenceNumber":"3","streamSid":"MZ18ad3ab5a668481ce02b83e7395059f0",
//!     "media":{"track":"inbound","chunk":"2","timestamp":"40","payload":"/38A"}}"#;
//! let Inbound::Media(media) = message::parse(text)? else { panic!("not media") };
//! assert_eq!((media.sequence_number, media.chunk, media.timestamp), (3, 2, 40));
//! assert_eq!(media.track, Track::Inbound);
//!
//! // Decode into a caller buffer: no allocation per frame.
//! let mut ulaw = [0u8; codec::FRAME_SAMPLES];
//! let n = media.decode_payload(&mut ulaw)?;
//! assert_eq!(&ulaw[..n], &[0xFF, 0x7F, 0x00]);
//! let mut pcm = [0i16; codec::FRAME_SAMPLES];
//! let n = media.decode_samples(&mut pcm)?;
//! assert_eq!(&pcm[..n], &[0, 0, -32124]);
//!
//! // Answer on the same stream.
//! let mut out = String::new();
//! message::write_mark(&mut out, &media.stream_sid, "greeting done");
//! assert_eq!(
//!     out,
//!     r#"{"event":"mark","streamSid":"MZ18ad3ab5a668481ce02b83e7395059f0","mark":{"name":"greeting done"}}"#
//! );
//! # Ok::<(), message::MessageError>(())
//! ```

mod fast;
mod raw;
mod write;

pub use write::{write_clear, write_mark, write_media, write_media_pcm};

use crate::codec;
use crate::sid::{AccountSid, CallSid, SidError, StreamSid};
use base64::Engine as _;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use raw::{List, Pairs, Scalar};
use std::borrow::Cow;
use std::fmt;

/// The longest text [`parse`] looks at: 64 KiB, the
/// WebSocket layer's message cap. A 20 ms media message is about 330 bytes.
pub const MAX_MESSAGE_LEN: usize = 64 * 1024;

/// Standard base64, padded, as Twilio writes it.
const BASE64_OUT: GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// Standard base64 as read: padding optional and non-zero trailing bits
/// allowed, because decoders on the other end of Twilio (Python's `b64decode`,
/// Node's `Buffer`) accept both and a sender may rely on it.
const BASE64_IN: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true),
);

/// One message from Twilio, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Inbound<'a> {
    /// The first message: the protocol spoken on the socket.
    Connected(Connected),
    /// The stream's metadata, once, right after `connected`.
    Start(Start),
    /// One chunk of audio.
    Media(Media<'a>),
    /// A key the caller pressed.
    Dtmf(Dtmf),
    /// A mark the server sent, echoed: the audio before it played or was cleared.
    Mark(Mark),
    /// The stream ended.
    Stop(Stop),
}

/// `connected`: `{"event":"connected","protocol":"Call","version":"1.0.0"}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connected {
    /// The protocol for the socket's lifetime (`"Call"`).
    pub protocol: String,
    /// Its semantic version (`"1.0.0"`).
    pub version: String,
}

/// `start`: the stream's metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Start {
    /// `sequenceNumber` (1 for `start`).
    pub sequence_number: u64,
    /// The stream (`streamSid`, repeated as `start.streamSid`; they must agree).
    pub stream_sid: StreamSid,
    /// `start.accountSid`.
    pub account_sid: AccountSid,
    /// `start.callSid`.
    pub call_sid: CallSid,
    /// `start.tracks` as sent (`"inbound"`, `"outbound"`), in order.
    pub tracks: Vec<String>,
    /// `start.customParameters`: the TwiML `<Parameter>`s, in document order;
    /// a repeated name is kept as often as it appears.
    pub custom_parameters: Vec<(String, String)>,
    /// `start.mediaFormat`.
    pub media_format: MediaFormat,
}

impl Start {
    /// The value of the first custom parameter called `name`.
    #[must_use]
    pub fn parameter(&self, name: &str) -> Option<&str> {
        self.custom_parameters
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// `start.mediaFormat`: `{"encoding":"audio/x-mulaw","sampleRate":8000,"channels":1}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaFormat {
    /// The audio encoding, as sent (`"audio/x-mulaw"`).
    pub encoding: String,
    /// Samples per second (8000).
    pub sample_rate: u32,
    /// Channels (1).
    pub channels: u16,
}

impl MediaFormat {
    /// Whether this is the format callstream's codec speaks: μ-law, 8 kHz, mono.
    #[must_use]
    pub fn is_ulaw_8k_mono(&self) -> bool {
        self.encoding.eq_ignore_ascii_case("audio/x-mulaw")
            && self.sample_rate == codec::SAMPLE_RATE
            && self.channels == 1
    }
}

/// Which side of the call a `media` or `dtmf` message belongs to.
///
/// Twilio spells it `inbound`/`outbound` in `media.track` and
/// `inbound_track` in `dtmf.track`; both spellings are accepted everywhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Track {
    /// The caller's audio (what the server hears).
    Inbound,
    /// The audio played to the caller (only on `both_tracks` streams).
    Outbound,
}

impl Track {
    /// Parses `inbound`, `inbound_track`, `outbound` or `outbound_track`.
    #[must_use]
    pub fn parse(text: &str) -> Option<Track> {
        match text {
            "inbound" | "inbound_track" => Some(Track::Inbound),
            "outbound" | "outbound_track" => Some(Track::Outbound),
            _ => None,
        }
    }

    /// The spelling Twilio uses in `media.track`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Track::Inbound => "inbound",
            Track::Outbound => "outbound",
        }
    }
}

/// `media`: one chunk of μ-law audio, still base64 text borrowed from the frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Media<'a> {
    /// `sequenceNumber`: counts every message on the stream.
    pub sequence_number: u64,
    /// `streamSid`.
    pub stream_sid: StreamSid,
    /// `media.track`.
    pub track: Track,
    /// `media.chunk`: counts media messages from 1; order by this, not arrival.
    pub chunk: u64,
    /// `media.timestamp`: milliseconds since the stream started.
    pub timestamp: u64,
    /// `media.payload`: base64 of raw μ-law, 8 kHz mono, no header. Borrowed
    /// unless the JSON string held escapes.
    pub payload: Cow<'a, str>,
}

impl Media<'_> {
    /// Bytes [`decode_payload`](Self::decode_payload) needs at most: exact for
    /// valid base64, and always enough.
    #[must_use]
    pub fn decoded_len(&self) -> usize {
        decoded_len(&self.payload)
    }

    /// Decodes the payload into `out` (μ-law bytes) and returns how many bytes
    /// it wrote. Allocates nothing.
    ///
    /// # Errors
    /// [`MessageError::InvalidPayload`] if the payload is not base64;
    /// [`MessageError::BufferTooSmall`] if `out` is shorter than the audio.
    pub fn decode_payload(&self, out: &mut [u8]) -> Result<usize, MessageError> {
        decode_base64(&self.payload, out)
    }

    /// Decodes the payload straight to 16-bit linear samples in `out` (one per
    /// μ-law byte) and returns how many it wrote. Allocates nothing.
    ///
    /// # Errors
    /// As [`decode_payload`](Self::decode_payload); on error `out` may hold
    /// part of the audio.
    pub fn decode_samples(&self, out: &mut [i16]) -> Result<usize, MessageError> {
        decode_base64_samples(&self.payload, out)
    }

    /// The same message, owning its payload (to keep it past the frame).
    #[must_use]
    pub fn into_owned(self) -> Media<'static> {
        Media {
            payload: Cow::Owned(self.payload.into_owned()),
            ..self
        }
    }
}

/// `dtmf`: a key press on the caller's side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dtmf {
    /// `sequenceNumber`.
    pub sequence_number: u64,
    /// `streamSid`.
    pub stream_sid: StreamSid,
    /// `dtmf.track` (`inbound_track`).
    pub track: Track,
    /// `dtmf.digit`: one of `0`–`9`, `*`, `#`, `A`–`D` (letters upper-cased).
    pub digit: char,
}

/// `mark`: a mark the server sent, echoed back by Twilio.
///
/// Twilio echoes a mark when the audio queued before it has played, at once
/// when nothing was queued, and also when a `clear` flushed it: it means
/// "done", not "heard".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mark {
    /// `sequenceNumber`.
    pub sequence_number: u64,
    /// `streamSid`.
    pub stream_sid: StreamSid,
    /// `mark.name`, as the server sent it.
    pub name: String,
}

/// `stop`: the stream ended (hang-up, `<Stop>`, or the server closed it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stop {
    /// `sequenceNumber`.
    pub sequence_number: u64,
    /// `streamSid`.
    pub stream_sid: StreamSid,
    /// `stop.accountSid`.
    pub account_sid: AccountSid,
    /// `stop.callSid`.
    pub call_sid: CallSid,
}

/// Why a message could not be parsed or decoded. Every variant says what was
/// wrong; for a message from Twilio nothing is sent back (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum MessageError {
    /// The text is longer than [`MAX_MESSAGE_LEN`].
    TooLong {
        /// Its length in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// Not a JSON object, or JSON that is malformed or has the wrong shape
    /// (a body that is not an object, a duplicated field, trailing bytes).
    Json {
        /// `serde_json`'s description, with line and column.
        detail: String,
    },
    /// `event` names no message this side of the stream receives.
    UnknownEvent {
        /// The event, as sent (at most 64 characters of it).
        event: String,
    },
    /// A field the event requires is absent (or `null`).
    MissingField {
        /// Its path, e.g. `"media.payload"`.
        field: &'static str,
    },
    /// A field is present but breaks its rule.
    InvalidField {
        /// Its path, e.g. `"media.chunk"`.
        field: &'static str,
        /// What it must be.
        expected: &'static str,
        /// What it was (a kind, or a short quote).
        found: String,
    },
    /// A SID field is not a valid SID of its kind.
    InvalidSid {
        /// Its path, e.g. `"start.callSid"`.
        field: &'static str,
        /// What was wrong with it.
        error: SidError,
    },
    /// `streamSid` and `start.streamSid` name different streams.
    StreamSidMismatch,
    /// The media payload is not base64.
    InvalidPayload {
        /// The base64 decoder's description.
        detail: String,
    },
    /// The caller's buffer is too small for the decoded payload.
    BufferTooSmall {
        /// Bytes (or samples) the payload needs at most.
        needed: usize,
        /// Bytes (or samples) the buffer holds.
        capacity: usize,
    },
}

impl fmt::Display for MessageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MessageError::TooLong { len, max } => {
                write!(f, "message of {len} bytes is over the {max}-byte limit")
            }
            MessageError::Json { detail } => write!(f, "malformed message: {detail}"),
            MessageError::UnknownEvent { event } => write!(f, "unknown event {event:?}"),
            MessageError::MissingField { field } => write!(f, "missing field `{field}`"),
            MessageError::InvalidField {
                field,
                expected,
                found,
            } => {
                write!(f, "field `{field}` must be {expected}, found {found}")
            }
            MessageError::InvalidSid { field, error } => write!(f, "field `{field}`: {error}"),
            MessageError::StreamSidMismatch => {
                f.write_str("`streamSid` and `start.streamSid` differ")
            }
            MessageError::InvalidPayload { detail } => {
                write!(f, "`media.payload` is not base64: {detail}")
            }
            MessageError::BufferTooSmall { needed, capacity } => {
                write!(
                    f,
                    "payload needs up to {needed}, the buffer holds {capacity}"
                )
            }
        }
    }
}

impl std::error::Error for MessageError {}

/// Parses one text frame from Twilio.
///
/// # Errors
/// A [`MessageError`] saying what was wrong; see the module docs for the rules.
pub fn parse(text: &str) -> Result<Inbound<'_>, MessageError> {
    if text.len() > MAX_MESSAGE_LEN {
        return Err(MessageError::TooLong {
            len: text.len(),
            max: MAX_MESSAGE_LEN,
        });
    }
    if let Some(media) = fast::parse_media(text) {
        return Ok(Inbound::Media(media));
    }
    parse_full(text)
}

/// The general parser: `serde_json` into lenient shapes, then each field's rule.
fn parse_full(text: &str) -> Result<Inbound<'_>, MessageError> {
    let raw::Obj(m): raw::Obj<raw::Message<'_>> = serde_json::from_str(text).map_err(json_error)?;
    let event = match m.event {
        Some(Scalar::Str(event)) => event,
        Some(other) => {
            return Err(MessageError::InvalidField {
                field: "event",
                expected: "a string",
                found: other.describe(),
            });
        }
        None => return Err(MessageError::MissingField { field: "event" }),
    };
    match &*event {
        "connected" => Ok(Inbound::Connected(Connected {
            protocol: string("protocol", m.protocol)?.into_owned(),
            version: string("version", m.version)?.into_owned(),
        })),
        "start" => {
            let raw::Obj(body) = m
                .start
                .ok_or(MessageError::MissingField { field: "start" })?;
            let sequence_number = number("sequenceNumber", m.sequence_number)?;
            let stream_sid = match (m.stream_sid, body.stream_sid) {
                (Some(outer), Some(inner)) => {
                    let outer = sid("streamSid", Some(outer), StreamSid::parse)?;
                    let inner = sid("start.streamSid", Some(inner), StreamSid::parse)?;
                    if outer != inner {
                        return Err(MessageError::StreamSidMismatch);
                    }
                    outer
                }
                (outer @ Some(_), None) => sid("streamSid", outer, StreamSid::parse)?,
                (None, inner) => sid("start.streamSid", inner, StreamSid::parse)?,
            };
            let tracks = match body.tracks {
                None => {
                    return Err(MessageError::MissingField {
                        field: "start.tracks",
                    });
                }
                Some(List::Other(kind)) => {
                    return Err(invalid(
                        "start.tracks",
                        "an array of strings",
                        kind.to_owned(),
                    ));
                }
                Some(List::Items(items)) => items
                    .into_iter()
                    .map(|item| match item {
                        Scalar::Str(s) => Ok(s.into_owned()),
                        other => Err(invalid(
                            "start.tracks",
                            "an array of strings",
                            other.describe(),
                        )),
                    })
                    .collect::<Result<Vec<_>, _>>()?,
            };
            let custom_parameters = match body.custom_parameters {
                None => Vec::new(),
                Some(Pairs::Other(kind)) => {
                    return Err(invalid(
                        "start.customParameters",
                        "an object of strings",
                        kind.to_owned(),
                    ));
                }
                Some(Pairs::Entries(entries)) => entries
                    .into_iter()
                    .map(|(k, v)| match v {
                        Scalar::Str(v) => Ok((k.into_owned(), v.into_owned())),
                        other => Err(invalid(
                            "start.customParameters",
                            "an object of strings",
                            format!("{} for {:?}", other.describe(), truncate(&k)),
                        )),
                    })
                    .collect::<Result<Vec<_>, _>>()?,
            };
            let raw::Obj(format) = body.media_format.ok_or(MessageError::MissingField {
                field: "start.mediaFormat",
            })?;
            let media_format = MediaFormat {
                encoding: string("start.mediaFormat.encoding", format.encoding)?.into_owned(),
                sample_rate: narrow(
                    "start.mediaFormat.sampleRate",
                    number("start.mediaFormat.sampleRate", format.sample_rate)?,
                )?,
                channels: narrow(
                    "start.mediaFormat.channels",
                    number("start.mediaFormat.channels", format.channels)?,
                )?,
            };
            Ok(Inbound::Start(Start {
                sequence_number,
                stream_sid,
                account_sid: sid("start.accountSid", body.account_sid, AccountSid::parse)?,
                call_sid: sid("start.callSid", body.call_sid, CallSid::parse)?,
                tracks,
                custom_parameters,
                media_format,
            }))
        }
        "media" => {
            let raw::Obj(body) = m
                .media
                .ok_or(MessageError::MissingField { field: "media" })?;
            Ok(Inbound::Media(Media {
                sequence_number: number("sequenceNumber", m.sequence_number)?,
                stream_sid: sid("streamSid", m.stream_sid, StreamSid::parse)?,
                track: track("media.track", body.track)?,
                chunk: number("media.chunk", body.chunk)?,
                timestamp: number("media.timestamp", body.timestamp)?,
                payload: string("media.payload", body.payload)?,
            }))
        }
        "dtmf" => {
            let raw::Obj(body) = m.dtmf.ok_or(MessageError::MissingField { field: "dtmf" })?;
            Ok(Inbound::Dtmf(Dtmf {
                sequence_number: number("sequenceNumber", m.sequence_number)?,
                stream_sid: sid("streamSid", m.stream_sid, StreamSid::parse)?,
                track: track("dtmf.track", body.track)?,
                digit: digit(body.digit)?,
            }))
        }
        "mark" => {
            let raw::Obj(body) = m.mark.ok_or(MessageError::MissingField { field: "mark" })?;
            Ok(Inbound::Mark(Mark {
                sequence_number: number("sequenceNumber", m.sequence_number)?,
                stream_sid: sid("streamSid", m.stream_sid, StreamSid::parse)?,
                name: string("mark.name", body.name)?.into_owned(),
            }))
        }
        "stop" => {
            let raw::Obj(body) = m.stop.ok_or(MessageError::MissingField { field: "stop" })?;
            Ok(Inbound::Stop(Stop {
                sequence_number: number("sequenceNumber", m.sequence_number)?,
                stream_sid: sid("streamSid", m.stream_sid, StreamSid::parse)?,
                account_sid: sid("stop.accountSid", body.account_sid, AccountSid::parse)?,
                call_sid: sid("stop.callSid", body.call_sid, CallSid::parse)?,
            }))
        }
        other => Err(MessageError::UnknownEvent {
            event: truncate(other),
        }),
    }
}

/// Bytes that decoding the base64 `payload` needs at most: exact for valid
/// base64 (padded or not), and always enough for [`decode_base64`].
#[must_use]
pub fn decoded_len(payload: &str) -> usize {
    let bytes = payload.as_bytes();
    let pad = bytes
        .iter()
        .rev()
        .take(2)
        .take_while(|&&b| b == b'=')
        .count();
    let data = bytes.len() - pad;
    data / 4 * 3 + (data % 4).saturating_sub(1)
}

/// Decodes base64 `payload` (standard alphabet, padding optional) into `out`;
/// returns the bytes written. Allocates nothing.
///
/// # Errors
/// [`MessageError::InvalidPayload`] if `payload` is not base64;
/// [`MessageError::BufferTooSmall`] if `out` is shorter than
/// [`decoded_len`]`(payload)`.
pub fn decode_base64(payload: &str, out: &mut [u8]) -> Result<usize, MessageError> {
    let needed = decoded_len(payload);
    let Some(out) = out.get_mut(..needed) else {
        return Err(MessageError::BufferTooSmall {
            needed,
            capacity: out.len(),
        });
    };
    BASE64_IN.decode_slice(payload, out).map_err(payload_error)
}

/// Decodes base64 μ-law straight to linear samples, through a stack buffer.
fn decode_base64_samples(payload: &str, out: &mut [i16]) -> Result<usize, MessageError> {
    // 4 base64 characters are 3 bytes; a chunk of 640 characters is 480 bytes.
    const CHARS: usize = 640;
    let needed = decoded_len(payload);
    if out.len() < needed {
        return Err(MessageError::BufferTooSmall {
            needed,
            capacity: out.len(),
        });
    }
    let mut ulaw = [0u8; CHARS / 4 * 3];
    let mut written = 0;
    let mut chunks = payload.as_bytes().chunks(CHARS).peekable();
    while let Some(chunk) = chunks.next() {
        // Padding is legal only at the very end; a chunk boundary must not make
        // a `=` in the middle of the payload look like an end.
        if chunks.peek().is_some() && chunk.last() == Some(&b'=') {
            return Err(MessageError::InvalidPayload {
                detail: "padding before the end of the payload".to_owned(),
            });
        }
        let n = BASE64_IN
            .decode_slice(chunk, &mut ulaw)
            .map_err(payload_error)?;
        let dst = out.get_mut(written..).unwrap_or_default();
        written += codec::decode_into(ulaw.get(..n).unwrap_or_default(), dst);
    }
    Ok(written)
}

fn payload_error(e: base64::DecodeSliceError) -> MessageError {
    MessageError::InvalidPayload {
        detail: e.to_string(),
    }
}

impl Inbound<'_> {
    /// The `event` name of this message.
    #[must_use]
    pub fn event(&self) -> &'static str {
        match self {
            Inbound::Connected(_) => "connected",
            Inbound::Start(_) => "start",
            Inbound::Media(_) => "media",
            Inbound::Dtmf(_) => "dtmf",
            Inbound::Mark(_) => "mark",
            Inbound::Stop(_) => "stop",
        }
    }

    /// `sequenceNumber` (every message but `connected` has one).
    #[must_use]
    pub fn sequence_number(&self) -> Option<u64> {
        match self {
            Inbound::Connected(_) => None,
            Inbound::Start(m) => Some(m.sequence_number),
            Inbound::Media(m) => Some(m.sequence_number),
            Inbound::Dtmf(m) => Some(m.sequence_number),
            Inbound::Mark(m) => Some(m.sequence_number),
            Inbound::Stop(m) => Some(m.sequence_number),
        }
    }

    /// `streamSid` (every message but `connected` has one).
    #[must_use]
    pub fn stream_sid(&self) -> Option<StreamSid> {
        match self {
            Inbound::Connected(_) => None,
            Inbound::Start(m) => Some(m.stream_sid),
            Inbound::Media(m) => Some(m.stream_sid),
            Inbound::Dtmf(m) => Some(m.stream_sid),
            Inbound::Mark(m) => Some(m.stream_sid),
            Inbound::Stop(m) => Some(m.stream_sid),
        }
    }

    /// The same message, owning everything (to keep it past the frame).
    #[must_use]
    pub fn into_owned(self) -> Inbound<'static> {
        match self {
            Inbound::Connected(m) => Inbound::Connected(m),
            Inbound::Start(m) => Inbound::Start(m),
            Inbound::Media(m) => Inbound::Media(m.into_owned()),
            Inbound::Dtmf(m) => Inbound::Dtmf(m),
            Inbound::Mark(m) => Inbound::Mark(m),
            Inbound::Stop(m) => Inbound::Stop(m),
        }
    }
}

// ---- field rules, shared by the full parser and the media fast path ----

/// At most 64 characters of hostile text, for an error message.
fn truncate(text: &str) -> String {
    text.chars().take(64).collect()
}

/// serde_json's description, shortened: it may quote a whole hostile string.
fn json_error(e: serde_json::Error) -> MessageError {
    let full = e.to_string();
    let detail = if full.chars().count() <= 160 {
        full
    } else {
        let head: String = full.chars().take(120).collect();
        format!("{head}… at line {} column {}", e.line(), e.column())
    };
    MessageError::Json { detail }
}

fn invalid(field: &'static str, expected: &'static str, found: String) -> MessageError {
    MessageError::InvalidField {
        field,
        expected,
        found,
    }
}

fn string<'a>(field: &'static str, v: Option<Scalar<'a>>) -> Result<Cow<'a, str>, MessageError> {
    match v {
        Some(Scalar::Str(s)) => Ok(s),
        Some(other) => Err(invalid(field, "a string", other.describe())),
        None => Err(MessageError::MissingField { field }),
    }
}

const NUMBER_RULE: &str = "a decimal number (a string of digits or a non-negative integer)";

/// A string of 1..=20 ASCII digits that fits `u64`, or a non-negative integer.
fn number(field: &'static str, v: Option<Scalar<'_>>) -> Result<u64, MessageError> {
    match v {
        Some(Scalar::Str(s)) => digits(s.as_bytes())
            .ok_or_else(|| invalid(field, NUMBER_RULE, Scalar::Str(s).describe())),
        Some(Scalar::Uint(n)) => Ok(n),
        Some(other) => Err(invalid(field, NUMBER_RULE, other.describe())),
        None => Err(MessageError::MissingField { field }),
    }
}

/// Decimal digits to `u64`: `None` when empty, not all digits, or too large.
pub(crate) fn digits(bytes: &[u8]) -> Option<u64> {
    if bytes.is_empty() || bytes.len() > 20 {
        return None;
    }
    bytes.iter().try_fold(0u64, |acc, &b| {
        let d = b.wrapping_sub(b'0');
        if d > 9 {
            return None;
        }
        acc.checked_mul(10)?.checked_add(u64::from(d))
    })
}

fn narrow<T: TryFrom<u64>>(field: &'static str, n: u64) -> Result<T, MessageError> {
    T::try_from(n).map_err(|_| invalid(field, "a smaller number", format!("the number {n}")))
}

fn sid<T>(
    field: &'static str,
    v: Option<Scalar<'_>>,
    parse: fn(&str) -> Result<T, SidError>,
) -> Result<T, MessageError> {
    let text = string(field, v)?;
    parse(&text).map_err(|error| MessageError::InvalidSid { field, error })
}

fn track(field: &'static str, v: Option<Scalar<'_>>) -> Result<Track, MessageError> {
    let text = string(field, v)?;
    Track::parse(&text).ok_or_else(|| {
        invalid(
            field,
            "`inbound`, `outbound`, `inbound_track` or `outbound_track`",
            Scalar::Str(text).describe(),
        )
    })
}

fn digit(v: Option<Scalar<'_>>) -> Result<char, MessageError> {
    let text = string("dtmf.digit", v)?;
    let mut chars = text.chars();
    match (chars.next(), chars.next()) {
        (Some(c @ ('0'..='9' | '*' | '#' | 'A'..='D')), None) => Ok(c),
        (Some(c @ 'a'..='d'), None) => Ok(c.to_ascii_uppercase()),
        _ => Err(invalid(
            "dtmf.digit",
            "one of 0-9, *, #, A-D",
            Scalar::Str(text).describe(),
        )),
    }
}

#[cfg(test)]
mod tests;
