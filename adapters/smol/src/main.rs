//! The `callstream` binary: `serve` (the default), and `sim`, `check`, `sign` from callstream-tools.
use callstream_server::config::Cli;
use std::process::ExitCode;

fn main() -> ExitCode {
    let settings = callstream_tools::parse_or_run::<Cli>().settings();
    callstream_server::log::init(settings.log_format);
    let code = match callstream_smol::run(settings) {
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
