//! The `callstream-epoll` server binary: the `callstream` settings and
//! behaviour on epoll reactors. `callstream-epoll --help` lists every setting.
use callstream_server::config::Cli;
use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let settings = Cli::parse().settings();
    callstream_server::log::init(settings.log_format);
    callstream_server::exit(callstream_epoll::run(settings))
}
