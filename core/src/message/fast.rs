//! The `media` fast path: a scanner for the shape Twilio sends 50 times a
//! second per call, that gives up (returns `None`) on anything unusual so the
//! full parser decides.
//!
//! It must never disagree with the full parser: whenever it returns a value,
//! `parse_full` returns the same value for the same text. It accepts only
//! - one JSON object, optionally surrounded by JSON whitespace, whose values
//!   are strings, except `media`, an object whose values are strings;
//! - strings without escapes or control characters (so borrowing the raw bytes
//!   is exactly the string's value);
//! - each known field at most once (the full parser refuses duplicates), and
//!   no `start`/`dtmf`/`mark`/`stop` key at all (the full parser requires those
//!   to be objects);
//! - `event` equal to `media`, and every field valid by the shared rules.
//!
//! Unknown keys holding strings are skipped, as the full parser ignores them.
//! The agreement is property-tested against `parse_full` in `message::tests`.

use super::{Media, Track, digits};
use crate::sid::StreamSid;
use std::borrow::Cow;

struct Scanner<'a> {
    text: &'a str,
    pos: usize,
}

impl<'a> Scanner<'a> {
    fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.pos).copied()
    }

    fn skip_ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.pos += 1;
        }
    }

    fn eat(&mut self, byte: u8) -> Option<()> {
        self.skip_ws();
        (self.peek()? == byte).then(|| self.pos += 1)
    }

    /// A JSON string without escapes or control characters, quotes excluded.
    fn string(&mut self) -> Option<&'a str> {
        self.eat(b'"')?;
        let start = self.pos;
        let end = start + string_end(self.text.as_bytes().get(start..)?)?;
        if self.text.as_bytes().get(end) != Some(&b'"') {
            return None;
        }
        self.pos = end + 1;
        // `start` follows a `"` and `end` is one: both are char boundaries,
        // so `get` always succeeds.
        self.text.get(start..end)
    }

    /// After `{` or a value: `Some(true)` at `,`, `Some(false)` at `}`.
    fn more(&mut self) -> Option<bool> {
        self.skip_ws();
        let b = self.peek()?;
        self.pos += 1;
        match b {
            b',' => Some(true),
            b'}' => Some(false),
            _ => None,
        }
    }
}

/// Offset of the first `"`, `\\` or control byte (< 0x20) in `bytes`: where a
/// JSON string without escapes ends, or stops being one.
///
/// Eight bytes at a time (the media payload is two thirds of a message), with
/// the classic word tests "has a byte equal to c" and "has a byte less than
/// n". Their flags can be wrong only for bytes *after* a true hit (a borrow
/// runs upwards), so the lowest flag, read little-endian, is exactly the first hit.
fn string_end(bytes: &[u8]) -> Option<usize> {
    const ONES: u64 = u64::from_le_bytes([0x01; 8]);
    const HIGH: u64 = u64::from_le_bytes([0x80; 8]);
    const QUOTES: u64 = ONES * b'"' as u64;
    const BACKSLASHES: u64 = ONES * b'\\' as u64;
    const SPACES: u64 = ONES * 0x20;
    let mut offset = 0;
    while let Some(chunk) = bytes.get(offset..offset + 8) {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let w = u64::from_le_bytes(word);
        let quote = w ^ QUOTES;
        let backslash = w ^ BACKSLASHES;
        let hits = ((quote.wrapping_sub(ONES) & !quote)
            | (backslash.wrapping_sub(ONES) & !backslash)
            | (w.wrapping_sub(SPACES) & !w))
            & HIGH;
        if hits != 0 {
            return Some(offset + (hits.trailing_zeros() / 8) as usize);
        }
        offset += 8;
    }
    let tail = bytes.get(offset..)?;
    tail.iter()
        .position(|&b| b == b'"' || b == b'\\' || b < 0x20)
        .map(|at| offset + at)
}

/// Sets `slot` once; a second assignment gives up (a duplicate key).
fn once<'a>(slot: &mut Option<&'a str>, value: &'a str) -> Option<()> {
    if slot.is_some() {
        return None;
    }
    *slot = Some(value);
    Some(())
}

/// The `media` message in `text`, or `None` when the full parser must decide.
pub(super) fn parse_media(text: &str) -> Option<Media<'_>> {
    let mut s = Scanner { text, pos: 0 };
    let (mut event, mut seq, mut sid) = (None, None, None);
    // Tracked only because the full parser refuses them duplicated.
    let (mut protocol, mut version) = (None, None);
    let (mut track, mut chunk, mut timestamp, mut payload) = (None, None, None, None);
    let mut media_seen = false;

    s.eat(b'{')?;
    s.skip_ws();
    if s.peek() == Some(b'}') {
        return None;
    }
    loop {
        let key = s.string()?;
        s.eat(b':')?;
        match key {
            "media" => {
                if media_seen {
                    return None;
                }
                media_seen = true;
                s.eat(b'{')?;
                s.skip_ws();
                if s.peek() != Some(b'}') {
                    loop {
                        let key = s.string()?;
                        s.eat(b':')?;
                        let value = s.string()?;
                        match key {
                            "track" => once(&mut track, value)?,
                            "chunk" => once(&mut chunk, value)?,
                            "timestamp" => once(&mut timestamp, value)?,
                            "payload" => once(&mut payload, value)?,
                            _ => {}
                        }
                        if !s.more()? {
                            break;
                        }
                    }
                } else {
                    s.pos += 1;
                }
            }
            "start" | "dtmf" | "mark" | "stop" => return None,
            _ => {
                let value = s.string()?;
                match key {
                    "event" => once(&mut event, value)?,
                    "sequenceNumber" => once(&mut seq, value)?,
                    "streamSid" => once(&mut sid, value)?,
                    "protocol" => once(&mut protocol, value)?,
                    "version" => once(&mut version, value)?,
                    _ => {}
                }
            }
        }
        if !s.more()? {
            break;
        }
    }
    s.skip_ws();
    if s.pos != text.len() || event? != "media" {
        return None;
    }
    Some(Media {
        sequence_number: digits(seq?.as_bytes())?,
        stream_sid: StreamSid::parse(sid?).ok()?,
        track: Track::parse(track?)?,
        chunk: digits(chunk?.as_bytes())?,
        timestamp: digits(timestamp?.as_bytes())?,
        payload: Cow::Borrowed(payload?),
    })
}

#[cfg(test)]
mod tests {
    use super::string_end;
    use proptest::prelude::*;

    #[test]
    fn string_end_finds_each_stop_byte_at_every_offset() {
        for len in 0..40 {
            for stop in [b'"', b'\\', 0x00, 0x1F, b'\n'] {
                for at in 0..len {
                    let mut bytes = vec![b'a'; len];
                    bytes[at] = stop;
                    assert_eq!(
                        string_end(&bytes),
                        Some(at),
                        "len {len} stop {stop:#x} at {at}"
                    );
                }
            }
            assert_eq!(string_end(&vec![b'A'; len]), None);
        }
        // Bytes that are near the stop bytes but are not stops.
        assert_eq!(string_end(b" !#[]\x7f\x80\xff\xe2\x80\xa8"), None);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        #[test]
        fn string_end_equals_the_byte_loop(
            bytes in proptest::collection::vec(prop_oneof![30 => 0x20u8.., 1 => any::<u8>()], 0..64)
        ) {
            let slow = bytes.iter().position(|&b| b == b'"' || b == b'\\' || b < 0x20);
            prop_assert_eq!(string_end(&bytes), slow);
        }
    }
}
