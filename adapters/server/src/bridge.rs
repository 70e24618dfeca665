//! The program bridge (docs/bridge.md): each call handed to a program of the
//! operator's, over JSON lines (`--handler exec:<command>`, one process per
//! call) or a WebSocket (`--handler ws://…`, one connection per call).
//!
//! - [`protocol`]: the version 1 messages, both ways;
//! - [`handler`]: the `Handler` on the pump thread, which never blocks: it
//!   queues messages for the program and assembles caller turns;
//! - `link`: what the program's messages do to the call, through the
//!   session's `RemoteControl`, and what a failure does;
//! - [`exec`] and [`ws`]: the transports, on their own threads;
//! - [`resample`]: any rate to the call's 8 kHz and back;
//! - [`after`]: the call after the stream (`transfer`, `end`, `hangup`).
//!
//! The core stays I/O-free: everything here is the server layer's.
pub mod after;
pub mod exec;
pub mod handler;
mod link;
mod outbox;
pub mod protocol;
pub mod reaper;
pub mod ws;

use std::sync::Arc;

use callstream_core::handler::{Handler, HandlerFactory};
use callstream_core::message::Start;

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

/// What the call does when its bridge fails
/// (`CALLSTREAM_BRIDGE_ON_FAILURE`, `--bridge-on-failure`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum OnFailure {
    /// The call stays connected, in silence, until the caller hangs up.
    Continue,
    /// The stream is closed cleanly and the call ends (the default).
    #[default]
    Hangup,
}

/// A server's bridge: the transport, the failure policy, the decisions for
/// after the stream, and the live programs.
#[derive(Debug)]
pub struct Bridge {
    /// Where calls go.
    pub transport: Transport,
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
        let children = self.children.clone();
        let (call, stream, account) = (
            start.call_sid.to_string(),
            start.stream_sid.to_string(),
            start.account_sid.to_string(),
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
                    Transport::Ws(url) => ws::run(url, &facts, l),
                }
            });
        if let Err(e) = spawned {
            link.fail_on_pump(&format!("cannot start the bridge's thread: {e}"));
        }
    }
}

/// The bridge's counters, for `/metrics` and the benchmarks.
pub mod metrics {
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
            s.push_str(&format!(
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}\n",
                v.load(Ordering::Relaxed)
            ));
        }
        s
    }
}
