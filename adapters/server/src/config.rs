//! The server's settings: command-line flags, each with an environment
//! variable of the same meaning (the names existing deployments already use).
use crate::handlers::HandlerSpec;
use crate::log::LogFormat;
use clap::{Args, Parser, Subcommand};
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

/// callstream: connects phone calls to applications through Twilio Media Streams.
#[derive(Debug, Parser)]
#[command(
    name = "callstream",
    version,
    about = "callstream: connects phone calls to applications through Twilio Media Streams"
)]
pub struct Cli {
    /// What to do (default: serve).
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Settings for `serve` when no subcommand is given.
    #[command(flatten)]
    pub serve: Settings,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server (the default).
    Serve(Settings),
}

/// `serve` settings.
#[derive(Debug, Clone, Args)]
pub struct Settings {
    /// TCP port to listen on (Cloud Run and Replit set PORT).
    #[arg(long, env = "PORT", default_value_t = 8080)]
    pub port: u16,
    /// Address to bind: an IP address, or a host name resolved at boot
    /// (`localhost` binds loopback).
    #[arg(long, env = "HOST", default_value = "0.0.0.0")]
    pub host: String,
    /// The public https URL Twilio uses to reach this server (e.g.
    /// `https://voice.example.com`). Signatures are checked against it and
    /// TwiML points at it. Without it, the URL is rebuilt from `Host`.
    #[arg(long, env = "PUBLIC_BASE_URL")]
    pub public_base_url: Option<String>,
    /// The Twilio auth token that signs requests (X-Twilio-Signature).
    #[arg(long, env = "TWILIO_AUTH_TOKEN", hide_env_values = true)]
    pub auth_token: Option<String>,
    /// A second auth token accepted during a token rotation.
    #[arg(long, env = "TWILIO_AUTH_TOKEN_SECONDARY", hide_env_values = true)]
    pub auth_token_secondary: Option<String>,
    /// When set, requests for any other Twilio account are refused (403).
    #[arg(long, env = "TWILIO_ACCOUNT_SID")]
    pub account_sid: Option<String>,
    /// Accept requests without checking X-Twilio-Signature. Only for local
    /// experiments: anyone who finds the URL can then drive calls.
    #[arg(long, env = "CALLSTREAM_INSECURE_NO_SIGNATURES", default_value_t = false, value_parser = clap::builder::BoolishValueParser::new())]
    pub insecure_no_signatures: bool,
    /// The application answering calls: `parrot`, `echo` or `silent`.
    #[arg(long, env = "CALLSTREAM_HANDLER", default_value = "parrot")]
    pub handler: HandlerSpec,
    /// When set, each call is written here as a WAV file (caller left, ours right).
    #[arg(long, env = "RECORDINGS_DIR")]
    pub recordings_dir: Option<PathBuf>,
    /// Trust X-Forwarded-Proto / X-Forwarded-Host when no PUBLIC_BASE_URL is set
    /// (only behind a proxy that sets them itself).
    #[arg(long, env = "TRUST_FORWARDED_HEADERS", default_value_t = false, value_parser = clap::builder::BoolishValueParser::new())]
    pub trust_forwarded_headers: bool,
    /// `text` or `json` (JSON lines with `severity`, as Cloud Run expects).
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Spoken (`<Say>`) to the caller before the stream connects.
    #[arg(long, env = "GREETING")]
    pub greeting: Option<String>,
    /// The greeting's language, a tag such as `en-GB` or `he-IL`
    /// (`<Say language>`; default: Twilio's).
    #[arg(long, env = "GREETING_LANGUAGE")]
    pub greeting_language: Option<String>,
    /// The greeting's voice, such as `Polly.Joanna-Neural` or
    /// `Google.he-IL-Standard-A` (`<Say voice>`; default: Twilio's).
    #[arg(long, env = "GREETING_VOICE")]
    pub greeting_voice: Option<String>,
    /// Where `/metrics` is served: `public` (on PORT, beside the webhooks),
    /// `off` (404), or an address of its own such as `127.0.0.1:9090` (then
    /// 404 on PORT).
    #[arg(long = "metrics", env = "METRICS", default_value = "public")]
    pub metrics: crate::metrics_listener::MetricsAt,
    /// Extra `<Parameter>`s for every stream, as `name=value` (repeatable;
    /// comma-separated in the environment variable).
    #[arg(long = "stream-parameter", env = "STREAM_PARAMETERS", value_delimiter = ',', value_parser = parse_pair)]
    pub stream_parameters: Vec<(String, String)>,
    /// Connections beyond this get a 503 and are closed; calls in progress go on.
    #[arg(long, env = "MAX_CONNECTIONS", default_value_t = 10_000)]
    pub max_connections: usize,
    /// Seconds calls may keep running after SIGTERM before they are closed with 1001.
    #[arg(long, env = "DRAIN_SECONDS", default_value_t = 10)]
    pub drain_seconds: u64,
    /// Executor threads (default: one per core).
    #[arg(long, env = "CALLSTREAM_THREADS")]
    pub threads: Option<usize>,
}

fn parse_pair(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_owned(), v.to_owned())),
        _ => Err(format!("expected name=value, got {s:?}")),
    }
}

impl Settings {
    /// The address to bind: `HOST` (an IP address, or a name resolved now)
    /// and `PORT`.
    pub fn bind_addr(&self) -> Result<SocketAddr, String> {
        if let Ok(ip) = self.host.parse::<IpAddr>() {
            return Ok(SocketAddr::new(ip, self.port));
        }
        resolve_addr(&format!("{}:{}", self.host, self.port))
            .map_err(|e| format!("HOST {:?}: {e}", self.host))
    }

    /// The drain period on shutdown.
    #[must_use]
    pub fn drain(&self) -> Duration {
        Duration::from_secs(self.drain_seconds)
    }

    /// The auth tokens, primary first; empty strings are ignored.
    #[must_use]
    pub fn auth_tokens(&self) -> Vec<String> {
        [&self.auth_token, &self.auth_token_secondary]
            .into_iter()
            .flatten()
            .filter(|t| !t.is_empty())
            .cloned()
            .collect()
    }
}

/// An address with a port (`127.0.0.1:9090`, `[::1]:9090`,
/// `localhost:9090`), resolving a host name; of several addresses the first
/// IPv4 one is taken (`localhost` is `127.0.0.1` then, which every client
/// tries), else the first.
pub fn resolve_addr(s: &str) -> Result<SocketAddr, String> {
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Ok(a);
    }
    let all: Vec<SocketAddr> = s
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {s:?}: {e}"))?
        .collect();
    all.iter()
        .find(|a| a.is_ipv4())
        .or(all.first())
        .copied()
        .ok_or_else(|| format!("{s:?} resolves to no address"))
}

impl Cli {
    /// The serve settings, whichever way they were given.
    #[must_use]
    pub fn settings(self) -> Settings {
        match self.command {
            Some(Command::Serve(s)) => s,
            None => self.serve,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_need_no_keys() {
        let s = Cli::try_parse_from(["callstream"]).unwrap().settings();
        assert_eq!(s.handler, HandlerSpec::Shipped("parrot"));
        assert_eq!(s.max_connections, 10_000);
        assert_eq!(s.drain(), Duration::from_secs(10));
        assert!(!s.insecure_no_signatures);
    }

    #[test]
    fn serve_flags_and_pairs() {
        let s = Cli::try_parse_from([
            "callstream",
            "serve",
            "--port",
            "9000",
            "--handler",
            "echo",
            "--stream-parameter",
            "bot=sales",
            "--auth-token",
            "t1",
            "--auth-token-secondary",
            "",
        ])
        .unwrap()
        .settings();
        assert_eq!(s.port, 9000);
        assert_eq!(s.handler.to_string(), "echo");
        assert_eq!(
            s.stream_parameters,
            vec![("bot".to_owned(), "sales".to_owned())]
        );
        assert_eq!(s.auth_tokens(), vec!["t1".to_owned()]);
        assert!(Cli::try_parse_from(["callstream", "--stream-parameter", "novalue"]).is_err());
    }

    #[test]
    fn host_is_an_address_or_a_name() {
        let parse = |host: &str| {
            Cli::try_parse_from(["callstream", "--host", host, "--port", "9000"])
                .unwrap()
                .settings()
                .bind_addr()
        };
        assert_eq!(parse("0.0.0.0"), Ok(SocketAddr::from(([0, 0, 0, 0], 9000))));
        assert_eq!(parse("::1"), Ok("[::1]:9000".parse().unwrap()));
        let local = parse("localhost").unwrap();
        assert!(local.ip().is_loopback() && local.port() == 9000, "{local}");
        let err = parse("no-such-host.invalid").unwrap_err();
        assert!(err.contains("no-such-host.invalid"), "{err}");
    }
}
