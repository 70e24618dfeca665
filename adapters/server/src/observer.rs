//! What an adapter does with the engine's events: log them, count them, and
//! record calls, plus the drain loop that hands them over. Shared by the smol
//! and blocking servers so both drain, log, count and record identically.
//!
//! Logs never carry a token or a signature. Webhook parameters are logged by
//! name from a fixed list of Twilio's fields, so a caller's arbitrary input
//! cannot flood the log.
use crate::metrics::Metrics;
use crate::recorder::{CallRecording, Recordings};
use callstream_core::call::{CallEvent, CallStats, StopReason};
use callstream_core::connection::{Connection, Event, Output};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

/// What draining the engine left the adapter to do (after writing
/// [`Connection::transmit`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Drained {
    /// Wait for input, or until this instant.
    Timeout(Instant),
    /// Write what is left, then close the socket.
    Close,
}

/// Drains the engine's outputs as its contract asks (until a deadline or a
/// close), handing every event to `obs`, then the call's counters.
pub fn drain(conn: &mut Connection, obs: &mut Observer) -> Drained {
    let drained = loop {
        match conn.poll_output() {
            Output::Event(e) => obs.observe(e),
            Output::Timeout(t) => break Drained::Timeout(t),
            Output::Close => break Drained::Close,
        }
    };
    if let Some(s) = conn.call_stats() {
        obs.call_stats(&s);
    }
    drained
}

/// Webhook fields worth a log line (others are counted, not logged).
const LOGGED_FIELDS: [&str; 13] = [
    "CallSid",
    "StreamSid",
    "StreamName",
    "StreamEvent",
    "StreamError",
    "CallStatus",
    "CallDuration",
    "SequenceNumber",
    "RecordingSid",
    "RecordingUrl",
    "RecordingStatus",
    "RecordingDuration",
    "Timestamp",
];

/// Webhook fields logged whole up to [`MAX_LOGGED_URL_CHARS`]: a URL cut at
/// [`MAX_LOGGED_CHARS`] is of no use (a recording's URL is about 130).
const LOGGED_URLS: [&str; 1] = ["RecordingUrl"];

/// Stream warnings logged per connection; the rest are only counted (their
/// total is in `WS_STOP`), so a peer cannot flood the log.
const MAX_WARNINGS_LOGGED: u32 = 5;

/// Longest piece of peer-supplied text put in a log line.
const MAX_LOGGED_CHARS: usize = 80;

/// Longest URL from a webhook put in a log line.
const MAX_LOGGED_URL_CHARS: usize = 512;

/// Peer-supplied text cut for a log line.
fn cut(s: &str) -> String {
    cut_to(s, MAX_LOGGED_CHARS)
}

/// Peer-supplied text cut to `max` characters, `…` marking a cut.
fn cut_to(s: &str, max: usize) -> String {
    callstream_core::excerpt::cut(s, max).into_owned()
}

/// A webhook field as logged: URLs nearly whole, the rest short.
fn logged_field(name: &str, value: &str) -> String {
    if LOGGED_URLS.contains(&name) {
        cut_to(value, MAX_LOGGED_URL_CHARS)
    } else {
        cut(value)
    }
}

/// Inbound frames between two `WS_MEDIA` progress lines (30 s of audio).
const MEDIA_LOG_EVERY: u64 = 1500;

/// Frames a live call counts on its own before adding them to the server's
/// metrics (about a second of audio each way). The counters are shared by
/// every reactor: an atomic add per frame from each core would bounce their
/// cache line between cores on the frame path. A call's last frames are
/// added when it ends.
const METRICS_EVERY: u64 = 100;

/// One connection's observer.
pub struct Observer {
    peer: SocketAddr,
    metrics: Arc<Metrics>,
    recordings: Option<Arc<Recordings>>,
    recorder: Option<CallRecording>,
    call: Option<CallInfo>,
    /// The call's counters as last counted (or as they ended).
    seen: CallStats,
    /// The part of them already added to the server's metrics.
    counted: CallStats,
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
            counted: CallStats::default(),
            warnings_logged: 0,
        }
    }

    /// The peer's address.
    #[must_use]
    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// The call's SID, once its stream started (and until it ended).
    #[must_use]
    pub fn call_sid(&self) -> Option<&str> {
        self.call.as_ref().map(|c| c.call_sid.as_str())
    }

    /// Takes the call's counters after a drain: adds what is new to the
    /// server's frame metrics (every [`METRICS_EVERY`] frames while the call
    /// lasts, at once when it has ended) and logs progress.
    pub fn call_stats(&mut self, s: &CallStats) {
        let c = &self.counted;
        let new =
            s.frames_in.saturating_sub(c.frames_in) + s.frames_sent.saturating_sub(c.frames_sent);
        // Kept only when counted: a copy per frame would write memory the
        // frame does not otherwise touch.
        if new >= METRICS_EVERY || self.call.is_none() {
            self.seen = *s;
            self.count_frames();
        }
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
                    .record_request(&method, crate::routes::label(route), status, latency);
                let latency_ms = latency.as_secs_f64() * 1e3;
                if route.is_signed() || status >= 400 {
                    tracing::info!(%peer, %method, route = crate::routes::label(route), status, latency_ms, "HTTP");
                } else {
                    tracing::debug!(%peer, %method, route = crate::routes::label(route), status, latency_ms, "HTTP");
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
                    .map(|(k, v)| format!("{k}={}", logged_field(k, v)))
                    .collect();
                tracing::info!(%peer, route = crate::routes::label(route), params = params.len(), fields = %fields.join(" "), "WEBHOOK");
            }
            Event::SignatureRejected {
                route,
                urls_tried,
                reason,
                ..
            } => {
                self.metrics.signature_failed(crate::routes::label(route));
                match reason {
                    callstream_core::verify::Reason::NoAuthToken => tracing::warn!(
                        %peer, route = crate::routes::label(route),
                        "no auth token configured: answered 403. Set TWILIO_AUTH_TOKEN (or CALLSTREAM_INSECURE_NO_SIGNATURES=1 for local experiments only)"
                    ),
                    callstream_core::verify::Reason::Mismatch => tracing::warn!(
                        %peer, route = crate::routes::label(route), urls_tried = %urls_tried.join(" | "),
                        "X-Twilio-Signature did not match: answered 403. If Twilio signed a different URL (a proxy changed host or scheme), set PUBLIC_BASE_URL to the URL configured in Twilio"
                    ),
                    other => tracing::warn!(
                        %peer, route = crate::routes::label(route), reason = %other, urls_tried = %urls_tried.join(" | "),
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
                tracing::warn!(%peer, route = crate::routes::label(route), %account_sid, "request for another Twilio account: answered 403");
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
                let call_sid = start.call_id.clone();
                let stream_sid = start.stream_id.clone();
                let params: Vec<String> = start
                    .parameters
                    .iter()
                    .take(32)
                    .map(|(k, v)| format!("{}={}", cut(k), cut(v)))
                    .collect();
                tracing::info!(
                    %peer, %call_sid, %stream_sid, account_sid = %start.account_id, tracks = ?start.tracks,
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

    /// Adds the frames not yet counted to the server's metrics.
    fn count_frames(&mut self) {
        let (s, c) = (&self.seen, &self.counted);
        let d = |now: u64, before: u64| now.saturating_sub(before);
        self.metrics.add_frames(
            d(s.frames_in, c.frames_in),
            d(s.frames_sent, c.frames_sent),
            d(s.concealed, c.concealed),
            d(s.late, c.late),
        );
        self.counted = self.seen;
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

    /// The connection is gone, its call's counters last `stats`: completes
    /// a call that never saw its end.
    pub fn finish(&mut self, stats: Option<CallStats>) {
        if let Some(s) = stats {
            self.seen = s;
        }
        self.count_frames();
        let s = self.seen;
        self.stopped("closed", "connection ended", &s);
        self.recorder = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use callstream_core::connection::Config;
    use std::sync::Mutex;

    /// A log sink the test reads back.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .map_err(|_| std::io::Error::other("poisoned"))?
                .extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// Sends `body` to `path` through the engine and returns what the
    /// observer logged.
    fn logged(path: &str, body: &str) -> String {
        let sink = Captured::default();
        let writer = sink.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            let now = Instant::now();
            let config = Config {
                routes: crate::routes::table(),
                ..Config::unsigned()
            };
            let mut conn = Connection::new(Arc::new(config), now);
            let mut obs = Observer::new(
                SocketAddr::from(([127, 0, 0, 1], 5000)),
                Arc::new(Metrics::default()),
                None,
            );
            let request = format!(
                "POST {path} HTTP/1.1\r\nHost: voice.example.com\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
            conn.handle_receive(now, request.as_bytes());
            let _ = drain(&mut conn, &mut obs);
            assert!(
                String::from_utf8_lossy(conn.transmit()).starts_with("HTTP/1.1 204"),
                "{}",
                String::from_utf8_lossy(conn.transmit())
            );
        });
        let bytes = sink.0.lock().map(|b| b.clone()).unwrap_or_default();
        String::from_utf8_lossy(&bytes).into_owned()
    }

    fn form_encode(s: &str) -> String {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' => {
                    char::from(b).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect()
    }

    #[test]
    fn the_recording_callback_logs_its_url_whole() {
        let url = "https://api.twilio.com/2010-04-01/Accounts/AC0123456789abcdef0123456789abcdef/Recordings/RE0123456789abcdef0123456789abcdef";
        assert!(url.len() > MAX_LOGGED_CHARS);
        let body = format!(
            "CallSid=CA0123456789abcdef0123456789abcdef&RecordingSid=RE0123456789abcdef0123456789abcdef&RecordingUrl={}&RecordingStatus=completed&RecordingDuration=42",
            form_encode(url)
        );
        let log = logged("/webhook/handle_recording", &body);
        assert!(log.contains("WEBHOOK"), "{log}");
        assert!(log.contains(&format!("RecordingUrl={url} ")), "{log}");
        assert!(log.contains("RecordingDuration=42"), "{log}");
    }

    #[test]
    fn a_recording_url_past_the_bound_is_cut() {
        let url = format!("https://example.com/{}", "r".repeat(1000));
        let body = format!("RecordingUrl={}", form_encode(&url));
        let log = logged("/webhook/handle_recording", &body);
        let shown: String = url.chars().take(MAX_LOGGED_URL_CHARS).collect();
        assert!(log.contains(&format!("RecordingUrl={shown}…")), "{log}");
        assert!(!log.contains(&url), "{log}");
        // Other fields keep the short bound.
        let body = format!("RecordingStatus={}", "s".repeat(200));
        let log = logged("/webhook/handle_recording", &body);
        assert!(
            log.contains(&format!(
                "RecordingStatus={}…",
                "s".repeat(MAX_LOGGED_CHARS)
            )),
            "{log}"
        );
    }

    #[test]
    fn frames_reach_the_metrics_in_batches_and_whole_at_the_end() {
        use crate::testing::{SILENCE, UPGRADE, metric};
        use callstream_core::call::CallConfig;
        use callstream_core::handler;
        use callstream_twilio::frame::text_frame as frame;
        use callstream_twilio::{Stream, Twilio};
        let config = Config {
            session: Some(handler::session_factory(
                CallConfig::default(),
                handler::by_name("echo").unwrap(),
            )),
            routes: crate::routes::table(),
            ..Config::unsigned()
        };
        let metrics = Arc::new(Metrics::default());
        let mut t = Instant::now();
        let mut conn = Connection::new(Arc::new(config), t);
        let mut obs = Observer::new(
            SocketAddr::from(([127, 0, 0, 1], 5000)),
            metrics.clone(),
            None,
        );
        let mut step = |conn: &mut Connection, t: Instant, bytes: &[u8]| {
            conn.handle_receive(t, bytes);
            let _ = drain(conn, &mut obs);
            let n = conn.transmit().len();
            conn.consume_transmit(n);
        };
        let mut twilio = Twilio::new(Stream::default());
        step(&mut conn, t, UPGRADE);
        step(&mut conn, t, &frame(&twilio.start(&[])));
        let mut frames = |conn: &mut Connection, t: &mut Instant, n: usize| {
            for _ in 0..n {
                *t += std::time::Duration::from_millis(20);
                step(conn, *t, &frame(&twilio.media(&SILENCE)));
            }
        };
        // 20 frames in and their echoes: under the batch, nothing counted yet.
        frames(&mut conn, &mut t, 20);
        let stats = conn.call_stats().unwrap();
        assert_eq!(stats.frames_in, 20);
        assert!(stats.frames_sent > 0, "the echo goes out");
        assert_eq!(metric(&metrics, "callstream_frames_in_total"), 0);
        // Past the batch, the server's counters catch up with the call's.
        frames(&mut conn, &mut t, 60);
        let stats = conn.call_stats().unwrap();
        let counted = metric(&metrics, "callstream_frames_in_total");
        assert!(
            counted > 20 && counted <= stats.frames_in,
            "{counted} of {}",
            stats.frames_in
        );
        // The call ends: every frame is counted, exactly.
        step(&mut conn, t, &frame(&twilio.stop()));
        let stats = conn.call_stats().unwrap();
        assert_eq!(stats.frames_in, 80);
        assert_eq!(
            metric(&metrics, "callstream_frames_in_total"),
            stats.frames_in
        );
        assert_eq!(
            metric(&metrics, "callstream_frames_out_total"),
            stats.frames_sent
        );
    }
}
