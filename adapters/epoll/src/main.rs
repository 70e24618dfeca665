//! The `callstream-epoll` server binary: the `callstream` settings and
//! behaviour on epoll reactors. `callstream-epoll --help` lists every setting.
use callstream_server::config::Cli;
use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let settings = Cli::parse().settings();
    callstream_server::log::init(settings.log_format);
    match callstream_epoll::run(settings) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "callstream failed");
            // The log line goes through the log thread: give it a moment.
            std::thread::sleep(std::time::Duration::from_millis(100));
            ExitCode::FAILURE
        }
    }
}
