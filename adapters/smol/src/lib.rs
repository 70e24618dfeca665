//! # callstream-smol
//!
//! callstream's server on smol / async-io (`callstream --runtime smol`). Each
//! connection is a task that pumps bytes between its socket and the server
//! layer's [`Driver`](callstream_server::Driver) and sleeps until the core's
//! next deadline; executor threads (one per core by default) run the tasks.
//! Settings, logs, metrics, recordings and the shutdown policy live in
//! `callstream-server`; protocol decisions in `callstream-core`.
//!
//! ```no_run
//! use callstream_server::config::Cli;
//! use clap::Parser;
//! callstream_smol::run(Cli::parse().settings()).unwrap();
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod pump;

pub use pump::{ShutdownHandle, SmolServer};

use callstream_server::config::Settings;

/// Runs the server with these settings until SIGTERM or SIGINT, then drains.
pub fn run(s: Settings) -> Result<(), Box<dyn std::error::Error>> {
    callstream_server::serve(&s, SmolServer::bind)
}
