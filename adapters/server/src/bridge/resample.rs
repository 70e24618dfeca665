//! Sample-rate conversion for the bridge: a program's `play` audio (any rate)
//! down to the call's 8 kHz, and the caller's 8 kHz up to the program's rate.
//!
//! A windowed-sinc interpolator, written out rather than taken from a crate:
//! the bridge converts whole messages offline (no streaming state, no
//! real-time constraint beyond "much faster than real time"), between a
//! handful of rates, and ~40 lines are easier to audit than a dependency.
//! Plain linear interpolation would not do for the common case, espeak-ng's
//! 22050 Hz or a cloud voice's 24 kHz down to 8 kHz: everything between 4 and
//! 12 kHz would fold back into the telephone band as audible aliasing. The
//! kernel's cutoff follows the lower of the two rates, so downsampling is
//! low-passed and upsampling only interpolates.

/// Half-width of the kernel in zero crossings of the lower rate's sinc: 16
/// gives > 60 dB of stop-band rejection with the Blackman window, more than
/// μ-law's own noise floor.
const ZERO_CROSSINGS: f64 = 16.0;

/// Lowest and highest rates accepted (outside this a rate is a mistake, and
/// an absurd ratio would make the output absurdly long).
pub const MIN_RATE: u32 = 4000;
/// See [`MIN_RATE`].
pub const MAX_RATE: u32 = 192_000;

/// `input` at `from` Hz, converted to `to` Hz. The output has
/// `len × to / from` samples (rounded down), so consecutive messages
/// concatenate without a gap. Rates outside [`MIN_RATE`]..=[`MAX_RATE`] are
/// clamped (callers check them first and refuse them).
#[must_use]
pub fn resample(input: &[i16], from: u32, to: u32) -> Vec<i16> {
    let from = from.clamp(MIN_RATE, MAX_RATE);
    let to = to.clamp(MIN_RATE, MAX_RATE);
    if from == to || input.is_empty() {
        return input.to_vec();
    }
    let out_len = (input.len() as u64 * u64::from(to) / u64::from(from)) as usize;
    let step = f64::from(from) / f64::from(to); // input samples per output sample
    // The cutoff, as a fraction of the input's Nyquist rate.
    let cutoff = (f64::from(to) / f64::from(from)).min(1.0);
    let half = ZERO_CROSSINGS / cutoff; // kernel half-width in input samples
    let last = input.len() as i64 - 1;
    let table = TABLE.get_or_init(Table::new);
    let mut out = Vec::with_capacity(out_len);
    for i in 0..out_len {
        let t = i as f64 * step;
        let lo = ((t - half).ceil() as i64).max(0);
        let hi = ((t + half).floor() as i64).min(last);
        let mut acc = 0.0;
        let taps = input.get(lo as usize..=hi as usize).unwrap_or(&[]);
        for (k, &x) in (lo..).zip(taps) {
            acc += f64::from(x) * table.at((t - k as f64) * cutoff);
        }
        out.push((acc * cutoff).round().clamp(-32768.0, 32767.0) as i16);
    }
    out
}

/// Points of the tabulated kernel per zero crossing: with linear
/// interpolation between them the table's error is far below 16-bit
/// resolution, and a lookup costs much less than a sine and two cosines.
const STEPS: f64 = 512.0;

static TABLE: std::sync::OnceLock<Table> = std::sync::OnceLock::new();

/// sinc(u) × Blackman(u / ZERO_CROSSINGS) for u in 0..=ZERO_CROSSINGS.
struct Table(Vec<f64>);

impl Table {
    fn new() -> Table {
        let n = (ZERO_CROSSINGS * STEPS) as usize + 2;
        Table(
            (0..n)
                .map(|i| {
                    let u = i as f64 / STEPS;
                    kernel(u) * window(u / ZERO_CROSSINGS)
                })
                .collect(),
        )
    }

    fn at(&self, u: f64) -> f64 {
        let p = u.abs() * STEPS;
        let i = p as usize;
        match (self.0.get(i), self.0.get(i + 1)) {
            (Some(a), Some(b)) => a + (b - a) * (p - i as f64),
            _ => 0.0,
        }
    }
}

fn kernel(x: f64) -> f64 {
    if x.abs() < 1e-9 {
        1.0
    } else {
        let px = std::f64::consts::PI * x;
        px.sin() / px
    }
}

/// Blackman window over -1..=1.
fn window(x: f64) -> f64 {
    if x.abs() >= 1.0 {
        return 0.0;
    }
    let a = std::f64::consts::PI * (x + 1.0);
    0.42 - 0.5 * a.cos() + 0.08 * (2.0 * a).cos()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(freq: f64, rate: u32, n: usize, amp: f64) -> Vec<i16> {
        (0..n)
            .map(|i| {
                (amp * (2.0 * std::f64::consts::PI * freq * i as f64 / f64::from(rate)).sin())
                    as i16
            })
            .collect()
    }

    fn rms(x: &[i16]) -> f64 {
        (x.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>() / x.len().max(1) as f64).sqrt()
    }

    #[test]
    fn lengths_follow_the_ratio() {
        assert_eq!(resample(&[0; 22050], 22050, 8000).len(), 8000);
        assert_eq!(resample(&[0; 8000], 8000, 16000).len(), 16000);
        assert_eq!(resample(&[0; 160], 8000, 24000).len(), 480);
        assert_eq!(resample(&[1, 2, 3], 8000, 8000), vec![1, 2, 3]);
        assert!(resample(&[], 8000, 16000).is_empty());
    }

    #[test]
    fn a_tone_in_the_band_keeps_its_level() {
        let x = tone(1000.0, 22050, 22050, 10000.0);
        let y = resample(&x, 22050, 8000);
        // Skip the edges, where the kernel runs off the input.
        let mid = &y[400..7600];
        let level = rms(mid) / (10000.0 / 2f64.sqrt());
        assert!((0.97..1.03).contains(&level), "level {level}");
    }

    #[test]
    fn a_tone_above_the_new_nyquist_is_removed_not_folded() {
        // 6 kHz at 24 kHz would alias to 2 kHz at 8 kHz: it must vanish.
        let x = tone(6000.0, 24000, 24000, 10000.0);
        let y = resample(&x, 24000, 8000);
        let mid = &y[400..7600];
        assert!(rms(mid) < 10000.0 * 0.01, "residue {}", rms(mid));
    }

    #[test]
    fn upsampling_then_down_is_close_to_the_original() {
        let x = tone(440.0, 8000, 8000, 8000.0);
        let y = resample(&resample(&x, 8000, 16000), 16000, 8000);
        let err: Vec<i16> = x
            .iter()
            .zip(&y)
            .skip(200)
            .take(7600)
            .map(|(a, b)| a - b)
            .collect();
        assert!(rms(&err) < 80.0, "error {}", rms(&err));
    }

    #[test]
    fn full_scale_input_does_not_overflow() {
        let x: Vec<i16> = (0..4000)
            .map(|i| if i % 2 == 0 { 32767 } else { -32768 })
            .collect();
        let y = resample(&x, 16000, 8000);
        assert_eq!(y.len(), 2000);
        let z = resample(&[32767; 1000], 8000, 24000);
        assert!(
            z[100..2900].iter().all(|&s| s > 32000),
            "a constant stays constant away from the edges"
        );
    }
}
