//! # callstream-smol
//!
//! callstream's server on smol / async-io, and the `callstream` binary. Each
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
    let (engine, options) = callstream_server::configure(&s)?;
    let shared = callstream_server::Server::new(options, engine)?;
    let server = SmolServer::bind(shared.clone())?;
    callstream_server::log_boot(&s, server.local_addr()?);
    shared.log_metrics();
    let handle = server.shutdown_handle();
    callstream_server::signals::on_shutdown(move || handle.shutdown())?;
    server.run()?;
    tracing::info!("callstream stopped");
    Ok(())
}
