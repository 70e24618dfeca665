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
pub const LINE: usize = 64;

/// The most lines one region asks for: the largest region, the stream's
/// state, is about 35.
pub const MAX_LINES: usize = 48;

/// The most connections a pump prefetches at once, ahead of serving them:
/// about 70 lines each, so 32 of them (some 140 KiB) stay within a core's
/// second-level cache until they are served.
pub const AHEAD: usize = 32;

/// Asks the CPU to bring `len` bytes from `start` into the cache (at most
/// [`MAX_LINES`] lines). A hint: never reads or faults, any address allowed.
#[inline]
pub fn region(start: *const u8, len: usize) {
    for at in lines(start, len) {
        line(at);
    }
}

/// The start of each line `region` asks for: from the line holding `start`
/// (which may begin before it) to the one holding its last byte, at most
/// [`MAX_LINES`] of them.
fn lines(start: *const u8, len: usize) -> impl Iterator<Item = *const u8> {
    let offset = start.addr() % LINE;
    let count = if len == 0 {
        0
    } else {
        (offset + len.min(MAX_LINES * LINE))
            .div_ceil(LINE)
            .min(MAX_LINES)
    };
    let first = start.wrapping_sub(offset);
    (0..count).map(move |i| first.wrapping_add(i * LINE))
}

#[cfg(all(target_arch = "x86_64", target_feature = "sse"))]
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
#[cfg(not(all(target_arch = "x86_64", target_feature = "sse")))]
#[inline]
fn line(_at: *const u8) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn asks_for_each_line_a_region_touches_up_to_the_cap() {
        let data = vec![0u8; 8192];
        let base = data
            .as_ptr()
            .wrapping_add(LINE - data.as_ptr().addr() % LINE);
        let count = |offset: usize, len: usize| lines(base.wrapping_add(offset), len).count();
        assert_eq!(count(0, 0), 0);
        assert_eq!(count(0, 1), 1);
        assert_eq!(count(0, LINE), 1);
        assert_eq!(count(0, LINE + 1), 2);
        // Unaligned: the line before the start's boundary counts too.
        assert_eq!(count(LINE - 1, 2), 2);
        assert_eq!(count(32, LINE), 2);
        assert_eq!(count(0, 2192), 35);
        assert_eq!(count(0, 1 << 20), MAX_LINES);
        assert_eq!(count(63, usize::MAX), MAX_LINES);
        // Each is a line start, the first the line holding the start.
        let starts: Vec<_> = lines(base.wrapping_add(100), 200).collect();
        assert_eq!(starts.first(), Some(&base.wrapping_add(LINE)));
        assert!(starts.iter().all(|p| p.addr().is_multiple_of(LINE)));
        assert_eq!(starts.len(), 4);
    }

    #[test]
    fn any_address_is_a_hint_only() {
        // Null, dangling, unaligned and unmapped addresses: a prefetch
        // neither faults nor changes memory.
        let data = vec![7u8; 1000];
        region(std::ptr::null(), 4096);
        region(std::ptr::without_provenance(usize::MAX), 128);
        region(std::ptr::without_provenance(0x1000), 1 << 20);
        region(data.as_ptr(), usize::MAX);
        region(data.as_ptr().wrapping_add(3), 997);
        region(data.as_ptr(), 0);
        assert!(data.iter().all(|&b| b == 7));
    }
}
