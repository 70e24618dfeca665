//! Log output: human-readable text, or JSON lines with the `severity` field
//! that Cloud Run and Google Cloud Logging read.
use std::fmt;
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

/// Installs the global logger. `RUST_LOG` filters (default `info`).
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.with_ansi(false).try_init(),
        LogFormat::Json => builder.event_format(JsonLines).try_init(),
    };
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
