//! `callstream sim`: plays Twilio against any Media Streams server. One call
//! by default (over `ws://` or `wss://`), or a load run of many
//! (`--calls`). See [`SimArgs`] for the flags and [`call`] for the machine.

pub mod call;
pub mod load;

use std::io::{self, Read as _, Write as _};
use std::net::ToSocketAddrs as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use serde_json::{Value, json};

use crate::audio;
use crate::net;
use crate::target::Target;
use call::{Call, CallReport, Plan};
use callstream_twilio::{Stream, Upgrade};

/// `callstream sim`: play Twilio against a Media Streams server.
#[derive(Debug, Clone, Args)]
pub struct SimArgs {
    /// The stream URL to connect to (`ws://…` or `wss://…`).
    pub url: String,
    /// Sign the upgrade with this auth token, as Twilio does.
    #[arg(long, env = "TWILIO_AUTH_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// The `<Stream url>` Twilio would use (signed, and its host sent as
    /// `Host`), when it differs from where this connects.
    #[arg(long)]
    pub public_url: Option<String>,
    /// A `<Parameter>` of `start`, as `name=value` (repeatable).
    #[arg(long = "param", value_parser = parse_pair)]
    pub params: Vec<(String, String)>,
    /// The call's SID (`CA…`).
    #[arg(long)]
    pub call_sid: Option<String>,
    /// The account's SID (`AC…`).
    #[arg(long)]
    pub account_sid: Option<String>,
    /// The caller's audio: a WAV file of any rate (resampled to 8 kHz), or
    /// raw μ-law ending in `.ulaw`.
    #[arg(long, conflicts_with = "tone")]
    pub audio: Option<PathBuf>,
    /// Instead of a file, a tone of this many Hz for `--tone-seconds`.
    #[arg(long)]
    pub tone: Option<f64>,
    /// Length of the tone.
    #[arg(long, default_value_t = 2.0)]
    pub tone_seconds: f64,
    /// Press digits at a point of the stream: `MS:DIGITS`, e.g. `1500:5`
    /// (repeatable; several digits go 200 ms apart).
    #[arg(long, value_parser = parse_dtmf)]
    pub dtmf: Vec<(Duration, String)>,
    /// Seconds of media to send (default: the audio and 3 s more).
    #[arg(long)]
    pub duration: Option<f64>,
    /// Quiet after the last frame before `stop`, in milliseconds, so that
    /// the answer to the last frames arrives.
    #[arg(long, default_value_t = 500)]
    pub linger_ms: u64,
    /// Offer this subprotocol (Twilio offers none; some clients send
    /// `audio.twilio.com`).
    #[arg(long)]
    pub subprotocol: Option<String>,
    /// Write what the server played, as heard (cleared audio cut), as WAV.
    #[arg(long)]
    pub record: Option<PathBuf>,
    /// Trust the certificates in this PEM file too (a private CA).
    #[arg(long)]
    pub ca_file: Option<PathBuf>,
    /// Print the summary as one JSON line.
    #[arg(long)]
    pub json: bool,
    /// Load mode: this many concurrent calls (plain `ws://` only).
    #[arg(long, default_value_t = 1)]
    pub calls: u32,
    /// Load mode: start the calls evenly over this many seconds.
    #[arg(long, default_value_t = 0.0)]
    pub ramp: f64,
    /// Load mode: threads driving the calls.
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Load mode: send on a grid of this many milliseconds, like a timer
    /// wheel of that resolution (tokio's is 1 ms): each call's frame leaves
    /// at the first tick at or after its time, with every other frame due
    /// in that tick, and its echo is timed from that tick (its lateness
    /// from its own time). 0 (the default): each frame exactly on time.
    /// Servers spend less per frame when frames arrive together; benchmarks
    /// say which.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u64).range(0..=20))]
    pub tick_ms: u64,
}

fn parse_pair(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
        _ => Err(format!("expected name=value, got {s:?}")),
    }
}

fn parse_dtmf(s: &str) -> Result<(Duration, String), String> {
    let (ms, digits) = s
        .split_once(':')
        .ok_or_else(|| format!("expected MS:DIGITS, got {s:?}"))?;
    let ms: u64 = ms.parse().map_err(|_| format!("bad time in {s:?}"))?;
    if digits.is_empty()
        || !digits
            .chars()
            .all(|c| c.is_ascii_digit() || "*#ABCD".contains(c))
    {
        return Err(format!("digits must be 0-9, *, #, A-D: {s:?}"));
    }
    Ok((Duration::from_millis(ms), digits.to_owned()))
}

/// The caller's plan from the flags.
///
/// # Errors
/// The audio file cannot be read.
pub fn plan(args: &SimArgs) -> io::Result<Plan> {
    let audio = match (&args.audio, args.tone) {
        (Some(path), _) => audio::load(path)?,
        (None, Some(freq)) => {
            let secs = args.tone_seconds.clamp(0.0, audio::MAX_AUDIO.as_secs_f64());
            audio::tone(freq, Duration::from_secs_f64(secs))
        }
        (None, None) => Vec::new(),
    };
    let length = Duration::from_millis(audio.len() as u64 / 8);
    // A steady tone is no speech to the detector (it becomes the noise
    // floor): the tone's end is where the caller stops.
    let speech_end = if audio.is_empty() || args.audio.is_none() {
        length
    } else {
        audio::speech_end(&audio)
    };
    let duration = match args.duration {
        Some(s) if s.is_finite() && s >= 0.0 => Duration::from_secs_f64(s.min(86_400.0)),
        _ => length + Duration::from_secs(3),
    };
    Ok(Plan {
        audio,
        speech_end,
        duration,
        linger: Duration::from_millis(args.linger_ms.min(60_000)),
        dtmf: args.dtmf.clone(),
        params: args.params.clone(),
    })
}

/// Call `n`'s upgrade request, as Twilio would open the `<Stream url>`.
///
/// # Errors
/// `--public-url` is not a URL.
pub fn upgrade_for(args: &SimArgs, target: &Target, n: u32) -> Result<Upgrade, String> {
    let public = match &args.public_url {
        Some(u) => Some(Target::parse(u).map_err(|e| e.to_string())?),
        None => None,
    };
    let host = public
        .as_ref()
        .map_or(target.authority.as_str(), |p| p.authority.as_str());
    let mut up = Upgrade::new(
        host,
        &target.path,
        args.token.as_deref(),
        (n % 251) as u8 + 1,
    );
    // Twilio signs the `<Stream url>` exactly as written: always wss.
    up.stream_url = Some(match &public {
        Some(p) => format!("wss://{}{}", p.authority, p.path),
        None => format!("wss://{}{}", target.authority, target.path),
    });
    up.protocol = args.subprotocol.clone();
    Ok(up)
}

/// Call `n`'s SIDs.
#[must_use]
pub fn stream_for(args: &SimArgs, n: u32) -> Stream {
    let mut s = Stream::numbered(n);
    if let Some(sid) = &args.call_sid {
        s.call_sid = sid.clone();
    }
    if let Some(sid) = &args.account_sid {
        s.account_sid = sid.clone();
    }
    s
}

/// Runs `callstream sim`; prints the summary; returns whether all was clean.
///
/// # Errors
/// Bad flags, an unreadable file, an address that does not resolve.
pub fn run(args: &SimArgs, out: &mut dyn io::Write) -> io::Result<bool> {
    let target = Target::parse(&args.url).map_err(io::Error::other)?;
    let plan = Arc::new(plan(args)?);
    if args.calls > 1 {
        return run_load(args, &target, plan, out);
    }
    if args.tick_ms > 0 {
        return Err(io::Error::other(
            "--tick-ms shapes a load run: use it with --calls 2 or more",
        ));
    }
    let up = upgrade_for(args, &target, 0).map_err(io::Error::other)?;
    let tls = net::tls_config(args.ca_file.as_deref())?;
    let report = match net::connect(&target, &tls, call::HANDSHAKE_TIMEOUT) {
        Ok(conn) => one_call(conn, plan, up, stream_for(args, 0))?,
        Err(e) => CallReport {
            failure: Some(call::Failure {
                code: 31920,
                message: format!("connect to {}: {e}", target.authority),
            }),
            ..CallReport::default()
        },
    };
    if let Some(path) = &args.record {
        audio::write_wav(path, &report.heard)?;
    }
    if args.json {
        writeln!(out, "{}", summary_json(&report))?;
    } else {
        write!(out, "{}", summary_text(&report))?;
    }
    Ok(report.clean())
}

/// One call over a blocking connection: the pump of the module docs, with
/// the socket's read timeout as the timer.
///
/// # Errors
/// Setting the socket's timeout fails.
pub fn one_call(
    mut conn: net::Conn,
    plan: Arc<Plan>,
    up: Upgrade,
    stream: Stream,
) -> io::Result<CallReport> {
    let mut call = Call::new(plan, up, stream, Instant::now());
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        while let Some(bytes) = call.poll_transmit() {
            if conn.write_all(&bytes).and_then(|()| conn.flush()).is_err() {
                call.handle_eof(Instant::now());
            }
        }
        let Some(deadline) = call.poll_timeout() else {
            break;
        };
        let now = Instant::now();
        if deadline > now {
            conn.tcp()
                .set_read_timeout(Some((deadline - now).max(Duration::from_millis(1))))?;
            match conn.read(&mut buf) {
                Ok(0) => call.handle_eof(Instant::now()),
                Ok(n) => call.handle_receive(Instant::now(), buf.get(..n).unwrap_or_default()),
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) => {}
                Err(_) => call.handle_eof(Instant::now()),
            }
        }
        call.handle_timeout(Instant::now());
    }
    Ok(call.report())
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

fn stats(values: &mut [Duration]) -> Value {
    let at =
        |values: &mut [Duration], p| load::percentile(values, p).map(|v| (v * 1e3).round() / 1e3);
    json!({
        "p50": at(values, 50.0),
        "p99": at(values, 99.0),
        "max": at(values, 100.0),
        "n": values.len(),
    })
}

/// One call's summary as JSON.
#[must_use]
pub fn summary_json(r: &CallReport) -> Value {
    let mut echo = r.echo_latencies();
    json!({
        "ok": r.clean(),
        "handshake_ms": r.handshake.map(ms),
        "subprotocol": r.subprotocol,
        "frames_sent": r.frames_sent,
        "frames_received": r.media_received,
        "received_ms": r.received_ms,
        "heard_ms": r.heard_ms(),
        "speech_end_ms": ms(r.speech_end),
        "turn_ms": r.turn.map(ms),
        "echo": r.echo_equal,
        "echo_ms": stats(&mut echo),
        "marks": r.marks,
        "marks_echoed": r.marks_echoed,
        "clears": r.clears,
        "dtmf_sent": r.dtmf_sent,
        "server_close": r.server_close.map(|c| c.map_or(Value::Null, Value::from)),
        "warnings": r.warnings.iter().map(|(c, m)| json!({"code": c, "message": m})).collect::<Vec<_>>(),
        "failure": r.failure.as_ref().map(|f| json!({"code": f.code, "message": f.message})),
    })
}

/// One call's summary for a person.
#[must_use]
pub fn summary_text(r: &CallReport) -> String {
    let opt = |d: Option<Duration>| d.map_or("-".to_owned(), |d| format!("{} ms", ms(d)));
    let mut s = String::new();
    if let Some(f) = &r.failure {
        s += &format!("FAILED  Twilio error {}: {}\n", f.code, f.message);
    }
    s += &format!("handshake      {}", opt(r.handshake));
    if let Some(p) = &r.subprotocol {
        s += &format!(" (subprotocol {p})");
    }
    s += &format!(
        "\nframes         {} sent, {} received ({} ms of audio, {} ms heard)\n",
        r.frames_sent,
        r.media_received,
        r.received_ms,
        r.heard_ms()
    );
    s += &format!(
        "turn           {} from the end of speech at {} ms to the first reply audio\n",
        opt(r.turn),
        ms(r.speech_end)
    );
    if r.echo_equal {
        let mut e = r.echo_latencies();
        s += &format!(
            "echo           every byte came back; latency p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms\n",
            load::percentile(&mut e, 50.0).unwrap_or(0.0),
            load::percentile(&mut e, 99.0).unwrap_or(0.0),
            load::percentile(&mut e, 100.0).unwrap_or(0.0)
        );
    }
    s += &format!(
        "marks          {} sent by the server, {} echoed; {} clear(s); {} digit(s) sent\n",
        r.marks, r.marks_echoed, r.clears, r.dtmf_sent
    );
    match r.server_close {
        Some(Some(code)) => s += &format!("closed         by the server ({code})\n"),
        Some(None) => s += "closed         by the server (no close frame)\n",
        None => {}
    }
    if r.warnings.is_empty() {
        s += "warnings       none\n";
    }
    for (_, w) in &r.warnings {
        s += &format!("WARNING        {w}\n");
    }
    s
}

/// A load run and its one-line summary.
fn run_load(
    args: &SimArgs,
    target: &Target,
    plan: Arc<Plan>,
    out: &mut dyn io::Write,
) -> io::Result<bool> {
    if target.tls {
        return Err(io::Error::other(
            "load mode speaks plain ws:// only: point it at the server behind the TLS front",
        ));
    }
    let addr = (target.host.as_str(), target.port)
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| io::Error::other("no address"))?;
    load::probe(addr)?;
    upgrade_for(args, target, 0).map_err(io::Error::other)?;
    let spec = load::Load {
        addr,
        plan,
        calls: args.calls,
        ramp: Duration::from_secs_f64(if args.ramp.is_finite() {
            args.ramp.clamp(0.0, 3600.0)
        } else {
            0.0
        }),
        threads: args.threads,
        tick: Duration::from_millis(args.tick_ms),
    };
    let started = Instant::now();
    let reports = load::run(
        &spec,
        &|n| {
            upgrade_for(args, target, n)
                .unwrap_or_else(|_| Upgrade::new(&target.authority, &target.path, None, 1))
        },
        &|n| stream_for(args, n),
    );
    let summary = load_json(&reports, started.elapsed());
    let ok = summary["failed"] == 0 && summary["warnings"] == 0;
    writeln!(out, "{summary}")?;
    Ok(ok)
}

/// A load run's summary.
#[must_use]
pub fn load_json(reports: &[CallReport], elapsed: Duration) -> Value {
    let mut handshake: Vec<Duration> = reports.iter().filter_map(|r| r.handshake).collect();
    let mut turn: Vec<Duration> = reports.iter().filter_map(|r| r.turn).collect();
    let mut echo: Vec<Duration> = reports
        .iter()
        .filter(|r| r.echo_equal)
        .flat_map(CallReport::echo_latencies)
        .collect();
    let mut late: Vec<Duration> = reports
        .iter()
        .flat_map(|r| r.late.iter().copied())
        .collect();
    let failed: Vec<&CallReport> = reports.iter().filter(|r| r.failure.is_some()).collect();
    let sent: usize = reports.iter().map(|r| r.frames_sent).sum();
    let echoed: usize = reports
        .iter()
        .map(|r| r.echoed_frames.min(r.frames_sent))
        .sum();
    let mut codes = std::collections::BTreeMap::<u16, usize>::new();
    for r in reports {
        for (c, _) in &r.warnings {
            *codes.entry(*c).or_default() += 1;
        }
        if let Some(f) = &r.failure {
            *codes.entry(f.code).or_default() += 1;
        }
    }
    json!({
        "calls": reports.len(),
        "failed": failed.len(),
        "first_failure": failed.first().and_then(|r| r.failure.as_ref()).map(|f| format!("{}: {}", f.code, f.message)),
        "warnings": reports.iter().map(|r| r.warnings.len()).sum::<usize>(),
        "codes": codes.iter().map(|(c, n)| (c.to_string(), Value::from(*n))).collect::<serde_json::Map<_, _>>(),
        "echo_equal": reports.iter().filter(|r| r.echo_equal).count(),
        "handshake_ms": stats(&mut handshake),
        "echo_ms": stats(&mut echo),
        "turn_ms": stats(&mut turn),
        "sim_late_ms": stats(&mut late),
        "frames_sent": sent,
        "frames_echoed": echoed,
        "lost_frames": sent - echoed,
        "seconds": (elapsed.as_secs_f64() * 10.0).round() / 10.0,
    })
}
