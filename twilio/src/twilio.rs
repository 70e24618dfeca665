//! Twilio on one media stream, sans-IO: what it sends (numbered as Twilio
//! numbers them), what it makes of the server's messages (checked strictly,
//! played out, marks echoed). The piece a simulator or a test drives; it
//! owns no socket and no clock.
//!
//! Contract: feed the server's frames with [`Twilio::handle_text`] /
//! [`Twilio::handle_binary`] and the passing of time with
//! [`Twilio::handle_timeout`]; after each, drain [`Twilio::poll_text`] (mark
//! echoes to send) until `None`, and come back at [`Twilio::poll_timeout`].

use std::time::Instant;

use crate::check::{self, ServerMessage, Warning};
use crate::message::{self, Stream};
use crate::playout::Playout;

/// Twilio's side of one stream.
#[derive(Debug, Clone)]
pub struct Twilio {
    /// The stream's SIDs.
    pub stream: Stream,
    /// The playback buffer.
    pub playout: Playout,
    /// Every valid message the server sent, in order.
    pub received: Vec<ServerMessage>,
    /// Every warning Twilio logged about the server, in order.
    pub warnings: Vec<Warning>,
    seq: u64,
    chunk: u64,
    media_bytes_sent: u64,
}

impl Twilio {
    /// Twilio about to open `stream`.
    #[must_use]
    pub fn new(stream: Stream) -> Twilio {
        Twilio {
            stream,
            playout: Playout::new(),
            received: Vec::new(),
            warnings: Vec::new(),
            seq: 0,
            chunk: 0,
            media_bytes_sent: 0,
        }
    }

    /// The next `sequenceNumber` (the sequence counts every message after
    /// `connected`; `start` is 1).
    pub fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    /// `connected`, which carries no sequence number.
    #[must_use]
    pub fn connected(&self) -> String {
        message::connected()
    }

    /// `start` with these `<Parameter>`s.
    pub fn start(&mut self, params: &[(&str, &str)]) -> String {
        self.seq = 1;
        self.stream.start(params)
    }

    /// The next `media` with `ulaw`: `chunk` counts media messages from 1,
    /// `timestamp` is the stream time of its first byte in milliseconds.
    pub fn media(&mut self, ulaw: &[u8]) -> String {
        let seq = self.next_seq();
        self.chunk += 1;
        let timestamp = self.media_bytes_sent / 8;
        self.media_bytes_sent += ulaw.len() as u64;
        self.stream.media(seq, self.chunk, timestamp, ulaw)
    }

    /// `dtmf` for `digit`.
    pub fn dtmf(&mut self, digit: &str) -> String {
        let seq = self.next_seq();
        self.stream.dtmf(seq, digit)
    }

    /// The echo of mark `name` (normally sent by [`Twilio::poll_text`]).
    pub fn mark_echo(&mut self, name: &str) -> String {
        let seq = self.next_seq();
        self.stream.mark(seq, name)
    }

    /// `stop`.
    pub fn stop(&mut self) -> String {
        let seq = self.next_seq();
        self.stream.stop(seq)
    }

    /// The server sent a text frame at `now`: checked as Twilio checks it,
    /// then played. An invalid message is dropped and its warning kept.
    ///
    /// # Errors
    /// The [`Warning`] Twilio would log (also pushed to `warnings`).
    pub fn handle_text(&mut self, now: Instant, text: &str) -> Result<ServerMessage, Warning> {
        match check::check_text(text, Some(&self.stream.stream_sid)) {
            Ok(msg) => {
                self.playout.handle_message(now, &msg);
                self.received.push(msg.clone());
                Ok(msg)
            }
            Err(w) => {
                self.playout.handle_timeout(now);
                self.warnings.push(w.clone());
                Err(w)
            }
        }
    }

    /// The server sent a binary frame at `now`: warning 31950, dropped.
    pub fn handle_binary(&mut self, now: Instant) -> Warning {
        self.playout.handle_timeout(now);
        self.warnings.push(Warning::BinaryFrame);
        Warning::BinaryFrame
    }

    /// Time passed to `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.playout.handle_timeout(now);
    }

    /// The next text Twilio sends by itself: a due mark echo.
    pub fn poll_text(&mut self) -> Option<String> {
        let name = self.playout.poll_echo()?;
        Some(self.mark_echo(&name))
    }

    /// When Twilio next has something to do.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.playout.poll_timeout()
    }

    /// All μ-law bytes the server sent, in order (cleared audio included).
    #[must_use]
    pub fn media_bytes(&self) -> Vec<u8> {
        check::media_bytes(&self.received)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn numbers_messages_as_twilio_does() {
        let mut t = Twilio::new(Stream::default());
        assert!(t.connected().starts_with(r#"{"event":"connected""#));
        assert!(t.start(&[]).contains(r#""sequenceNumber":"1""#));
        let first = t.media(&[0xFF; 160]);
        assert!(first.contains(r#""sequenceNumber":"2""#));
        assert!(first.contains(r#""chunk":"1","timestamp":"0""#));
        let second = t.media(&[0xFF; 80]);
        assert!(second.contains(r#""chunk":"2","timestamp":"20""#));
        let third = t.media(&[0xFF; 160]);
        assert!(third.contains(r#""chunk":"3","timestamp":"30""#));
        assert!(t.dtmf("5").contains(r#""sequenceNumber":"5""#));
        assert!(t.stop().contains(r#""sequenceNumber":"6""#));
    }

    #[test]
    fn echoes_marks_after_playout_and_logs_warnings() {
        let t0 = Instant::now();
        let mut t = Twilio::new(Stream::default());
        let sid = t.stream.stream_sid.clone();
        let _ = t.start(&[]);
        let media = format!(
            r#"{{"event":"media","streamSid":"{sid}","media":{{"payload":"{}"}}}}"#,
            "VVVV".repeat(40)
        );
        assert!(t.handle_text(t0, &media).is_ok());
        let mark = format!(r#"{{"event":"mark","streamSid":"{sid}","mark":{{"name":"m"}}}}"#);
        assert_eq!(
            t.handle_text(t0, &mark),
            Ok(ServerMessage::Mark("m".into()))
        );
        assert_eq!(t.poll_text(), None);
        assert_eq!(t.poll_timeout(), Some(t0 + Duration::from_millis(15)));
        t.handle_timeout(t0 + Duration::from_millis(15));
        let echo = t.poll_text().unwrap();
        assert!(
            echo.contains(r#""sequenceNumber":"2","streamSid""#),
            "{echo}"
        );
        assert!(echo.ends_with(r#""mark":{"name":"m"}}"#));
        assert_eq!(t.poll_text(), None);

        assert_eq!(t.handle_binary(t0).code(), 31950);
        let other = mark.replace(&sid, "MZ00000000000000000000000000000000");
        assert_eq!(t.handle_text(t0, &other).map_err(|w| w.code()), Err(31951));
        assert_eq!(t.warnings.len(), 2);
        assert_eq!(t.received.len(), 2);
        assert_eq!(t.media_bytes().len(), 120);
    }
}
