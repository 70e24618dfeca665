//! Sample-rate conversion: one windowed-sinc resampler for every rate change
//! callstream makes (a program's 16 or 24 kHz to the call's 8 kHz and back,
//! a WAV file of any rate into a simulated call).
//!
//! Each output sample is the input band-limited below the lower of the two
//! Nyquist frequencies (so that 22.05 kHz speech or 44.1 kHz music does not
//! fold into the 4 kHz of a phone line) and read at its exact position.
//! Positions are integer arithmetic on the reduced ratio `L/M`, so a long
//! stream does not drift; for every ratio in use the kernel is tabulated per
//! phase ([`Resampler`] holds `L` rows of weights), and an odd ratio whose
//! table would be too large computes its weights per sample instead.
//!
//! [`Resampler`] is a stream: feed it chunks of any size and it gives each
//! output sample once its kernel's input has arrived, keeping what the next
//! chunk needs. Chunks join without a seam, and no sample is lost:
//! the chunked output equals the whole stream's, sample for sample, and
//! [`Resampler::flush`] gives the tail at the end. [`resample`] converts a
//! whole buffer at once. No I/O, no clock: a state machine like the rest of
//! the core.
//!
//! ```
//! use callstream_core::resample::{Resampler, resample};
//!
//! let tone: Vec<f32> = (0..2400).map(|i| (i as f32 * 0.05).sin()).collect();
//! let whole = resample(&tone, 24_000, 8_000).unwrap();
//! assert_eq!(whole.len(), 800);
//!
//! // The same audio as 7 chunks of unequal size: the same samples.
//! let mut r = Resampler::new(24_000, 8_000).unwrap();
//! let mut chunked = Vec::new();
//! for chunk in tone.chunks(347) {
//!     r.process(chunk, &mut chunked);
//! }
//! r.flush(&mut chunked);
//! assert_eq!(chunked, whole);
//! ```

use std::f64::consts::PI;
use std::fmt;
use std::sync::Arc;

/// Zero crossings of the sinc on each side of the kernel: its length. 16,
/// with the Blackman window, puts the stop band below μ-law's own noise.
const ZERO_CROSSINGS: f64 = 16.0;

/// The cut-off as a fraction of the lower Nyquist frequency: just below it,
/// so that the transition band ends before aliasing begins.
const CUTOFF: f64 = 0.94;

/// Lowest rate accepted (below it a rate is a mistake).
pub const MIN_RATE: u32 = 4000;
/// Highest rate accepted (above it a rate is a mistake, and an absurd ratio
/// would make the output absurdly long).
pub const MAX_RATE: u32 = 192_000;

/// Largest table of weights kept (1 MiB of f32). Every common pair is far
/// below it (22050 → 8000: 160 rows of 90 taps); a pair of odd, coprime
/// rates computes its weights per sample instead.
const MAX_WEIGHTS: usize = 1 << 18;

/// A rate outside [`MIN_RATE`]..=[`MAX_RATE`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateError {
    /// The rate refused, in Hz.
    pub rate: u32,
}

impl fmt::Display for RateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "sample rate {} Hz is outside {MIN_RATE}..={MAX_RATE}",
            self.rate
        )
    }
}

impl std::error::Error for RateError {}

/// The kernel's weights: one row per phase, or computed per sample.
#[derive(Clone)]
enum Weights {
    /// `L` rows of `taps` weights, row `p` for outputs at phase `p / L`.
    Table(Arc<[f32]>),
    /// Too many phases to tabulate.
    PerSample,
}

/// A streaming sample-rate converter from one rate to another (see the
/// module docs).
#[derive(Clone)]
pub struct Resampler {
    from: u32,
    to: u32,
    /// Output samples per step (`L`) and input samples per step (`M`):
    /// `to / from` reduced.
    up: u64,
    down: u64,
    /// The kernel's reach on each side, in whole input samples.
    reach: usize,
    /// Taps per output sample (`2 × reach`).
    taps: usize,
    /// Cut-off in cycles per input sample, and the kernel's half width in
    /// input samples.
    fc: f64,
    half: f64,
    weights: Weights,
    /// Input kept for outputs still to come; `held[0]` is input sample
    /// `base` (negative: the zeros before the stream).
    held: Vec<f32>,
    base: i64,
    /// Input samples taken so far.
    taken: u64,
    /// Output samples given so far.
    given: u64,
}

impl fmt::Debug for Resampler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Resampler")
            .field("from", &self.from)
            .field("to", &self.to)
            .field("taps", &self.taps)
            .field("held", &self.held.len())
            .finish_non_exhaustive()
    }
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 { a } else { gcd(b, a % b) }
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
    let w = 0.5 + 0.5 * d / half;
    let blackman = 0.42 - 0.5 * (2.0 * PI * w).cos() + 0.08 * (4.0 * PI * w).cos();
    2.0 * fc * sinc * blackman
}

impl Resampler {
    /// A converter from `from` Hz to `to` Hz.
    ///
    /// # Errors
    ///
    /// A rate outside [`MIN_RATE`]..=[`MAX_RATE`].
    pub fn new(from: u32, to: u32) -> Result<Resampler, RateError> {
        for rate in [from, to] {
            if !(MIN_RATE..=MAX_RATE).contains(&rate) {
                return Err(RateError { rate });
            }
        }
        let g = gcd(u64::from(from), u64::from(to));
        let (up, down) = (u64::from(to) / g, u64::from(from) / g);
        let fc = CUTOFF * 0.5 * (f64::from(to) / f64::from(from)).min(1.0);
        let half = ZERO_CROSSINGS / (2.0 * fc);
        let reach = half.ceil() as usize;
        let taps = 2 * reach;
        let rows = usize::try_from(up).unwrap_or(usize::MAX);
        let weights = if from == to {
            Weights::PerSample
        } else if rows.saturating_mul(taps) <= MAX_WEIGHTS {
            Weights::Table(Self::table(rows, taps, reach, fc, half).into())
        } else {
            Weights::PerSample
        };
        Ok(Resampler {
            from,
            to,
            up,
            down,
            reach,
            taps,
            fc,
            half,
            weights,
            // The zeros before the stream that the first outputs reach.
            held: vec![0.0; reach],
            base: -(reach as i64),
            taken: 0,
            given: 0,
        })
    }

    /// Row `p`: the weights of taps `n - reach + 1 ..= n + reach` for an
    /// output at `n + p / rows`; each row sums to one (unit gain at DC).
    fn table(rows: usize, taps: usize, reach: usize, fc: f64, half: f64) -> Vec<f32> {
        let mut w = Vec::with_capacity(rows * taps);
        for p in 0..rows {
            let frac = p as f64 / rows as f64;
            let row: Vec<f64> = (0..taps)
                .map(|k| kernel(frac - (k as f64 - reach as f64 + 1.0), fc, half))
                .collect();
            let sum: f64 = row.iter().sum();
            let norm = if sum.abs() > 1e-9 { sum } else { 1.0 };
            w.extend(row.iter().map(|x| (x / norm) as f32));
        }
        w
    }

    /// The rate converted from, in Hz.
    #[must_use]
    pub fn from_rate(&self) -> u32 {
        self.from
    }

    /// The rate converted to, in Hz.
    #[must_use]
    pub fn to_rate(&self) -> u32 {
        self.to
    }

    /// Output samples the whole stream so far makes once flushed:
    /// `⌈taken × to / from⌉`, every output position inside the input.
    fn due(&self) -> u64 {
        (self.taken * self.up).div_ceil(self.down)
    }

    /// Takes `input` and appends to `out` every output sample whose kernel
    /// input has arrived.
    pub fn process(&mut self, input: &[f32], out: &mut Vec<f32>) {
        if self.from == self.to {
            out.extend_from_slice(input);
            self.taken += input.len() as u64;
            self.given = self.taken;
            return;
        }
        self.held.extend_from_slice(input);
        self.taken += input.len() as u64;
        self.emit(false, out);
    }

    /// The end of the stream: appends the outputs still held (the input
    /// after the stream's end taken as silence), then starts over as a new
    /// stream.
    pub fn flush(&mut self, out: &mut Vec<f32>) {
        if self.from != self.to {
            self.emit(true, out);
        }
        self.reset();
    }

    /// Forgets the stream (after a `clear`, say): the next input starts a
    /// new one.
    pub fn reset(&mut self) {
        self.held.clear();
        self.held.resize(self.reach, 0.0);
        self.base = -(self.reach as i64);
        self.taken = 0;
        self.given = 0;
    }

    /// [`Resampler::process`] for 16-bit samples (rounded and clamped).
    pub fn process_i16(&mut self, input: &[i16], out: &mut Vec<i16>) {
        let input: Vec<f32> = input.iter().map(|&x| f32::from(x)).collect();
        let mut got = Vec::new();
        self.process(&input, &mut got);
        out.extend(got.into_iter().map(to_i16));
    }

    /// [`Resampler::flush`] for 16-bit samples.
    pub fn flush_i16(&mut self, out: &mut Vec<i16>) {
        let mut got = Vec::new();
        self.flush(&mut got);
        out.extend(got.into_iter().map(to_i16));
    }

    fn emit(&mut self, end: bool, out: &mut Vec<f32>) {
        let due = self.due();
        let end_of_input = self.base + self.held.len() as i64;
        loop {
            if end && self.given >= due {
                break;
            }
            let pos = self.given * self.down;
            let n = (pos / self.up) as i64;
            let p = (pos % self.up) as usize;
            let first = n - self.reach as i64 + 1;
            let last = n + self.reach as i64;
            if !end && last >= end_of_input {
                break;
            }
            let start = usize::try_from(first - self.base).unwrap_or(0);
            let x = match &self.weights {
                Weights::Table(w) => {
                    let row = w.get(p * self.taps..(p + 1) * self.taps).unwrap_or(&[]);
                    dot(row, self.held.get(start..).unwrap_or(&[]))
                }
                Weights::PerSample => {
                    let t = n as f64 + p as f64 / self.up as f64;
                    let mut acc = 0.0f64;
                    let mut sum = 0.0f64;
                    for k in 0..self.taps {
                        let d = t - (first + k as i64) as f64;
                        let w = kernel(d, self.fc, self.half);
                        sum += w;
                        acc += w * f64::from(self.held.get(start + k).copied().unwrap_or(0.0));
                    }
                    (acc / if sum.abs() > 1e-9 { sum } else { 1.0 }) as f32
                }
            };
            out.push(x);
            self.given += 1;
        }
        // Drop what no output to come reaches.
        let next_first = (self.given * self.down / self.up) as i64 - self.reach as i64 + 1;
        let drop = usize::try_from(next_first - self.base)
            .unwrap_or(0)
            .min(self.held.len());
        if drop > 0 {
            self.held.drain(..drop);
            self.base += drop as i64;
        }
    }
}

/// `a · b` over the shorter (what lies past the held input is silence), in
/// eight independent partial sums so that the loop vectorises.
fn dot(a: &[f32], b: &[f32]) -> f32 {
    const LANES: usize = 8;
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [0f32; LANES];
    let chunks = a.chunks_exact(LANES).zip(b.chunks_exact(LANES));
    for (x, y) in chunks {
        for l in 0..LANES {
            acc[l] += x[l] * y[l];
        }
    }
    let tail = n - n % LANES;
    let rest: f32 = a[tail..].iter().zip(&b[tail..]).map(|(x, y)| x * y).sum();
    acc.iter().sum::<f32>() + rest
}

fn to_i16(x: f32) -> i16 {
    x.round().clamp(-32768.0, 32767.0) as i16
}

/// `input` at `from` Hz, converted to `to` Hz as one whole stream:
/// `⌈len × to / from⌉` samples.
///
/// # Errors
///
/// A rate outside [`MIN_RATE`]..=[`MAX_RATE`].
pub fn resample(input: &[f32], from: u32, to: u32) -> Result<Vec<f32>, RateError> {
    let mut r = Resampler::new(from, to)?;
    let mut out = Vec::with_capacity(input.len() * to as usize / from as usize + 1);
    r.process(input, &mut out);
    r.flush(&mut out);
    Ok(out)
}

/// [`resample`] for 16-bit samples (rounded and clamped).
///
/// # Errors
///
/// A rate outside [`MIN_RATE`]..=[`MAX_RATE`].
pub fn resample_i16(input: &[i16], from: u32, to: u32) -> Result<Vec<i16>, RateError> {
    let input: Vec<f32> = input.iter().map(|&x| f32::from(x)).collect();
    Ok(resample(&input, from, to)?
        .into_iter()
        .map(to_i16)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sine(freq: f64, rate: u32, secs: f64, amp: f64) -> Vec<f32> {
        let n = (f64::from(rate) * secs) as usize;
        (0..n)
            .map(|i| (amp * (2.0 * PI * freq * i as f64 / f64::from(rate)).sin()) as f32)
            .collect()
    }

    /// Amplitude of `freq` in the middle half of `x` (at `rate`).
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

    const PAIRS: [(u32, u32); 8] = [
        (8000, 16_000),
        (16_000, 8000),
        (8000, 24_000),
        (24_000, 8000),
        (22_050, 8000),
        (44_100, 8000),
        (48_000, 8000),
        (8000, 8001),
    ];

    #[test]
    fn lengths_are_every_output_position_inside_the_input() {
        for (from, to) in PAIRS {
            for len in [0usize, 1, 2, 3, 159, 160, 441, 1000] {
                let out = resample(&vec![0.1; len], from, to).unwrap();
                let want = (len as u64 * u64::from(to)).div_ceil(u64::from(from));
                assert_eq!(out.len() as u64, want, "{from}→{to}, {len}");
            }
        }
    }

    #[test]
    fn a_tone_in_the_band_keeps_its_level() {
        for (from, to) in PAIRS {
            let out = resample(&sine(1000.0, from, 0.5, 0.5), from, to).unwrap();
            let a = amplitude(&out, 1000.0, to);
            assert!((a - 0.5).abs() < 0.01, "{from}→{to}: {a}");
        }
    }

    #[test]
    fn a_tone_above_the_new_nyquist_is_removed_not_folded() {
        // 6 kHz at 24 kHz would fold to 2 kHz at 8 kHz.
        for from in [16_000, 22_050, 24_000, 48_000] {
            let out = resample(&sine(6000.0, from, 0.5, 0.5), from, 8000).unwrap();
            let folded = amplitude(&out, 2000.0, 8000);
            let left = out[out.len() / 4..out.len() * 3 / 4]
                .iter()
                .fold(0f32, |m, x| m.max(x.abs()));
            assert!(folded < 0.0005 && left < 0.002, "{from}: {folded} {left}");
        }
    }

    #[test]
    fn chunks_of_any_size_give_the_whole_streams_samples() {
        for (from, to) in PAIRS {
            let input = sine(440.0, from, 0.3, 0.4);
            let whole = resample(&input, from, to).unwrap();
            for size in [1usize, 7, 160, 320, 441, 1000] {
                let mut r = Resampler::new(from, to).unwrap();
                let mut out = Vec::new();
                for c in input.chunks(size) {
                    r.process(c, &mut out);
                }
                r.flush(&mut out);
                assert_eq!(out, whole, "{from}→{to} in chunks of {size}");
            }
        }
    }

    #[test]
    fn a_flush_starts_a_new_stream() {
        let mut r = Resampler::new(16_000, 8000).unwrap();
        let a = sine(300.0, 16_000, 0.1, 0.3);
        let mut first = Vec::new();
        r.process(&a, &mut first);
        r.flush(&mut first);
        let mut second = Vec::new();
        r.process(&a, &mut second);
        r.flush(&mut second);
        assert_eq!(first, second);
        assert_eq!(first, resample(&a, 16_000, 8000).unwrap());
    }

    #[test]
    fn rates_out_of_range_are_refused() {
        assert_eq!(
            Resampler::new(3999, 8000).unwrap_err(),
            RateError { rate: 3999 }
        );
        assert!(Resampler::new(8000, 192_001).is_err());
        assert!(resample_i16(&[1, 2], 0, 8000).is_err());
        let same = resample_i16(&[1, -2, 3], 8000, 8000).unwrap();
        assert_eq!(same, [1, -2, 3]);
    }

    #[test]
    fn full_scale_input_does_not_overflow() {
        let square: Vec<i16> = (0..4000)
            .map(|i| if i / 20 % 2 == 0 { i16::MAX } else { i16::MIN })
            .collect();
        for (from, to) in PAIRS {
            let out = resample_i16(&square, from, to).unwrap();
            assert!(!out.is_empty());
        }
    }

    #[test]
    fn odd_ratios_compute_their_weights_per_sample() {
        let r = Resampler::new(8000, 8001).unwrap();
        assert!(matches!(r.weights, Weights::PerSample));
        let r = Resampler::new(22_050, 8000).unwrap();
        assert!(matches!(r.weights, Weights::Table(_)));
    }
}
