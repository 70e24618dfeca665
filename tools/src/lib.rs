//! # callstream-tools
//!
//! callstream's user tools, as subcommands of the `callstream` binary:
//!
//! - [`sim`]: `callstream sim <ws-url>` plays Twilio against any Media
//!   Streams server: Twilio's exact upgrade (signed), its messages, media on
//!   absolute 20 ms deadlines, its strict reading and real-time playout of
//!   what comes back; a summary of latency, frames and the warnings Twilio
//!   would log. `--calls N` runs a load test.
//! - [`check`]: `callstream check <base-url>` runs a deployment's
//!   acceptance checks and names the Twilio error each failure would cause.
//! - [`sign`]: `callstream sign` computes `X-Twilio-Signature` and prints
//!   commands that replay the signed request.
//!
//! Twilio itself is the `callstream-twilio` model (sans-IO); the tools are
//! the sockets, clocks and files around it. The binary adds the [`Tool`]
//! subcommands beside `serve`, so the server layer never depends on them.
//!
//! ```
//! use callstream_tools::sign::sign;
//! let s = sign("12345", "https://mycompany.com/myapp.php?foo=1&bar=2", &[
//!     ("CallSid".into(), "CA1234567890ABCDE".into()),
//!     ("Caller".into(), "+14158675309".into()),
//!     ("Digits".into(), "1234".into()),
//!     ("From".into(), "+14158675309".into()),
//!     ("To".into(), "+18005551212".into()),
//! ]);
//! assert_eq!(s.signature, "RSOYDt4T1cUTdK1PDd93/VVr8B8=");
//! ```
#![warn(missing_docs)]

pub mod audio;
pub mod check;
pub mod net;
pub mod sign;
pub mod sim;
pub mod target;

use std::process::ExitCode;

/// The tools, as `callstream` subcommands.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum Tool {
    /// Play Twilio against a Media Streams server (ours or anyone's).
    Sim(Box<sim::SimArgs>),
    /// Run a deployment's acceptance checks.
    Check(check::CheckArgs),
    /// Sign a request as Twilio does and print commands that send it.
    Sign(sign::SignArgs),
}

/// Parses the process's arguments against the binary's command line `C`
/// with the tools added beside its subcommands. A tool runs here and the
/// process exits with its code; any other command line is `C`'s, returned.
/// The tools join at run time through clap's builder, so the server layer's
/// `Cli` (passed in as `C`) never names them and never depends on this crate.
#[must_use]
pub fn parse_or_run<C: clap::CommandFactory + clap::FromArgMatches>() -> C {
    use clap::{FromArgMatches as _, Subcommand as _};
    let base = C::command();
    // Augmenting applies the enum's own doc as the about text: keep `C`'s.
    let (about, long) = (base.get_about().cloned(), base.get_long_about().cloned());
    let mut cmd = Tool::augment_subcommands(base);
    if let Some(about) = about {
        cmd = cmd.about(about);
    }
    if let Some(long) = long {
        cmd = cmd.long_about(long);
    }
    let matches = cmd.get_matches();
    if matches.subcommand_name().is_some_and(Tool::has_subcommand) {
        let tool = Tool::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
        let code = exit_code(&tool);
        let _ = std::io::Write::flush(&mut std::io::stdout());
        std::process::exit(i32::from(code));
    }
    C::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
}

/// Runs `tool`, printing to stdout; exit code 0 only when all went well
/// (a clean call, every check passed), 1 when not, 2 on bad input.
#[must_use]
pub fn run(tool: &Tool) -> ExitCode {
    ExitCode::from(exit_code(tool))
}

fn exit_code(tool: &Tool) -> u8 {
    let mut out = std::io::stdout().lock();
    let result = match tool {
        Tool::Sim(a) => sim::run(a, &mut out),
        Tool::Check(a) => check::run(a, &mut out),
        Tool::Sign(a) => sign::run(a, &mut out).map(|()| true),
    };
    match result {
        Ok(true) => 0,
        Ok(false) => 1,
        Err(e) => {
            eprintln!("callstream: {e}");
            2
        }
    }
}
