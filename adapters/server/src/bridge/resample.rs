//! Sample-rate conversion for the bridge: a program's `play` audio (any rate)
//! down to the call's 8 kHz, and the caller's 8 kHz up to the program's rate.
//!
//! A windowed-sinc interpolator, written out rather than taken from a crate:
//! the bridge converts whole messages (no streaming state) between a handful
//! of rates, and a short file is easier to audit than a dependency. A whole
//! caller turn is converted at its end, while the caller waits for the
//! answer and other calls' turns may end at the same moment, so the common
//! pairs use precomputed polyphase weights ([`polyphase`]): 5 s of 8 → 16
//! kHz takes under a millisecond instead of ~30.
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
///
/// Rates whose ratio reduces to a small fraction (every rate in use: 8000 ↔
/// 16000, 24000, 22050, 44100, 48000) take the polyphase path; an odd pair
/// whose table would be too large falls back to [`resample_direct`].
#[must_use]
pub fn resample(input: &[i16], from: u32, to: u32) -> Vec<i16> {
    let from = from.clamp(MIN_RATE, MAX_RATE);
    let to = to.clamp(MIN_RATE, MAX_RATE);
    if from == to || input.is_empty() {
        return input.to_vec();
    }
    match polyphase::plan(from, to) {
        Some(plan) => plan.run(input),
        None => resample_direct(input, from, to),
    }
}

/// The same conversion computed tap by tap from the tabulated kernel, in
/// f64: the reference the polyphase path is tested against, and the path for
/// rate pairs whose polyphase table would be too large.
#[must_use]
pub fn resample_direct(input: &[i16], from: u32, to: u32) -> Vec<i16> {
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

mod polyphase {
    //! The kernel precomputed per phase. With `to / from` reduced to `L / M`,
    //! output sample `i` sits at input position `i·M / L`: its fractional
    //! part is one of `L` phases, so the weights of its taps are one of `L`
    //! fixed rows. Each output sample is then a dot product of one row with
    //! a contiguous run of the input, in f32, which the compiler vectorises:
    //! no table lookup, interpolation or bounds check per tap. A row's taps
    //! are padded to a multiple of [`LANES`] with zero weights, and the input
    //! with zeros on both sides, which is what the direct path's skipped
    //! taps at the edges amount to.
    use std::sync::{Arc, Mutex, PoisonError};

    /// Weights per row are a multiple of this (the width of the dot product).
    const LANES: usize = 8;
    /// Largest table built (1 MiB of f32): every common pair is far below
    /// (22050 → 8000 is 160 rows of 96 taps); a pair of odd, coprime rates
    /// would need thousands of rows and takes the direct path instead.
    const MAX_WEIGHTS: usize = 1 << 18;
    /// Tables kept. A program picks its `play` rate freely, so the cache is
    /// bounded; the oldest table goes first.
    const MAX_PLANS: usize = 8;

    static PLANS: Mutex<Vec<Arc<Plan>>> = Mutex::new(Vec::new());

    /// The precomputed conversion from one rate to another.
    pub struct Plan {
        from: u32,
        to: u32,
        /// Output samples per step (`L`) and input samples per step (`M`).
        up: u64,
        down: u64,
        /// Input samples before an output's position that its row reaches.
        reach: usize,
        /// Weights per row.
        taps: usize,
        /// `up` rows of `taps` weights.
        weights: Vec<f32>,
    }

    /// The plan for `from` → `to` (rates already clamped), from the cache or
    /// built; `None` when its table would be over [`MAX_WEIGHTS`].
    pub fn plan(from: u32, to: u32) -> Option<Arc<Plan>> {
        let cached =
            |plans: &Vec<Arc<Plan>>| plans.iter().find(|p| p.from == from && p.to == to).cloned();
        if let Some(p) = cached(&PLANS.lock().unwrap_or_else(PoisonError::into_inner)) {
            return Some(p);
        }
        // Built outside the lock: another call's conversion does not wait
        // for this table's sines.
        let plan = Arc::new(Plan::new(from, to)?);
        let mut plans = PLANS.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(p) = cached(&plans) {
            return Some(p);
        }
        if plans.len() >= MAX_PLANS {
            plans.remove(0);
        }
        plans.push(plan.clone());
        Some(plan)
    }

    fn gcd(a: u64, b: u64) -> u64 {
        if b == 0 { a } else { gcd(b, a % b) }
    }

    impl Plan {
        fn new(from: u32, to: u32) -> Option<Plan> {
            let g = gcd(u64::from(from), u64::from(to));
            let (up, down) = (u64::from(to) / g, u64::from(from) / g);
            let cutoff = (f64::from(to) / f64::from(from)).min(1.0);
            let half = super::ZERO_CROSSINGS / cutoff;
            // Phase p / L lies in [0, 1): the input samples within `half` of
            // it are at offsets -floor(half) ..= floor(half) + 1.
            let reach = half.floor() as usize;
            let taps = (2 * reach + 2).div_ceil(LANES) * LANES;
            let rows = usize::try_from(up).ok()?;
            if rows.checked_mul(taps)? > MAX_WEIGHTS {
                return None;
            }
            let mut weights = Vec::with_capacity(rows * taps);
            for p in 0..up {
                let frac = p as f64 / up as f64;
                for j in 0..taps {
                    // Input sample n - reach + j, at distance frac + reach - j.
                    let d = frac + reach as f64 - j as f64;
                    let w = if d.abs() < half {
                        super::windowed(d * cutoff) * cutoff
                    } else {
                        0.0
                    };
                    weights.push(w as f32);
                }
            }
            Some(Plan {
                from,
                to,
                up,
                down,
                reach,
                taps,
                weights,
            })
        }

        /// Converts `input` (not empty).
        pub fn run(&self, input: &[i16]) -> Vec<i16> {
            let out_len = (input.len() as u64 * self.up / self.down) as usize;
            // The input as f32 with `reach` zeros before it and enough after
            // it for the last output's whole row.
            let mut padded = vec![0f32; self.reach];
            padded.extend(input.iter().map(|&x| f32::from(x)));
            padded.resize(self.reach + input.len() + self.taps, 0.0);
            let mut out = Vec::with_capacity(out_len);
            for i in 0..out_len as u64 {
                let pos = i * self.down;
                let (n, p) = ((pos / self.up) as usize, (pos % self.up) as usize);
                let row = self.weights.get(p * self.taps..(p + 1) * self.taps);
                let run = padded.get(n..n + self.taps);
                let acc = match (row, run) {
                    (Some(row), Some(run)) => dot(row, run),
                    _ => 0.0,
                };
                out.push(acc.round().clamp(-32768.0, 32767.0) as i16);
            }
            out
        }
    }

    /// `a · b` over whole [`LANES`]: independent partial sums, so the loop
    /// vectorises (f32 addition is not reassociated on its own).
    fn dot(a: &[f32], b: &[f32]) -> f32 {
        let mut acc = [0f32; LANES];
        for (x, y) in a.chunks_exact(LANES).zip(b.chunks_exact(LANES)) {
            for l in 0..LANES {
                acc[l] += x[l] * y[l];
            }
        }
        acc.iter().sum()
    }
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
                    windowed(u)
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

/// The windowed sinc at `u` zero crossings of the lower rate's sinc.
fn windowed(u: f64) -> f64 {
    kernel(u) * window(u / ZERO_CROSSINGS)
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

#[cfg(test)]
mod polyphase_tests {
    use super::*;

    /// Speech-like test input: a few tones, a chirp and full-scale steps.
    fn busy(rate: u32, n: usize) -> Vec<i16> {
        (0..n)
            .map(|i| {
                let t = i as f64 / f64::from(rate);
                let v = 6000.0 * (2.0 * std::f64::consts::PI * 300.0 * t).sin()
                    + 5000.0 * (2.0 * std::f64::consts::PI * 2900.0 * t).sin()
                    + 4000.0 * (2.0 * std::f64::consts::PI * (500.0 + 3000.0 * t) * t).sin()
                    + if (i / 997) % 2 == 0 {
                        12000.0
                    } else {
                        -12000.0
                    };
                v.clamp(-32768.0, 32767.0) as i16
            })
            .collect()
    }

    #[test]
    fn the_polyphase_path_matches_the_direct_one() {
        for (from, to) in [
            (8000, 16000),
            (8000, 24000),
            (8000, 48000),
            (16000, 8000),
            (24000, 8000),
            (22050, 8000),
            (44100, 8000),
            (8000, 22050),
        ] {
            let x = busy(from, from as usize / 2 + 7);
            let fast = resample(&x, from, to);
            let slow = resample_direct(&x, from, to);
            assert_eq!(fast.len(), slow.len(), "{from} → {to}");
            let worst = fast
                .iter()
                .zip(&slow)
                .map(|(a, b)| (i32::from(*a) - i32::from(*b)).abs())
                .max()
                .unwrap_or(0);
            assert!(worst <= 2, "{from} → {to}: off by {worst}");
        }
    }

    #[test]
    fn an_odd_rate_pair_takes_the_direct_path() {
        // 7919 and 192000 are coprime: 7919 rows would be far too many.
        assert!(polyphase::plan(192_000, 7919).is_none());
        let x = busy(192_000, 1000);
        assert_eq!(
            resample(&x, 192_000, 7919),
            resample_direct(&x, 192_000, 7919)
        );
        assert!(polyphase::plan(22050, 8000).is_some());
    }

    #[test]
    #[ignore = "a measurement, not a test: the resampler's cost in BENCHMARKS.md"]
    fn bench_resample() {
        for (from, to, secs) in [
            (8000, 16000, 5),
            (8000, 24000, 5),
            (16000, 8000, 5),
            (22050, 8000, 5),
            (8000, 16000, 60),
        ] {
            let x = busy(from, secs * from as usize);
            let t0 = std::time::Instant::now();
            let slow = resample_direct(&x, from, to);
            let direct = t0.elapsed();
            let _ = resample(&x[..100], from, to); // the table, built once
            let t1 = std::time::Instant::now();
            let fast = resample(&x, from, to);
            let poly = t1.elapsed();
            let t2 = std::time::Instant::now();
            let b64 = crate::bridge::protocol::encode_pcm(&fast);
            println!(
                "{from} → {to}, {secs} s: direct {direct:?}, polyphase {poly:?}, base64 {:?} ({} samples, {} bytes of base64)",
                t2.elapsed(),
                slow.len(),
                b64.len()
            );
        }
    }
}
