//! The server's settings: command-line flags, each with an environment
//! variable of the same meaning (the names existing deployments already use).
use crate::handlers::HandlerSpec;
use crate::log::LogFormat;
use clap::{Args, Parser, Subcommand};
use std::net::{IpAddr, SocketAddr};
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
    /// Address to bind.
    #[arg(long, env = "HOST", default_value = "0.0.0.0")]
    pub host: IpAddr,
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
    /// The application answering calls: `parrot`, `echo`, `silent`,
    /// `exec:<command>` (a program per call) or a `ws://`/`wss://` URL (a
    /// WebSocket per call): see docs/bridge.md.
    #[arg(long, env = "CALLSTREAM_HANDLER", default_value = "parrot")]
    pub handler: HandlerSpec,
    /// What a call does when its program bridge fails: `hangup` (close the
    /// stream, the call ends) or `continue` (the call stays, in silence).
    #[arg(long, env = "CALLSTREAM_BRIDGE_ON_FAILURE", value_enum, default_value_t = crate::bridge::OnFailure::Hangup)]
    pub bridge_on_failure: crate::bridge::OnFailure,
    /// Twilio's REST API, used to redirect a live call after a bridge's
    /// transfer or end when TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN are set.
    #[arg(
        long,
        env = "TWILIO_API_BASE_URL",
        default_value = "https://api.twilio.com"
    )]
    pub twilio_api_base_url: String,
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
    /// The address to bind.
    #[must_use]
    pub fn bind_addr(&self) -> SocketAddr {
        SocketAddr::new(self.host, self.port)
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
        assert_eq!(s.bridge_on_failure, crate::bridge::OnFailure::Hangup);
        assert_eq!(s.twilio_api_base_url, "https://api.twilio.com");
    }

    #[test]
    fn bridge_settings() {
        let s = Cli::try_parse_from([
            "callstream",
            "--handler",
            "exec:sh bot.sh",
            "--bridge-on-failure",
            "continue",
        ])
        .unwrap()
        .settings();
        assert_eq!(s.handler, HandlerSpec::Exec("sh bot.sh".into()));
        assert_eq!(s.bridge_on_failure, crate::bridge::OnFailure::Continue);
        assert!(Cli::try_parse_from(["callstream", "--bridge-on-failure", "maybe"]).is_err());
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
}
