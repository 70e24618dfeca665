//! Call recordings: one WAV file per media stream, caller on the left channel
//! and our audio on the right, 8 kHz 16-bit, aligned on the stream's clock.
//!
//! Caller frames come from the jitter buffer with their stream timestamps;
//! our frames come with the stream time at which Twilio plays them. Both are
//! placed by sample position, so a gap in either channel is silence, not a
//! shift. The header is rewritten every second, so the file is a valid WAV up to
//! the last second even if the process dies; [`Recorder::finish`] completes it
//! however the call ended.
use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, BufWriter};
use std::path::{Path, PathBuf};

const SAMPLES_PER_MS: u64 = 8;
/// Our audio may be scheduled ahead of the caller's; past this many samples
/// (60 s) ahead, it is written out with a silent caller channel rather than held.
const MAX_AHEAD: usize = 8000 * 60;
const FLUSH_EVERY: u64 = 8000;
/// The largest forward jump of caller audio written as silence (2 s).
const MAX_CALLER_JUMP: u64 = 8000 * 2;

/// Writes one stream's recording.
pub struct Recorder {
    path: PathBuf,
    wav: hound::WavWriter<BufWriter<File>>,
    /// Samples written so far (per channel).
    written: u64,
    /// Our audio from sample position `written` on.
    ours: VecDeque<i16>,
    since_flush: u64,
    /// Subtracted from caller positions after a discontinuity.
    caller_offset: u64,
}

fn wav_error(e: hound::Error) -> io::Error {
    match e {
        hound::Error::IoError(e) => e,
        other => io::Error::other(other),
    }
}

/// Keeps a SID-derived name to letters, digits, `-` and `_`: SIDs are validated
/// by the core already; this is a second fence before a path is built.
fn safe(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .take(64)
        .collect()
}

impl Recorder {
    /// Creates `<dir>/<call_sid>_<stream_sid>.wav`.
    pub fn create(dir: &Path, call_sid: &str, stream_sid: &str) -> io::Result<Recorder> {
        let path = dir.join(format!("{}_{}.wav", safe(call_sid), safe(stream_sid)));
        let spec = hound::WavSpec {
            channels: 2,
            sample_rate: 8000,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let wav = hound::WavWriter::create(&path, spec).map_err(wav_error)?;
        Ok(Recorder {
            path,
            wav,
            written: 0,
            ours: VecDeque::new(),
            since_flush: 0,
            caller_offset: 0,
        })
    }

    /// Where the recording is written.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A caller frame at `timestamp_ms` of stream time.
    pub fn caller(&mut self, timestamp_ms: u64, samples: &[i16]) -> io::Result<()> {
        let mut start = timestamp_ms
            .saturating_mul(SAMPLES_PER_MS)
            .saturating_sub(self.caller_offset);
        // Timestamps come from the peer. The jitter buffer fills gaps up to a
        // second; a larger jump (or a first timestamp far from zero) is a
        // discontinuity, not hours of silence to write: re-base onto the
        // recording's own clock.
        if start > self.written + MAX_CALLER_JUMP {
            self.caller_offset += start - self.written;
            start = self.written;
        }
        // Caller audio arrives in order from the jitter buffer; anything already written is skipped.
        let skip = self.written.saturating_sub(start).min(samples.len() as u64) as usize;
        let gap = start.saturating_sub(self.written);
        for _ in 0..gap {
            self.write_pair(0)?;
        }
        for &s in &samples[skip..] {
            self.write_pair(s)?;
        }
        Ok(())
    }

    /// Our audio that Twilio plays at `play_at_ms` of stream time.
    pub fn ours(&mut self, play_at_ms: u64, samples: &[i16]) -> io::Result<()> {
        let start = play_at_ms.saturating_mul(SAMPLES_PER_MS);
        for (i, &s) in samples.iter().enumerate() {
            let pos = start + i as u64;
            if pos < self.written {
                continue;
            }
            if pos - self.written >= MAX_AHEAD as u64 {
                // Write out what is held, caller silent, to stay bounded.
                let target = pos + 1 - MAX_AHEAD as u64;
                while self.written < target {
                    self.write_pair(0)?;
                }
            }
            let idx = (pos - self.written) as usize;
            if self.ours.len() <= idx {
                self.ours.resize(idx + 1, 0);
            }
            self.ours[idx] = s;
        }
        Ok(())
    }

    fn write_pair(&mut self, caller: i16) -> io::Result<()> {
        let ours = self.ours.pop_front().unwrap_or(0);
        self.wav.write_sample(caller).map_err(wav_error)?;
        self.wav.write_sample(ours).map_err(wav_error)?;
        self.written += 1;
        self.since_flush += 1;
        if self.since_flush >= FLUSH_EVERY {
            self.since_flush = 0;
            self.wav.flush().map_err(wav_error)?;
        }
        Ok(())
    }

    /// Writes what is left of our audio and completes the file.
    pub fn finish(mut self) -> io::Result<PathBuf> {
        while !self.ours.is_empty() {
            self.write_pair(0)?;
        }
        self.wav.finalize().map_err(wav_error)?;
        Ok(self.path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(path: &Path) -> (Vec<i16>, Vec<i16>) {
        let mut r = hound::WavReader::open(path).unwrap();
        assert_eq!(r.spec().channels, 2);
        assert_eq!(r.spec().sample_rate, 8000);
        let s: Vec<i16> = r.samples::<i16>().map(Result::unwrap).collect();
        (
            s.iter().step_by(2).copied().collect(),
            s.iter().skip(1).step_by(2).copied().collect(),
        )
    }

    #[test]
    fn channels_align_on_stream_time() {
        let dir = tempfile::tempdir().unwrap();
        let mut r = Recorder::create(dir.path(), "CA1", "MZ2").unwrap();
        r.ours(20, &[7; 160]).unwrap(); // ahead of the caller
        r.caller(0, &[1; 160]).unwrap();
        r.caller(20, &[2; 160]).unwrap();
        r.caller(60, &[3; 160]).unwrap(); // a gap of one frame
        r.ours(100, &[9; 160]).unwrap(); // after the caller hung up
        let path = r.finish().unwrap();
        assert!(path.ends_with("CA1_MZ2.wav"));
        let (caller, ours) = read(&path);
        assert_eq!(caller.len(), 6 * 160);
        assert_eq!(&caller[..160], &[1; 160]);
        assert_eq!(&caller[160..320], &[2; 160]);
        assert_eq!(&caller[320..480], &[0; 160]);
        assert_eq!(&caller[480..640], &[3; 160]);
        assert_eq!(&ours[..160], &[0; 160]);
        assert_eq!(&ours[160..320], &[7; 160]);
        assert_eq!(&ours[800..960], &[9; 160]);
    }

    #[test]
    fn hostile_timestamps_do_not_write_hours_of_silence() {
        let dir = tempfile::tempdir().unwrap();
        let mut r = Recorder::create(dir.path(), "CA1", "MZ4").unwrap();
        r.caller(u64::MAX / 16, &[1; 160]).unwrap();
        r.caller(u64::MAX / 16 + 20, &[2; 160]).unwrap();
        r.caller(u64::MAX / 16 + 10_000_000, &[3; 160]).unwrap();
        let (caller, _) = read(&r.finish().unwrap());
        assert_eq!(caller.len(), 3 * 160);
        assert_eq!(&caller[160..320], &[2; 160]);
        assert_eq!(&caller[320..], &[3; 160]);
    }

    #[test]
    fn hostile_names_stay_in_the_directory() {
        let dir = tempfile::tempdir().unwrap();
        let r = Recorder::create(dir.path(), "../../etc/x", "MZ/..").unwrap();
        assert_eq!(r.path().parent().unwrap(), dir.path());
        r.finish().unwrap();
    }

    #[test]
    fn far_future_audio_stays_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let mut r = Recorder::create(dir.path(), "CA1", "MZ3").unwrap();
        r.ours(2 * 60 * 1000, &[5; 160]).unwrap();
        assert!(r.ours.len() <= MAX_AHEAD);
        let (_, ours) = read(&r.finish().unwrap());
        assert_eq!(ours.iter().filter(|&&s| s == 5).count(), 160);
    }
}
