//! Applications the server layer does not carry itself (the program bridge,
//! and any other heavy handler), added by the binary that links them.
//!
//! An [`Extension`] claims the handler settings it serves (`exec:…`,
//! `ws://…` for the bridge) and installs itself into the engine at
//! [`configure_with`](crate::configure_with): the handler for each call, the
//! engine's application if it answers webhooks of its own, what to do at the
//! end of a drain and what to add to `/metrics`. The pumps never link an
//! extension, so its dependencies (an HTTP client, TLS, process control) are
//! only in binaries that ask for them.
use crate::SettingsError;
use crate::config::Settings;
use crate::handlers::HandlerSpec;
use callstream_core::connection;
use callstream_core::handler::HandlerFactory;
use std::sync::Arc;
use std::time::Instant;

/// Runs at the end of a drain ([`Server::finish`](crate::Server::finish)),
/// with the time the server gives up at, if it has one.
pub type FinishHook = Arc<dyn Fn(Option<Instant>) + Send + Sync>;

/// Appends Prometheus text to `/metrics`.
pub type MetricsHook = Arc<dyn Fn(&mut String) + Send + Sync>;

/// What the server runs on behalf of its extensions.
#[derive(Clone, Default)]
pub struct Hooks {
    /// At the end of a drain.
    pub finish: Vec<FinishHook>,
    /// When `/metrics` is rendered.
    pub metrics: Vec<MetricsHook>,
}

impl std::fmt::Debug for Hooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hooks")
            .field("finish", &self.finish.len())
            .field("metrics", &self.metrics.len())
            .finish()
    }
}

/// What an extension installed.
pub struct Installed {
    /// The handler for each call.
    pub handlers: HandlerFactory,
    /// What to do at the end of a drain (reap programs, say).
    pub finish: Option<FinishHook>,
    /// What to add to `/metrics`.
    pub metrics: Option<MetricsHook>,
}

/// An application chosen by the handler setting.
pub trait Extension: Send + Sync {
    /// Whether the handler setting is this extension's.
    fn serves(&self, spec: &HandlerSpec) -> bool;

    /// Installs the application for these settings into the engine's
    /// configuration (which `configure_with` has filled in already: the
    /// extension may wrap its `app`).
    ///
    /// # Errors
    ///
    /// A setting that cannot work, said as the boot says it.
    fn install(
        &self,
        s: &Settings,
        engine: &mut connection::Config,
    ) -> Result<Installed, SettingsError>;
}
