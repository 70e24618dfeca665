//! The `callstream-uring` server binary: the `callstream` settings and
//! behaviour on io_uring reactors. `callstream-uring --help` lists every
//! setting; `CALLSTREAM_URING_TICK_MS` sets the tick.
use callstream_server::config::Cli;
use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let settings = Cli::parse().settings();
    callstream_server::log::init(settings.log_format);
    let code = match callstream_uring::run(settings) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "callstream failed");
            ExitCode::FAILURE
        }
    };
    // Lines go through the log thread: let it write the last ones.
    callstream_server::log::flush(std::time::Duration::from_millis(500));
    code
}
