//! Handing freed memory back to the operating system.
//!
//! glibc's allocator keeps what a burst of connections freed (request
//! buffers of parked bodies, say) in its arenas, so the process's RSS stays
//! at the burst's peak long after the connections closed. A thread of its
//! own asks it to return free pages every [`TRIM_EVERY`]: `malloc_trim(0)`
//! releases free memory in every arena (glibc 2.8 and later). The frame
//! path does not allocate, so the arena locks it takes stall nothing there.
use std::sync::Once;
use std::time::Duration;

/// How often free memory is handed back.
pub const TRIM_EVERY: Duration = Duration::from_secs(10);

/// Starts the trimming thread, once per process; later calls do nothing.
pub fn start_trimming() {
    static STARTED: Once = Once::new();
    STARTED.call_once(|| {
        let _ = std::thread::Builder::new()
            .name("callstream-trim".into())
            .spawn(|| {
                loop {
                    std::thread::sleep(TRIM_EVERY);
                    trim();
                }
            });
    });
}

/// Hands free heap memory back to the operating system now.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
pub fn trim() {
    // SAFETY: malloc_trim only releases memory glibc's allocator holds as
    // free; it reads no pointer of ours and is safe to call from any thread.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Hands free heap memory back to the operating system now (nothing to do
/// with this allocator).
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn trim() {}
