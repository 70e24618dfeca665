//! The `callstream-epoll` server binary: the `callstream` settings and
//! behaviour on epoll reactors. `callstream-epoll --help` lists every setting.
use callstream_server::config::Cli;
use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let settings = Cli::parse().settings();
    callstream_server::log::init(settings.log_format);
    let code = match callstream_epoll::run(settings) {
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
