//! Twilio's Media Streams, as a [`Wire`]: the JSON messages of
//! [`crate::message`] read into facts and written from the machine's
//! messages. Every message names its stream (`streamSid`); the wire learns
//! it from `start` and drops what names another stream, or comes before
//! `start`, as Twilio's protocol has it (`docs/protocol.md`).
use super::{Fact, Message, StreamStart, Warning, Wire};
use crate::message::{self, Inbound, Start, Track};
use crate::sid::StreamSid;

/// Twilio's wire format. One per stream: it keeps the stream's SID.
#[derive(Debug, Default)]
pub struct TwilioWire {
    /// From the first `start`.
    stream_sid: Option<StreamSid>,
    /// Payloads too long for the caller's scratch buffer.
    payload: Vec<u8>,
}

impl TwilioWire {
    /// A wire for a stream that has not started.
    #[must_use]
    pub fn new() -> TwilioWire {
        TwilioWire::default()
    }

    /// The stream, once `start` named it.
    #[must_use]
    pub fn stream_sid(&self) -> Option<StreamSid> {
        self.stream_sid
    }

    /// Checks a message's stream: `Ok` when it is ours.
    fn ours(&self, sid: StreamSid) -> Result<(), Warning> {
        match self.stream_sid {
            None => Err(Warning::BeforeStart),
            Some(ours) if ours != sid => Err(Warning::WrongStreamSid { got: sid }),
            Some(_) => Ok(()),
        }
    }
}

impl From<Start> for StreamStart {
    fn from(start: Start) -> StreamStart {
        StreamStart {
            stream_id: start.stream_sid.to_string(),
            call_id: start.call_sid.to_string(),
            account_id: start.account_sid.to_string(),
            tracks: start.tracks,
            parameters: start.custom_parameters,
            format: start.media_format,
        }
    }
}

impl Wire for TwilioWire {
    fn read<'a>(&'a mut self, text: &'a str, scratch: &'a mut [u8]) -> Result<Fact<'a>, Warning> {
        let malformed = |e: message::MessageError| Warning::Malformed {
            error: e.to_string(),
        };
        Ok(match message::parse(text).map_err(malformed)? {
            Inbound::Connected(_) => Fact::Connected,
            Inbound::Start(start) => {
                // A second start is the machine's to report; the stream is
                // the first one's.
                self.stream_sid.get_or_insert(start.stream_sid);
                Fact::Start(start.into())
            }
            Inbound::Media(media) => {
                self.ours(media.stream_sid)?;
                if media.track != Track::Inbound {
                    return Ok(Fact::OtherTrack);
                }
                let len = media.decoded_len();
                let buf = match scratch.get_mut(..len) {
                    Some(buf) => buf,
                    None => {
                        self.payload.resize(len, 0);
                        &mut self.payload[..]
                    }
                };
                let n = media.decode_payload(buf).map_err(malformed)?;
                Fact::Audio {
                    chunk: media.chunk,
                    timestamp_ms: media.timestamp,
                    ulaw: &buf[..n.min(len)],
                }
            }
            Inbound::Dtmf(dtmf) => {
                self.ours(dtmf.stream_sid)?;
                Fact::Dtmf(dtmf.digit)
            }
            Inbound::Mark(mark) => {
                self.ours(mark.stream_sid)?;
                Fact::Mark(mark.name)
            }
            Inbound::Stop(stop) => {
                self.ours(stop.stream_sid)?;
                Fact::Stop
            }
        })
    }

    fn write(&self, message: Message<'_>, out: &mut String) {
        let Some(sid) = &self.stream_sid else {
            return;
        };
        match message {
            Message::Media(ulaw) => message::write_media(out, sid, ulaw),
            Message::Mark(name) => message::write_mark(out, sid, name),
            Message::Clear => message::write_clear(out, sid),
        }
    }
}
