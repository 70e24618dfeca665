//! # callstream-bridge
//!
//! The program bridge (docs/bridge.md): each call handed to a program of the
//! operator's, over JSON lines (`--handler exec:<command>`, one process per
//! call) or a WebSocket (`--handler ws://…`, one connection per call).
//!
//! A crate of its own, an [`Extension`] of the server layer: the
//! `callstream` binary links it ([`BridgeExtension`]); the pumps do not, so
//! its HTTP client, TLS stack and process control are only where a bridge
//! can run.
//!
//! - [`protocol`]: the version 1 messages, both ways;
//! - [`handler`]: the `Handler` on the pump thread, which never blocks: it
//!   queues messages for the program and assembles caller turns;
//! - `link`: what the program's messages do to the call, through the
//!   session's `RemoteControl`, and what a failure does;
//! - [`exec`] and [`ws`]: the transports, on their own threads;
//! - the core's `resample`: any rate to the call's 8 kHz and back;
//! - [`after`]: the call after the stream (`transfer`, `end`, `hangup`).
//!
//! The core stays I/O-free: everything here is above it.
#![warn(missing_docs)]

pub mod after;
pub mod cancel;
pub mod exec;
pub mod handler;
mod link;
mod outbox;
pub mod protocol;
pub mod reaper;
pub mod ws;

use std::sync::Arc;
use std::time::{Duration, Instant};

use callstream_core::connection;
use callstream_core::handler::{Handler, HandlerFactory};
use callstream_core::wire::StreamStart as Start;
use callstream_server::SettingsError;
use callstream_server::config::Settings;
use callstream_server::extension::{Extension, Installed};
use callstream_server::handlers::HandlerSpec;

pub use callstream_server::config::OnFailure;

pub use after::{After, BridgeApp, Next, Rest};
pub use exec::Children;
pub use handler::BridgeHandler;
pub use link::MAX_WAV_BYTES;

/// Where calls go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Transport {
    /// `sh -c <command>` per call.
    Exec(String),
    /// A WebSocket per call to this `ws://` or `wss://` URL.
    Ws(String),
}

/// The bridge as the server layer's extension for `exec:` and `ws://`
/// handlers: its failure policy, its decisions for after the stream
/// (redirecting through Twilio's REST API when the account SID and auth
/// token are set), installed as the engine's application so that
/// `stream_ended` answers them; at the end of a drain it waits for its
/// programs and kills what is left; it adds its counters to `/metrics`.
#[derive(Debug, Clone, Copy, Default)]
pub struct BridgeExtension;

impl Extension for BridgeExtension {
    fn serves(&self, spec: &HandlerSpec) -> bool {
        transport(spec).is_some()
    }

    fn install(
        &self,
        s: &Settings,
        c: &mut connection::Config,
    ) -> Result<Installed, SettingsError> {
        let Some(transport) = transport(&s.handler) else {
            return Err(SettingsError(format!(
                "{}: not a program bridge handler",
                s.handler.loggable()
            )));
        };
        // The auth token as cleaned at boot, not as configured.
        let rest = match (&s.account_sid, c.auth_tokens.first()) {
            (Some(sid), Some(token)) => {
                let base = s.twilio_api_base_url.trim_end_matches('/').to_owned();
                if !(base.starts_with("https://") || base.starts_with("http://")) {
                    return Err(SettingsError(format!(
                        "TWILIO_API_BASE_URL {base:?}: expected an http(s) URL"
                    )));
                }
                Some(Rest {
                    base,
                    account_sid: sid.clone(),
                    auth_token: token.clone(),
                })
            }
            _ => None,
        };
        let ws_bearer = match (&transport, s.bridge_ws_bearer.as_deref()) {
            (_, None | Some("")) => None,
            (Transport::Exec(_), Some(_)) => {
                return Err(SettingsError(
                    "CALLSTREAM_BRIDGE_WS_BEARER is for ws:// and wss:// handlers: an exec: program gets its own credentials through its own variable".to_owned(),
                ));
            }
            (Transport::Ws(url), Some(token)) => {
                if ws::has_credentials(url) {
                    return Err(SettingsError(
                        "CALLSTREAM_BRIDGE_WS_BEARER and credentials in the handler URL: choose one (the URL's go as Basic)".to_owned(),
                    ));
                }
                if token.bytes().any(|b| !(0x21..=0x7e).contains(&b)) {
                    return Err(SettingsError(
                        "CALLSTREAM_BRIDGE_WS_BEARER: a token is visible ASCII without spaces"
                            .to_owned(),
                    ));
                }
                if url.starts_with("ws://") && !ws::is_loopback(url) {
                    tracing::warn!(
                        "CALLSTREAM_BRIDGE_WS_BEARER goes to a ws:// service on another host: the token crosses the network in clear (use wss://)"
                    );
                }
                Some(Arc::<str>::from(token))
            }
        };
        let after = Arc::new(After::new(rest));
        c.app = Arc::new(BridgeApp {
            stream: c.app.clone(),
            after: after.clone(),
        });
        if matches!(transport, Transport::Exec(_)) {
            // At boot, so that a refusal is logged before the first call.
            reaper::become_subreaper();
        }
        let bridge = Arc::new(Bridge {
            transport,
            ws_bearer,
            on_failure: s.bridge_on_failure,
            after,
            children: Arc::new(Children::default()),
        });
        let children = bridge.children.clone();
        Ok(Installed {
            handlers: bridge.factory(),
            finish: Some(Arc::new(move |give_up_at| finish(&children, give_up_at))),
            metrics: Some(Arc::new(|text: &mut String| {
                text.push_str(&metrics::render());
            })),
        })
    }
}

/// The bridge transport a handler setting names, if it names one.
#[must_use]
pub fn transport(spec: &HandlerSpec) -> Option<Transport> {
    match spec {
        HandlerSpec::Exec(c) => Some(Transport::Exec(c.clone())),
        HandlerSpec::Remote(u) => Some(Transport::Ws(u.clone())),
        _ => None,
    }
}

/// The end of a drain: every program is reaped before the server returns;
/// those still running when the drain period is nearly over are killed,
/// and so is what they left outside their groups.
fn finish(children: &Children, give_up_at: Option<Instant>) {
    let until = give_up_at.unwrap_or_else(|| Instant::now() + exec::GRACE * 3);
    if !children.wait_all(until) {
        tracing::warn!(
            programs = children.count(),
            "bridge programs still running at the end of the drain period: SIGKILL"
        );
        children.kill_all();
        if !children.wait_all(Instant::now() + Duration::from_secs(1)) {
            tracing::error!(programs = children.count(), "bridge programs not reaped");
        }
    }
    reaper::sweep();
}

/// A server's bridge: the transport, the failure policy, the decisions for
/// after the stream, and the live programs.
#[derive(Debug)]
pub struct Bridge {
    /// Where calls go.
    pub transport: Transport,
    /// Sent as `Authorization: Bearer` to a ws service.
    pub ws_bearer: Option<Arc<str>>,
    /// What a failure does.
    pub on_failure: OnFailure,
    /// Decisions for `stream_ended`.
    pub after: Arc<After>,
    /// Live programs (exec), for the server's shutdown.
    pub children: Arc<Children>,
}

impl Bridge {
    /// A bridge with its own decision store (no REST) and child list.
    #[must_use]
    pub fn new(transport: Transport) -> Bridge {
        Bridge {
            transport,
            ws_bearer: None,
            on_failure: OnFailure::default(),
            after: Arc::new(After::new(None)),
            children: Arc::new(Children::default()),
        }
    }

    /// The handler factory: a [`BridgeHandler`] per call.
    #[must_use]
    pub fn factory(self: Arc<Self>) -> HandlerFactory {
        Arc::new(move |start: &Start| {
            Box::new(BridgeHandler::new(self.clone(), start)) as Box<dyn Handler>
        })
    }

    /// Starts the call's transport on its own thread.
    fn spawn(&self, start: &Start, params: &[(String, String)], link: Arc<link::Link>) {
        let transport = self.transport.clone();
        let bearer = self.ws_bearer.clone();
        let children = self.children.clone();
        let (call, stream, account) = (
            start.call_id.clone(),
            start.stream_id.clone(),
            start.account_id.clone(),
        );
        let params = params.to_vec();
        let l = link.clone();
        let spawned = std::thread::Builder::new()
            .name("bridge".to_owned())
            .stack_size(256 * 1024)
            .spawn(move || {
                let facts = exec::Facts {
                    call_sid: &call,
                    stream_sid: &stream,
                    account_sid: &account,
                    parameters: &params,
                };
                match &transport {
                    Transport::Exec(command) => exec::run(command, &facts, l, children),
                    Transport::Ws(url) => ws::run(url, bearer.as_deref(), &facts, l),
                }
            });
        if let Err(e) = spawned {
            link.fail_on_pump(&format!("cannot start the bridge's thread: {e}"));
        }
    }
}

/// The bridge's counters, for `/metrics` and the benchmarks.
pub mod metrics {
    use callstream_server::metrics::AtomicHistogram;
    use std::sync::atomic::{AtomicU64, Ordering};

    /// Calls bridged.
    pub static CALLS: AtomicU64 = AtomicU64::new(0);
    /// Bridge failures (crash, hang, over-long line, service down…).
    pub static FAILURES: AtomicU64 = AtomicU64::new(0);
    /// Raw audio frames dropped because a program read too slowly.
    pub static AUDIO_DROPPED: AtomicU64 = AtomicU64::new(0);
    /// Lines from programs dropped as unusable.
    pub static BAD_LINES: AtomicU64 = AtomicU64::new(0);
    /// `play` messages queued.
    pub static PLAYS: AtomicU64 = AtomicU64::new(0);
    /// Utterances written to programs.
    pub static UTTERANCES: AtomicU64 = AtomicU64::new(0);
    /// Sum of (utterance written − caller's turn ended), µs.
    pub static UTTERANCE_US: AtomicU64 = AtomicU64::new(0);
    /// Largest such delay, µs.
    pub static UTTERANCE_US_MAX: AtomicU64 = AtomicU64::new(0);
    /// Bounds of the bridge's latency histograms, seconds: fine around the
    /// 20 ms a frame lasts.
    const BOUNDS: [f64; 12] = [
        0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
    ];
    /// The caller's turn ended (the detector decided) → its `utterance`
    /// written to the program, whole.
    pub static UTTERANCE_LATENCY: AtomicHistogram = AtomicHistogram::new(&BOUNDS);
    /// A `play` read from the program → its first audio handed to the call
    /// with none of ours queued (so it goes out in that same turn of the
    /// loop). A play behind audio still playing waits for it by design and
    /// is not counted.
    pub static PLAY_LATENCY: AtomicHistogram = AtomicHistogram::new(&BOUNDS);

    /// The counters in Prometheus' text format.
    #[must_use]
    pub fn render() -> String {
        let mut s = String::new();
        for (name, help, v) in [
            (
                "callstream_bridge_calls_total",
                "Calls handed to a program.",
                &CALLS,
            ),
            (
                "callstream_bridge_failures_total",
                "Bridge failures (crash, hang, over-long line, service down).",
                &FAILURES,
            ),
            (
                "callstream_bridge_audio_frames_dropped_total",
                "Raw audio frames dropped because a program read too slowly.",
                &AUDIO_DROPPED,
            ),
            (
                "callstream_bridge_bad_lines_total",
                "Lines from programs dropped as unusable.",
                &BAD_LINES,
            ),
            (
                "callstream_bridge_plays_total",
                "play messages queued.",
                &PLAYS,
            ),
            (
                "callstream_bridge_utterances_total",
                "Utterances written to programs.",
                &UTTERANCES,
            ),
        ] {
            callstream_server::metrics::counter(&mut s, name, help, v.load(Ordering::Relaxed));
        }
        UTTERANCE_LATENCY.render(
            &mut s,
            "callstream_bridge_utterance_seconds",
            "The caller's turn ended (the detector decided) to its utterance written to the program.",
        );
        PLAY_LATENCY.render(
            &mut s,
            "callstream_bridge_play_seconds",
            "A play read from the program to its first audio handed to the call, when none of ours was queued.",
        );
        s
    }
}
