//! Wire formats: how a telephony provider's media stream carries the call
//! machine's audio and control.
//!
//! The [call machine](crate::call) speaks audio and control only: a stream
//! started (who the call is, what the answer document asked for), caller
//! audio (μ-law at 8 kHz, numbered and dated in stream time), a key
//! pressed, a mark echoed, the stream stopped; and, going out, audio to
//! play, a mark after it, a clear. A [`Wire`] turns a provider's messages
//! into those [`Fact`]s and writes the machine's [`Message`]s in the
//! provider's words. Twilio's Media Streams JSON is one wire format
//! ([`twilio::TwilioWire`], the default); another provider is another module
//! implementing [`Wire`], with no change to the machine.
//!
//! A wire keeps what its protocol needs between messages (Twilio: the
//! stream's SID, which every message carries and every reply must name) and
//! checks it: a message for another stream, or one before the stream
//! started, is refused with the [`Warning`] the machine reports.

pub mod twilio;

pub use crate::call::Warning;
pub use crate::message::MediaFormat;

/// What the start of a stream says, in any provider's terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamStart {
    /// The provider's id of this stream (Twilio: `streamSid`).
    pub stream_id: String,
    /// The provider's id of the call (Twilio: `callSid`).
    pub call_id: String,
    /// The account the call belongs to (Twilio: `accountSid`); empty where
    /// the provider does not say.
    pub account_id: String,
    /// The tracks streamed, as the provider names them.
    pub tracks: Vec<String>,
    /// The parameters the answer document gave the stream (Twilio's
    /// `<Parameter>`s), in order; a repeated name is kept as often as it
    /// appears.
    pub parameters: Vec<(String, String)>,
    /// The inbound audio as the provider describes it.
    pub format: MediaFormat,
}

impl StreamStart {
    /// The value of the first parameter called `name`.
    #[must_use]
    pub fn parameter(&self, name: &str) -> Option<&str> {
        self.parameters
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// One message from the provider, as the call machine reads it.
#[derive(Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Fact<'a> {
    /// The provider's greeting before the stream starts (Twilio's
    /// `connected`).
    Connected,
    /// The stream started.
    Start(StreamStart),
    /// Caller audio: μ-law at 8 kHz. `chunk` numbers the provider's audio
    /// messages (order by it, not by arrival); `timestamp_ms` dates it in
    /// stream time.
    Audio {
        /// The message's number among the stream's audio messages.
        chunk: u64,
        /// Milliseconds since the stream started.
        timestamp_ms: u64,
        /// The μ-law bytes.
        ulaw: &'a [u8],
    },
    /// Audio of a track other than the caller's (a stream of both tracks
    /// also carries what we play): not the caller, ignored.
    OtherTrack,
    /// A key the caller pressed: `0`–`9`, `*`, `#`, `A`–`D`.
    Dtmf(char),
    /// A mark the machine sent, acknowledged: the audio before it played, or
    /// was cleared.
    Mark(String),
    /// The stream ended.
    Stop,
}

/// What the call machine sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Message<'a> {
    /// Audio to play, μ-law at 8 kHz (one frame: 20 ms).
    Media(&'a [u8]),
    /// A mark after the audio sent so far.
    Mark(&'a str),
    /// Drop the audio the provider holds.
    Clear,
}

/// A provider's media stream protocol, one per stream.
pub trait Wire: Send {
    /// Reads one text message. Audio is decoded into `scratch` when it fits
    /// (the caller passes a buffer on its stack, which is warm), else into
    /// memory of the wire's own.
    ///
    /// # Errors
    /// The [`Warning`] the machine reports for a message it drops: not this
    /// protocol's, not base64, before the stream started, for another
    /// stream.
    fn read<'a>(&'a mut self, text: &'a str, scratch: &'a mut [u8]) -> Result<Fact<'a>, Warning>;

    /// Writes `message` for the provider into `out` (an empty text frame to
    /// be). Called only once the stream started.
    fn write(&self, message: Message<'_>, out: &mut String);

    /// Room `message` needs in `out`, to reserve it up front.
    fn size_hint(&self, message: Message<'_>) -> usize {
        match message {
            Message::Media(ulaw) => 96 + ulaw.len().div_ceil(3) * 4,
            Message::Mark(name) => 96 + name.len(),
            Message::Clear => 96,
        }
    }
}
