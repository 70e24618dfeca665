//! # callstream-server
//!
//! The layer between `callstream-core` and the runtime pumps: settings
//! ([`config`]), logs ([`log`]), what becomes of the engine's events
//! ([`observer`]: log lines, metrics), call recordings written off the pump
//! threads ([`recorder`]), the handler registry ([`handlers`]), and the state
//! one server shares between its connections ([`Server`]).
//!
//! An adapter (`callstream-smol`, `callstream-blocking`, `callstream-epoll`,
//! `callstream-uring`) is a byte pump and a
//! timer over this layer: it accepts a socket, asks [`Server::admit`], makes a
//! [`Driver`] for it, then loops — feed what the socket read
//! ([`Driver::handle_receive`], [`Driver::handle_eof`]), the time
//! ([`Driver::handle_timeout`]) or the shutdown ([`Driver::shutdown`]); drain
//! ([`Driver::poll_output`]); write [`Driver::transmit`]; sleep until the
//! deadline or more bytes: the core's [run loop](callstream_core#run-loop),
//! in its verbs, with the server's decisions folded in. Everything the
//! protocol decides is decided in the core; everything the operator sees is
//! decided here, once, so every adapter logs, counts, records and drains
//! alike.
//!
//! ```no_run
//! use callstream_server::config::Cli;
//! use clap::Parser;
//! let settings = Cli::parse().settings();
//! let (engine, options) = callstream_server::configure(&settings).unwrap();
//! let server = callstream_server::Server::new(options, engine).unwrap();
//! # let _ = server;
//! ```
#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod config;
pub mod extension;

/// How a pump ends a connection the engine closed: write the last bytes
/// (at most [`WRITE_LIMIT`]), half-close, then read and discard for up to
/// [`LINGER`] or [`LINGER_BYTES`]: dropping a socket with unread input makes
/// the kernel send a reset, which can destroy a 400/408/413 before the
/// client reads it.
pub mod close {
    use std::time::Duration;
    /// Longest wait for the last answer to be written.
    pub const WRITE_LIMIT: Duration = Duration::from_secs(5);
    /// Longest wait for the peer's unread bytes after the half-close.
    pub const LINGER: Duration = Duration::from_secs(1);
    /// Most unread bytes discarded after the half-close.
    pub const LINGER_BYTES: usize = 64 * 1024;
}
pub mod handlers;
pub mod limits;
pub mod listen;
pub mod log;
pub mod memory;
pub mod metrics;
pub mod metrics_listener;
pub mod observer;
pub mod prefetch;
pub mod reactor;
pub mod recorder;
pub mod routes;
pub mod signals;
pub mod timers;
pub mod wake;

use crate::metrics::Metrics;
use callstream_core::connection::{self, Connection};
use config::Settings;
use observer::{Drained, Observer};
use recorder::Recordings;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// A setting that cannot be used, with what is wrong.
#[derive(Debug)]
pub struct SettingsError(pub String);

impl std::fmt::Display for SettingsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for SettingsError {}

/// How long before the end of the drain period a server stops waiting for
/// connections and returns, so that the process is gone within the period.
pub const EXIT_MARGIN: Duration = Duration::from_millis(250);

/// Twilio answers a close frame at once; waiting longer only risks the
/// platform's kill.
pub const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);

/// What a server needs beyond the engine's own configuration.
#[derive(Clone, Debug)]
pub struct Options {
    /// Address to bind.
    pub bind: SocketAddr,
    /// Connections past this are answered 503 and closed, unless a pending
    /// one (not a media stream) can be shed to make room (see
    /// [`Options::max_pending`]).
    pub max_connections: usize,
    /// Most connections that are not media streams (fresh, mid-request,
    /// idle between requests); past it the oldest of them is shed, so
    /// trickling sockets cannot keep out requests that make progress.
    /// Default a quarter of [`Options::max_connections`].
    pub max_pending: usize,
    /// Most media streams whose `start` has not come (a replayed upgrade
    /// looks like one); past it the oldest of them is closed with 1013.
    /// Default a quarter of [`Options::max_connections`] ([`limits`]).
    pub max_unstarted: usize,
    /// Most bytes all HTTP connections together may hold in request
    /// buffers (heads and bodies not yet checked); growth past it sheds
    /// (503) the oldest pending connections holding request memory until
    /// the total is within it again. Default 64 MiB.
    pub request_memory: usize,
    /// After a shutdown request, everything is done within this period:
    /// calls go on, are closed with 1001 in time for their close handshake,
    /// and the server returns [`EXIT_MARGIN`] before it ends.
    pub drain: Duration,
    /// Pump threads (executor threads, for the smol adapter).
    pub threads: usize,
    /// Where call recordings go, if anywhere.
    pub recordings_dir: Option<PathBuf>,
    /// What extensions do at the end of a drain ([`Server::finish`]: the
    /// program bridge waits for its programs and kills what is left) and
    /// add to `/metrics`.
    pub hooks: extension::Hooks,
    /// Where `/metrics` is served.
    pub metrics: metrics_listener::MetricsAt,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            max_connections: 10_000,
            max_pending: 2_500,
            max_unstarted: 2_500,
            request_memory: 64 * 1024 * 1024,
            drain: Duration::from_secs(10),
            threads: std::thread::available_parallelism().map_or(2, |n| n.get()),
            recordings_dir: None,
            hooks: extension::Hooks::default(),
            metrics: metrics_listener::MetricsAt::Public,
        }
    }
}

impl Options {
    /// When, after a shutdown request at `at`, the server stops waiting for
    /// connections and returns.
    #[must_use]
    pub fn give_up_at(&self, at: Instant) -> Instant {
        at + self.drain.saturating_sub(EXIT_MARGIN)
    }

    /// How long a live call may go on after a shutdown request before the
    /// engine closes it with 1001: the drain period less the close handshake
    /// and the exit margin ([`connection::Config::shutdown_grace`]).
    #[must_use]
    pub fn shutdown_grace(&self, close_timeout: Duration) -> Duration {
        self.drain
            .saturating_sub(close_timeout)
            .saturating_sub(EXIT_MARGIN * 2)
    }
}

/// The engine configuration and server options the settings describe,
/// with the shipped handlers only (see [`configure_with`]).
///
/// # Errors
///
/// A setting that cannot work, or a handler only an extension serves.
pub fn configure(s: &Settings) -> Result<(connection::Config, Options), SettingsError> {
    configure_with(s, &[])
}

/// The engine configuration and server options the settings describe, the
/// handler made by the first of `extensions` that serves it when it is not
/// a shipped one.
///
/// # Errors
///
/// A setting that cannot work, or a handler no extension serves.
pub fn configure_with(
    s: &Settings,
    extensions: &[&dyn extension::Extension],
) -> Result<(connection::Config, Options), SettingsError> {
    let mut c = connection::Config::default();
    if let Some(base) = &s.public_base_url {
        let parsed = callstream_core::public_url::PublicBase::parse(base)
            .map_err(|e| SettingsError(format!("PUBLIC_BASE_URL {base:?}: {e}")))?;
        c.public_base_url = Some(parsed);
    }
    c.insecure_no_signatures = s.insecure_no_signatures;
    if let Some(sid) = &s.account_sid {
        let parsed = callstream_core::sid::AccountSid::parse(sid)
            .map_err(|e| SettingsError(format!("TWILIO_ACCOUNT_SID {sid:?}: {e}")))?;
        c.account_sid = Some(parsed);
    }
    c.trust_forwarded = s.trust_forwarded_headers;
    c.close_timeout = CLOSE_TIMEOUT;
    c.routes = routes::table();
    c.version = Some(routes::VERSION_JSON.to_owned());
    c.app = Arc::new(stream_app(s, &c.routes)?);
    let call = callstream_core::call::CallConfig {
        tap: s.recordings_dir.is_some(),
        vad: Some(
            callstream_core::vad::VadConfig {
                hangover_ms: s.end_of_turn_ms,
                min_speech_ms: s.min_speech_ms,
                ..Default::default()
            }
            .with_sensitivity(s.vad_sensitivity),
        ),
        barge_in: s.barge_in,
        ..Default::default()
    };
    hardening(s, &mut c)?;
    let mut hooks = extension::Hooks::default();
    let handlers = match s.handler.shipped() {
        Some(factory) => factory,
        None => {
            let Some(ext) = extensions.iter().find(|e| e.serves(&s.handler)) else {
                return Err(SettingsError(format!(
                    "CALLSTREAM_HANDLER {}: the program bridge is not linked into this server (the callstream binary has it)",
                    s.handler.loggable()
                )));
            };
            let installed = ext.install(s, &mut c)?;
            hooks.finish.extend(installed.finish);
            hooks.metrics.extend(installed.metrics);
            installed.handlers
        }
    };
    c.session = Some(callstream_core::handler::session_factory(call, handlers));
    let mut o = Options {
        bind: s.bind_addr().map_err(SettingsError)?,
        metrics: s.metrics,
        max_connections: s.max_connections,
        max_pending: s.max_pending(),
        max_unstarted: s.max_unstarted(),
        request_memory: s.request_memory_mib.saturating_mul(1024 * 1024),
        drain: s.drain(),
        recordings_dir: s.recordings_dir.clone(),
        hooks,
        ..Options::default()
    };
    if let Some(t) = s.threads {
        o.threads = t.max(1);
    }
    c.shutdown_grace = o.shutdown_grace(c.close_timeout);
    Ok((c, o))
}

/// callstream's own answer to calls, checked now: a greeting language or
/// voice Twilio cannot take fails the boot rather than every call (500).
fn stream_app(
    s: &Settings,
    routes: &connection::Routes,
) -> Result<connection::StreamApp, SettingsError> {
    use callstream_core::twiml;
    if let Some(l) = s
        .greeting_language
        .as_deref()
        .filter(|l| !twiml::is_language_tag(l))
    {
        return Err(SettingsError(format!(
            "GREETING_LANGUAGE {l:?} is not a language tag such as en-US, he-IL or cmn-CN"
        )));
    }
    if let Some(v) = s
        .greeting_voice
        .as_deref()
        .filter(|v| !twiml::is_voice_name(v))
    {
        return Err(SettingsError(format!(
            "GREETING_VOICE {v:?} is not a voice name such as alice, Polly.Joanna-Neural or Google.en-US-Standard-C"
        )));
    }
    let app = connection::StreamApp {
        greeting: s.greeting.clone(),
        greeting_language: s.greeting_language.clone(),
        greeting_voice: s.greeting_voice.clone(),
        call_parameters: routes::CALL_PARAMETERS
            .iter()
            .map(|&(name, from)| (name.to_owned(), from.to_owned()))
            .collect(),
        extra_parameters: s.stream_parameters.clone(),
    };
    // The whole answer for a sample call: GREETING and STREAM_PARAMETERS too.
    // On a stand-in https base: PUBLIC_BASE_URL has checks of its own.
    let sample = callstream_core::public_url::PublicBase::parse("https://callstream.invalid").ok();
    if let Some(base) = &sample {
        let call = connection::IncomingCall {
            params: &[],
            base,
            routes,
            preview: true,
        };
        connection::App::incoming_call(&app, &call).map_err(|e| {
            SettingsError(format!(
                "GREETING, GREETING_LANGUAGE, GREETING_VOICE or STREAM_PARAMETERS: {e}"
            ))
        })?;
    }
    Ok(app)
}

/// Binds a listening socket for `addr` ([`listen::bind`]); the error names
/// the address and the setting that moves it (`PORT`, `METRICS`), which the
/// bare OS error ("Address already in use") does not.
pub fn bind_listener(addr: SocketAddr, setting: &str) -> std::io::Result<std::net::TcpListener> {
    listen::bind(addr).map_err(|e| listen_error(addr, setting, e))
}

/// The error of binding or listening on `addr`, with what to do about it
/// (for an adapter that builds its listening sockets itself).
#[must_use]
pub fn listen_error(addr: SocketAddr, setting: &str, e: std::io::Error) -> std::io::Error {
    use std::io::ErrorKind;
    let hint = match e.kind() {
        ErrorKind::AddrInUse => format!(
            "another process is listening on this port: stop it, or set {setting} to a free port"
        ),
        ErrorKind::PermissionDenied => format!(
            "ports below 1024 need privileges: set {setting} to 1024 or above (8080 is usual)"
        ),
        ErrorKind::AddrNotAvailable => {
            "no interface of this machine has this address: check HOST".to_owned()
        }
        _ => format!("check HOST and {setting}"),
    };
    std::io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}; {hint}"))
}

/// The settings that silently break every call when wrong, checked here at
/// boot: secrets with whitespace around them are cleaned (with a warning
/// naming the setting, never the value), empty ones refused; an `http://`
/// public base (Twilio connects to `wss://` only) is refused unless
/// signatures are off for a local experiment; shared keys are parsed.
fn hardening(s: &Settings, c: &mut connection::Config) -> Result<(), SettingsError> {
    use callstream_core::verify::clean_secret;
    let mut tokens = Vec::new();
    for (name, value) in [
        ("TWILIO_AUTH_TOKEN", &s.auth_token),
        ("TWILIO_AUTH_TOKEN_SECONDARY", &s.auth_token_secondary),
    ] {
        // Empty means unset (a deployment template's blank variable).
        let Some(raw) = value.as_deref().filter(|v| !v.is_empty()) else {
            continue;
        };
        let (token, warning) =
            clean_secret(raw).map_err(|e| SettingsError(format!("{name}: {e}")))?;
        if let Some(w) = warning {
            tracing::warn!(setting = name, "{name}: {w}");
        }
        tokens.push(token);
    }
    c.auth_tokens = tokens;
    for (name, value) in [
        ("TWILIO_WEBHOOK_SHARED_KEY", &s.webhook_shared_key),
        (
            "TWILIO_WEBHOOK_SHARED_KEY_SECONDARY",
            &s.webhook_shared_key_secondary,
        ),
    ] {
        let Some(raw) = value.as_deref().filter(|v| !v.is_empty()) else {
            continue;
        };
        let (key, warning) =
            config::parse_shared_key(raw).map_err(|e| SettingsError(format!("{name}: {e}")))?;
        if let Some(w) = warning {
            tracing::warn!(setting = name, "{name}: {w}");
        }
        c.shared_keys.push(key);
    }
    if let Some(base) = &c.public_base_url
        && !base.is_https()
    {
        if !s.insecure_no_signatures {
            return Err(SettingsError(format!(
                "PUBLIC_BASE_URL {:?} is http://, but Twilio only connects media streams to wss://: \
                     use the https:// URL Twilio reaches (or, for a local experiment only, \
                     CALLSTREAM_INSECURE_NO_SIGNATURES=1)",
                s.public_base_url.as_deref().unwrap_or_default()
            )));
        }
        tracing::warn!(
            "!!! PUBLIC_BASE_URL is http:// (allowed only because CALLSTREAM_INSECURE_NO_SIGNATURES is on): Twilio will not connect a media stream to ws://. Local experiments only. !!!"
        );
    }
    c.stream_start_timeout = Duration::from_secs(s.stream_start_seconds);
    Ok(())
}

/// How a server binary ends: logs the error that stopped it, if any, lets
/// the log thread write the last lines, and gives the exit code (1 on
/// error).
pub fn exit(result: Result<(), Box<dyn std::error::Error>>) -> std::process::ExitCode {
    let code = match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "callstream failed");
            std::process::ExitCode::FAILURE
        }
    };
    // Lines go through the log thread: let it write the last ones.
    log::flush(Duration::from_millis(500));
    code
}

/// A bound server on one of the pumps, ready to run: what [`serve`] drives.
pub trait Pump: Sized {
    /// The runtime it is, for the boot record.
    fn runtime(&self) -> config::Runtime;
    /// The bound address.
    fn local_addr(&self) -> std::io::Result<SocketAddr>;
    /// Begins the graceful shutdown when called, from any thread.
    fn shutdown_fn(&self) -> impl FnOnce() + Send + 'static;
    /// Runs until a shutdown is requested and every connection has closed,
    /// or the drain period is over.
    fn run(self) -> std::io::Result<()>;
}

/// Runs a server with these settings until SIGTERM or SIGINT, then drains:
/// the engine and [`Server`] from `s`, the pump `bind` makes of them, the
/// boot record ([`log_boot`]) and where `/metrics` is served, the signals
/// wired to the pump's shutdown. Each pump's binary is this with its `bind`.
pub fn serve<P: Pump>(
    s: &Settings,
    bind: impl FnOnce(Arc<Server>) -> std::io::Result<P>,
) -> Result<(), Box<dyn std::error::Error>> {
    serve_with(s, &[], bind)
}

/// [`serve`] with `extensions` for the handlers the server layer does not
/// carry ([`configure_with`]).
pub fn serve_with<P: Pump>(
    s: &Settings,
    extensions: &[&dyn extension::Extension],
    bind: impl FnOnce(Arc<Server>) -> std::io::Result<P>,
) -> Result<(), Box<dyn std::error::Error>> {
    let (engine, options) = configure_with(s, extensions)?;
    let server = Server::new(options, engine)?;
    let pump = bind(server.clone())?;
    log_boot(s, pump.local_addr()?, pump.runtime().name());
    server.log_metrics();
    signals::on_shutdown(pump.shutdown_fn())?;
    pump.run()?;
    tracing::info!("callstream stopped");
    Ok(())
}

/// Logs what the server is about to do: the boot record an operator reads first.
pub fn log_boot(s: &Settings, addr: SocketAddr, runtime: &str) {
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        bind = %addr,
        runtime,
        port_env = std::env::var("PORT").ok().as_deref().unwrap_or("-"),
        server_software = std::env::var("SERVER_SOFTWARE").ok().as_deref().unwrap_or("-"),
        public_base_url = s.public_base_url.as_deref().unwrap_or("(from Host header)"),
        handler = %s.handler.loggable(),
        recordings_dir = s.recordings_dir.as_ref().map(|p| p.display().to_string()).as_deref().unwrap_or("(off)"),
        trust_forwarded_headers = s.trust_forwarded_headers,
        max_connections = s.max_connections,
        metrics = %s.metrics,
        "callstream starting"
    );
    if s.greeting.is_none() && (s.greeting_language.is_some() || s.greeting_voice.is_some()) {
        tracing::warn!(
            "GREETING_LANGUAGE or GREETING_VOICE is set without GREETING: nothing is said"
        );
    }
    let tokens = s.auth_tokens().len();
    let shared_keys = [&s.webhook_shared_key, &s.webhook_shared_key_secondary]
        .into_iter()
        .flatten()
        .filter(|k| !k.is_empty())
        .count();
    if tokens + shared_keys > 0 {
        tracing::info!(
            tokens,
            shared_keys,
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
    listen::log_limits(s.max_connections, s.recordings_dir.is_some());
}

/// What one server shares between its connections: the engine's
/// configuration, the metrics, the options, the open-connection count and
/// the recording thread. Adapters hold it in an `Arc`.
pub struct Server {
    engine: Arc<connection::Config>,
    metrics: Arc<Metrics>,
    opts: Options,
    open: AtomicUsize,
    pressure: Arc<limits::Pressure>,
    recordings: Option<Arc<Recordings>>,
    metrics_listener: Option<metrics_listener::MetricsListener>,
    accept_failures: Arc<listen::AcceptFailures>,
}

impl Server {
    /// A server with fresh metrics, served on `GET /metrics` (with the log
    /// lines dropped) unless the engine renders its own, where
    /// [`Options::metrics`] says: on the public port, nowhere, or on a
    /// listener of its own (bound here; see [`Server::metrics_addr`]). Starts the
    /// recording thread when recordings are on (a directory that cannot be
    /// written is an error here, at boot).
    pub fn new(opts: Options, engine: connection::Config) -> std::io::Result<Arc<Server>> {
        Self::with_metrics(opts, engine, Arc::new(Metrics::default()))
    }

    /// Like [`Server::new`] with metrics of the caller's.
    pub fn with_metrics(
        opts: Options,
        mut engine: connection::Config,
        metrics: Arc<Metrics>,
    ) -> std::io::Result<Arc<Server>> {
        memory::start_trimming();
        let pressure = Arc::new(
            limits::Pressure::new(opts.max_pending, opts.max_unstarted, opts.request_memory)
                .with_max_streams(opts.max_connections),
        );
        let accept_failures = Arc::new(listen::AcceptFailures::default());
        // The engine's own renderer if it has one, else the server's: its
        // counters plus the log, limits and bridge figures.
        let render: metrics_listener::Render = match engine.metrics.take() {
            Some(own) => own,
            None => {
                let m = metrics.clone();
                let p = pressure.clone();
                let a = accept_failures.clone();
                let hooks = opts.hooks.metrics.clone();
                Arc::new(move || {
                    let mut text = m.render();
                    let t = &mut text;
                    metrics::counter(
                        t,
                        "callstream_log_lines_dropped_total",
                        "Log lines dropped because the log sink was slow or closed.",
                        log::dropped_lines(),
                    );
                    metrics::counter(
                        t,
                        "callstream_connections_shed_total",
                        "Connections that were not calls, closed to make room (connection limit, pending limit, limit of streams without start, request memory budget).",
                        p.shed_total(),
                    );
                    metrics::gauge(
                        t,
                        "callstream_pending_connections",
                        "Open connections that are not media streams.",
                        p.pending(),
                    );
                    metrics::gauge(
                        t,
                        "callstream_unstarted_streams",
                        "Media streams whose start has not come.",
                        p.unstarted(),
                    );
                    metrics::gauge(
                        t,
                        "callstream_request_buffer_bytes",
                        "Bytes held by HTTP request buffers across connections.",
                        p.memory(),
                    );
                    metrics::counter(
                        t,
                        "callstream_accept_failures_total",
                        "Accept calls that failed on the server's listeners (out of file descriptors or memory: a listener out of descriptors fails every try, whether a caller waits or not), each followed by a 50 ms pause in accepting.",
                        a.total(),
                    );
                    if let Some((open, max)) = listen::descriptors() {
                        metrics::gauge(t, "process_open_fds", "Open file descriptors.", open);
                        metrics::gauge(
                            t,
                            "process_max_fds",
                            "The soft limit on open file descriptors; accepts fail (EMFILE) at it.",
                            max,
                        );
                    }
                    for hook in &hooks {
                        hook(&mut text);
                    }
                    text
                })
            }
        };
        // The public route renders only when it is where metrics are served
        // (the engine answers 404 without a renderer).
        let metrics_listener = match opts.metrics {
            metrics_listener::MetricsAt::Public => {
                engine.metrics = Some(render);
                None
            }
            metrics_listener::MetricsAt::Off => None,
            metrics_listener::MetricsAt::Listen(addr) => Some(
                metrics_listener::MetricsListener::start(addr, render, accept_failures.clone())?,
            ),
        };
        let recordings = match &opts.recordings_dir {
            Some(dir) => Some(Arc::new(Recordings::start(dir.clone())?)),
            None => None,
        };
        Ok(Arc::new(Server {
            engine: Arc::new(engine),
            metrics,
            opts,
            open: AtomicUsize::new(0),
            pressure,
            recordings,
            metrics_listener,
            accept_failures,
        }))
    }

    /// Where the separate metrics listener listens, when there is one.
    #[must_use]
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_listener
            .as_ref()
            .map(metrics_listener::MetricsListener::local_addr)
    }

    /// Logs where `/metrics` is served (after [`log_boot`]).
    pub fn log_metrics(&self) {
        match (self.opts.metrics, self.metrics_addr()) {
            (_, Some(addr)) => {
                tracing::info!(metrics = %addr, "/metrics is served on its own listener, not on the public port")
            }
            (metrics_listener::MetricsAt::Off, _) => tracing::info!("/metrics is off (404)"),
            _ => {}
        }
    }

    /// The options.
    #[must_use]
    pub fn options(&self) -> &Options {
        &self.opts
    }

    /// The engine's configuration.
    #[must_use]
    pub fn engine(&self) -> &Arc<connection::Config> {
        &self.engine
    }

    /// An adapter's `accept` failed for the listener's sake (not `EAGAIN`
    /// nor [`listen::accept_error_is_transient`]): counted and logged here;
    /// the adapter then stops accepting for [`listen::ACCEPT_BACKOFF`], and
    /// keeps serving the connections it has. The next [`Server::admit`]
    /// logs that accepts succeed again.
    pub fn accept_failed(&self, error: &std::io::Error, now: Instant) {
        self.accept_failures.record(error, now);
    }

    /// Connections open now.
    #[must_use]
    pub fn open_connections(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    /// Takes a new connection in, or refuses it past
    /// [`Options::max_connections`] and its [`limits::HEADROOM`] (`None`:
    /// write [`callstream_core::http::overloaded_response`] and close). The
    /// admission counts the connection until it is dropped.
    #[must_use]
    pub fn admit(self: &Arc<Self>, peer: SocketAddr) -> Option<Admission> {
        self.accept_failures.accepted();
        // Full: make room by shedding the oldest connection that is not a
        // call (`limits`). When every connection is one (or a stream whose
        // `start` is on its way), a few more are taken in that may not
        // become streams, so that health checks and webhooks are still
        // answered; past those, refuse.
        let open = self.open.load(Ordering::Relaxed);
        let mut no_stream = false;
        if open >= self.opts.max_connections && !self.pressure.shed_oldest(Instant::now()) {
            if open >= self.opts.max_connections.saturating_add(limits::HEADROOM) {
                self.metrics.connection_refused();
                tracing::warn!(%peer, limit = self.opts.max_connections, "connection limit reached, answering 503");
                return None;
            }
            no_stream = true;
        }
        self.open.fetch_add(1, Ordering::Relaxed);
        self.metrics.connection_opened();
        // Pending from now, in accept order: the next one to come may shed
        // it before its pump has even started.
        let (key, shed) = self.pressure.register();
        Some(Admission {
            server: self.clone(),
            key,
            shed,
            no_stream,
        })
    }

    /// The engine and observer for a connection from `peer`, accepted at
    /// `now`, counted among the pending connections from here (adapters use
    /// [`Admission::driver`], which counts it from its admission). `waker`
    /// is called (from any thread) when a handler's remote control needs the
    /// connection to run, or the server sheds it: call
    /// [`Driver::handle_timeout`] then.
    #[must_use]
    pub fn driver(
        &self,
        peer: SocketAddr,
        now: Instant,
        waker: Option<callstream_core::connection::Waker>,
    ) -> Driver {
        let (key, shed) = self.pressure.register();
        self.make_driver(key, shed, false, peer, now, waker)
    }

    fn make_driver(
        &self,
        key: u64,
        shed: Arc<limits::ShedSignal>,
        no_stream: bool,
        peer: SocketAddr,
        now: Instant,
        waker: Option<callstream_core::connection::Waker>,
    ) -> Driver {
        let mut conn = Connection::new(self.engine.clone(), now);
        if no_stream {
            conn.refuse_upgrades();
        }
        if let Some(w) = waker {
            conn.set_waker(w.clone());
            shed.set_waker(w);
        }
        Driver {
            conn,
            obs: Observer::new(peer, self.metrics.clone(), self.recordings.clone()),
            guard: PressureGuard {
                pressure: self.pressure.clone(),
                pending: Some(key),
                upgraded: false,
                stream: false,
                held: 0,
                signal: shed.clone(),
            },
            shed,
            sheddable: true,
            now,
            panicked: false,
        }
    }

    /// The last thing before returning from `run`: logs how the drain went
    /// and lets the recording thread finish what it was given (bounded by
    /// the time left before `give_up_at`).
    pub fn finish(&self, give_up_at: Option<Instant>) {
        let open = self.open_connections();
        if open > 0 {
            tracing::warn!(
                open_connections = open,
                "connections still open at the end of the drain period; exiting anyway"
            );
        } else {
            tracing::info!("all connections closed");
        }
        for hook in &self.opts.hooks.finish {
            hook(give_up_at);
        }
        if let Some(r) = &self.recordings {
            let left = give_up_at.map_or(Duration::from_secs(5), |t| {
                t.saturating_duration_since(Instant::now())
            });
            if !r.flush(left) {
                tracing::warn!("recordings still being written at exit");
            }
        }
    }
}

/// A connection counted as open; dropping it closes the count.
pub struct Admission {
    server: Arc<Server>,
    /// Its place among the pending connections ([`limits`]).
    key: u64,
    shed: Arc<limits::ShedSignal>,
    /// Taken in past the call slots: it may not become a stream.
    no_stream: bool,
}

impl Admission {
    /// The engine and observer for this connection (see [`Server::driver`]).
    #[must_use]
    pub fn driver(
        &self,
        peer: SocketAddr,
        now: Instant,
        waker: Option<callstream_core::connection::Waker>,
    ) -> Driver {
        self.server.make_driver(
            self.key,
            self.shed.clone(),
            self.no_stream,
            peer,
            now,
            waker,
        )
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        self.server.pressure.settle(self.key);
        self.server.open.fetch_sub(1, Ordering::Relaxed);
        self.server.metrics.connection_closed();
    }
}

/// One connection's engine and observer: what an adapter's loop drives.
pub struct Driver {
    conn: Connection,
    obs: Observer,
    guard: PressureGuard,
    /// Raised when the server sheds this connection ([`limits`]).
    shed: Arc<limits::ShedSignal>,
    /// Whether it still can be: until it leaves the pending set itself.
    sheddable: bool,
    /// The latest time fed in.
    now: Instant,
    /// The engine panicked (a handler's bug, most likely): this connection
    /// is closed without another word, and the pump's thread, with every
    /// other connection on it, goes on.
    panicked: bool,
}

/// A connection's share of the server's limits: its place among the
/// pending connections and the request memory it is counted for; both are
/// given back when the driver is dropped.
struct PressureGuard {
    pressure: Arc<limits::Pressure>,
    /// Its key while it is pending or a stream without `start`.
    pending: Option<u64>,
    /// It became a stream (and moved to the streams without `start`).
    upgraded: bool,
    /// It holds a stream slot (counted until it is dropped).
    stream: bool,
    held: usize,
    /// The connection's shed signal (it carries the bytes counted as on
    /// their way back once the connection is shed).
    signal: Arc<limits::ShedSignal>,
}

impl Drop for PressureGuard {
    fn drop(&mut self) {
        if self.stream {
            self.pressure.stream_closed();
        }
        if let Some(key) = self.pending.take() {
            self.pressure.settle(key);
        }
        let _ = self
            .pressure
            .account(self.pending, &self.signal, self.held, 0);
    }
}

impl Driver {
    /// A hint that input for this connection is about to be read: starts
    /// loading the state handling it will touch (this driver, the engine's
    /// call state and buffers) into the cache, so that its misses overlap
    /// each other and the read instead of following one another. Pumps call
    /// it when they learn which connection has input, before the read where
    /// they can (the epoll and io_uring reactors; the smol pump calls it
    /// after). See [`prefetch`].
    #[inline]
    pub fn prefetch(&self) {
        prefetch::region(std::ptr::from_ref(self).cast(), size_of::<Driver>());
        self.conn.hot_memory(prefetch::region);
    }

    /// Bytes read from the socket at `now`.
    pub fn handle_receive(&mut self, now: Instant, bytes: &[u8]) {
        self.contain(|d| {
            d.enter(now);
            d.conn.handle_receive(now, bytes);
        });
    }

    /// The peer closed its side (or reading failed) at `now`.
    pub fn handle_eof(&mut self, now: Instant) {
        self.contain(|d| {
            d.enter(now);
            d.conn.handle_eof(now);
        });
    }

    /// The deadline passed, or the waker fired.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.contain(|d| {
            d.enter(now);
            d.conn.handle_timeout(now);
        });
    }

    /// The server is shutting down: the engine decides what closes when
    /// (a live call gets [`connection::Config::shutdown_grace`]).
    pub fn shutdown(&mut self, now: Instant) {
        self.contain(|d| {
            d.enter(now);
            d.conn.shutdown(now);
        });
    }

    /// Every input first applies a shed the server asked for (the waker
    /// brought the pump here).
    fn enter(&mut self, now: Instant) {
        self.now = self.now.max(now);
        // Every stream slot taken: an upgrade on this connection gets 503
        // (health checks and webhooks are still answered).
        if !self.guard.stream && self.guard.pressure.streams_full() {
            self.conn.refuse_upgrades();
        }
        if self.sheddable && self.shed.take() {
            self.conn.shed(self.now);
        }
    }

    /// Runs `f` on the engine unless it panicked before; a panic now (from
    /// a handler, which the engine calls) is logged and ends this
    /// connection only.
    fn contain<R>(&mut self, f: impl FnOnce(&mut Self) -> R) -> Option<R> {
        if self.panicked {
            return None;
        }
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(self))) {
            Ok(r) => Some(r),
            Err(payload) => {
                self.panicked = true;
                // It leaves the pending set now: a closing connection is no
                // candidate for shedding.
                if let Some(key) = self.guard.pending.take() {
                    self.guard.pressure.settle(key);
                }
                log_panic(
                    &self.obs,
                    payload.as_ref(),
                    "the connection's handler panicked: this connection is closed, every other goes on",
                );
                None
            }
        }
    }

    /// Drains the engine (its events to the observer) until it names a
    /// deadline or asks to close. Then counts the connection's request
    /// buffers against the server's budget (shedding it when its growth
    /// crossed it) and leaves the pending set once it is a media stream.
    #[must_use]
    pub fn poll_output(&mut self) -> Drained {
        self.contain(Self::drain).unwrap_or(Drained::Close)
    }

    fn drain(&mut self) -> Drained {
        // A shed raised before the pump first got here (or between inputs).
        self.enter(self.now);
        let mut drained = observer::drain(&mut self.conn, &mut self.obs);
        let mut held = self.conn.request_buffer_bytes();
        let g = &mut self.guard;
        // Over budget, the oldest other pending connections are shed first;
        // this one only when they cannot make room.
        if g.pressure.account(g.pending, &g.signal, g.held, held) {
            // Recorded as held: a panic below must not leave it uncounted.
            g.held = held;
            g.pressure.shed_for_memory();
            self.conn.shed(self.now);
            drained = observer::drain(&mut self.conn, &mut self.obs);
            let left = self.conn.request_buffer_bytes();
            let _ = g.pressure.account(g.pending, &g.signal, held, left);
            held = left;
        }
        g.held = held;
        if !g.stream && self.conn.is_stream() {
            g.stream = true;
            // Past every stream slot (a connection taken in before the slots
            // filled, upgrading after): this one gives way.
            if !g.pressure.stream_opened() {
                g.pressure.shed_for_slots();
                self.conn.shed(self.now);
                drained = observer::drain(&mut self.conn, &mut self.obs);
            }
        }
        if let Some(key) = g.pending {
            if self.conn.is_call_started() || matches!(drained, Drained::Close) {
                // Out of the pending set by its own hand, it is never shed:
                // its signal need not be looked at again (a cold line per
                // frame).
                g.pending = None;
                self.sheddable = !g.pressure.settle(key);
            } else if self.conn.is_stream() && !g.upgraded {
                // Upgraded, not started: sheddable still, among the streams
                // waiting for `start` (a shed raised meanwhile stays raised).
                g.upgraded = true;
                g.pressure.upgraded(key, self.now);
            }
        }
        drained
    }

    /// Bytes to write (none once the engine panicked: what it held may be
    /// half a frame).
    #[must_use]
    pub fn transmit(&self) -> &[u8] {
        if self.panicked {
            return &[];
        }
        self.conn.transmit()
    }

    /// `n` bytes of [`Driver::transmit`] were written.
    pub fn consume_transmit(&mut self, n: usize) {
        if !self.panicked {
            self.conn.consume_transmit(n);
        }
    }

    /// Writes as much of [`Driver::transmit`] as `socket` (nonblocking)
    /// takes without waiting: `Ok` once all of it is written or the socket
    /// would block, an error when the write failed (`WriteZero` for a socket
    /// that took nothing).
    pub fn write_now(&mut self, mut socket: impl std::io::Write) -> std::io::Result<()> {
        while !self.transmit().is_empty() {
            match socket.write(self.transmit()) {
                Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
                Ok(n) => self.consume_transmit(n),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// The connection is gone: completes a call that never saw its end
    /// (dropping the driver does the same).
    pub fn finish(self) {}
}

impl Drop for Driver {
    /// Whichever way the connection went (finished, or dropped with its
    /// task at the end of a drain), its call's last frames are counted and
    /// its `WS_STOP` logged.
    ///
    /// The handler is dropped here too, inside a guard: a handler whose
    /// `Drop` panics is logged, and the pump dropping this driver (with
    /// every other connection on its thread) goes on.
    fn drop(&mut self) {
        self.obs.finish(self.conn.call_stats());
        let dropped = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.conn.drop_session();
        }));
        if let Err(payload) = dropped {
            log_panic(
                &self.obs,
                payload.as_ref(),
                "the connection's handler panicked while being dropped: every other connection goes on",
            );
        }
    }
}

/// Logs a handler's panic on a connection: who, and what the panic said
/// (when it said it with a string).
fn log_panic(obs: &Observer, payload: &(dyn std::any::Any + Send), what: &str) {
    let said = payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(not a string)".to_owned());
    tracing::error!(
        peer = %obs.peer(), call_sid = obs.call_sid().unwrap_or("-"), panic = %said,
        "{what}"
    );
}

/// What this crate's tests share: a server configured from flags, a media
/// stream as Twilio opens it, and the server's metrics read back.
#[cfg(test)]
pub(crate) mod testing {
    use crate::metrics::Metrics;
    use callstream_core::connection;

    /// The engine's configuration and the server's options from `flags`
    /// (after the program name), with signature checks off.
    pub fn configured(flags: &[&str]) -> (connection::Config, crate::Options) {
        use clap::Parser as _;
        let args = ["callstream", "--insecure-no-signatures"]
            .iter()
            .chain(flags);
        let settings = crate::config::Cli::try_parse_from(args).unwrap().settings();
        crate::configure(&settings).unwrap()
    }

    /// Twilio's upgrade to the media stream route.
    pub const UPGRADE: &[u8] = b"GET /ws/twilio-media HTTP/1.1\r\nHost: x.example\r\n\
        Connection: Upgrade\r\nUpgrade: websocket\r\n\
        Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";

    /// One 20 ms frame of μ-law silence.
    pub const SILENCE: [u8; 160] = [0xFF; 160];

    /// The server's count of a metric, read from its rendering.
    pub fn metric(metrics: &Metrics, name: &str) -> u64 {
        metrics
            .render()
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("{name} not rendered"))
    }
}

#[cfg(test)]
mod tests {
    use super::testing::{SILENCE, UPGRADE, configured, metric};
    use super::*;
    use callstream_twilio::frame::text_frame as frame;
    use callstream_twilio::{Stream, Twilio};

    /// A bridge handler needs the extension that serves it: without one
    /// the boot says so (and never shows a ws:// URL's credentials); with
    /// one, its hooks are the server's.
    #[test]
    fn a_handler_no_extension_serves_stops_the_boot() {
        use clap::Parser as _;
        let settings = |handler: &str| {
            config::Cli::try_parse_from([
                "callstream",
                "--insecure-no-signatures",
                "--handler",
                handler,
            ])
            .unwrap()
            .settings()
        };
        let err = configure(&settings("wss://u:s3cret@bot.test/x"))
            .unwrap_err()
            .0;
        assert!(
            err.contains("wss://bot.test/x") && err.contains("not linked"),
            "{err}"
        );
        assert!(!err.contains("s3cret"), "{err}");
        assert!(configure(&settings("exec:true")).is_err());
        assert!(configure(&settings("echo")).is_ok());

        struct Fake;
        impl extension::Extension for Fake {
            fn serves(&self, spec: &handlers::HandlerSpec) -> bool {
                matches!(spec, handlers::HandlerSpec::Exec(_))
            }
            fn install(
                &self,
                _: &Settings,
                _: &mut connection::Config,
            ) -> Result<extension::Installed, SettingsError> {
                Ok(extension::Installed {
                    handlers: callstream_core::handler::by_name("echo").unwrap(),
                    finish: Some(Arc::new(|_| {})),
                    metrics: Some(Arc::new(|t: &mut String| t.push_str("fake 1\n"))),
                })
            }
        }
        let (_, opts) = configure_with(&settings("exec:true"), &[&Fake]).unwrap();
        assert_eq!((opts.hooks.finish.len(), opts.hooks.metrics.len()), (1, 1));
        assert!(configure_with(&settings("ws://bot.test/"), &[&Fake]).is_err());
    }

    /// A socket that takes what `takes` says, one answer per write.
    struct Socket {
        takes: std::collections::VecDeque<std::io::Result<usize>>,
        got: Vec<u8>,
    }

    impl std::io::Write for Socket {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            let n = self
                .takes
                .pop_front()
                .unwrap_or(Ok(usize::MAX))?
                .min(buf.len());
            self.got.extend_from_slice(&buf[..n]);
            Ok(n)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn write_now_writes_what_the_socket_takes_and_keeps_the_rest() {
        use std::io::ErrorKind::{BrokenPipe, Interrupted, WouldBlock, WriteZero};
        let (engine, options) = configured(&[]);
        let server = Server::new(options, engine).unwrap();
        let peer = SocketAddr::from(([127, 0, 0, 1], 5000));
        let admission = server.admit(peer).unwrap();
        let mut driver = admission.driver(peer, Instant::now(), None);
        driver.handle_receive(Instant::now(), UPGRADE);
        let _ = driver.poll_output();
        let answer = driver.transmit().to_vec();
        assert!(
            answer.starts_with(b"HTTP/1.1 101"),
            "the upgrade is answered"
        );
        let socket = |takes: Vec<std::io::Result<usize>>| Socket {
            takes: takes.into(),
            got: Vec::new(),
        };
        // Part, an interruption, part, then the socket is full: what it took
        // is gone from the transmit buffer, the rest waits.
        let mut s = socket(vec![
            Ok(10),
            Err(Interrupted.into()),
            Ok(5),
            Err(WouldBlock.into()),
        ]);
        driver.write_now(&mut s).unwrap();
        assert_eq!(s.got, answer[..15]);
        assert_eq!(driver.transmit(), &answer[15..]);
        // A socket that takes nothing, or fails: an error, nothing consumed.
        let mut s = socket(vec![Ok(0)]);
        assert_eq!(driver.write_now(&mut s).unwrap_err().kind(), WriteZero);
        let mut s = socket(vec![Err(BrokenPipe.into())]);
        assert_eq!(driver.write_now(&mut s).unwrap_err().kind(), BrokenPipe);
        assert_eq!(driver.transmit(), &answer[15..]);
        // Then it takes the rest.
        let mut s = socket(vec![]);
        driver.write_now(&mut s).unwrap();
        assert_eq!(s.got, answer[15..]);
        assert!(driver.transmit().is_empty());
    }

    /// A pump may drop a driver without `finish` (a task cancelled at the
    /// end of a drain): the call's frames are still counted, all of them.
    #[test]
    fn a_dropped_driver_counts_every_frame_of_its_call() {
        let (engine, options) = configured(&["--handler", "echo"]);
        let metrics = Arc::new(Metrics::default());
        let server = Server::with_metrics(options, engine, metrics.clone()).unwrap();
        let peer = SocketAddr::from(([127, 0, 0, 1], 5000));
        let admission = server.admit(peer).unwrap();
        let mut t = Instant::now();
        let mut driver = admission.driver(peer, t, None);
        let step = |driver: &mut Driver, t: Instant, bytes: &[u8]| {
            driver.handle_receive(t, bytes);
            assert!(matches!(driver.poll_output(), Drained::Timeout(_)));
            let n = driver.transmit().len();
            driver.consume_transmit(n);
        };
        let mut twilio = Twilio::new(Stream::default());
        step(&mut driver, t, UPGRADE);
        step(&mut driver, t, &frame(&twilio.start(&[])));
        for _ in 0..30 {
            t += Duration::from_millis(20);
            step(&mut driver, t, &frame(&twilio.media(&SILENCE)));
        }
        // Under the batch: nothing counted yet while the call lives.
        assert_eq!(metric(&metrics, "callstream_frames_in_total"), 0);
        drop(driver);
        assert_eq!(metric(&metrics, "callstream_frames_in_total"), 30);
        assert!(metric(&metrics, "callstream_frames_out_total") > 0);
    }

    /// A handler whose `Drop` panics: dropping its driver contains the
    /// panic (the pump, and every other connection on its thread, go on),
    /// and the call is still counted.
    #[test]
    fn a_handler_panicking_in_drop_stays_inside_its_driver() {
        use callstream_core::call::CallEvent;
        use callstream_core::handler::{Control, Handler, HandlerFactory, session_factory};

        struct Sour;
        impl Handler for Sour {
            fn on_event(&mut self, _: &CallEvent, _: &mut Control<'_>) {}
        }
        impl Drop for Sour {
            fn drop(&mut self) {
                panic!("a handler's bug in drop (the test's own)");
            }
        }
        let (mut engine, options) = configured(&[]);
        let sour: HandlerFactory = Arc::new(|_| Box::new(Sour) as Box<dyn Handler>);
        engine.session = Some(session_factory(Default::default(), sour));
        let metrics = Arc::new(Metrics::default());
        let server = Server::with_metrics(options, engine, metrics.clone()).unwrap();
        let peer = SocketAddr::from(([127, 0, 0, 1], 5001));
        let mut t = Instant::now();
        let mut driver = server.admit(peer).unwrap().driver(peer, t, None);
        let mut twilio = Twilio::new(Stream::default());
        for bytes in [UPGRADE.to_vec(), frame(&twilio.start(&[]))] {
            driver.handle_receive(t, &bytes);
            assert!(matches!(driver.poll_output(), Drained::Timeout(_)));
        }
        for _ in 0..5 {
            t += Duration::from_millis(20);
            driver.handle_receive(t, &frame(&twilio.media(&SILENCE)));
            assert!(matches!(driver.poll_output(), Drained::Timeout(_)));
        }
        let dropped = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| drop(driver)));
        assert!(dropped.is_ok(), "the handler's panic escaped the driver");
        assert_eq!(metric(&metrics, "callstream_frames_in_total"), 5);
    }
}
