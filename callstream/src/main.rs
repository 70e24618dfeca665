//! The `callstream` binary: `serve` (the default) on the runtime chosen with
//! `--runtime` (`CALLSTREAM_RUNTIME`), and the `sim`, `check` and `sign`
//! tools. `callstream --help` lists every setting.
mod runtime;

use callstream_server::config::Cli;
use std::process::ExitCode;

fn main() -> ExitCode {
    let settings = callstream_tools::parse_or_run::<Cli>().settings();
    callstream_server::log::init(settings.log_format);
    // This binary starts no process but the bridge's programs: every child
    // it is handed is theirs to reap.
    callstream_bridge::reaper::own_all_children();
    callstream_server::exit(runtime::serve(settings))
}
