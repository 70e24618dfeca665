//! G.711 μ-law, bit-exact with Python's `audioop` (`lin2ulaw` / `ulaw2lin`).
//!
//! Twilio carries voice as 8 kHz mono μ-law, 160 bytes per 20 ms frame, no header.
//! Decoding is the same in every implementation. Encoding is not: `audioop` first
//! reduces a 16-bit sample to 14 bits (`sample >> 2`) and then applies the
//! classic Sun segment search, so it never emits `0x7F` and differs from ITU-T
//! G.191 on some negative inputs. A Python bot and callstream must produce the
//! same bytes, so `audioop` is the reference here.
//!
//! Both directions are table lookups: 256 entries to decode, 16,384 (one per
//! 14-bit value) to encode, all computed at compile time. Both tables fit in L1
//! cache; the slice functions run at about 2,000 M samples/s on one core
//! (BENCHMARKS.md), so no `unsafe` or SIMD is needed.
//!
//! Exactness is proven, not sampled: `core/tests/codec_reference.rs` checks all
//! 65,536 encodes and all 256 decodes against a table that
//! `core/tests/reference/ulaw_audioop.py` made with `audioop` itself.
//!
//! ```
//! use callstream_core::codec;
//! assert_eq!(codec::encode(0), 0xFF);
//! assert_eq!(codec::decode(0x00), -32124);
//! let pcm = [0i16, 1000, -1000];
//! let mut ulaw = [0u8; 3];
//! codec::encode_into(&pcm, &mut ulaw);
//! assert_eq!(ulaw, [0xFF, 0xCE, 0x4E]);
//! ```

/// Samples per second on a Twilio media stream.
pub const SAMPLE_RATE: u32 = 8000;
/// Samples (and μ-law bytes) in one 20 ms frame.
pub const FRAME_SAMPLES: usize = 160;
/// Duration of one frame in milliseconds.
pub const FRAME_MS: u64 = 20;
/// The μ-law byte for digital silence (what `audioop` encodes 0 as).
pub const SILENCE: u8 = 0xFF;

/// `audioop`'s `st_14linear2ulaw`: the input is a 14-bit two's complement value.
const fn encode14(mut pcm: i32) -> u8 {
    // Segment end points for the 14-bit magnitude plus bias (CPython's seg_uend).
    const SEG_UEND: [i32; 8] = [0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF];
    const BIAS: i32 = 0x84 >> 2;
    let mask: i32 = if pcm < 0 {
        pcm = -pcm;
        0x7F
    } else {
        0xFF
    };
    // CPython clips at 32635 here, which a 14-bit magnitude never reaches.
    if pcm > 32635 {
        pcm = 32635;
    }
    pcm += BIAS;
    let mut seg = 0;
    while seg < 8 && pcm > SEG_UEND[seg] {
        seg += 1;
    }
    if seg >= 8 {
        (0x7F ^ mask) as u8
    } else {
        let uval = ((seg as i32) << 4) | ((pcm >> (seg + 1)) & 0xF);
        (uval ^ mask) as u8
    }
}

/// `audioop`'s `st_ulaw2linear16`.
const fn decode_slow(u: u8) -> i16 {
    let u = !u as i32;
    let sign = u & 0x80;
    let exponent = (u >> 4) & 0x07;
    let mantissa = u & 0x0F;
    let t = (((mantissa << 3) + 0x84) << exponent) - 0x84;
    (if sign != 0 { -t } else { t }) as i16
}

static DECODE: [i16; 256] = {
    let mut t = [0i16; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = decode_slow(i as u8);
        i += 1;
    }
    t
};

/// Indexed by the sample's top 14 bits read unsigned, `(sample as u16) >> 2`:
/// entries 0..8192 are the 14-bit values 0..8191, entries 8192.. are
/// -8192..-1. That index needs no offset or mask, and is always in range.
static ENCODE: [u8; 16384] = {
    let mut t = [0u8; 16384];
    let mut i = 0;
    while i < 16384 {
        let pcm14 = if i < 8192 { i as i32 } else { i as i32 - 16384 };
        t[i] = encode14(pcm14);
        i += 1;
    }
    t
};

/// Decodes one μ-law byte to a 16-bit linear sample.
#[inline]
#[must_use]
pub fn decode(u: u8) -> i16 {
    DECODE[u as usize]
}

/// Encodes one 16-bit linear sample to μ-law, exactly as `audioop.lin2ulaw`.
#[inline]
#[must_use]
pub fn encode(s: i16) -> u8 {
    // `u16 >> 2` is below 16384: the compiler drops the bounds check too.
    ENCODE[usize::from(s as u16 >> 2)]
}

/// Decodes `src` into `dst`, as many samples as both hold; returns that count.
#[inline]
pub fn decode_into(src: &[u8], dst: &mut [i16]) -> usize {
    let n = src.len().min(dst.len());
    for (d, &s) in dst[..n].iter_mut().zip(&src[..n]) {
        *d = decode(s);
    }
    n
}

/// Encodes `src` into `dst`, as many samples as both hold; returns that count.
#[inline]
pub fn encode_into(src: &[i16], dst: &mut [u8]) -> usize {
    let n = src.len().min(dst.len());
    for (d, &s) in dst[..n].iter_mut().zip(&src[..n]) {
        *d = encode(s);
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_points_from_audioop() {
        for (s, u) in [
            (0, 0xFF),
            (-1, 0x7E),
            (1000, 0xCE),
            (-1000, 0x4E),
            (-32768, 0x00),
            (32767, 0x80),
        ] {
            assert_eq!(encode(s), u, "encode({s})");
        }
        for (u, s) in [(0x00, -32124), (0x80, 32124), (0x7F, 0), (0xFF, 0)] {
            assert_eq!(decode(u), s, "decode({u:#04x})");
        }
    }

    #[test]
    fn encode_inverts_decode_except_0x7f() {
        for b in 0..=255u8 {
            if b != 0x7F {
                assert_eq!(encode(decode(b)), b, "byte {b:#04x}");
            }
        }
        assert!((i16::MIN..=i16::MAX).all(|s| encode(s) != 0x7F));
    }

    #[test]
    fn decode_is_sign_symmetric() {
        for b in 0..=0x7Fu8 {
            assert_eq!(decode(b), -decode(b | 0x80), "byte {b:#04x}");
        }
    }

    /// A quantiser must keep order: a louder sample never decodes quieter.
    #[test]
    fn round_trip_is_monotonic_and_close() {
        let mut previous = i16::MIN;
        for s in i16::MIN..=i16::MAX {
            let back = decode(encode(s));
            assert!(
                back >= previous,
                "decode(encode({s})) = {back} < {previous}"
            );
            previous = back;
            // μ-law's step doubles with each segment: the error stays under
            // |s|/32 plus the 14-bit truncation, except where μ-law clips (±32124).
            let s32 = i32::from(s);
            if s32.abs() <= 32124 {
                let err = (i32::from(back) - s32).abs();
                assert!(err <= s32.abs() / 32 + 8, "sample {s}: error {err}");
            }
        }
    }

    mod prop {
        use super::super::*;
        use proptest::prelude::*;

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(256))]

            /// The slice functions are the per-sample functions applied to the
            /// common prefix, and leave the rest of the output untouched.
            #[test]
            fn encode_into_is_per_sample(src in proptest::collection::vec(any::<i16>(), 0..400), extra in 0usize..8, short in 0usize..8) {
                let len = (src.len() + extra).saturating_sub(short);
                let mut dst = vec![0x55u8; len];
                let n = encode_into(&src, &mut dst);
                prop_assert_eq!(n, src.len().min(len));
                for (i, &s) in src.iter().take(n).enumerate() {
                    prop_assert_eq!(dst[i], encode(s));
                }
                prop_assert!(dst[n..].iter().all(|&b| b == 0x55));
            }

            #[test]
            fn decode_into_is_per_sample(src in proptest::collection::vec(any::<u8>(), 0..400), extra in 0usize..8, short in 0usize..8) {
                let len = (src.len() + extra).saturating_sub(short);
                let mut dst = vec![0x5555i16; len];
                let n = decode_into(&src, &mut dst);
                prop_assert_eq!(n, src.len().min(len));
                for (i, &u) in src.iter().take(n).enumerate() {
                    prop_assert_eq!(dst[i], decode(u));
                }
                prop_assert!(dst[n..].iter().all(|&s| s == 0x5555));
            }

            /// Re-encoding decoded audio is lossless (0x7F is audioop's
            /// second zero and comes back as 0xFF).
            #[test]
            fn decode_then_encode_is_identity(src in proptest::collection::vec(any::<u8>(), 0..400)) {
                let mut pcm = vec![0i16; src.len()];
                decode_into(&src, &mut pcm);
                let mut back = vec![0u8; src.len()];
                encode_into(&pcm, &mut back);
                let want: Vec<u8> = src.iter().map(|&b| if b == 0x7F { 0xFF } else { b }).collect();
                prop_assert_eq!(back, want);
            }
        }
    }
}
