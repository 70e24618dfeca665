//! SIGTERM and SIGINT: the first begins the graceful drain, the second exits
//! at once. A thread of its own, so any runtime (or none) can use it.
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

/// Calls `shutdown` on the first SIGTERM or SIGINT; exits with 130 on the
/// second.
pub fn on_shutdown(shutdown: impl FnOnce() + Send + 'static) -> std::io::Result<()> {
    let mut signals = Signals::new([SIGTERM, SIGINT])?;
    std::thread::Builder::new()
        .name("callstream-signals".into())
        .spawn(move || {
            let mut forever = signals.forever();
            if let Some(sig) = forever.next() {
                tracing::info!(signal = sig, "shutdown requested");
                shutdown();
            }
            if let Some(sig) = forever.next() {
                tracing::warn!(signal = sig, "second signal: exiting without draining");
                std::process::exit(130);
            }
        })?;
    Ok(())
}
