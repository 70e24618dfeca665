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

/// What a call does when its program bridge fails
/// (`CALLSTREAM_BRIDGE_ON_FAILURE`, `--bridge-on-failure`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum OnFailure {
    /// The call stays connected, in silence, until the caller hangs up.
    Continue,
    /// The stream is closed cleanly and the call ends (the default).
    #[default]
    Hangup,
}

/// The runtimes a server can run on: each is a pump of its own crate, and
/// the `callstream` binary links them all and runs the one chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Runtime {
    /// One epoll reactor per thread (`callstream-epoll`), each owning its
    /// connections.
    Epoll,
    /// One io_uring reactor per thread (`callstream-uring`; Linux 6.0+).
    Uring,
    /// Async tasks on smol's executor (`callstream-smol`): any platform.
    Smol,
    /// A thread per connection (`callstream-blocking`): any platform, modest
    /// call counts.
    Blocking,
}

impl Runtime {
    /// The name the setting takes.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Runtime::Epoll => "epoll",
            Runtime::Uring => "uring",
            Runtime::Smol => "smol",
            Runtime::Blocking => "blocking",
        }
    }
}

impl std::fmt::Display for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
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
    /// The application answering calls: `parrot`, `echo`, `silent`,
    /// `exec:<command>` (a program per call) or a `ws://`/`wss://` URL (a
    /// WebSocket per call): see docs/bridge.md.
    #[arg(long, env = "CALLSTREAM_HANDLER", default_value = "parrot")]
    pub handler: HandlerSpec,
    /// What a call does when its program bridge fails: `hangup` (close the
    /// stream, the call ends) or `continue` (the call stays, in silence).
    #[arg(long, env = "CALLSTREAM_BRIDGE_ON_FAILURE", value_enum, default_value_t = OnFailure::Hangup)]
    pub bridge_on_failure: OnFailure,
    /// A token sent as `Authorization: Bearer <token>` when a `ws://` or
    /// `wss://` handler connects to its service (instead of credentials in
    /// the URL, which go as Basic). Never logged, never passed to programs.
    #[arg(long, env = "CALLSTREAM_BRIDGE_WS_BEARER", hide_env_values = true)]
    pub bridge_ws_bearer: Option<String>,
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
    /// The runtime that moves the bytes: `uring` (io_uring), `epoll`,
    /// `smol` or `blocking` (a thread per connection). Default: the one that
    /// spends the least CPU per frame here (BENCHMARKS.md): uring on Linux,
    /// smol elsewhere. Where io_uring is refused (a seccomp profile, a
    /// sandbox, an old kernel) the server runs on epoll, and the log says so.
    #[arg(long, env = "CALLSTREAM_RUNTIME", value_enum)]
    pub runtime: Option<Runtime>,
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
    /// Silence that ends the caller's turn, in milliseconds (100–5000):
    /// longer waits through a caller's pauses, shorter answers sooner. A
    /// bridged program may set its own per call (docs/bridge.md).
    #[arg(long, env = "CALLSTREAM_END_OF_TURN_MS", default_value_t = 300, value_parser = clap::value_parser!(u32).range(100..=5000))]
    pub end_of_turn_ms: u32,
    /// Speech needed before it counts as the caller talking (and cuts our
    /// audio), in milliseconds (20–2000): raise it where coughs and clicks
    /// interrupt the bot.
    #[arg(long, env = "CALLSTREAM_MIN_SPEECH_MS", default_value_t = 60, value_parser = clap::value_parser!(u32).range(20..=2000))]
    pub min_speech_ms: u32,
    /// Whether the caller talking over our audio clears it (barge-in):
    /// `true` or `false`.
    #[arg(long, env = "CALLSTREAM_BARGE_IN", default_value_t = true, action = clap::ArgAction::Set, value_parser = clap::builder::BoolishValueParser::new())]
    pub barge_in: bool,
    /// How faint a voice still counts as speech, 0.0–1.0: 0 hears only
    /// clear, loud speech (noisy lines), 0.5 the detector's defaults, 1 quiet
    /// and distant speech on clean lines.
    #[arg(long, env = "CALLSTREAM_VAD_SENSITIVITY", default_value_t = 0.5, value_parser = parse_sensitivity)]
    pub vad_sensitivity: f32,
    /// Executor threads (default: one per core).
    #[arg(long, env = "CALLSTREAM_THREADS")]
    pub threads: Option<usize>,

    // --- Hardening: shared keys and the limits an unauthenticated client
    // could exhaust (see `limits.rs`). ---
    /// A Twilio shared key that signs webhooks (sent with
    /// `X-Twilio-Webhooks-Signature-Settings`), as `<keyId>:<secret>`, e.g.
    /// `webhooks_sharedkey_1:s3cr3t` (split at the first `:`).
    #[arg(long, env = "TWILIO_WEBHOOK_SHARED_KEY", hide_env_values = true)]
    pub webhook_shared_key: Option<String>,
    /// A second shared key accepted during a rotation, same format.
    #[arg(
        long,
        env = "TWILIO_WEBHOOK_SHARED_KEY_SECONDARY",
        hide_env_values = true
    )]
    pub webhook_shared_key_secondary: Option<String>,
    /// Most connections that are not (yet) media streams; past it the
    /// oldest of them is closed. Default: a quarter of MAX_CONNECTIONS.
    #[arg(long, env = "MAX_PENDING_CONNECTIONS")]
    pub max_pending_connections: Option<usize>,
    /// Most media streams whose `start` has not come (a replayed upgrade
    /// looks like one); past it the oldest of them is closed with 1013.
    /// Default: a quarter of MAX_CONNECTIONS.
    #[arg(long, env = "MAX_UNSTARTED_STREAMS")]
    pub max_unstarted_streams: Option<usize>,
    /// MiB that all request buffers together may hold (requests not yet
    /// checked); a connection growing past it gets 503.
    #[arg(long, env = "REQUEST_MEMORY_MIB", default_value_t = 64)]
    pub request_memory_mib: usize,
    /// Seconds a media stream has to send `start` after the upgrade.
    #[arg(long, env = "STREAM_START_SECONDS", default_value_t = 10)]
    pub stream_start_seconds: u64,
}

/// Parses a shared-key setting, `<keyId>:<secret>`: the id is what
/// Twilio's `X-Twilio-Webhooks-Signature-Settings` names (`key=`); the secret
/// is cleaned like a token ([`callstream_core::verify::clean_secret`]: the
/// warning says what was removed, never the value).
///
/// # Errors
///
/// A message (without the secret) when the value has no `:`, an empty or
/// malformed id, or an empty secret.
pub fn parse_shared_key(
    raw: &str,
) -> Result<
    (
        callstream_core::verify::SharedKey,
        Option<callstream_core::verify::SecretWarning>,
    ),
    String,
> {
    let Some((id, secret)) = raw.trim_start().split_once(':') else {
        return Err("expected <keyId>:<secret> (no ':' found)".to_owned());
    };
    // The settings header is `key=<id>,algorithm=…`: an id with a comma,
    // an `=`, or whitespace could never be named by it.
    if id.is_empty() || id.contains([',', '=']) || id.chars().any(char::is_whitespace) {
        return Err(
            "the key id before ':' must be non-empty, without spaces, ',' or '='".to_owned(),
        );
    }
    let (secret, warning) =
        callstream_core::verify::clean_secret(secret).map_err(|e| e.to_string())?;
    Ok((callstream_core::verify::SharedKey::new(id, secret), warning))
}

fn parse_sensitivity(s: &str) -> Result<f32, String> {
    match s.trim().parse::<f32>() {
        Ok(v) if (0.0..=1.0).contains(&v) => Ok(v),
        _ => Err(format!("{s:?} is not a number from 0.0 to 1.0")),
    }
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

    /// The pending-connection limit: the setting, or a quarter of
    /// [`Settings::max_connections`] (at least one).
    #[must_use]
    pub fn max_pending(&self) -> usize {
        self.max_pending_connections
            .unwrap_or(self.max_connections / 4)
            .max(1)
    }

    /// The limit of streams without `start`: the setting, or a quarter of
    /// [`Settings::max_connections`] (at least one).
    #[must_use]
    pub fn max_unstarted(&self) -> usize {
        self.max_unstarted_streams
            .unwrap_or(self.max_connections / 4)
            .max(1)
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
        assert_eq!(s.bridge_on_failure, OnFailure::Hangup);
        assert_eq!(s.twilio_api_base_url, "https://api.twilio.com");
    }

    #[test]
    fn every_setting_is_in_the_readme_table_with_its_flag_and_variable() {
        use clap::CommandFactory;
        let readme = include_str!("../../../README.md");
        let rows: Vec<&str> = readme.lines().filter(|l| l.starts_with("| `")).collect();
        let mut missing = Vec::new();
        for arg in Cli::command().get_arguments() {
            let Some(long) = arg.get_long() else { continue };
            let flag = format!("`--{long}`");
            let found = rows.iter().any(|r| match arg.get_env() {
                Some(env) => {
                    r.contains(&flag) && r.contains(&format!("`{}`", env.to_string_lossy()))
                }
                None => r.contains(&flag),
            });
            if !found {
                missing.push(long.to_owned());
            }
        }
        assert!(
            missing.is_empty(),
            "settings without a README row (flag and variable): {missing:?}"
        );
    }

    #[test]
    fn turn_taking_settings() {
        let s = Cli::try_parse_from(["callstream"]).unwrap().settings();
        assert_eq!((s.end_of_turn_ms, s.min_speech_ms), (300, 60));
        assert!(s.barge_in);
        assert!((s.vad_sensitivity - 0.5).abs() < f32::EPSILON);
        let s = Cli::try_parse_from([
            "callstream",
            "--end-of-turn-ms",
            "800",
            "--min-speech-ms",
            "200",
            "--barge-in",
            "false",
            "--vad-sensitivity",
            "0.8",
        ])
        .unwrap()
        .settings();
        assert_eq!((s.end_of_turn_ms, s.min_speech_ms), (800, 200));
        assert!(!s.barge_in);
        assert!((s.vad_sensitivity - 0.8).abs() < f32::EPSILON);
        for bad in [
            ["--end-of-turn-ms", "50"],
            ["--min-speech-ms", "3000"],
            ["--barge-in", "maybe"],
            ["--vad-sensitivity", "2"],
            ["--vad-sensitivity", "loud"],
        ] {
            assert!(
                Cli::try_parse_from(["callstream", bad[0], bad[1]]).is_err(),
                "{bad:?}"
            );
        }
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
        assert_eq!(s.bridge_on_failure, OnFailure::Continue);
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

    #[test]
    fn shared_keys_are_id_colon_secret() {
        let (k, w) = parse_shared_key("webhooks_sharedkey_1:a:b\n").unwrap();
        assert_eq!(
            (k.id.as_str(), k.secret.as_str()),
            ("webhooks_sharedkey_1", "a:b")
        );
        assert!(w.is_some_and(|w| w.newline));
        let (_, w) = parse_shared_key("k:s").unwrap();
        assert!(w.is_none());
        for bad in ["nocolon", ":secret", "k: \n", "a b:s", "k=1:s", "k,1:s"] {
            let e = parse_shared_key(bad).unwrap_err();
            assert!(!e.contains("secret\""), "{bad:?}: {e}");
        }
    }

    #[test]
    fn pending_limit_defaults_to_a_quarter() {
        let s = Cli::try_parse_from(["callstream", "--max-connections", "100"])
            .unwrap()
            .settings();
        assert_eq!((s.max_pending(), s.max_unstarted()), (25, 25));
        let s = Cli::try_parse_from([
            "callstream",
            "--max-pending-connections",
            "7",
            "--max-unstarted-streams",
            "3",
        ])
        .unwrap()
        .settings();
        assert_eq!((s.max_pending(), s.max_unstarted()), (7, 3));
    }
}
