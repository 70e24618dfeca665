//! # callstream-smol
//!
//! callstream's server on smol / async-io. Each connection is a task that
//! pumps bytes between its socket and the core's sans-IO
//! [`Connection`](callstream_core::connection::Connection) and sleeps until the
//! core's next deadline; executor threads (one per core by default) run the
//! tasks. Protocol decisions all live in `callstream-core`.
//!
//! ```no_run
//! use callstream_smol::{config::Cli, run};
//! use clap::Parser;
//! let settings = Cli::parse().settings();
//! run(settings).unwrap();
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod config;
pub mod log;
pub mod observer;
pub mod recorder;
pub mod server;

use callstream_core::connection;
use callstream_core::metrics::Metrics;
use config::Settings;
use std::sync::Arc;

/// A setting that cannot be used, with what is wrong.
#[derive(Debug)]
pub struct SettingsError(pub String);

impl std::fmt::Display for SettingsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for SettingsError {}

/// Builds the engine configuration the settings describe.
pub fn engine_config(s: &Settings) -> Result<connection::Config, SettingsError> {
    let mut c = connection::Config::default();
    if let Some(base) = &s.public_base_url {
        let parsed = callstream_core::public_url::PublicBase::parse(base)
            .map_err(|e| SettingsError(format!("PUBLIC_BASE_URL {base:?}: {e}")))?;
        c.public_base_url = Some(parsed);
    }
    c.auth_tokens = s.auth_tokens();
    if c.auth_tokens.is_empty() && !s.insecure_no_signatures {
        // Secure by default: with no token nothing can be verified, so every
        // signed route refuses until a token is set or checks are explicitly off.
        c.require_signatures = true;
    }
    if let Some(sid) = &s.account_sid {
        let parsed = callstream_core::sid::AccountSid::parse(sid)
            .map_err(|e| SettingsError(format!("TWILIO_ACCOUNT_SID {sid:?}: {e}")))?;
        c.account_sid = Some(parsed);
    }
    c.trust_forwarded = s.trust_forwarded_headers;
    // Twilio answers a close at once; a short wait keeps the shutdown inside
    // the drain period (see `server::Options::drain`).
    c.close_timeout = std::time::Duration::from_secs(1);
    c.greeting = s.greeting.clone();
    c.extra_parameters = s.stream_parameters.clone();
    let handler = callstream_core::handler::by_name(s.handler.as_str())
        .ok_or_else(|| SettingsError(format!("unknown handler {}", s.handler.as_str())))?;
    let call = callstream_core::call::CallConfig {
        tap: s.recordings_dir.is_some(),
        ..Default::default()
    };
    c.session = Some(callstream_core::handler::session_factory(call, handler));
    Ok(c)
}

/// Server options from the settings.
#[must_use]
pub fn options(s: &Settings) -> server::Options {
    let mut o = server::Options {
        bind: s.bind_addr(),
        max_connections: s.max_connections,
        drain: s.drain(),
        recordings_dir: s.recordings_dir.clone(),
        ..server::Options::default()
    };
    if let Some(t) = s.threads {
        o.threads = t.max(1);
    }
    o
}

/// Logs what the server is about to do: the boot record an operator reads first.
pub fn log_boot(s: &Settings, addr: std::net::SocketAddr) {
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        bind = %addr,
        port_env = std::env::var("PORT").ok().as_deref().unwrap_or("-"),
        server_software = std::env::var("SERVER_SOFTWARE").ok().as_deref().unwrap_or("-"),
        public_base_url = s.public_base_url.as_deref().unwrap_or("(from Host header)"),
        handler = s.handler.as_str(),
        recordings_dir = s.recordings_dir.as_ref().map(|p| p.display().to_string()).as_deref().unwrap_or("(off)"),
        trust_forwarded_headers = s.trust_forwarded_headers,
        max_connections = s.max_connections,
        "callstream starting"
    );
    let tokens = s.auth_tokens().len();
    if tokens > 0 {
        tracing::info!(
            tokens,
            "X-Twilio-Signature is checked on every webhook and on the WebSocket upgrade"
        );
    } else if s.insecure_no_signatures {
        tracing::warn!(
            "!!! SIGNATURE CHECKS ARE OFF (CALLSTREAM_INSECURE_NO_SIGNATURES): anyone who finds this URL can drive calls. Set TWILIO_AUTH_TOKEN for production. !!!"
        );
    } else {
        tracing::warn!(
            "no TWILIO_AUTH_TOKEN: Twilio's signed requests will be refused (403) until it is set; /healthz, /version and /webhook/incoming_call_preview work. For local experiments only: CALLSTREAM_INSECURE_NO_SIGNATURES=1"
        );
    }
    if s.public_base_url.is_none() {
        tracing::info!(
            "no PUBLIC_BASE_URL: TwiML and signature URLs are rebuilt from each request's Host header"
        );
    }
}

/// Runs the server with these settings until SIGTERM or SIGINT, then drains.
pub fn run(s: Settings) -> Result<(), Box<dyn std::error::Error>> {
    let engine = engine_config(&s)?;
    let metrics = Arc::new(Metrics::default());
    let server = server::Server::bind(options(&s), engine, metrics)?;
    log_boot(&s, server.local_addr()?);
    let handle = server.shutdown_handle();
    let signals =
        async_signal::Signals::new([async_signal::Signal::Term, async_signal::Signal::Int])?;
    std::thread::Builder::new()
        .name("callstream-signals".into())
        .spawn(move || {
            use smol::stream::StreamExt;
            let mut signals = signals;
            smol::block_on(async {
                if let Some(Ok(sig)) = signals.next().await {
                    tracing::info!(signal = ?sig, "shutdown requested");
                    handle.shutdown();
                }
                if let Some(Ok(sig)) = signals.next().await {
                    tracing::warn!(signal = ?sig, "second signal: exiting without draining");
                    std::process::exit(130);
                }
            });
        })?;
    server.run()?;
    tracing::info!("callstream stopped");
    Ok(())
}
