//! TwiML: a typed builder for the `<Response>` documents callstream serves.
//!
//! The contract: a [`Response`] that [`Response::to_xml`] accepts is a document
//! Twilio accepts. Every rule Twilio enforces at call time and that can be
//! checked here is a typed [`TwimlError`] instead, raised when a value is built
//! (stream URL, parameter length) or when the document is serialised (rules
//! that depend on where a noun sits, and the document size):
//!
//! | rule | checked in | Twilio's code |
//! |---|---|---|
//! | `<Stream url>` is an absolute `wss://` URL (`ws://` is refused) | [`Stream::new`] | 31922 |
//! | `<Stream url>` has no query string (Twilio strips it) nor fragment | [`Stream::new`] | — |
//! | `<Connect><Stream track>` is `inbound_track` or absent | [`Response::to_xml`] | 31941 |
//! | at most one `<Connect><Stream>` per response | [`Response::to_xml`] | — |
//! | a `<Connect>` holds a `<Stream>` | [`Response::to_xml`] | 12100 |
//! | each `<Parameter>`: name plus value under 500 characters | [`Stream::parameter`] | — |
//! | the document is at most 64 kB ([`MAX_DOCUMENT_BYTES`]) | [`Response::to_xml`] | 11750 |
//! | every value is a character XML 1.0 can carry | [`Response::to_xml`] | 12100 |
//! | `method` / `statusCallbackMethod` is `GET` or `POST` | by type ([`Method`]) | — |
//! | `<Say language>` is a language tag (`en-US`, `he-IL`, `cmn-CN`) | [`Response::to_xml`] | — |
//! | `<Say voice>` is a voice name (`alice`, `Polly.Joanna-Neural`) | [`Response::to_xml`] | — |
//!
//! The output starts with `<?xml version="1.0" encoding="UTF-8"?>` and nothing
//! before it (whitespace there is error 12100), has no insignificant whitespace,
//! and writes attributes in alphabetical order, as Twilio's helper libraries do.
//!
//! ## Escaping
//!
//! Every attribute value and every text is escaped: `&` `<` `>` `"` `'` become
//! `&amp;` `&lt;` `&gt;` `&quot;` `&apos;`. In attribute values tab, line feed
//! and carriage return are written as `&#9;` `&#10;` `&#13;`: an XML parser
//! replaces literal ones with spaces (XML 1.0 §3.3.3, attribute-value
//! normalisation), so only character references survive the trip. In text a
//! carriage return is written `&#13;` for the same reason (§2.11, end-of-line
//! handling); tab and line feed stay literal.
//!
//! Characters XML 1.0 cannot carry at all — control characters other than tab,
//! line feed and carriage return, and U+FFFE / U+FFFF — make
//! [`Response::to_xml`] fail with [`TwimlError::InvalidXmlChar`] naming the
//! field. They are refused rather than silently dropped, so that a value never
//! reaches Twilio different from what the caller meant. A caller that would
//! rather drop them (say, for a caller-supplied `From` passed on as a
//! `<Parameter>`) applies [`strip_invalid_xml_chars`] first.
//!
//! ## Example: the incoming-call answer
//!
//! ```
//! use callstream_core::twiml::{Connect, Response, Stream};
//!
//! let stream = Stream::new("wss://voice.example.com/ws/twilio-media")?
//!     .status_callback("https://voice.example.com/webhook/stream_status")
//!     .parameter("call_sid", "CA0123456789abcdef0123456789abcdef")?
//!     .parameter("From", "+14155550100")?
//!     .parameter("To", "+14155550199")?;
//! let xml = Response::new()
//!     .say("Connecting you now.")
//!     .connect(
//!         Connect::new()
//!             .action("https://voice.example.com/webhook/stream_ended")
//!             .stream(stream),
//!     )
//!     .to_xml()?;
//! assert_eq!(
//!     xml,
//!     concat!(
//!         r#"<?xml version="1.0" encoding="UTF-8"?>"#,
//!         "<Response><Say>Connecting you now.</Say>",
//!         r#"<Connect action="https://voice.example.com/webhook/stream_ended">"#,
//!         r#"<Stream statusCallback="https://voice.example.com/webhook/stream_status" url="wss://voice.example.com/ws/twilio-media">"#,
//!         r#"<Parameter name="call_sid" value="CA0123456789abcdef0123456789abcdef"/>"#,
//!         r#"<Parameter name="From" value="+14155550100"/>"#,
//!         r#"<Parameter name="To" value="+14155550199"/>"#,
//!         "</Stream></Connect></Response>",
//!     )
//! );
//! # Ok::<(), callstream_core::twiml::TwimlError>(())
//! ```
//!
//! Rules are errors, not surprises on the phone:
//!
//! ```
//! use callstream_core::twiml::{Connect, Response, Stream, Track, TwimlError};
//!
//! let err = Stream::new("ws://voice.example.com/ws").unwrap_err();
//! assert_eq!(err.twilio_code(), Some(31922));
//!
//! let stream = Stream::new("wss://voice.example.com/ws")?.track(Track::BothTracks);
//! let err = Response::new().connect(Connect::new().stream(stream)).to_xml().unwrap_err();
//! assert!(matches!(err, TwimlError::ConnectTrack { .. }));
//! # Ok::<(), TwimlError>(())
//! ```

use std::borrow::Cow;
use std::fmt;

use crate::public_url;

/// The XML declaration every document starts with, byte for byte.
pub const XML_DECLARATION: &str = r#"<?xml version="1.0" encoding="UTF-8"?>"#;

/// Largest document [`Response::to_xml`] produces, in bytes.
///
/// Twilio refuses TwiML over 64 kB (error 11750); kB is read as 1,000 bytes,
/// the smaller of its two meanings, so that no reading of the limit is crossed.
pub const MAX_DOCUMENT_BYTES: usize = 64_000;

/// A `<Parameter>`'s name plus value must be under this many characters.
///
/// Twilio's limit on custom stream parameters; counted in Unicode scalar
/// values, before escaping. Name and value together is the stricter reading of
/// the documentation, and so satisfies the per-field one too.
pub const MAX_PARAMETER_CHARS: usize = 500;

/// How much of an offending value an error keeps, in characters.
const EXCERPT_CHARS: usize = 80;

/// A TwiML rule the builder refused to break.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TwimlError {
    /// The `<Stream url>` is `ws://`: Twilio only connects over TLS (error 31922).
    InsecureStreamUrl {
        /// The URL given (its first 80 characters).
        url: String,
    },
    /// The `<Stream url>` is not an absolute `wss://` URL.
    StreamUrlNotWss {
        /// The URL given (its first 80 characters).
        url: String,
    },
    /// The `<Stream url>` has a query string, which Twilio strips before
    /// connecting: pass such data as `<Parameter>`s instead.
    StreamUrlHasQuery {
        /// The URL given (its first 80 characters).
        url: String,
    },
    /// The `<Stream url>` is malformed in another way.
    InvalidStreamUrl {
        /// The URL given (its first 80 characters).
        url: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A `<Connect><Stream>` names a track other than `inbound_track`
    /// (Twilio error 31941): a bidirectional stream only carries the caller.
    ConnectTrack {
        /// The track asked for.
        track: Track,
    },
    /// The response holds more than one `<Connect><Stream>`; Twilio allows one
    /// per call, and the first blocks until its socket closes.
    MultipleConnectStreams {
        /// How many `<Connect>` verbs the response holds.
        count: usize,
    },
    /// A `<Connect>` without a `<Stream>` inside (Twilio error 12100).
    ConnectWithoutStream,
    /// A `<Parameter>`'s name plus value reach [`MAX_PARAMETER_CHARS`].
    ParameterTooLong {
        /// The parameter's name (its first 80 characters).
        name: String,
        /// Characters in name plus value.
        chars: usize,
    },
    /// The document is over [`MAX_DOCUMENT_BYTES`] (Twilio error 11750).
    DocumentTooLarge {
        /// Size the document had when writing stopped, in bytes (over the
        /// limit; writing stops at the first verb that crosses it).
        bytes: usize,
    },
    /// A value holds a character XML 1.0 cannot carry (a control character
    /// other than tab, line feed, carriage return; or U+FFFE, U+FFFF).
    InvalidXmlChar {
        /// Where: element, or `element@attribute`.
        field: &'static str,
        /// The character's code point.
        code: u32,
    },
    /// A `<Dial><Number>` that is not an E.164 number (`+` and 2 to 15
    /// digits): Twilio could not place the call.
    InvalidNumber {
        /// The number given (its first 80 characters).
        number: String,
    },
    /// A `<Dial><Sip>` that is not a `sip:` or `sips:` URI of at most 255
    /// characters without spaces.
    InvalidSipUri {
        /// The URI given (its first 80 characters).
        uri: String,
    },
    /// A `<Dial timeout>` outside Twilio's 5 to 600 seconds.
    InvalidDialTimeout {
        /// The seconds given.
        seconds: u32,
    },
    /// A method other than `GET` or `POST`.
    InvalidMethod {
        /// The method given (its first 80 characters).
        method: String,
    },
    /// A `<Say language>` that is not shaped like a language tag
    /// ([`is_language_tag`]): Twilio would not speak it.
    InvalidLanguage {
        /// The language given (its first 80 characters).
        language: String,
    },
    /// A `<Say voice>` that is not shaped like a voice name ([`is_voice_name`]).
    InvalidVoice {
        /// The voice given (its first 80 characters).
        voice: String,
    },
}

impl TwimlError {
    /// The Twilio error code this document would have earned, where Twilio
    /// documents one.
    #[must_use]
    pub fn twilio_code(&self) -> Option<u16> {
        match self {
            TwimlError::InsecureStreamUrl { .. } => Some(31922),
            TwimlError::ConnectTrack { .. } => Some(31941),
            TwimlError::DocumentTooLarge { .. } => Some(11750),
            TwimlError::ConnectWithoutStream | TwimlError::InvalidXmlChar { .. } => Some(12100),
            _ => None,
        }
    }
}

impl fmt::Display for TwimlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TwimlError::InsecureStreamUrl { url } => write!(
                f,
                "stream url {url:?} uses ws://; Twilio needs wss:// (Twilio error 31922)"
            ),
            TwimlError::StreamUrlNotWss { url } => {
                write!(f, "stream url {url:?} is not an absolute wss:// URL")
            }
            TwimlError::StreamUrlHasQuery { url } => write!(
                f,
                "stream url {url:?} has a query string, which Twilio strips; use <Parameter>"
            ),
            TwimlError::InvalidStreamUrl { url, reason } => {
                write!(f, "stream url {url:?} is invalid: {reason}")
            }
            TwimlError::ConnectTrack { track } => write!(
                f,
                "<Connect><Stream> allows only inbound_track, not {} (Twilio error 31941)",
                track.as_str()
            ),
            TwimlError::MultipleConnectStreams { count } => write!(
                f,
                "{count} <Connect> verbs in one response; Twilio allows one <Connect><Stream> per call"
            ),
            TwimlError::ConnectWithoutStream => {
                write!(f, "<Connect> without a <Stream> (Twilio error 12100)")
            }
            TwimlError::ParameterTooLong { name, chars } => write!(
                f,
                "<Parameter name={name:?}>: name plus value are {chars} characters, \
                 must be under {MAX_PARAMETER_CHARS}"
            ),
            TwimlError::DocumentTooLarge { bytes } => write!(
                f,
                "TwiML document of {bytes} bytes or more is over {MAX_DOCUMENT_BYTES} \
                 (Twilio error 11750)"
            ),
            TwimlError::InvalidXmlChar { field, code } => write!(
                f,
                "{field} holds U+{code:04X}, which XML 1.0 cannot carry (Twilio error 12100)"
            ),
            TwimlError::InvalidNumber { number } => {
                write!(
                    f,
                    "<Dial><Number> {number:?} is not an E.164 number (+ and 2 to 15 digits)"
                )
            }
            TwimlError::InvalidSipUri { uri } => write!(
                f,
                "<Dial><Sip> {uri:?} is not a sip: or sips: URI (at most 255 characters, no spaces)"
            ),
            TwimlError::InvalidDialTimeout { seconds } => write!(
                f,
                "<Dial timeout> {seconds} is outside Twilio's 5 to 600 seconds"
            ),
            TwimlError::InvalidMethod { method } => {
                write!(f, "method {method:?} is neither GET nor POST")
            }
            TwimlError::InvalidLanguage { language } => write!(
                f,
                "<Say language={language:?}> is not a language tag such as en-US, he-IL or cmn-CN"
            ),
            TwimlError::InvalidVoice { voice } => write!(
                f,
                "<Say voice={voice:?}> is not a voice name such as alice or Polly.Joanna-Neural \
                 (letters, digits, '.', '-', '_'; at most {MAX_VOICE_CHARS})"
            ),
        }
    }
}

impl std::error::Error for TwimlError {}

/// The HTTP method Twilio uses for a callback or redirect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Method {
    /// `GET`: parameters in the query string.
    Get,
    /// `POST`: parameters form-encoded in the body (Twilio's default).
    Post,
}

impl Method {
    /// The attribute value: `GET` or `POST`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
        }
    }

    /// Reads `GET` or `POST` (ASCII case-insensitive, as a configuration value
    /// might be written).
    pub fn parse(s: &str) -> Result<Method, TwimlError> {
        if s.eq_ignore_ascii_case("GET") {
            Ok(Method::Get)
        } else if s.eq_ignore_ascii_case("POST") {
            Ok(Method::Post)
        } else {
            Err(TwimlError::InvalidMethod { method: excerpt(s) })
        }
    }
}

/// Which audio a `<Stream>` carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Track {
    /// The caller's audio (the default; the only one `<Connect>` allows).
    InboundTrack,
    /// The audio Twilio plays to the caller (`<Start>` only).
    OutboundTrack,
    /// Both directions (`<Start>` only).
    BothTracks,
}

impl Track {
    /// The attribute value: `inbound_track`, `outbound_track` or `both_tracks`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Track::InboundTrack => "inbound_track",
            Track::OutboundTrack => "outbound_track",
            Track::BothTracks => "both_tracks",
        }
    }
}

/// The `<Stream>` noun: where Twilio opens the media WebSocket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stream {
    url: String,
    name: Option<String>,
    track: Option<Track>,
    status_callback: Option<String>,
    status_callback_method: Option<Method>,
    parameters: Vec<(String, String)>,
}

impl Stream {
    /// A stream to `url`, which must be an absolute `wss://` URL with a valid
    /// host (see [`public_url::valid_host`]), a path of URL characters, and no
    /// query string or fragment.
    pub fn new(url: impl Into<String>) -> Result<Stream, TwimlError> {
        let url = url.into();
        check_stream_url(&url)?;
        Ok(Stream {
            url,
            name: None,
            track: None,
            status_callback: None,
            status_callback_method: None,
            parameters: Vec::new(),
        })
    }

    /// Names the stream (the `name` attribute; usable to stop it later).
    #[must_use]
    pub fn name(mut self, name: impl Into<String>) -> Stream {
        self.name = Some(name.into());
        self
    }

    /// Chooses the track. Under `<Connect>` only [`Track::InboundTrack`] is
    /// allowed; that is checked by [`Response::to_xml`].
    #[must_use]
    pub fn track(mut self, track: Track) -> Stream {
        self.track = Some(track);
        self
    }

    /// Where Twilio reports `stream-started` / `stream-stopped` / `stream-error`.
    #[must_use]
    pub fn status_callback(mut self, url: impl Into<String>) -> Stream {
        self.status_callback = Some(url.into());
        self
    }

    /// The method for the status callback (Twilio's default is `POST`).
    #[must_use]
    pub fn status_callback_method(mut self, method: Method) -> Stream {
        self.status_callback_method = Some(method);
        self
    }

    /// Adds a `<Parameter name value>`; Twilio hands these to the WebSocket in
    /// the `start` message's `customParameters`, in document order.
    ///
    /// Fails when name plus value reach [`MAX_PARAMETER_CHARS`] characters.
    pub fn parameter(
        mut self,
        name: impl Into<String>,
        value: impl Into<String>,
    ) -> Result<Stream, TwimlError> {
        let (name, value) = (name.into(), value.into());
        let chars = name.chars().count() + value.chars().count();
        if chars >= MAX_PARAMETER_CHARS {
            return Err(TwimlError::ParameterTooLong {
                name: excerpt(&name),
                chars,
            });
        }
        self.parameters.push((name, value));
        Ok(self)
    }

    /// The stream URL.
    #[must_use]
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The parameters, in document order.
    #[must_use]
    pub fn parameters(&self) -> &[(String, String)] {
        &self.parameters
    }

    fn write(&self, out: &mut String) -> Result<(), TwimlError> {
        out.push_str("<Stream");
        if let Some(name) = &self.name {
            attr(out, "name", name, "Stream@name")?;
        }
        if let Some(cb) = &self.status_callback {
            attr(out, "statusCallback", cb, "Stream@statusCallback")?;
        }
        if let Some(m) = self.status_callback_method {
            attr(
                out,
                "statusCallbackMethod",
                m.as_str(),
                "Stream@statusCallbackMethod",
            )?;
        }
        if let Some(t) = self.track {
            attr(out, "track", t.as_str(), "Stream@track")?;
        }
        attr(out, "url", &self.url, "Stream@url")?;
        if self.parameters.is_empty() {
            out.push_str("/>");
            return Ok(());
        }
        out.push('>');
        for (name, value) in &self.parameters {
            out.push_str("<Parameter");
            attr(out, "name", name, "Parameter@name")?;
            attr(out, "value", value, "Parameter@value")?;
            out.push_str("/>");
        }
        out.push_str("</Stream>");
        Ok(())
    }
}

/// The `<Connect>` verb around a `<Stream>`: a bidirectional media stream that
/// holds the call until the WebSocket closes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Connect {
    action: Option<String>,
    method: Option<Method>,
    stream: Option<Stream>,
}

impl Connect {
    /// An empty `<Connect>`; give it a [`Stream`] with [`Connect::stream`].
    #[must_use]
    pub fn new() -> Connect {
        Connect::default()
    }

    /// The URL Twilio requests when the stream ends (the next TwiML comes
    /// from there; without it Twilio runs the verbs after `<Connect>`).
    #[must_use]
    pub fn action(mut self, url: impl Into<String>) -> Connect {
        self.action = Some(url.into());
        self
    }

    /// The method for `action` (Twilio's default is `POST`).
    #[must_use]
    pub fn method(mut self, method: Method) -> Connect {
        self.method = Some(method);
        self
    }

    /// The stream to connect; a second call replaces the first (Twilio
    /// allows one stream per `<Connect>`).
    #[must_use]
    pub fn stream(mut self, stream: Stream) -> Connect {
        self.stream = Some(stream);
        self
    }

    fn write(&self, out: &mut String) -> Result<(), TwimlError> {
        let stream = self
            .stream
            .as_ref()
            .ok_or(TwimlError::ConnectWithoutStream)?;
        // Twilio error 31941: a bidirectional stream carries the caller only.
        match stream.track {
            None | Some(Track::InboundTrack) => {}
            Some(track) => return Err(TwimlError::ConnectTrack { track }),
        }
        out.push_str("<Connect");
        if let Some(action) = &self.action {
            attr(out, "action", action, "Connect@action")?;
        }
        if let Some(m) = self.method {
            attr(out, "method", m.as_str(), "Connect@method")?;
        }
        out.push('>');
        stream.write(out)?;
        out.push_str("</Connect>");
        Ok(())
    }
}

/// The `<Start>` verb around a `<Stream>`: a one-way stream (any track) that
/// runs beside the call while Twilio goes on with the next verb.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Start {
    stream: Stream,
}

impl Start {
    /// `<Start><Stream>` for `stream`.
    #[must_use]
    pub fn new(stream: Stream) -> Start {
        Start { stream }
    }

    fn write(&self, out: &mut String) -> Result<(), TwimlError> {
        out.push_str("<Start>");
        self.stream.write(out)?;
        out.push_str("</Start>");
        Ok(())
    }
}

/// The `<Say>` verb: text spoken to the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Say {
    text: String,
    voice: Option<String>,
    language: Option<String>,
    loop_count: Option<u32>,
}

impl Say {
    /// Speaks `text` in Twilio's default voice.
    #[must_use]
    pub fn new(text: impl Into<String>) -> Say {
        Say {
            text: text.into(),
            voice: None,
            language: None,
            loop_count: None,
        }
    }

    /// The `voice` attribute (e.g. `Polly.Joanna`).
    #[must_use]
    pub fn voice(mut self, voice: impl Into<String>) -> Say {
        self.voice = Some(voice.into());
        self
    }

    /// The `language` attribute (e.g. `en-GB`).
    #[must_use]
    pub fn language(mut self, language: impl Into<String>) -> Say {
        self.language = Some(language.into());
        self
    }

    /// The `loop` attribute: how many times to say it (0: until the call ends).
    #[must_use]
    pub fn loop_count(mut self, n: u32) -> Say {
        self.loop_count = Some(n);
        self
    }

    fn write(&self, out: &mut String) -> Result<(), TwimlError> {
        out.push_str("<Say");
        if let Some(language) = &self.language {
            attr(out, "language", language, "Say@language")?;
        }
        if let Some(n) = self.loop_count {
            attr(out, "loop", &n.to_string(), "Say@loop")?;
        }
        if let Some(voice) = &self.voice {
            attr(out, "voice", voice, "Say@voice")?;
        }
        // After the attributes: a character XML cannot carry is named as such.
        if let Some(language) = self.language.as_deref().filter(|l| !is_language_tag(l)) {
            return Err(TwimlError::InvalidLanguage {
                language: excerpt(language),
            });
        }
        if let Some(voice) = self.voice.as_deref().filter(|v| !is_voice_name(v)) {
            return Err(TwimlError::InvalidVoice {
                voice: excerpt(voice),
            });
        }
        out.push('>');
        escape(out, &self.text, Context::Text, "Say")?;
        out.push_str("</Say>");
        Ok(())
    }
}

/// The longest `<Say voice>` accepted; Twilio's longest names
/// (`Google.en-US-Chirp3-HD-Aoede`) are under half of it.
pub const MAX_VOICE_CHARS: usize = 64;

/// Whether `s` is shaped like the language tags Twilio's `<Say language>`
/// takes (BCP 47's common form: a 2- or 3-letter language, then subtags of 1
/// to 8 letters or digits after `-`, at most 35 characters: `en-US`, `he-IL`,
/// `cmn-CN`, `arb`). Whether Twilio has a voice for it is Twilio's to say.
#[must_use]
pub fn is_language_tag(s: &str) -> bool {
    let mut parts = s.split('-');
    let primary = parts.next().unwrap_or_default();
    s.len() <= 35
        && (2..=3).contains(&primary.len())
        && primary.bytes().all(|b| b.is_ascii_alphabetic())
        && parts.all(|p| (1..=8).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_alphanumeric()))
}

/// Whether `s` is shaped like a `<Say voice>` name (`alice`, `man`,
/// `Polly.Joanna-Neural`, `Google.en-US-Standard-C`): 1 to
/// [`MAX_VOICE_CHARS`] ASCII letters, digits, `.`, `-` or `_`.
#[must_use]
pub fn is_voice_name(s: &str) -> bool {
    (1..=MAX_VOICE_CHARS).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
}

impl From<&str> for Say {
    fn from(text: &str) -> Say {
        Say::new(text)
    }
}

impl From<String> for Say {
    fn from(text: String) -> Say {
        Say::new(text)
    }
}

/// The `<Play>` verb: an audio file played to the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Play {
    url: String,
    loop_count: Option<u32>,
}

impl Play {
    /// Plays the audio at `url`.
    #[must_use]
    pub fn new(url: impl Into<String>) -> Play {
        Play {
            url: url.into(),
            loop_count: None,
        }
    }

    /// The `loop` attribute: how many times to play it (0: until the call ends).
    #[must_use]
    pub fn loop_count(mut self, n: u32) -> Play {
        self.loop_count = Some(n);
        self
    }

    fn write(&self, out: &mut String) -> Result<(), TwimlError> {
        out.push_str("<Play");
        if let Some(n) = self.loop_count {
            attr(out, "loop", &n.to_string(), "Play@loop")?;
        }
        out.push('>');
        escape(out, &self.url, Context::Text, "Play")?;
        out.push_str("</Play>");
        Ok(())
    }
}

impl From<&str> for Play {
    fn from(url: &str) -> Play {
        Play::new(url)
    }
}

impl From<String> for Play {
    fn from(url: String) -> Play {
        Play::new(url)
    }
}

/// The `<Redirect>` verb: fetch the next TwiML from a URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redirect {
    url: String,
    method: Option<Method>,
}

impl Redirect {
    /// Redirects to `url` (Twilio's default method is `POST`).
    #[must_use]
    pub fn new(url: impl Into<String>) -> Redirect {
        Redirect {
            url: url.into(),
            method: None,
        }
    }

    /// The `method` attribute.
    #[must_use]
    pub fn method(mut self, method: Method) -> Redirect {
        self.method = Some(method);
        self
    }

    fn write(&self, out: &mut String) -> Result<(), TwimlError> {
        out.push_str("<Redirect");
        if let Some(m) = self.method {
            attr(out, "method", m.as_str(), "Redirect@method")?;
        }
        out.push('>');
        escape(out, &self.url, Context::Text, "Redirect")?;
        out.push_str("</Redirect>");
        Ok(())
    }
}

impl From<&str> for Redirect {
    fn from(url: &str) -> Redirect {
        Redirect::new(url)
    }
}

impl From<String> for Redirect {
    fn from(url: String) -> Redirect {
        Redirect::new(url)
    }
}

/// `<Dial><Number>` or `<Dial><Sip>`: connects the caller to a phone
/// number or a SIP endpoint (a transfer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dial {
    number: String,
    sip: bool,
    caller_id: Option<String>,
    timeout: Option<u32>,
}

impl Dial {
    /// Dials `number`, which must be E.164 (`+14155550100`): a transfer
    /// target usually comes from an application, so it is checked here
    /// rather than by Twilio mid-call.
    pub fn number(number: impl Into<String>) -> Result<Dial, TwimlError> {
        let number = number.into();
        let digits = number.strip_prefix('+').unwrap_or("");
        if !(2..=15).contains(&digits.len()) || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(TwimlError::InvalidNumber {
                number: number.chars().take(80).collect(),
            });
        }
        Ok(Dial {
            number,
            sip: false,
            caller_id: None,
            timeout: None,
        })
    }

    /// Dials the SIP URI `uri` (`sip:` or `sips:`, at most 255 characters,
    /// no spaces or control characters).
    pub fn sip(uri: impl Into<String>) -> Result<Dial, TwimlError> {
        let uri = uri.into();
        let lower = uri.get(..5).map(str::to_ascii_lowercase);
        let scheme = matches!(lower.as_deref(), Some("sips:"))
            || uri.get(..4).is_some_and(|p| p.eq_ignore_ascii_case("sip:"));
        if !scheme
            || uri.len() > 255
            || uri.len() <= 5
            || uri.chars().any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(TwimlError::InvalidSipUri {
                uri: uri.chars().take(80).collect(),
            });
        }
        Ok(Dial {
            number: uri,
            sip: true,
            caller_id: None,
            timeout: None,
        })
    }

    /// The `timeout` attribute: seconds to let the callee's phone ring
    /// (Twilio takes 5 to 600; its default is 30).
    pub fn timeout(mut self, seconds: u32) -> Result<Dial, TwimlError> {
        if !(5..=600).contains(&seconds) {
            return Err(TwimlError::InvalidDialTimeout { seconds });
        }
        self.timeout = Some(seconds);
        Ok(self)
    }

    /// The `callerId` attribute: the number the callee sees.
    #[must_use]
    pub fn caller_id(mut self, caller_id: impl Into<String>) -> Dial {
        self.caller_id = Some(caller_id.into());
        self
    }

    fn write(&self, out: &mut String) -> Result<(), TwimlError> {
        out.push_str("<Dial");
        if let Some(id) = &self.caller_id {
            attr(out, "callerId", id, "Dial@callerId")?;
        }
        if let Some(t) = self.timeout {
            attr(out, "timeout", &t.to_string(), "Dial@timeout")?;
        }
        let noun = if self.sip { "Sip" } else { "Number" };
        out.push_str("><");
        out.push_str(noun);
        out.push('>');
        escape(out, &self.number, Context::Text, noun)?;
        out.push_str("</");
        out.push_str(noun);
        out.push_str("></Dial>");
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Verb {
    Say(Say),
    Dial(Dial),
    Play(Play),
    Pause(Option<u32>),
    Redirect(Redirect),
    Hangup,
    Connect(Connect),
    Start(Start),
}

/// A TwiML `<Response>`: verbs Twilio runs in order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Response {
    verbs: Vec<Verb>,
}

impl Response {
    /// An empty response (Twilio hangs up after it).
    #[must_use]
    pub fn new() -> Response {
        Response::default()
    }

    /// Appends `<Say>`: a `&str`, a `String` or a configured [`Say`].
    #[must_use]
    pub fn say(mut self, say: impl Into<Say>) -> Response {
        self.verbs.push(Verb::Say(say.into()));
        self
    }

    /// Appends `<Play>`: a URL or a configured [`Play`].
    #[must_use]
    pub fn play(mut self, play: impl Into<Play>) -> Response {
        self.verbs.push(Verb::Play(play.into()));
        self
    }

    /// Appends `<Pause length="seconds"/>`.
    #[must_use]
    pub fn pause(mut self, seconds: u32) -> Response {
        self.verbs.push(Verb::Pause(Some(seconds)));
        self
    }

    /// Appends `<Pause/>` (Twilio's default of one second).
    #[must_use]
    pub fn pause_default(mut self) -> Response {
        self.verbs.push(Verb::Pause(None));
        self
    }

    /// Appends `<Redirect>`: a URL or a configured [`Redirect`].
    #[must_use]
    pub fn redirect(mut self, redirect: impl Into<Redirect>) -> Response {
        self.verbs.push(Verb::Redirect(redirect.into()));
        self
    }

    /// Appends `<Dial>` (a transfer).
    #[must_use]
    pub fn dial(mut self, dial: Dial) -> Response {
        self.verbs.push(Verb::Dial(dial));
        self
    }

    /// Appends `<Hangup/>`.
    #[must_use]
    pub fn hangup(mut self) -> Response {
        self.verbs.push(Verb::Hangup);
        self
    }

    /// Appends `<Connect>` (with its `<Stream>`).
    #[must_use]
    pub fn connect(mut self, connect: Connect) -> Response {
        self.verbs.push(Verb::Connect(connect));
        self
    }

    /// Appends `<Start>` (with its `<Stream>`).
    #[must_use]
    pub fn start(mut self, start: Start) -> Response {
        self.verbs.push(Verb::Start(start));
        self
    }

    /// Serialises the document, enforcing the rules in the module docs.
    pub fn to_xml(&self) -> Result<String, TwimlError> {
        let connects = self
            .verbs
            .iter()
            .filter(|v| matches!(v, Verb::Connect(_)))
            .count();
        if connects > 1 {
            return Err(TwimlError::MultipleConnectStreams { count: connects });
        }
        let mut out = String::with_capacity(256);
        out.push_str(XML_DECLARATION);
        if self.verbs.is_empty() {
            out.push_str("<Response/>");
            return Ok(out);
        }
        out.push_str("<Response>");
        for verb in &self.verbs {
            match verb {
                Verb::Say(say) => say.write(&mut out)?,
                Verb::Play(play) => play.write(&mut out)?,
                Verb::Pause(None) => out.push_str("<Pause/>"),
                Verb::Pause(Some(seconds)) => {
                    out.push_str("<Pause");
                    attr(&mut out, "length", &seconds.to_string(), "Pause@length")?;
                    out.push_str("/>");
                }
                Verb::Redirect(redirect) => redirect.write(&mut out)?,
                Verb::Hangup => out.push_str("<Hangup/>"),
                Verb::Dial(d) => d.write(&mut out)?,
                Verb::Connect(connect) => connect.write(&mut out)?,
                Verb::Start(start) => start.write(&mut out)?,
            }
            // Stop early rather than grow a document that is refused anyway.
            if out.len() > MAX_DOCUMENT_BYTES {
                break;
            }
        }
        out.push_str("</Response>");
        if out.len() > MAX_DOCUMENT_BYTES {
            return Err(TwimlError::DocumentTooLarge { bytes: out.len() });
        }
        Ok(out)
    }
}

/// Whether XML 1.0 can carry `c` (its `Char` production, §2.2).
#[must_use]
pub fn is_xml_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..)
}

/// `s` without the characters XML 1.0 cannot carry (borrowed when there are
/// none), for callers that prefer dropping them to [`TwimlError::InvalidXmlChar`].
#[must_use]
pub fn strip_invalid_xml_chars(s: &str) -> Cow<'_, str> {
    if s.chars().all(is_xml_char) {
        Cow::Borrowed(s)
    } else {
        Cow::Owned(s.chars().filter(|&c| is_xml_char(c)).collect())
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Context {
    Attribute,
    Text,
}

fn attr(out: &mut String, name: &str, value: &str, field: &'static str) -> Result<(), TwimlError> {
    out.push(' ');
    out.push_str(name);
    out.push_str("=\"");
    escape(out, value, Context::Attribute, field)?;
    out.push('"');
    Ok(())
}

fn escape(out: &mut String, s: &str, ctx: Context, field: &'static str) -> Result<(), TwimlError> {
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            // XML 1.0 §2.11: a parser turns a literal CR (or CR LF) into LF.
            '\r' => out.push_str("&#13;"),
            // XML 1.0 §3.3.3: a parser turns literal tab and LF in an
            // attribute value into spaces.
            '\t' if ctx == Context::Attribute => out.push_str("&#9;"),
            '\n' if ctx == Context::Attribute => out.push_str("&#10;"),
            c if !is_xml_char(c) => {
                return Err(TwimlError::InvalidXmlChar {
                    field,
                    code: u32::from(c),
                });
            }
            c => out.push(c),
        }
    }
    Ok(())
}

/// Checks a `<Stream url>`: `wss://`, valid host[:port], URL path characters,
/// no query string, no fragment.
fn check_stream_url(url: &str) -> Result<(), TwimlError> {
    let Some((scheme, rest)) = url.split_once("://") else {
        return Err(TwimlError::StreamUrlNotWss { url: excerpt(url) });
    };
    if scheme.eq_ignore_ascii_case("ws") {
        // Twilio error 31922: media streams only connect over TLS.
        return Err(TwimlError::InsecureStreamUrl { url: excerpt(url) });
    }
    if !scheme.eq_ignore_ascii_case("wss") {
        return Err(TwimlError::StreamUrlNotWss { url: excerpt(url) });
    }
    if rest.contains('?') {
        // Twilio strips the query string before connecting.
        return Err(TwimlError::StreamUrlHasQuery { url: excerpt(url) });
    }
    let invalid = |reason| TwimlError::InvalidStreamUrl {
        url: excerpt(url),
        reason,
    };
    if rest.contains('#') {
        return Err(invalid("it has a fragment"));
    }
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    if authority.is_empty() {
        return Err(invalid("it has no host"));
    }
    if !public_url::valid_host(authority) {
        return Err(invalid("the host is not a valid host[:port]"));
    }
    if !public_url::valid_path(path) {
        return Err(invalid("the path holds characters a URL cannot"));
    }
    Ok(())
}

/// The first [`EXCERPT_CHARS`] characters of `s`, for error messages.
fn excerpt(s: &str) -> String {
    crate::excerpt::prefix(s, EXCERPT_CHARS).to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dial_takes_a_sip_uri_a_timeout_and_a_caller_id() {
        let xml = Response::new()
            .dial(
                Dial::sip("sip:agent@pbx.example.com;transport=tls")
                    .unwrap()
                    .caller_id("+14155550100")
                    .timeout(20)
                    .unwrap(),
            )
            .to_xml()
            .unwrap();
        assert!(
            xml.ends_with(r#"<Dial callerId="+14155550100" timeout="20"><Sip>sip:agent@pbx.example.com;transport=tls</Sip></Dial></Response>"#),
            "{xml}"
        );
        for bad in ["tel:+1415", "sip:", "sip:a b@c", "http://x"] {
            assert!(Dial::sip(bad).is_err(), "{bad}");
        }
        assert!(Dial::sip(format!("sip:{}", "a".repeat(260))).is_err());
        assert!(Dial::sip("SIPS:x@y").is_ok());
        let n = Dial::number("+14155550100").unwrap();
        assert_eq!(
            n.clone().timeout(4),
            Err(TwimlError::InvalidDialTimeout { seconds: 4 })
        );
        assert!(n.clone().timeout(600).is_ok());
        assert!(n.timeout(601).is_err());
    }

    #[test]
    fn say_language_and_voice_are_checked() {
        for good in ["en-US", "he-IL", "cmn-CN", "arb", "en-GB-x-rp", "fr"] {
            assert!(is_language_tag(good), "{good}");
        }
        for bad in [
            "",
            "e",
            "english",
            "en_US",
            "en-",
            "-US",
            "en-US!",
            "en US",
            "12-US",
            "en-abcdefghi",
        ] {
            assert!(!is_language_tag(bad), "{bad}");
        }
        assert!(!is_language_tag(&format!("en{}", "-abcdefgh".repeat(4))));
        for good in [
            "alice",
            "man",
            "Polly.Joanna-Neural",
            "Google.en-US-Chirp3-HD-Aoede",
            "a_b",
        ] {
            assert!(is_voice_name(good), "{good}");
        }
        for bad in ["", "Polly Joanna", "x\"y", "<v>", "é"] {
            assert!(!is_voice_name(bad), "{bad}");
        }
        assert!(is_voice_name(&"v".repeat(MAX_VOICE_CHARS)));
        assert!(!is_voice_name(&"v".repeat(MAX_VOICE_CHARS + 1)));

        let ok = Response::new()
            .say(
                Say::new("Shalom")
                    .language("he-IL")
                    .voice("Google.he-IL-Standard-A"),
            )
            .to_xml()
            .unwrap();
        assert!(
            ok.contains(r#"<Say language="he-IL" voice="Google.he-IL-Standard-A">Shalom</Say>"#),
            "{ok}"
        );
        let err = Response::new()
            .say(Say::new("x").language("Hebrew"))
            .to_xml();
        assert_eq!(
            err,
            Err(TwimlError::InvalidLanguage {
                language: "Hebrew".into()
            })
        );
        let err = Response::new()
            .say(Say::new("x").voice("Polly Joanna"))
            .to_xml();
        assert_eq!(
            err,
            Err(TwimlError::InvalidVoice {
                voice: "Polly Joanna".into()
            })
        );
        assert!(err.unwrap_err().to_string().contains("Polly Joanna"));
    }

    const DECL: &str = XML_DECLARATION;

    #[test]
    fn empty_response() {
        assert_eq!(
            Response::new().to_xml().unwrap(),
            format!("{DECL}<Response/>")
        );
    }

    #[test]
    fn escapes_attribute_specials() {
        let s = Stream::new("wss://a.example/x")
            .unwrap()
            .parameter("n", "a&b<c>d\"e'f\tg\nh\ri")
            .unwrap();
        let xml = Response::new()
            .connect(Connect::new().stream(s))
            .to_xml()
            .unwrap();
        assert!(
            xml.contains(r#"value="a&amp;b&lt;c&gt;d&quot;e&apos;f&#9;g&#10;h&#13;i""#),
            "{xml}"
        );
    }

    #[test]
    fn escapes_text_specials_keeping_tab_and_lf() {
        let xml = Response::new()
            .say("a&b<c>d\"e'f\tg\nh\ri")
            .to_xml()
            .unwrap();
        assert!(
            xml.contains("<Say>a&amp;b&lt;c&gt;d&quot;e&apos;f\tg\nh&#13;i</Say>"),
            "{xml}"
        );
    }

    #[test]
    fn invalid_xml_chars_are_errors() {
        for c in [
            '\0', '\u{1}', '\u{8}', '\u{B}', '\u{C}', '\u{1F}', '\u{FFFE}', '\u{FFFF}',
        ] {
            let err = Response::new().say(format!("a{c}b")).to_xml().unwrap_err();
            assert_eq!(
                err,
                TwimlError::InvalidXmlChar {
                    field: "Say",
                    code: u32::from(c)
                }
            );
        }
        let err = Response::new()
            .say(Say::new("x").voice("a\u{7}"))
            .to_xml()
            .unwrap_err();
        assert_eq!(
            err,
            TwimlError::InvalidXmlChar {
                field: "Say@voice",
                code: 7
            }
        );
    }

    #[test]
    fn is_xml_char_boundaries() {
        for c in [
            '\t',
            '\n',
            '\r',
            ' ',
            '\u{D7FF}',
            '\u{E000}',
            '\u{FFFD}',
            '\u{10000}',
            '\u{10FFFF}',
        ] {
            assert!(is_xml_char(c), "{c:?}");
        }
        for c in [
            '\0', '\u{8}', '\u{B}', '\u{C}', '\u{E}', '\u{1F}', '\u{FFFE}', '\u{FFFF}',
        ] {
            assert!(!is_xml_char(c), "{c:?}");
        }
    }

    #[test]
    fn strip_invalid_xml_chars_borrows_when_clean() {
        assert!(matches!(
            strip_invalid_xml_chars("abc\t"),
            Cow::Borrowed("abc\t")
        ));
        assert_eq!(
            strip_invalid_xml_chars("a\u{0}b\u{FFFF}c\u{7F}"),
            "abc\u{7F}"
        );
    }

    #[test]
    fn method_parse() {
        assert_eq!(Method::parse("get"), Ok(Method::Get));
        assert_eq!(Method::parse("POST"), Ok(Method::Post));
        assert!(matches!(
            Method::parse("PUT"),
            Err(TwimlError::InvalidMethod { .. })
        ));
    }
}
