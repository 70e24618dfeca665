//! The `callstream-uring` server binary: the `callstream` settings and
//! behaviour on io_uring reactors. `callstream-uring --help` lists every
//! setting; `CALLSTREAM_URING_TICK_MS` sets the tick.
use callstream_server::config::Cli;
use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let settings = Cli::parse().settings();
    callstream_server::log::init(settings.log_format);
    callstream_server::exit(callstream_uring::run(settings))
}
