//! DTMF tones: keys as the audio a telephone sends for them (ITU-T Q.23),
//! to navigate an IVR from a call's own audio.
//!
//! Each key is the sum of a low-group and a high-group sine for
//! [`TONE_MS`], then [`GAP_MS`] of silence (Q.24 asks at least 40 ms of
//! each). `w` (or `W`) is [`WAIT_MS`] of silence, as in Twilio's
//! `sendDigits`. The samples are 16-bit PCM at 8 kHz, ready for
//! [`Call::play_pcm`](crate::call::Call::play_pcm); each tone starts and
//! ends at a zero crossing of its envelope (a 2 ms ramp), so no click
//! spreads energy across the band.
//!
//! ```
//! let audio = callstream_core::dtmf::tones("1w#").unwrap();
//! assert_eq!(audio.len(), (100 + 100 + 500 + 100 + 100) * 8);
//! ```

use std::f64::consts::TAU;

/// How long each key sounds.
pub const TONE_MS: usize = 100;
/// The silence after each key.
pub const GAP_MS: usize = 100;
/// The silence of `w`.
pub const WAIT_MS: usize = 500;
/// The peak of each of a key's two sines: together about −6 dBFS, well
/// inside μ-law's range and above any detector's threshold.
const AMPLITUDE: f64 = 8000.0;
/// Samples of the fade in and out.
const RAMP: usize = 16;
const RATE: f64 = 8000.0;

/// The (low, high) frequencies of a key, in Hz.
#[must_use]
pub fn frequencies(key: char) -> Option<(f64, f64)> {
    const LOW: [f64; 4] = [697.0, 770.0, 852.0, 941.0];
    const HIGH: [f64; 4] = [1209.0, 1336.0, 1477.0, 1633.0];
    let (row, col) = match key.to_ascii_uppercase() {
        '1' => (0, 0),
        '2' => (0, 1),
        '3' => (0, 2),
        'A' => (0, 3),
        '4' => (1, 0),
        '5' => (1, 1),
        '6' => (1, 2),
        'B' => (1, 3),
        '7' => (2, 0),
        '8' => (2, 1),
        '9' => (2, 2),
        'C' => (2, 3),
        '*' => (3, 0),
        '0' => (3, 1),
        '#' => (3, 2),
        'D' => (3, 3),
        _ => return None,
    };
    Some((LOW[row], HIGH[col]))
}

/// A character [`tones`] cannot play.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotAKey(pub char);

impl std::fmt::Display for NotAKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?} is not a DTMF key (0-9, *, #, A-D) or w", self.0)
    }
}

impl std::error::Error for NotAKey {}

/// The audio of `keys`, 8 kHz.
///
/// # Errors
/// The first character that is neither a key nor `w`.
pub fn tones(keys: &str) -> Result<Vec<i16>, NotAKey> {
    let per_ms = RATE as usize / 1000;
    let mut out = Vec::new();
    for key in keys.chars() {
        if key.eq_ignore_ascii_case(&'w') {
            out.resize(out.len() + WAIT_MS * per_ms, 0);
            continue;
        }
        let (low, high) = frequencies(key).ok_or(NotAKey(key))?;
        let n = TONE_MS * per_ms;
        out.extend((0..n).map(|i| {
            let t = i as f64 / RATE;
            let edge = i.min(n - 1 - i);
            let gain = if edge < RAMP {
                (edge as f64 / RAMP as f64).powi(2)
            } else {
                1.0
            };
            let v = AMPLITUDE * gain * ((TAU * low * t).sin() + (TAU * high * t).sin());
            v.round() as i16
        }));
        out.resize(out.len() + GAP_MS * per_ms, 0);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Power at `freq` in `x` (Goertzel).
    fn power(x: &[i16], freq: f64) -> f64 {
        let k = 2.0 * (TAU * freq / RATE).cos();
        let (mut s1, mut s2) = (0.0, 0.0);
        for &v in x {
            let s = f64::from(v) + k * s1 - s2;
            s2 = s1;
            s1 = s;
        }
        s1 * s1 + s2 * s2 - k * s1 * s2
    }

    #[test]
    fn each_key_sounds_its_two_frequencies_and_no_other() {
        let all = [697.0, 770.0, 852.0, 941.0, 1209.0, 1336.0, 1477.0, 1633.0];
        for key in "0123456789*#ABCD".chars() {
            let audio = tones(&key.to_string()).unwrap();
            let tone = &audio[..TONE_MS * 8];
            assert!(audio[TONE_MS * 8..].iter().all(|&v| v == 0), "{key}: gap");
            let (low, high) = frequencies(key).unwrap();
            let strongest: f64 = power(tone, low).min(power(tone, high));
            for f in all.iter().filter(|&&f| f != low && f != high) {
                assert!(power(tone, *f) * 100.0 < strongest, "{key}: {f} Hz");
            }
        }
        assert_eq!(tones("a"), tones("A"));
        assert_eq!(tones("1x"), Err(NotAKey('x')));
        assert_eq!(tones("W").unwrap(), vec![0; WAIT_MS * 8]);
    }
}
