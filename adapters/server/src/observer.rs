//! What an adapter does with the engine's events: log them, count them, and
//! record calls, plus the drain loop that hands them over. Shared by the smol
//! and blocking servers so both drain, log, count and record identically.
//!
//! Logs never carry a token or a signature. Webhook parameters are logged by
//! name from a fixed list of Twilio's fields, so a caller's arbitrary input
//! cannot flood the log.
use crate::recorder::{CallRecording, Recordings};
use callstream_core::call::{CallEvent, CallStats, StopReason};
use callstream_core::connection::{Connection, Event, Output};
use callstream_core::metrics::Metrics;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

/// What draining the engine left the adapter to do (after writing
/// [`Connection::transmit`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Drained {
    /// Wait for input, or until this instant.
    Wait(Instant),
    /// Write what is left, then close the socket.
    Close,
}

/// Drains the engine's outputs as its contract asks (until a deadline or a
/// close), handing every event to `obs`, then the call's counters.
pub fn drain(conn: &mut Connection, obs: &mut Observer) -> Drained {
    let drained = loop {
        match conn.poll_output() {
            Output::Event(e) => obs.observe(e),
            Output::Timeout(t) => break Drained::Wait(t),
            Output::Close => break Drained::Close,
        }
    };
    if let Some(s) = conn.call_stats() {
        obs.call_stats(&s);
    }
    drained
}

/// Webhook fields worth a log line (others are counted, not logged).
const LOGGED_FIELDS: [&str; 12] = [
    "CallSid",
    "StreamSid",
    "StreamName",
    "StreamEvent",
    "StreamError",
    "CallStatus",
    "CallDuration",
    "SequenceNumber",
    "RecordingSid",
    "RecordingStatus",
    "RecordingDuration",
    "Timestamp",
];

/// Stream warnings logged per connection; the rest are only counted (their
/// total is in `WS_STOP`), so a peer cannot flood the log.
const MAX_WARNINGS_LOGGED: u32 = 5;

/// Longest piece of peer-supplied text put in a log line.
const MAX_LOGGED_CHARS: usize = 80;

/// Peer-supplied text cut for a log line.
fn cut(s: &str) -> String {
    if s.chars().count() <= MAX_LOGGED_CHARS {
        s.to_owned()
    } else {
        let mut c: String = s.chars().take(MAX_LOGGED_CHARS).collect();
        c.push('…');
        c
    }
}

/// Inbound frames between two `WS_MEDIA` progress lines (30 s of audio).
const MEDIA_LOG_EVERY: u64 = 1500;

/// One connection's observer.
pub struct Observer {
    peer: SocketAddr,
    metrics: Arc<Metrics>,
    recordings: Option<Arc<Recordings>>,
    recorder: Option<CallRecording>,
    call: Option<CallInfo>,
    seen: CallStats,
    warnings_logged: u32,
}

struct CallInfo {
    call_sid: String,
    stream_sid: String,
    started: Instant,
    next_media_log: u64,
    next_tx_log: u64,
}

fn stop_word(r: &StopReason) -> &'static str {
    match r {
        StopReason::Stop => "stop",
        StopReason::Closed => "closed",
        StopReason::Hangup => "hangup",
        StopReason::Error(_) => "error",
        _ => "other",
    }
}

impl Observer {
    /// An observer for a connection from `peer`.
    #[must_use]
    pub fn new(
        peer: SocketAddr,
        metrics: Arc<Metrics>,
        recordings: Option<Arc<Recordings>>,
    ) -> Observer {
        Observer {
            peer,
            metrics,
            recordings,
            recorder: None,
            call: None,
            seen: CallStats::default(),
            warnings_logged: 0,
        }
    }

    /// Takes the call's counters after a drain: adds what is new to the
    /// server's frame metrics and logs progress.
    pub fn call_stats(&mut self, s: &CallStats) {
        let d = |now: u64, before: u64| now.saturating_sub(before);
        self.metrics.add_frames(
            d(s.frames_in, self.seen.frames_in),
            d(s.frames_sent, self.seen.frames_sent),
            d(s.concealed, self.seen.concealed),
            d(s.late, self.seen.late),
        );
        self.seen = *s;
        // The first frame each way is logged at once (a short test call shows
        // media flowing), then every 30 s of audio.
        if let Some(c) = &mut self.call {
            if s.frames_in >= c.next_media_log {
                c.next_media_log = s.frames_in + MEDIA_LOG_EVERY;
                tracing::info!(
                    call_sid = %c.call_sid, stream_sid = %c.stream_sid, frames_in = s.frames_in, received = s.received,
                    reordered = s.reordered, duplicate = s.duplicate, late = s.late, concealed = s.concealed,
                    "WS_MEDIA"
                );
            }
            if s.frames_sent >= c.next_tx_log {
                c.next_tx_log = s.frames_sent + MEDIA_LOG_EVERY;
                tracing::info!(call_sid = %c.call_sid, stream_sid = %c.stream_sid, frames_sent = s.frames_sent, played_ms = s.played_ms, "WS_TX");
            }
        }
    }

    /// Handles one engine event.
    pub fn observe(&mut self, e: Event) {
        let peer = self.peer;
        match e {
            Event::Request {
                method,
                route,
                status,
                latency,
            } => {
                self.metrics
                    .record_request(&method, route.as_str(), status, latency);
                let latency_ms = latency.as_secs_f64() * 1e3;
                if route.is_signed() || status >= 400 {
                    tracing::info!(%peer, %method, route = route.as_str(), status, latency_ms, "HTTP");
                } else {
                    tracing::debug!(%peer, %method, route = route.as_str(), status, latency_ms, "HTTP");
                }
            }
            Event::Malformed { status, reason } => {
                self.metrics
                    .record_request("-", "malformed", status, std::time::Duration::ZERO);
                let reason = cut(&reason);
                tracing::warn!(%peer, status, %reason, "malformed request");
            }
            Event::Webhook { route, params } => {
                let fields: Vec<String> = params
                    .iter()
                    .filter(|(k, _)| LOGGED_FIELDS.contains(&k.as_str()))
                    .map(|(k, v)| format!("{k}={}", cut(v)))
                    .collect();
                tracing::info!(%peer, route = route.as_str(), params = params.len(), fields = %fields.join(" "), "WEBHOOK");
            }
            Event::SignatureRejected {
                route,
                urls_tried,
                reason,
                ..
            } => {
                self.metrics.signature_failed(route.as_str());
                match reason {
                    callstream_core::verify::Reason::NoAuthToken => tracing::warn!(
                        %peer, route = route.as_str(),
                        "no auth token configured: answered 403. Set TWILIO_AUTH_TOKEN (or CALLSTREAM_INSECURE_NO_SIGNATURES=1 for local experiments only)"
                    ),
                    callstream_core::verify::Reason::Mismatch => tracing::warn!(
                        %peer, route = route.as_str(), urls_tried = %urls_tried.join(" | "),
                        "X-Twilio-Signature did not match: answered 403. If Twilio signed a different URL (a proxy changed host or scheme), set PUBLIC_BASE_URL to the URL configured in Twilio"
                    ),
                    other => tracing::warn!(
                        %peer, route = route.as_str(), reason = %other, urls_tried = %urls_tried.join(" | "),
                        "request signature refused: answered 403"
                    ),
                }
            }
            Event::SignaturesOff => {
                tracing::warn!(
                    "!!! accepting a request WITHOUT checking X-Twilio-Signature (no auth token configured) !!!"
                );
            }
            Event::AccountRejected { route, account_sid } => {
                tracing::warn!(%peer, route = route.as_str(), %account_sid, "request for another Twilio account: answered 403");
            }
            Event::FrontDetected { what } => {
                tracing::info!(%peer, front = %what, "requests arrive through a front or proxy");
            }
            Event::ConfigError { reason } => {
                tracing::error!(%peer, %reason, "configuration cannot serve this request: answered 500");
            }
            Event::HandshakeRejected { status, reason } => {
                let reason = cut(&reason);
                self.metrics.handshake_failed(&reason);
                tracing::warn!(%peer, status, %reason, "WebSocket upgrade refused (Twilio reports 31920)");
            }
            Event::Upgraded { subprotocol } => {
                tracing::debug!(%peer, subprotocol = subprotocol.as_deref().unwrap_or("-"), "WebSocket upgraded");
            }
            Event::BinaryDropped { len } => {
                tracing::debug!(%peer, len, "binary WebSocket message dropped (Twilio sends only text)");
            }
            Event::Closed { reason } => {
                tracing::debug!(%peer, ?reason, "connection closing");
            }
            Event::Call(c) => self.call_event(c),
            other => tracing::debug!(%peer, event = ?other, "event"),
        }
    }

    fn call_event(&mut self, e: CallEvent) {
        let peer = self.peer;
        match e {
            CallEvent::Started(start) => {
                let call_sid = start.call_sid.to_string();
                let stream_sid = start.stream_sid.to_string();
                let params: Vec<String> = start
                    .custom_parameters
                    .iter()
                    .take(32)
                    .map(|(k, v)| format!("{}={}", cut(k), cut(v)))
                    .collect();
                tracing::info!(
                    %peer, %call_sid, %stream_sid, account_sid = %start.account_sid, tracks = ?start.tracks,
                    parameters = %params.join(" "), "WS_START"
                );
                self.metrics.call_started();
                if let Some(recordings) = &self.recordings {
                    self.recorder = Some(recordings.open(&call_sid, &stream_sid));
                }
                self.call = Some(CallInfo {
                    call_sid,
                    stream_sid,
                    started: Instant::now(),
                    next_media_log: 1,
                    next_tx_log: 1,
                });
            }
            CallEvent::Audio(f) => {
                if let Some(r) = &mut self.recorder {
                    r.caller(f.timestamp_ms, &f.samples);
                }
            }
            CallEvent::AudioOut(a) => {
                if let Some(r) = &mut self.recorder {
                    r.ours(a.play_at_ms, &a.samples);
                }
            }
            CallEvent::Dtmf { digit, .. } => tracing::info!(call_sid = %self.sid(), %digit, "DTMF"),
            CallEvent::MarkDone { name, outcome, .. } => {
                tracing::debug!(call_sid = %self.sid(), mark = %cut(&name), ?outcome, "mark done")
            }
            CallEvent::SpeechStarted { at_ms, .. } => {
                tracing::debug!(call_sid = %self.sid(), at_ms, "speech started")
            }
            CallEvent::SpeechEnded {
                at_ms, duration, ..
            } => {
                tracing::debug!(call_sid = %self.sid(), at_ms, duration_ms = duration.as_millis() as u64, "speech ended");
            }
            CallEvent::BargeIn => {
                tracing::info!(call_sid = %self.sid(), "BARGE_IN: caller spoke over our audio, cleared")
            }
            CallEvent::Warning(w) => {
                self.warnings_logged += 1;
                if self.warnings_logged <= MAX_WARNINGS_LOGGED {
                    let warning = cut(&w.to_string());
                    tracing::warn!(%peer, call_sid = %self.sid(), %warning, "media stream warning");
                    if self.warnings_logged == MAX_WARNINGS_LOGGED {
                        tracing::warn!(%peer, call_sid = %self.sid(), "further warnings on this stream are counted, not logged (see WS_STOP)");
                    }
                }
            }
            CallEvent::Stopped { reason, stats } => {
                self.stopped(stop_word(&reason), &reason.to_string(), &stats)
            }
            other => tracing::trace!(event = ?other, "call event"),
        }
    }

    fn sid(&self) -> &str {
        self.call.as_ref().map_or("-", |c| c.call_sid.as_str())
    }

    fn stopped(&mut self, word: &'static str, why: &str, s: &CallStats) {
        let Some(c) = self.call.take() else { return };
        self.metrics.call_ended(word);
        tracing::info!(
            call_sid = %c.call_sid, stream_sid = %c.stream_sid, reason = why, duration_s = c.started.elapsed().as_secs_f64(),
            frames_in = s.frames_in, frames_sent = s.frames_sent, concealed = s.concealed, late = s.late,
            duplicate = s.duplicate, reordered = s.reordered, marks = s.marks, clears = s.clears, barge_ins = s.barge_ins,
            dtmf = s.dtmf, warnings = s.warnings, "WS_STOP"
        );
        // Dropping it completes the file on the recording thread.
        self.recorder = None;
    }

    /// The connection is gone: completes a call that never saw its end.
    pub fn finish(&mut self) {
        let s = self.seen;
        self.stopped("closed", "connection ended", &s);
        self.recorder = None;
    }
}
