//! Sample-rate conversion by windowed sinc: each output sample is the input
//! band-limited to below the lower of the two Nyquist frequencies (so that
//! 44.1 kHz music does not fold into the 4 kHz of a phone line) and read at
//! its exact position. Positions come from integer arithmetic, so a long
//! file does not drift.

use std::f64::consts::PI;

/// Zero crossings of the sinc on each side: the filter's length. 16 gives a
/// stop band well below μ-law's own noise.
const ZERO_CROSSINGS: f64 = 16.0;

/// The cut-off as a fraction of the lower Nyquist frequency: just below it,
/// so the transition band ends before aliasing begins.
const CUTOFF: f64 = 0.94;

/// `input` at `from` Hz, converted to `to` Hz. A rate of 0 gives nothing.
#[must_use]
pub fn resample(input: &[f32], from: u32, to: u32) -> Vec<f32> {
    if from == 0 || to == 0 {
        return Vec::new();
    }
    if from == to {
        return input.to_vec();
    }
    let (from64, to64) = (u64::from(from), u64::from(to));
    let out_len = (input.len() as u64 * to64).div_ceil(from64);
    // The filter's cut-off in cycles per input sample, and its half width
    // in input samples.
    let fc = CUTOFF * 0.5 * f64::min(1.0, f64::from(to) / f64::from(from));
    let half = ZERO_CROSSINGS / (2.0 * fc);
    let mut out = Vec::with_capacity(usize::try_from(out_len).unwrap_or(0));
    for n in 0..out_len {
        // The output sample's position in input samples: whole and fraction.
        let whole = n * from64 / to64;
        let frac = (n * from64 % to64) as f64 / to as f64;
        let t = whole as f64 + frac;
        let first = (t - half).ceil().max(0.0) as usize;
        let last = ((t + half).floor() as usize).min(input.len().saturating_sub(1));
        let mut acc = 0.0f64;
        for (k, &x) in input.iter().enumerate().take(last + 1).skip(first) {
            let d = t - k as f64;
            acc += f64::from(x) * kernel(d, fc, half);
        }
        out.push(acc as f32);
    }
    out
}

/// The windowed sinc at distance `d` input samples: `2 fc sinc(2 fc d)`
/// under a Blackman window of half width `half`.
fn kernel(d: f64, fc: f64, half: f64) -> f64 {
    if d.abs() >= half {
        return 0.0;
    }
    let x = 2.0 * fc * d;
    let sinc = if x.abs() < 1e-12 {
        1.0
    } else {
        (PI * x).sin() / (PI * x)
    };
    let w = 0.5 + 0.5 * d / half; // position in the window, 0..1, centre 0.5
    let blackman = 0.42 - 0.5 * (2.0 * PI * w).cos() + 0.08 * (4.0 * PI * w).cos();
    2.0 * fc * sinc * blackman
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sine(freq: f64, rate: u32, secs: f64) -> Vec<f32> {
        let n = (f64::from(rate) * secs) as usize;
        (0..n)
            .map(|i| (0.5 * (2.0 * PI * freq * i as f64 / f64::from(rate)).sin()) as f32)
            .collect()
    }

    /// Amplitude of `freq` in `x` (at `rate`), away from the edges.
    fn amplitude(x: &[f32], freq: f64, rate: u32) -> f64 {
        let body = &x[x.len() / 4..x.len() * 3 / 4];
        let (mut re, mut im) = (0.0, 0.0);
        for (i, &v) in body.iter().enumerate() {
            let ph = 2.0 * PI * freq * i as f64 / f64::from(rate);
            re += f64::from(v) * ph.cos();
            im += f64::from(v) * ph.sin();
        }
        2.0 * (re * re + im * im).sqrt() / body.len() as f64
    }

    #[test]
    fn a_tone_in_the_pass_band_keeps_its_frequency_and_level() {
        for from in [44_100, 48_000, 16_000, 11_025, 22_050] {
            let out = resample(&sine(440.0, from, 1.0), from, 8000);
            assert_eq!(out.len(), 8000, "{from}");
            let a = amplitude(&out, 440.0, 8000);
            assert!((a - 0.5).abs() < 0.01, "{from}: {a}");
            // Nothing at a neighbouring frequency: the tone did not move.
            assert!(amplitude(&out, 460.0, 8000) < 0.02, "{from}");
        }
    }

    #[test]
    fn content_above_the_phone_band_is_removed_not_folded() {
        // 6 kHz at 48 kHz would fold to 2 kHz at 8 kHz without the filter.
        let out = resample(&sine(6000.0, 48_000, 1.0), 48_000, 8000);
        assert!(amplitude(&out, 2000.0, 8000) < 0.005);
        let rms =
            (out.iter().map(|v| f64::from(*v).powi(2)).sum::<f64>() / out.len() as f64).sqrt();
        assert!(rms < 0.01, "{rms}");
    }

    #[test]
    fn upsampling_and_edges() {
        let out = resample(&sine(440.0, 4000, 1.0), 4000, 8000);
        assert_eq!(out.len(), 8000);
        assert!((amplitude(&out, 440.0, 8000) - 0.5).abs() < 0.01);
        assert_eq!(resample(&[0.25; 10], 8000, 8000), vec![0.25; 10]);
        assert!(resample(&[1.0; 10], 0, 8000).is_empty());
        assert!(resample(&[], 44_100, 8000).is_empty());
        // A lone sample becomes a finite pulse, never a NaN or a panic.
        let one = resample(&[1.0], 44_100, 8000);
        assert_eq!(one.len(), 1);
        assert!(one[0].is_finite());
        // Lengths round up: 3 samples at 44.1 kHz are one at 8 kHz.
        assert_eq!(resample(&[0.0; 3], 44_100, 8000).len(), 1);
    }
}
