//! Prefetching a connection's state before its input is handled.
//!
//! With many calls on a reactor, the kernel's socket work between two frames
//! of one call pushes that call's state out of the cache, so a frame finds
//! every line it touches cold, and meets the misses one after another as it
//! walks from one structure to the next (the stream, the WebSocket's
//! buffers, the jitter buffer, the VAD, the pacer, the spare texts).
//! [`Driver::prefetch`](crate::Driver::prefetch) asks for all of them at once,
//! as soon as a pump knows which connection has input and before it reads
//! the socket: the misses overlap each other and the read's system call.
//! `BENCHMARKS.md` ("Prefetching a call's state") has what it saves.
//!
//! The core names the memory ([`Connection::hot_memory`]); this module is
//! the one place that turns addresses into prefetch instructions.
//!
//! [`Connection::hot_memory`]: callstream_core::connection::Connection::hot_memory

/// Cache line size assumed (x86-64 and most AArch64 cores).
const LINE: usize = 64;

/// The most lines one region asks for: the largest region, the stream's
/// state, is about 35.
const MAX_LINES: usize = 48;

/// Asks the CPU to bring `len` bytes from `start` into the cache (at most
/// [`MAX_LINES`] lines). A hint: never reads or faults, any address allowed.
#[inline]
pub fn region(start: *const u8, len: usize) {
    let lines = len.div_ceil(LINE).min(MAX_LINES);
    // The line holding `start` may begin before it: round down, and cover
    // the end's line too.
    let first = start.wrapping_sub(start as usize % LINE);
    let end = start.wrapping_add(len.min(MAX_LINES * LINE));
    let mut at = first;
    for _ in 0..=lines {
        if at >= end {
            break;
        }
        line(at);
        at = at.wrapping_add(LINE);
    }
}

#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
#[inline]
fn line(at: *const u8) {
    use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
    // SAFETY: `prefetcht0` is a hint: it reads nothing architecturally and
    // never faults, whatever the address (Intel SDM, PREFETCHh; AMD APM vol.
    // 3). The intrinsic needs SSE, which every x86-64 CPU has (it is part of
    // the target's baseline), so the `target_feature` it carries holds.
    unsafe { _mm_prefetch::<_MM_HINT_T0>(at.cast()) }
}

/// Other targets: no prefetch (AArch64's intrinsic is not stable yet).
#[cfg(not(target_arch = "x86_64"))]
#[inline]
fn line(_at: *const u8) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_address_is_a_hint_only() {
        // Null, dangling, unaligned and unmapped addresses: a prefetch
        // neither faults nor changes memory.
        let data = vec![7u8; 1000];
        region(std::ptr::null(), 4096);
        region(usize::MAX as *const u8, 128);
        region(0x1000 as *const u8, 1 << 20);
        region(data.as_ptr().wrapping_add(3), 997);
        region(data.as_ptr(), 0);
        assert!(data.iter().all(|&b| b == 7));
    }
}
