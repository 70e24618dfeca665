//! The `callstream` binary: `serve` (the default), and `sim`, `check`, `sign` from callstream-tools.
use callstream_server::config::Cli;
use std::process::ExitCode;

fn main() -> ExitCode {
    let settings = callstream_tools::parse_or_run::<Cli>().settings();
    callstream_server::log::init(settings.log_format);
    callstream_server::exit(callstream_smol::run(settings))
}
