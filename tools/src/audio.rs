//! The caller's audio: a WAV file of any rate and format hound reads (mixed
//! to mono, resampled to 8 kHz), raw μ-law (`.ulaw`, as Twilio carries it),
//! or a tone; always 8 kHz μ-law out. Also where the caller's speech ends,
//! by the core's voice activity detector, and the WAV of what was heard.

use std::io;
use std::path::Path;
use std::time::Duration;

use callstream_core::codec::{self, FRAME_SAMPLES, SAMPLE_RATE};
use callstream_core::vad::{Vad, VadConfig, VadEvent};

/// The longest caller audio accepted: an hour of 8 kHz μ-law.
pub const MAX_AUDIO: Duration = Duration::from_secs(3600);
/// The largest WAV file read: an hour of 44.1 kHz 16-bit stereo fits.
const MAX_WAV_BYTES: u64 = 1 << 30;

/// Reads `path`: raw 8 kHz μ-law when it ends in `.ulaw` or `.mulaw`, else
/// a WAV file.
///
/// # Errors
/// The file cannot be read, is not a WAV hound reads, or is over an hour.
pub fn load(path: &Path) -> io::Result<Vec<u8>> {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or_default()
        .to_ascii_lowercase();
    let ulaw = if ext == "ulaw" || ext == "mulaw" {
        std::fs::read(path)?
    } else {
        // Read whole (the header may need mending), but bounded: a pipe
        // that never ends, or a file far past an hour of audio, is refused.
        let mut wav = Vec::new();
        io::Read::read_to_end(
            &mut io::Read::take(std::fs::File::open(path)?, MAX_WAV_BYTES + 1),
            &mut wav,
        )?;
        if wav.len() as u64 > MAX_WAV_BYTES {
            return Err(io::Error::other(format!(
                "{}: a WAV file over 1 GiB",
                path.display()
            )));
        }
        trust_the_data_not_the_header(&mut wav);
        let reader = hound::WavReader::new(io::Cursor::new(wav))
            .map_err(|e| io::Error::other(format!("{}: {e}", path.display())))?;
        wav_to_ulaw(reader).map_err(|e| io::Error::other(format!("{}: {e}", path.display())))?
    };
    if ulaw.len() as u64 > MAX_AUDIO.as_secs() * u64::from(SAMPLE_RATE) {
        return Err(io::Error::other(format!(
            "{}: longer than an hour",
            path.display()
        )));
    }
    Ok(ulaw)
}

/// A WAV stream as 8 kHz μ-law: channels averaged, resampled, encoded.
///
/// # Errors
/// hound's error for a bad file, or for a sample rate outside
/// [`callstream_core::resample::MIN_RATE`]..=[`MAX_RATE`](callstream_core::resample::MAX_RATE).
pub fn wav_to_ulaw<R: io::Read>(reader: hound::WavReader<R>) -> hound::Result<Vec<u8>> {
    let spec = reader.spec();
    let channels = usize::from(spec.channels.max(1));
    let max_samples = MAX_AUDIO.as_secs() as usize * spec.sample_rate as usize * channels;
    let samples: Vec<f32> = match spec.sample_format {
        hound::SampleFormat::Float => reader
            .into_samples::<f32>()
            .take(max_samples.saturating_add(1))
            .collect::<Result<_, _>>()?,
        hound::SampleFormat::Int => {
            let scale =
                1.0 / f64::from(1u32 << spec.bits_per_sample.clamp(1, 32).saturating_sub(1));
            reader
                .into_samples::<i32>()
                .take(max_samples.saturating_add(1))
                .map(|s| s.map(|v| (f64::from(v) * scale) as f32))
                .collect::<Result<_, _>>()?
        }
    };
    let mono: Vec<f32> = samples
        .chunks(channels)
        .map(|c| c.iter().sum::<f32>() / c.len() as f32)
        .collect();
    let pcm = callstream_core::resample::resample(&mono, spec.sample_rate, SAMPLE_RATE)
        .map_err(|e| hound::Error::IoError(io::Error::new(io::ErrorKind::InvalidData, e)))?;
    Ok(encode(&pcm))
}

/// A WAV written to a pipe (`espeak-ng --stdout`, `sox … -t wav -`)
/// cannot know its length, so its header claims the largest size it can
/// and the data ends early. Where the `data` chunk claims more bytes than
/// follow, this sets its size (and the RIFF size) to what is there, whole
/// sample frames only, so that the file reads as what it holds.
fn trust_the_data_not_the_header(wav: &mut [u8]) {
    let u32_at = |b: &[u8], at: usize| {
        b.get(at..at + 4)
            .map(|x| u32::from_le_bytes([x[0], x[1], x[2], x[3]]) as usize)
    };
    if wav.len() < 12 || &wav[..4] != b"RIFF" || &wav[8..12] != b"WAVE" {
        return;
    }
    let mut block_align = 1;
    let mut at = 12;
    while let (Some(id), Some(size)) = (wav.get(at..at + 4), u32_at(wav, at + 4)) {
        let body = at + 8;
        if id == b"fmt " {
            block_align = wav
                .get(body + 12..body + 14)
                .map_or(1, |b| usize::from(u16::from_le_bytes([b[0], b[1]])).max(1));
        } else if id == b"data" {
            let there = wav.len() - body;
            if size > there {
                let size = there - there % block_align;
                let riff = u32::try_from(body + size - 8).unwrap_or(u32::MAX);
                wav[at + 4..at + 8]
                    .copy_from_slice(&u32::try_from(size).unwrap_or(u32::MAX).to_le_bytes());
                wav[4..8].copy_from_slice(&riff.to_le_bytes());
            }
            return;
        }
        at = body.saturating_add(size).saturating_add(size & 1);
    }
}

/// Floating-point samples in -1..1 as μ-law (clipped at full scale).
#[must_use]
pub fn encode(pcm: &[f32]) -> Vec<u8> {
    pcm.iter()
        .map(|&v| codec::encode((v.clamp(-1.0, 1.0) * 32767.0) as i16))
        .collect()
}

/// A sine tone of `freq` Hz at -10 dBFS for `length`, as μ-law.
#[must_use]
pub fn tone(freq: f64, length: Duration) -> Vec<u8> {
    let n = (length.as_secs_f64() * f64::from(SAMPLE_RATE)) as usize;
    let amplitude = 0.316; // -10 dBFS
    let pcm: Vec<f32> = (0..n)
        .map(|i| {
            let phase = 2.0 * std::f64::consts::PI * freq * i as f64 / f64::from(SAMPLE_RATE);
            (amplitude * phase.sin()) as f32
        })
        .collect();
    encode(&pcm)
}

/// Where the caller's speech in `ulaw` ends, by the core's detector: the end
/// of the last utterance it finds, or the end of the audio when speech runs
/// to it or none is found.
#[must_use]
pub fn speech_end(ulaw: &[u8]) -> Duration {
    let mut vad = Vad::new(VadConfig::default());
    let mut end = None;
    let mut pcm = [0i16; FRAME_SAMPLES];
    for frame in ulaw.chunks(FRAME_SAMPLES) {
        let n = codec::decode_into(frame, &mut pcm);
        match vad.handle_frame(pcm.get(..n).unwrap_or_default()) {
            Some(VadEvent::SpeechEnded { at_frame, .. }) => end = Some(at_frame),
            Some(VadEvent::SpeechStarted { .. }) => end = None,
            _ => {}
        }
    }
    let audio_end = ulaw.len() as u64 * 1000 / u64::from(SAMPLE_RATE);
    let ms = end.map_or(audio_end, |f| (f * codec::FRAME_MS).min(audio_end));
    Duration::from_millis(ms)
}

/// Writes μ-law `segments` (each at its offset from the start) as a 16-bit
/// 8 kHz mono WAV, silence in the gaps, a later segment over an earlier one.
///
/// # Errors
/// The file cannot be written.
pub fn write_wav(path: &Path, segments: &[(Duration, Vec<u8>)]) -> io::Result<()> {
    let rate = u64::from(SAMPLE_RATE);
    let offset = |d: &Duration| (d.as_micros() as u64 * rate / 1_000_000) as usize;
    let len = segments
        .iter()
        .map(|(at, b)| offset(at) + b.len())
        .max()
        .unwrap_or(0);
    let mut pcm = vec![0i16; len];
    for (at, bytes) in segments {
        let start = offset(at);
        if let Some(dst) = pcm.get_mut(start..start + bytes.len()) {
            codec::decode_into(bytes, dst);
        }
    }
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: SAMPLE_RATE,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, spec).map_err(io::Error::other)?;
    for s in pcm {
        w.write_sample(s).map_err(io::Error::other)?;
    }
    w.finalize().map_err(io::Error::other)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wav_bytes(
        spec: hound::WavSpec,
        write: impl FnOnce(&mut hound::WavWriter<&mut io::Cursor<Vec<u8>>>),
    ) -> Vec<u8> {
        let mut cur = io::Cursor::new(Vec::new());
        {
            let mut w = hound::WavWriter::new(&mut cur, spec).unwrap();
            write(&mut w);
            w.finalize().unwrap();
        }
        cur.into_inner()
    }

    #[test]
    fn stereo_44k_float_and_16k_int_become_8k_ulaw() {
        let spec = hound::WavSpec {
            channels: 2,
            sample_rate: 44_100,
            bits_per_sample: 32,
            sample_format: hound::SampleFormat::Float,
        };
        let bytes = wav_bytes(spec, |w| {
            for i in 0..44_100 {
                let v = (0.5 * (2.0 * std::f64::consts::PI * 440.0 * f64::from(i) / 44_100.0).sin())
                    as f32;
                w.write_sample(v).unwrap();
                w.write_sample(v).unwrap();
            }
        });
        let ulaw = wav_to_ulaw(hound::WavReader::new(io::Cursor::new(bytes)).unwrap()).unwrap();
        assert_eq!(ulaw.len(), 8000);
        let peak = ulaw
            .iter()
            .map(|&b| codec::decode(b).unsigned_abs())
            .max()
            .unwrap();
        // 0.5 of full scale, within μ-law's step there.
        assert!((15_500..17_500).contains(&peak), "{peak}");

        let spec = hound::WavSpec {
            channels: 1,
            sample_rate: 16_000,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let bytes = wav_bytes(spec, |w| {
            for _ in 0..1600 {
                w.write_sample(0i16).unwrap();
            }
        });
        let ulaw = wav_to_ulaw(hound::WavReader::new(io::Cursor::new(bytes)).unwrap()).unwrap();
        assert_eq!(ulaw, vec![0xFF; 800]);
    }

    #[test]
    fn a_wav_written_to_a_pipe_ends_where_its_data_ends() {
        // As espeak-ng --stdout writes it: the header claims 0x7ffff000
        // bytes of data, then 1000 samples of 8 kHz 16-bit PCM follow.
        let mut bytes = b"RIFF\x24\xf0\xff\x7fWAVEfmt ".to_vec();
        bytes.extend_from_slice(&16u32.to_le_bytes());
        bytes.extend_from_slice(&1u16.to_le_bytes()); // PCM
        bytes.extend_from_slice(&1u16.to_le_bytes()); // mono
        bytes.extend_from_slice(&8000u32.to_le_bytes());
        bytes.extend_from_slice(&16000u32.to_le_bytes());
        bytes.extend_from_slice(&2u16.to_le_bytes());
        bytes.extend_from_slice(&16u16.to_le_bytes());
        bytes.extend_from_slice(b"data\x00\xf0\xff\x7f");
        for i in 0..1000i16 {
            bytes.extend_from_slice(&(i * 8).to_le_bytes());
        }
        assert!(
            wav_to_ulaw(hound::WavReader::new(io::Cursor::new(bytes.clone())).unwrap()).is_err()
        );
        trust_the_data_not_the_header(&mut bytes);
        let ulaw = wav_to_ulaw(hound::WavReader::new(io::Cursor::new(bytes)).unwrap()).unwrap();
        assert_eq!(ulaw.len(), 1000);
        // The last sample, 7992, through μ-law (steps of 256 up there).
        assert!((i32::from(codec::decode(ulaw[999])) - 7992).abs() <= 256);
    }

    #[test]
    fn a_broken_wav_is_an_error() {
        assert!(hound::WavReader::new(io::Cursor::new(b"RIFF\0\0\0\0WAVE".to_vec())).is_err());
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.wav");
        std::fs::write(&p, b"not a wav").unwrap();
        assert!(load(&p).is_err());
    }

    #[test]
    fn tone_length_and_speech_end() {
        let t = tone(440.0, Duration::from_millis(500));
        assert_eq!(t.len(), 4000);
        let peak = t
            .iter()
            .map(|&b| codec::decode(b).unsigned_abs())
            .max()
            .unwrap();
        assert!((10_000..10_700).contains(&peak), "{peak}");
        // Recorded speech (espeak-ng, see core/tests/fixtures): its last
        // utterance ends before the file's trailing silence.
        let speech = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../core/tests/fixtures/vad/clean.ulaw"
        ))
        .unwrap();
        let file_end = Duration::from_millis(speech.len() as u64 / 8);
        let end = speech_end(&speech);
        assert!(
            end > Duration::from_secs(1) && end < file_end,
            "{end:?} of {file_end:?}"
        );
        // The same speech cut mid-word ends at the cut.
        let cut = &speech[..(end.as_millis() as usize * 8 - 2400)];
        assert!(speech_end(cut) <= Duration::from_millis(cut.len() as u64 / 8));
        assert_eq!(speech_end(&[0xFF; 800]), Duration::from_millis(100));
    }

    #[test]
    fn heard_audio_is_laid_out_on_its_timeline() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("heard.wav");
        let segs = vec![
            (Duration::ZERO, vec![0x80; 80]),
            (Duration::from_millis(20), vec![0x00; 80]),
        ];
        write_wav(&p, &segs).unwrap();
        let r = hound::WavReader::open(&p).unwrap();
        let s: Vec<i16> = r.into_samples().map(Result::unwrap).collect();
        assert_eq!(s.len(), 240);
        assert_eq!(
            (s[0], s[79], s[80], s[159], s[160]),
            (32124, 32124, 0, 0, -32124)
        );
    }
}
