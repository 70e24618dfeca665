//! The `callstream` server binary. `callstream --help` lists every setting.
use callstream_smol::config::Cli;
use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let settings = Cli::parse().settings();
    callstream_smol::log::init(settings.log_format);
    match callstream_smol::run(settings) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "callstream failed");
            ExitCode::FAILURE
        }
    }
}
