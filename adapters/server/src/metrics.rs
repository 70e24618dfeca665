//! Server-wide counters and histograms, rendered as Prometheus text: the one
//! renderer of `/metrics` ([`counter`] and [`gauge`] write every series the
//! server and its extensions add). The metric names are the product's, so
//! they live here, above the protocol core.
//!
//! No clock, no I/O. The server records what the
//! connection engine reports (every HTTP answer with its latency, handshake and
//! signature failures, call starts and ends, frame counters) and serve
//! [`Metrics::render`] on `GET /metrics` through
//! `connection::Config::metrics`. Every method takes `&self` and is safe to call
//! from any thread: per-frame counters are relaxed atomics; labelled series
//! (webhook route × status, failure reasons) sit behind a mutex, touched once per
//! request, never per media frame.
//!
//! ```
//! use callstream_server::metrics::Metrics;
//! use std::time::Duration;
//! let m = Metrics::default();
//! m.record_request("POST", "/webhook/call_status", 204, Duration::from_micros(80));
//! m.call_started();
//! m.add_frames(50, 50, 1, 0);
//! let text = m.render();
//! assert!(text.contains("callstream_active_calls 1"));
//! assert!(text.contains(r#"callstream_http_requests_total{route="/webhook/call_status",status="204"} 1"#));
//! ```
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// Writes one gauge, with its help and type lines.
pub fn gauge(out: &mut String, name: &str, help: &str, value: impl std::fmt::Display) {
    let _ = writeln!(
        out,
        "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
    );
}

/// Writes one counter, with its help and type lines.
pub fn counter(out: &mut String, name: &str, help: &str, value: impl std::fmt::Display) {
    let _ = writeln!(
        out,
        "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}"
    );
}

/// Upper bounds (seconds) of the latency histogram buckets. Twilio gives up on
/// a webhook after 15 s; the interesting range for a healthy server is far below 10 ms.
pub const LATENCY_BUCKETS: [f64; 14] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1.0, 5.0, 15.0,
];

/// Most buckets an [`AtomicHistogram`] has.
const MAX_BUCKETS: usize = 16;

/// A latency histogram for hot paths, shared by every thread without a
/// lock: an observation is three relaxed atomic adds. Its bounds are given
/// in seconds, ascending (at most 16; `new` refuses more at compile time
/// when used in a `static`).
///
/// ```
/// use callstream_server::metrics::AtomicHistogram;
/// use std::time::Duration;
/// static H: AtomicHistogram = AtomicHistogram::new(&[0.001, 0.02]);
/// H.observe(Duration::from_micros(400));
/// H.observe(Duration::from_millis(5));
/// H.observe(Duration::from_millis(50));
/// let mut out = String::new();
/// H.render(&mut out, "x_seconds", "Some latency.");
/// assert!(out.contains("x_seconds_bucket{le=\"0.02\"} 2\n"));
/// assert!(out.contains("x_seconds_count 3\n"));
/// assert_eq!(H.share_within(0.02), Some(2.0 / 3.0));
/// ```
pub struct AtomicHistogram {
    bounds: &'static [f64],
    /// Observations per bucket (not cumulative); the last counts those
    /// above every bound.
    buckets: [AtomicU64; MAX_BUCKETS + 1],
    count: AtomicU64,
    sum_us: AtomicU64,
}

impl AtomicHistogram {
    /// An empty histogram with these upper bounds (seconds, ascending).
    ///
    /// # Panics
    /// More than 16 bounds.
    #[must_use]
    pub const fn new(bounds: &'static [f64]) -> AtomicHistogram {
        assert!(bounds.len() <= MAX_BUCKETS, "at most 16 bounds");
        AtomicHistogram {
            bounds,
            buckets: [const { AtomicU64::new(0) }; MAX_BUCKETS + 1],
            count: AtomicU64::new(0),
            sum_us: AtomicU64::new(0),
        }
    }

    /// Counts one latency.
    pub fn observe(&self, latency: Duration) {
        let s = latency.as_secs_f64();
        let i = self
            .bounds
            .iter()
            .position(|&le| s <= le)
            .unwrap_or(MAX_BUCKETS);
        self.buckets[i].fetch_add(1, Relaxed);
        self.count.fetch_add(1, Relaxed);
        self.sum_us.fetch_add(
            u64::try_from(latency.as_micros()).unwrap_or(u64::MAX),
            Relaxed,
        );
    }

    /// The share of observations at most `le` seconds, `le` being one of
    /// the bounds; `None` before any observation or for another value.
    #[must_use]
    pub fn share_within(&self, le: f64) -> Option<f64> {
        let i = self.bounds.iter().position(|&b| b == le)?;
        // From one reading of the buckets: consistent while others add.
        let counts: Vec<u64> = self.buckets.iter().map(|b| b.load(Relaxed)).collect();
        let count: u64 = counts.iter().sum();
        if count == 0 {
            return None;
        }
        let within: u64 = counts[..=i].iter().sum();
        Some(within as f64 / count as f64)
    }

    /// Observations so far.
    #[must_use]
    pub fn count(&self) -> u64 {
        self.count.load(Relaxed)
    }

    /// Writes the histogram in Prometheus' text format.
    pub fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cumulative = 0;
        for (le, b) in self.bounds.iter().zip(&self.buckets) {
            cumulative += b.load(Relaxed);
            let _ = writeln!(out, "{name}_bucket{{le=\"{le}\"}} {cumulative}");
        }
        // From the buckets, not `count`: read while another thread adds,
        // the series stay consistent (+Inf is the largest).
        let count = cumulative + self.buckets[MAX_BUCKETS].load(Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let _ = writeln!(out, "{name}_sum {}", self.sum_us.load(Relaxed) as f64 / 1e6);
        let _ = writeln!(out, "{name}_count {count}");
    }
}

/// At most this many distinct label sets per labelled family: a hostile client
/// must not grow memory by inventing paths or reasons. Past it, samples count
/// under the `other` label.
pub const MAX_SERIES: usize = 256;

#[derive(Default, Clone)]
struct Histogram {
    buckets: [u64; LATENCY_BUCKETS.len()],
    count: u64,
    sum_seconds: f64,
}

impl Histogram {
    fn observe(&mut self, latency: Duration) {
        let s = latency.as_secs_f64();
        for (b, le) in self.buckets.iter_mut().zip(LATENCY_BUCKETS) {
            if s <= le {
                *b += 1;
            }
        }
        self.count += 1;
        self.sum_seconds += s;
    }
}

#[derive(Default)]
struct Labelled {
    /// (route, status) → count and latency.
    requests: BTreeMap<(String, u16), Histogram>,
    /// reason → count.
    handshake_failures: BTreeMap<String, u64>,
    /// route → count.
    signature_failures: BTreeMap<String, u64>,
    /// reason → count.
    calls_ended: BTreeMap<String, u64>,
}

fn bounded_key<K: Ord + Clone>(map: &BTreeMap<K, impl Sized>, key: K, other: K) -> K {
    if map.contains_key(&key) || map.len() < MAX_SERIES - 1 {
        key
    } else {
        other
    }
}

/// The server's metrics. Share one behind an `Arc` between all connections.
#[derive(Default)]
pub struct Metrics {
    active_connections: AtomicI64,
    active_calls: AtomicI64,
    calls_total: AtomicU64,
    frames_in: AtomicU64,
    frames_out: AtomicU64,
    frames_concealed: AtomicU64,
    frames_late: AtomicU64,
    connections_refused: AtomicU64,
    labelled: Mutex<Labelled>,
}

impl Metrics {
    /// A TCP connection was accepted.
    pub fn connection_opened(&self) {
        self.active_connections.fetch_add(1, Relaxed);
    }

    /// A TCP connection ended.
    pub fn connection_closed(&self) {
        self.active_connections.fetch_sub(1, Relaxed);
    }

    /// A connection was refused (503) because the server was at its limit.
    pub fn connection_refused(&self) {
        self.connections_refused.fetch_add(1, Relaxed);
    }

    /// A media stream started.
    pub fn call_started(&self) {
        self.active_calls.fetch_add(1, Relaxed);
        self.calls_total.fetch_add(1, Relaxed);
    }

    /// A media stream ended, for `reason` (a short fixed word such as `stop`,
    /// `closed` or `error`).
    pub fn call_ended(&self, reason: &str) {
        self.active_calls.fetch_sub(1, Relaxed);
        self.with_labels(|l| {
            let key = bounded_key(&l.calls_ended, reason.to_owned(), "other".to_owned());
            *l.calls_ended.entry(key).or_default() += 1;
        });
    }

    /// Adds media frame counts: received from Twilio, sent to Twilio, concealed
    /// (gaps filled with silence) and late (dropped by the jitter buffer).
    pub fn add_frames(&self, inbound: u64, outbound: u64, concealed: u64, late: u64) {
        for (c, n) in [
            (&self.frames_in, inbound),
            (&self.frames_out, outbound),
            (&self.frames_concealed, concealed),
            (&self.frames_late, late),
        ] {
            if n > 0 {
                c.fetch_add(n, Relaxed);
            }
        }
    }

    /// One HTTP answer: the request's method is kept out of the labels (routes
    /// answer 405 for wrong methods), `route` is the matched route or `other`.
    pub fn record_request(&self, _method: &str, route: &str, status: u16, latency: Duration) {
        self.with_labels(|l| {
            let key = bounded_key(
                &l.requests,
                (route.to_owned(), status),
                ("other".to_owned(), status),
            );
            l.requests.entry(key).or_default().observe(latency);
        });
    }

    /// A WebSocket upgrade was refused, for a short fixed `reason`.
    pub fn handshake_failed(&self, reason: &str) {
        self.with_labels(|l| {
            let key = bounded_key(&l.handshake_failures, reason.to_owned(), "other".to_owned());
            *l.handshake_failures.entry(key).or_default() += 1;
        });
    }

    /// A request on `route` failed its signature check.
    pub fn signature_failed(&self, route: &str) {
        self.with_labels(|l| {
            let key = bounded_key(&l.signature_failures, route.to_owned(), "other".to_owned());
            *l.signature_failures.entry(key).or_default() += 1;
        });
    }

    /// Calls in progress now.
    #[must_use]
    pub fn active_calls(&self) -> i64 {
        self.active_calls.load(Relaxed)
    }

    fn with_labels(&self, f: impl FnOnce(&mut Labelled)) {
        // A panic elsewhere while holding the lock must not take metrics down with it.
        let mut g = self.labelled.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut g);
    }

    /// The Prometheus text exposition (format 0.0.4) of every metric.
    #[must_use]
    pub fn render(&self) -> String {
        let mut o = String::with_capacity(4096);
        gauge(
            &mut o,
            "callstream_active_connections",
            "Open TCP connections.",
            self.active_connections.load(Relaxed),
        );
        gauge(
            &mut o,
            "callstream_active_calls",
            "Media streams in progress.",
            self.active_calls.load(Relaxed),
        );
        counter(
            &mut o,
            "callstream_calls_total",
            "Media streams started.",
            self.calls_total.load(Relaxed),
        );
        counter(
            &mut o,
            "callstream_frames_in_total",
            "Media frames received from Twilio.",
            self.frames_in.load(Relaxed),
        );
        counter(
            &mut o,
            "callstream_frames_out_total",
            "Media frames sent to Twilio.",
            self.frames_out.load(Relaxed),
        );
        counter(
            &mut o,
            "callstream_frames_concealed_total",
            "Inbound 20 ms frames filled with silence because audio was missing.",
            self.frames_concealed.load(Relaxed),
        );
        counter(
            &mut o,
            "callstream_frames_late_total",
            "Inbound frames dropped because they arrived after their play-out time.",
            self.frames_late.load(Relaxed),
        );
        counter(
            &mut o,
            "callstream_connections_refused_total",
            "Connections answered 503 because the server was at its connection limit.",
            self.connections_refused.load(Relaxed),
        );
        let l = self.labelled.lock().unwrap_or_else(|e| e.into_inner());
        o.push_str("# HELP callstream_http_requests_total HTTP answers by route and status.\n# TYPE callstream_http_requests_total counter\n");
        for ((route, status), h) in &l.requests {
            let _ = writeln!(
                o,
                "callstream_http_requests_total{{route=\"{}\",status=\"{status}\"}} {}",
                escape(route),
                h.count
            );
        }
        o.push_str("# HELP callstream_http_request_seconds Time from a request's first byte to its answer.\n# TYPE callstream_http_request_seconds histogram\n");
        for ((route, status), h) in &l.requests {
            let labels = format!("route=\"{}\",status=\"{status}\"", escape(route));
            for (le, n) in LATENCY_BUCKETS.iter().zip(h.buckets) {
                let _ = writeln!(
                    o,
                    "callstream_http_request_seconds_bucket{{{labels},le=\"{le}\"}} {n}"
                );
            }
            let _ = writeln!(
                o,
                "callstream_http_request_seconds_bucket{{{labels},le=\"+Inf\"}} {}",
                h.count
            );
            let _ = writeln!(
                o,
                "callstream_http_request_seconds_sum{{{labels}}} {}",
                h.sum_seconds
            );
            let _ = writeln!(
                o,
                "callstream_http_request_seconds_count{{{labels}}} {}",
                h.count
            );
        }
        let family =
            |o: &mut String, name: &str, help: &str, label: &str, map: &BTreeMap<String, u64>| {
                let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} counter");
                for (k, v) in map {
                    let _ = writeln!(o, "{name}{{{label}=\"{}\"}} {v}", escape(k));
                }
            };
        family(
            &mut o,
            "callstream_handshake_failures_total",
            "WebSocket upgrades refused, by reason.",
            "reason",
            &l.handshake_failures,
        );
        family(
            &mut o,
            "callstream_signature_failures_total",
            "Requests refused for a missing or wrong X-Twilio-Signature, by route.",
            "route",
            &l.signature_failures,
        );
        family(
            &mut o,
            "callstream_calls_ended_total",
            "Media streams ended, by reason.",
            "reason",
            &l.calls_ended,
        );
        o
    }
}

/// Prometheus label values escape backslash, double quote and newline.
fn escape(s: &str) -> String {
    s.replace('\\', r"\\")
        .replace('"', "\\\"")
        .replace('\n', r"\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative() {
        let m = Metrics::default();
        m.record_request("POST", "/a", 204, Duration::from_micros(300));
        m.record_request("POST", "/a", 204, Duration::from_millis(20));
        let t = m.render();
        assert!(
            t.contains(
                r#"callstream_http_request_seconds_bucket{route="/a",status="204",le="0.00025"} 0"#
            ),
            "{t}"
        );
        assert!(
            t.contains(
                r#"callstream_http_request_seconds_bucket{route="/a",status="204",le="0.0005"} 1"#
            ),
            "{t}"
        );
        assert!(
            t.contains(
                r#"callstream_http_request_seconds_bucket{route="/a",status="204",le="0.025"} 2"#
            ),
            "{t}"
        );
        assert!(
            t.contains(
                r#"callstream_http_request_seconds_bucket{route="/a",status="204",le="+Inf"} 2"#
            ),
            "{t}"
        );
        assert!(
            t.contains(r#"callstream_http_request_seconds_count{route="/a",status="204"} 2"#),
            "{t}"
        );
    }

    #[test]
    fn label_values_are_escaped() {
        let m = Metrics::default();
        m.handshake_failed("bad \"key\"\nx\\");
        assert!(
            m.render()
                .contains(r#"callstream_handshake_failures_total{reason="bad \"key\"\nx\\"} 1"#)
        );
    }

    #[test]
    fn series_are_bounded() {
        let m = Metrics::default();
        for i in 0..(MAX_SERIES * 2) {
            m.record_request("GET", &format!("/p{i}"), 404, Duration::ZERO);
            m.signature_failed(&format!("/r{i}"));
        }
        let t = m.render();
        let requests = t
            .lines()
            .filter(|l| l.starts_with("callstream_http_requests_total{"))
            .count();
        assert!(requests <= MAX_SERIES, "{requests} series");
        assert!(t.contains(r#"callstream_http_requests_total{route="other",status="404"} "#));
        let sig = t
            .lines()
            .filter(|l| l.starts_with("callstream_signature_failures_total{"))
            .count();
        assert!(sig <= MAX_SERIES);
    }

    #[test]
    fn frames_and_calls_count() {
        let m = Metrics::default();
        m.call_started();
        m.call_started();
        m.call_ended("stop");
        m.add_frames(10, 9, 2, 1);
        m.connection_refused();
        let t = m.render();
        for want in [
            "callstream_active_calls 1",
            "callstream_calls_total 2",
            "callstream_frames_in_total 10",
            "callstream_frames_out_total 9",
            "callstream_frames_concealed_total 2",
            "callstream_frames_late_total 1",
            "callstream_connections_refused_total 1",
            r#"callstream_calls_ended_total{reason="stop"} 1"#,
        ] {
            assert!(t.contains(want), "missing {want} in\n{t}");
        }
    }
}
