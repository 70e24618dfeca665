//! Log output: human-readable text, or JSON lines with the `severity` field
//! that Cloud Run and Google Cloud Logging read.
//!
//! Both are one line per event whatever the event carries: much of what is
//! logged comes from callers and programs (custom parameters, a bot's text,
//! its stderr), and a newline in it must not forge a line of its own. JSON
//! escapes by its nature; the text format ([`TextLines`]) escapes control
//! characters everywhere and quotes any field value that is not a plain
//! word, so `key=value` pairs cannot be faked either.
//!
//! Lines never block the server: each is handed to a writer thread through a
//! bounded queue ([`Sink`]). A slow or closed log sink (`callstream 2>&1 |
//! head -1`) costs dropped lines, counted in [`dropped_lines`] and in
//! `/metrics`, never a stalled request or an ignored SIGTERM.
use std::fmt;
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, SyncSender, TrySendError};
use std::time::{SystemTime, UNIX_EPOCH};
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// How log lines are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One human-readable line per event.
    Text,
    /// One JSON object per line, with `severity`, `message`, `target`,
    /// `timestamp` and the event's fields.
    Json,
}

/// Lines waiting for the writer thread; past this, new lines are dropped.
const QUEUE_LINES: usize = 8192;

/// Lines dropped because the sink could not keep up (or is gone).
static DROPPED: AtomicU64 = AtomicU64::new(0);

/// Log lines dropped so far by the installed logger.
#[must_use]
pub fn dropped_lines() -> u64 {
    DROPPED.load(Ordering::Relaxed)
}

/// The installed logger's sink, for [`flush`].
static INSTALLED: std::sync::OnceLock<Sink> = std::sync::OnceLock::new();

/// Installs the global logger, writing to stderr through a [`Sink`].
/// `RUST_LOG` filters (default `info`). Call [`flush`] before the process
/// exits, or the last lines may be lost with the writer thread.
pub fn init(format: LogFormat) {
    let Ok(sink) = Sink::spawn(std::io::stderr(), QUEUE_LINES, &DROPPED) else {
        return;
    };
    let _ = INSTALLED.set(sink.clone());
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(sink);
    let _ = match format {
        LogFormat::Text => builder.event_format(TextLines).try_init(),
        LogFormat::Json => builder.event_format(JsonLines).try_init(),
    };
}

/// Waits (at most `limit`) until the installed logger has written every
/// line logged so far; false when it could not.
pub fn flush(limit: std::time::Duration) -> bool {
    INSTALLED.get().is_some_and(|sink| sink.flush(limit))
}

/// What the writer thread is handed.
enum Job {
    Line(Vec<u8>),
    /// Answer once every line before this one is written.
    Flush(SyncSender<()>),
}

/// A log destination that never blocks its callers: each line goes through
/// a bounded queue to a thread of its own that writes it. Full queue or dead
/// writer: the line is dropped and counted.
#[derive(Clone)]
pub struct Sink {
    tx: SyncSender<Job>,
    dropped: &'static AtomicU64,
}

impl Sink {
    /// Starts the writer thread over `out`, with room for `capacity` lines.
    pub fn spawn(
        mut out: impl Write + Send + 'static,
        capacity: usize,
        dropped: &'static AtomicU64,
    ) -> std::io::Result<Sink> {
        let (tx, rx) = mpsc::sync_channel::<Job>(capacity);
        std::thread::Builder::new()
            .name("callstream-log".into())
            .spawn(move || {
                for job in rx {
                    match job {
                        // A failed write (closed pipe) loses this line only;
                        // nothing here may panic or stop draining.
                        Job::Line(line) => {
                            if out.write_all(&line).is_err() {
                                dropped.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        Job::Flush(done) => {
                            let _ = out.flush();
                            let _ = done.try_send(());
                        }
                    }
                }
                let _ = out.flush();
            })?;
        Ok(Sink { tx, dropped })
    }

    /// Waits (at most `limit`) until every line queued so far is written.
    pub fn flush(&self, limit: std::time::Duration) -> bool {
        let (done_tx, done_rx) = mpsc::sync_channel(1);
        let deadline = std::time::Instant::now() + limit;
        // The queue may be full: retry until there is room or time is up.
        let mut job = Job::Flush(done_tx);
        loop {
            match self.tx.try_send(job) {
                Ok(()) => break,
                Err(TrySendError::Full(back)) if std::time::Instant::now() < deadline => {
                    job = back;
                    std::thread::sleep(std::time::Duration::from_millis(1));
                }
                Err(_) => return false,
            }
        }
        done_rx
            .recv_timeout(deadline.saturating_duration_since(std::time::Instant::now()))
            .is_ok()
    }
}

/// One event's bytes, sent to the writer thread when the event is written.
pub struct SinkLine {
    buf: Vec<u8>,
    sink: Sink,
}

impl Write for SinkLine {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for SinkLine {
    fn drop(&mut self) {
        if self.buf.is_empty() {
            return;
        }
        let line = std::mem::take(&mut self.buf);
        if let Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) =
            self.sink.tx.try_send(Job::Line(line))
        {
            self.sink.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Sink {
    type Writer = SinkLine;

    fn make_writer(&'a self) -> SinkLine {
        SinkLine {
            buf: Vec::with_capacity(256),
            sink: self.clone(),
        }
    }
}

/// Cloud Logging's severity names for tracing's levels.
#[must_use]
pub fn severity(level: &Level) -> &'static str {
    match *level {
        Level::ERROR => "ERROR",
        Level::WARN => "WARNING",
        Level::INFO => "INFO",
        Level::DEBUG | Level::TRACE => "DEBUG",
    }
}

/// Formats an event as one line of text: time, level, target, message, then
/// the fields as `key=value`, e.g.
/// `2026-12-07T20:03:41.123456Z  INFO callstream_server::observer: WS_START call_sid=CA… parameters="a=1 b=2"`.
/// Control characters (and the Unicode line and paragraph separators) are
/// written as escapes (`\n`, `\r`, `\t`, `\u{1b}`) in the message and in
/// values; a value that is empty or holds a space, `"`, `=`, a backslash
/// or an escape is quoted, with `"` and backslashes escaped inside.
pub struct TextLines;

/// Whether `c` would end, split or disguise a line on a terminal or in a
/// log viewer: control characters, the line and paragraph separators, the
/// bidirectional overrides and isolates (which reorder what follows them
/// on screen) and the invisible zero-width ones.
fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{2028}'
                | '\u{2029}'
                | '\u{202a}'..='\u{202e}'
                | '\u{2066}'..='\u{2069}'
                | '\u{200b}'..='\u{200f}'
                | '\u{feff}'
        )
}

fn push_escaped(out: &mut String, c: char) {
    use std::fmt::Write as _;
    match c {
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\t' => out.push_str("\\t"),
        c => {
            let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
        }
    }
}

/// Appends a message: as it is, but for escaped control characters.
pub fn push_text(out: &mut String, text: &str) {
    for c in text.chars() {
        if needs_escape(c) {
            push_escaped(out, c);
        } else {
            out.push(c);
        }
    }
}

/// Appends a field value: a plain word as it is, anything else quoted.
pub fn push_value(out: &mut String, value: &str) {
    let plain = !value.is_empty()
        && !value
            .chars()
            .any(|c| c.is_whitespace() || matches!(c, '"' | '=' | '\\') || needs_escape(c));
    if plain {
        out.push_str(value);
        return;
    }
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if needs_escape(c) => push_escaped(out, c),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// An event's message and fields, as [`TextLines`] writes them.
#[derive(Default)]
struct TextFields {
    message: String,
    fields: String,
}

impl TextFields {
    fn push(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            push_text(&mut self.message, value);
        } else {
            self.fields.push(' ');
            push_text(&mut self.fields, field.name());
            self.fields.push('=');
            push_value(&mut self.fields, value);
        }
    }
}

impl Visit for TextFields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.push(field, value);
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        // `%x` fields and the message arrive here as Display.
        self.push(field, &format!("{value:?}"));
    }
}

impl<S, N> FormatEvent<S, N> for TextLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        use tracing_subscriber::fmt::time::FormatTime as _;
        tracing_subscriber::fmt::time::SystemTime.format_time(&mut writer)?;
        let line = text_line(event.metadata().level(), event.metadata().target(), |v| {
            event.record(v)
        });
        writeln!(writer, "{line}")
    }
}

/// What follows the time on a text line.
fn text_line(level: &Level, target: &str, record: impl FnOnce(&mut TextFields)) -> String {
    let mut f = TextFields::default();
    record(&mut f);
    let mut line = format!(" {level:>5} ");
    push_text(&mut line, target);
    line.push_str(": ");
    line.push_str(&f.message);
    line.push_str(&f.fields);
    line
}

/// Formats an event as one JSON line.
pub struct JsonLines;

struct Fields(serde_json::Map<String, serde_json::Value>);

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.into());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().to_owned(), value.into());
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().to_owned(), value.into());
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().to_owned(), value.into());
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().to_owned(), value.into());
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0
            .insert(field.name().to_owned(), format!("{value:?}").into());
    }
}

impl<S, N> FormatEvent<S, N> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let line = json_line(
            event.metadata().level(),
            event.metadata().target(),
            |v| event.record(v),
            SystemTime::now(),
        );
        writeln!(writer, "{line}")
    }
}

fn json_line(
    level: &Level,
    target: &str,
    record: impl FnOnce(&mut Fields),
    at: SystemTime,
) -> String {
    let mut f = Fields(serde_json::Map::new());
    record(&mut f);
    f.0.insert("severity".into(), severity(level).into());
    f.0.insert("target".into(), target.into());
    let t = at.duration_since(UNIX_EPOCH).unwrap_or_default();
    f.0.insert(
        "timestamp".into(),
        serde_json::json!({"seconds": t.as_secs(), "nanos": t.subsec_nanos()}),
    );
    serde_json::Value::Object(f.0).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing_subscriber::fmt::MakeWriter as _;

    /// A sink that never takes a byte: the writer thread blocks on it.
    struct Stuck(std::sync::mpsc::Receiver<()>);

    impl Write for Stuck {
        fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
            let _ = self.0.recv();
            Err(std::io::ErrorKind::BrokenPipe.into())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_stuck_sink_drops_and_counts_lines_instead_of_blocking() {
        static COUNT: AtomicU64 = AtomicU64::new(0);
        let (release, stuck) = mpsc::channel();
        let sink = Sink::spawn(Stuck(stuck), 16, &COUNT).unwrap();
        for i in 0..10_000 {
            let mut w = sink.make_writer();
            writeln!(w, "line {i}").unwrap();
        }
        // At most the queue and the line in the writer's hands got through.
        assert!(COUNT.load(Ordering::Relaxed) >= 10_000 - 17);
        drop(release);
    }

    /// Collects what the writer thread writes.
    #[derive(Clone, Default)]
    struct Shared(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn flush_returns_once_every_earlier_line_is_written() {
        static COUNT: AtomicU64 = AtomicU64::new(0);
        let out = Shared::default();
        let sink = Sink::spawn(out.clone(), 1024, &COUNT).unwrap();
        for i in 0..500 {
            let mut w = sink.make_writer();
            writeln!(w, "line {i}").unwrap();
        }
        assert!(sink.flush(std::time::Duration::from_secs(10)));
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        assert_eq!(text.lines().count(), 500);
        assert!(text.ends_with("line 499\n"));
    }

    /// A sink whose reader went away, like `| head -1` after one line.
    struct Closed;

    impl Write for Closed {
        fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
            Err(std::io::ErrorKind::BrokenPipe.into())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Err(std::io::ErrorKind::BrokenPipe.into())
        }
    }

    #[test]
    fn a_closed_sink_counts_every_line_and_keeps_draining() {
        static COUNT: AtomicU64 = AtomicU64::new(0);
        let sink = Sink::spawn(Closed, 4, &COUNT).unwrap();
        for i in 0..1000 {
            let mut w = sink.make_writer();
            writeln!(w, "line {i}").unwrap();
            // Give the writer a moment now and then, so that some lines reach it.
            if i % 100 == 0 {
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
        }
        drop(sink);
        // Every line is either dropped at the queue or failed at the sink.
        for _ in 0..1000 {
            if COUNT.load(Ordering::Relaxed) == 1000 {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert_eq!(COUNT.load(Ordering::Relaxed), 1000);
    }

    /// What a subscriber with [`TextLines`] writes for the events `log` makes.
    fn text_of(log: impl FnOnce()) -> String {
        let out = Shared::default();
        let writer = out.clone();
        let subscriber = tracing_subscriber::fmt()
            .event_format(TextLines)
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, log);
        String::from_utf8(out.0.lock().unwrap().clone()).unwrap()
    }

    #[test]
    fn text_lines_cannot_be_forged_by_what_they_carry() {
        let forged = "x\n2026-12-07T00:00:00.000000Z  INFO forged WS_STOP call_sid=CAfake";
        let text = text_of(|| {
            tracing::info!(
                call_sid = "CA1",
                parameters = %format!("a=1 b={forged}"),
                line = %"\u{1b}[2Jcleared\rover\u{2028}sep",
                plain = %"word",
                empty = "",
                quote = "say \"hi\" \\ bye",
                "WS_START {forged}"
            );
        });
        assert_eq!(text.lines().count(), 1, "{text}");
        let line = text.lines().next().unwrap();
        let (time, rest) = line.split_once("  INFO ").unwrap();
        assert!(time.starts_with("20") && time.ends_with('Z'), "{line}");
        assert_eq!(
            rest,
            concat!(
                r#"callstream_server::log::tests: WS_START x\n2026-12-07T00:00:00.000000Z  INFO forged WS_STOP call_sid=CAfake"#,
                r#" call_sid=CA1"#,
                r#" parameters="a=1 b=x\n2026-12-07T00:00:00.000000Z  INFO forged WS_STOP call_sid=CAfake""#,
                r#" line="\u{1b}[2Jcleared\rover\u{2028}sep""#,
                r#" plain=word empty="" quote="say \"hi\" \\ bye""#,
            )
        );
        // Characters that reorder or hide text on screen are escaped too.
        let text = text_of(|| tracing::info!(v = "a\u{202e}b\u{200b}c", "m\u{2066}"));
        assert!(
            text.trim_end()
                .ends_with(r#"m\u{2066} v="a\u{202e}b\u{200b}c""#),
            "{text}"
        );
        // Numbers, booleans and Debug values are fields like any other.
        let text = text_of(|| tracing::warn!(n = 3u64, ok = true, what = ?Some(1), "m"));
        assert!(
            text.ends_with(" WARN callstream_server::log::tests: m n=3 ok=true what=Some(1)\n"),
            "{text}"
        );
    }

    #[test]
    fn json_lines_carry_cloud_severity() {
        let at = UNIX_EPOCH + std::time::Duration::from_millis(1500);
        let line = json_line(
            &Level::WARN,
            "callstream",
            |f| {
                f.0.insert("message".into(), "x \"y\"".into())
                    .map(drop)
                    .unwrap_or(())
            },
            at,
        );
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["severity"], "WARNING");
        assert_eq!(v["message"], "x \"y\"");
        assert_eq!(v["timestamp"]["seconds"], 1);
        assert_eq!(v["timestamp"]["nanos"], 500_000_000);
        assert_eq!(severity(&Level::TRACE), "DEBUG");
        assert_eq!(severity(&Level::ERROR), "ERROR");
    }
}
