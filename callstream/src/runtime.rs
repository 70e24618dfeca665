//! Which pump runs the server: the one the settings name, else the one that
//! spends the least CPU per media frame on this platform (BENCHMARKS.md,
//! "Today's figures": io_uring on Linux, 1.12–1.13× the syscall floor with
//! one thread, where epoll took 1.13–1.26×), falling back, with a log line,
//! where the one chosen is not available here (io_uring refused by a
//! seccomp profile such as Docker's default, a sandbox such as gVisor, or
//! an old kernel: then epoll). The pumps never depend on each other: this
//! is the only place that knows them all.
use callstream_server::config::{Runtime, Settings};
use callstream_server::{Pump, Server};
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

/// The runtime used when none is named.
pub fn default_runtime() -> Runtime {
    if cfg!(target_os = "linux") {
        Runtime::Uring
    } else {
        Runtime::Smol
    }
}

/// Runs the server on the chosen runtime until SIGTERM or SIGINT.
pub fn serve(s: Settings) -> Result<(), Box<dyn std::error::Error>> {
    let named = s.runtime.is_some();
    let wanted = s.runtime.unwrap_or_else(default_runtime);
    // The program bridge serves `exec:` and `ws://` handlers.
    let extensions: [&dyn callstream_server::extension::Extension; 1] =
        [&callstream_bridge::BridgeExtension];
    callstream_server::serve_with(&s, &extensions, |server| bind(wanted, named, server))
}

/// Any of the pumps.
enum AnyPump {
    Smol(callstream_smol::SmolServer),
    Blocking(callstream_blocking::BlockingServer),
    #[cfg(target_os = "linux")]
    Epoll(callstream_epoll::EpollServer),
    #[cfg(target_os = "linux")]
    Uring(callstream_uring::UringServer),
}

/// The pump for `wanted` (`named`: the settings asked for it, rather than
/// it being the default, so a fallback is a warning).
fn bind(wanted: Runtime, named: bool, server: Arc<Server>) -> io::Result<AnyPump> {
    let pump = match wanted {
        Runtime::Smol => callstream_smol::SmolServer::bind(server).map(AnyPump::Smol)?,
        Runtime::Blocking => {
            callstream_blocking::BlockingServer::bind(server).map(AnyPump::Blocking)?
        }
        #[cfg(target_os = "linux")]
        Runtime::Epoll => callstream_epoll::EpollServer::bind(server).map(AnyPump::Epoll)?,
        #[cfg(target_os = "linux")]
        Runtime::Uring => match callstream_uring::available() {
            Ok(()) => {
                let options = callstream_uring::UringOptions::from_env()
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
                callstream_uring::UringServer::bind_with(server, options).map(AnyPump::Uring)?
            }
            // A seccomp profile (Docker's default refuses io_uring), a
            // sysctl, an old kernel: the same server on epoll.
            Err(e) => {
                if named {
                    tracing::warn!(error = %e, "io_uring is not available here: running on epoll instead");
                } else {
                    tracing::info!(error = %e, "io_uring is not available here: running on epoll");
                }
                callstream_epoll::EpollServer::bind(server).map(AnyPump::Epoll)?
            }
        },
        #[cfg(not(target_os = "linux"))]
        Runtime::Epoll | Runtime::Uring => {
            tracing::warn!(runtime = %wanted, "this runtime needs Linux: running on smol instead");
            callstream_smol::SmolServer::bind(server).map(AnyPump::Smol)?
        }
    };
    Ok(pump)
}

impl Pump for AnyPump {
    fn runtime(&self) -> Runtime {
        match self {
            AnyPump::Smol(p) => p.runtime(),
            AnyPump::Blocking(p) => p.runtime(),
            #[cfg(target_os = "linux")]
            AnyPump::Epoll(p) => p.runtime(),
            #[cfg(target_os = "linux")]
            AnyPump::Uring(p) => p.runtime(),
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        match self {
            AnyPump::Smol(p) => Pump::local_addr(p),
            AnyPump::Blocking(p) => Pump::local_addr(p),
            #[cfg(target_os = "linux")]
            AnyPump::Epoll(p) => Pump::local_addr(p),
            #[cfg(target_os = "linux")]
            AnyPump::Uring(p) => Pump::local_addr(p),
        }
    }

    fn shutdown_fn(&self) -> impl FnOnce() + Send + 'static {
        let f: Box<dyn FnOnce() + Send> = match self {
            AnyPump::Smol(p) => Box::new(p.shutdown_fn()),
            AnyPump::Blocking(p) => Box::new(p.shutdown_fn()),
            #[cfg(target_os = "linux")]
            AnyPump::Epoll(p) => Box::new(p.shutdown_fn()),
            #[cfg(target_os = "linux")]
            AnyPump::Uring(p) => Box::new(p.shutdown_fn()),
        };
        move || f()
    }

    fn run(self) -> io::Result<()> {
        match self {
            AnyPump::Smol(p) => Pump::run(p),
            AnyPump::Blocking(p) => Pump::run(p),
            #[cfg(target_os = "linux")]
            AnyPump::Epoll(p) => Pump::run(p),
            #[cfg(target_os = "linux")]
            AnyPump::Uring(p) => Pump::run(p),
        }
    }
}
