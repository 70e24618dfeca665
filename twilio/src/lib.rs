//! Twilio, modelled once: how Twilio's voice platform behaves towards a Media
//! Streams server, for callstream's tests, its fuzz targets and a simulator
//! that plays Twilio against any server. Sans-IO: bytes and text in and out,
//! time passed in; no sockets, no clock.
//!
//! The modules read like Twilio's side of docs/protocol.md:
//!
//! - [`upgrade`]: the WebSocket upgrade Twilio sends (§1) and its reading of
//!   the answer (anything but a proper `101` is error 31920);
//! - [`signature`], [`form`], [`webhook`]: signed, form-encoded webhooks (§4,
//!   §5), signed independently of the core's signature module;
//! - [`message`]: the messages Twilio sends on the stream (§2);
//! - [`check`]: its strict reading of what a server sends back (warnings
//!   31950 and 31951);
//! - [`playout`]: its buffer: real-time playout, mark echoes, `clear`;
//! - [`twilio`]: all of that for one stream, as one machine;
//! - [`frame`], [`response`], [`wire`]: the client's side of WebSocket
//!   framing and HTTP answers, and a checker of a server's whole output.
//!
//! # Example
//!
//! A server's answer to one call, played out in simulated time:
//!
//! ```
//! use std::time::{Duration, Instant};
//! use callstream_twilio::{Stream, Twilio, ServerMessage};
//!
//! let t0 = Instant::now();
//! let mut twilio = Twilio::new(Stream::default());
//! let sid = twilio.stream.stream_sid.clone();
//! let _to_server = [twilio.connected(), twilio.start(&[("lang", "en")])];
//!
//! // The server answers with 20 ms of audio (160 bytes of 0xFF) and a mark.
//! let payload = "////".repeat(53) + "/w==";
//! let media = format!(r#"{{"event":"media","streamSid":"{sid}","media":{{"payload":"{payload}"}}}}"#);
//! let mark = format!(r#"{{"event":"mark","streamSid":"{sid}","mark":{{"name":"said"}}}}"#);
//! twilio.handle_text(t0, &media)?;
//! assert_eq!(twilio.handle_text(t0, &mark)?, ServerMessage::Mark("said".into()));
//!
//! // The mark comes back once its audio has played.
//! assert_eq!(twilio.poll_text(), None);
//! let due = twilio.poll_timeout().unwrap();
//! assert_eq!(due, t0 + Duration::from_millis(20));
//! twilio.handle_timeout(due);
//! let echo = twilio.poll_text().unwrap();
//! assert!(echo.contains(r#""mark":{"name":"said"}"#));
//! # Ok::<(), callstream_twilio::Warning>(())
//! ```

pub mod check;
pub mod form;
pub mod frame;
pub mod message;
pub mod playout;
pub mod response;
pub mod signature;
pub mod twilio;
pub mod twiml;
pub mod upgrade;
pub mod webhook;
pub mod wire;

pub use check::{ServerMessage, Warning, check_text, media_bytes};
pub use message::{Message, Stream, connected};
pub use playout::Playout;
pub use twilio::Twilio;
pub use upgrade::{Forwarded, HandshakeError, Upgrade};
pub use wire::{Expect, Wire, WireError};
