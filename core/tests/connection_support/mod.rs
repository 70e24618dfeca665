//! A scripted peer for `Connection`: bytes in, every output drained the way
//! the crate docs say an adapter must, bytes and events collected. Twilio's
//! framing comes from `callstream-twilio`.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use callstream_core::connection::{
    CloseReason, Config, Connection, Event, Output, Route, Routes, StreamApp,
};

pub const TOKEN: &str = "12345";

/// The paths these tests request: the layout the callstream server serves.
pub fn routes() -> Routes {
    Routes::new()
        .route("/healthz", Route::Healthz)
        .route("/version", Route::Version)
        .route("/metrics", Route::Metrics)
        .route("/webhook/incoming_call", Route::IncomingCall)
        .route("/webhook/incoming_call_preview", Route::IncomingCallPreview)
        .route("/webhook/stream_status", Route::StreamStatus)
        .route("/webhook/stream_ended", Route::StreamEnded)
        .route("/webhook/call_status", Route::CallStatus)
        .route("/webhook/handle_recording", Route::HandleRecording)
        .route("/ws/twilio-media", Route::MediaStream)
}

/// A stream answer with the call's SID and numbers as parameters.
pub fn stream_app() -> StreamApp {
    StreamApp {
        call_parameters: [("call_sid", "CallSid"), ("from", "From"), ("to", "To")]
            .map(|(name, from)| (name.to_owned(), from.to_owned()))
            .to_vec(),
        ..StreamApp::default()
    }
}

/// The version document these tests expect.
pub const VERSION: &str = concat!(
    "{\"name\":\"callstream\",\"version\":\"",
    env!("CARGO_PKG_VERSION"),
    "\"}"
);

/// The engine as these tests configure it: [`routes`], [`stream_app`] and
/// [`VERSION`] on the engine's defaults.
pub fn defaults() -> Config {
    Config {
        routes: routes(),
        app: Arc::new(stream_app()),
        version: Some(VERSION.to_owned()),
        ..Config::default()
    }
}

/// [`defaults`], accepting unsigned requests.
pub fn unsigned() -> Config {
    Config {
        insecure_no_signatures: true,
        ..defaults()
    }
}

pub struct Peer {
    pub conn: Connection,
    pub start: Instant,
    pub now: Instant,
    /// Bytes the connection wrote, not yet taken by the test.
    pub wire: Vec<u8>,
    /// Events not yet taken by the test.
    pub events: Vec<Event>,
    pub closed: bool,
    pub deadline: Option<Instant>,
    /// When false, the peer does not read: `transmit` is left in place.
    pub reading: bool,
}

impl Peer {
    pub fn new(config: Config) -> Peer {
        Peer::shared(Arc::new(config))
    }

    pub fn shared(config: Arc<Config>) -> Peer {
        let start = Instant::now();
        let mut peer = Peer {
            conn: Connection::new(config, start),
            start,
            now: start,
            wire: Vec::new(),
            events: Vec::new(),
            closed: false,
            deadline: None,
            reading: true,
        };
        peer.drain();
        peer
    }

    /// Feeds bytes, then drains.
    pub fn send(&mut self, bytes: &[u8]) -> &mut Self {
        self.conn.handle_receive(self.now, bytes);
        self.drain();
        self
    }

    pub fn eof(&mut self) -> &mut Self {
        self.conn.handle_eof(self.now);
        self.drain();
        self
    }

    pub fn shutdown(&mut self) -> &mut Self {
        self.conn.shutdown(self.now);
        self.drain();
        self
    }

    /// Lets `d` pass, firing the deadline when it is reached.
    pub fn wait(&mut self, d: Duration) -> &mut Self {
        self.now += d;
        self.conn.handle_timeout(self.now);
        self.drain();
        self
    }

    /// Drains until `Timeout` or `Close`, then "writes" `transmit`.
    pub fn drain(&mut self) {
        for _ in 0..1_000_000 {
            match self.conn.poll_output() {
                Output::Event(e) => self.events.push(e),
                Output::Timeout(t) => {
                    self.deadline = Some(t);
                    break;
                }
                Output::Close => {
                    assert!(
                        matches!(self.conn.poll_output(), Output::Close),
                        "Close is final"
                    );
                    self.closed = true;
                    break;
                }
            }
        }
        if self.reading {
            let n = self.conn.transmit().len();
            self.wire.extend_from_slice(self.conn.transmit());
            self.conn.consume_transmit(n);
        }
    }

    pub fn take_wire(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.wire)
    }

    pub fn take_events(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.events)
    }

    /// The wire as text, for readable assertion failures.
    pub fn take_text(&mut self) -> String {
        String::from_utf8(self.take_wire()).expect("answers are ASCII here")
    }

    /// Events without the per-request `Request` records (their latency
    /// depends on the script) and `Closed`.
    pub fn take_app_events(&mut self) -> Vec<Event> {
        self.take_events()
            .into_iter()
            .filter(|e| !matches!(e, Event::Request { .. } | Event::Closed { .. }))
            .collect()
    }

    pub fn close_reason(&self) -> Option<CloseReason> {
        self.events.iter().find_map(|e| match e {
            Event::Closed { reason } => Some(reason.clone()),
            _ => None,
        })
    }

    pub fn statuses(&self) -> Vec<u16> {
        self.events
            .iter()
            .filter_map(|e| match e {
                Event::Request { status, .. } => Some(*status),
                _ => None,
            })
            .collect()
    }
}

/// Twilio's frames, from the model: masked client frames with a fixed key.
#[allow(unused_imports)] // each test binary uses some of them
pub use callstream_twilio::frame::{client_frame, text_frame};

/// Frames the server wrote, as (opcode, payload), read the way Twilio's
/// client reads them. Panics on anything a server must not send (masked,
/// fragmented, bad lengths or close codes) and on a truncated frame.
pub fn server_frames(bytes: &[u8]) -> Vec<(u8, Vec<u8>)> {
    match callstream_twilio::frame::read_server_frames(bytes) {
        Ok((frames, [])) => frames.into_iter().map(|f| (f.opcode, f.payload)).collect(),
        Ok((_, rest)) => panic!("truncated frame: {} bytes left", rest.len()),
        Err(e) => panic!("a frame no server may send: {e}"),
    }
}
