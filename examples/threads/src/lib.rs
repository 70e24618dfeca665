//! The connection engine on a runtime of your own: `callstream-core`'s
//! [`Connection`] driven directly, with a thread per connection and a
//! blocking socket, and nothing of the server layer (no settings, logs,
//! metrics or admission: add what your server needs around the loop).
//!
//! The loop is the core's [run loop](callstream_core#run-loop), in about
//! forty lines ([`drive`]): feed what the socket read (or the time), drain
//! [`Connection::poll_output`], write [`Connection::transmit`], and read
//! again until the deadline it named. The engine answers the webhooks,
//! checks Twilio's signatures, upgrades the media stream and runs the
//! call's handler; this file only moves bytes and keeps time. The paths
//! are the application's: here `/twilio/voice` answers Twilio's
//! incoming-call webhook with TwiML that streams the call to
//! `/twilio/media`.
//!
//! ```no_run
//! use callstream_core::connection::{Config, Route, Routes, StreamApp};
//! use callstream_core::handler;
//! use callstream_core::public_url::PublicBase;
//! use std::sync::Arc;
//!
//! let config = Config {
//!     auth_tokens: vec!["your auth token".into()],
//!     public_base_url: Some(PublicBase::parse("https://voice.example.com").unwrap()),
//!     routes: Routes::new()
//!         .route("/healthz", Route::Healthz)
//!         .route("/twilio/voice", Route::IncomingCall)
//!         .route("/twilio/media", Route::MediaStream),
//!     app: Arc::new(StreamApp {
//!         call_parameters: vec![("caller".into(), "From".into())],
//!         ..StreamApp::default()
//!     }),
//!     session: Some(handler::session_factory(
//!         Default::default(),
//!         handler::by_name("echo").unwrap(),
//!     )),
//!     ..Config::default()
//! };
//! let listener = std::net::TcpListener::bind("0.0.0.0:8080").unwrap();
//! callstream_example_threads::serve(listener, Arc::new(config));
//! ```
use callstream_core::connection::{Config, Connection, Output};
use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// The longest a thread reads before it looks at its wake flag: a handler
/// that sends audio from another thread wakes the connection through the
/// waker, and a blocked read cannot be interrupted.
const WAKE_CHECK: Duration = Duration::from_millis(10);

/// Accepts connections forever, each served on a thread of its own.
pub fn serve(listener: TcpListener, config: Arc<Config>) {
    for stream in listener.incoming().flatten() {
        let config = config.clone();
        std::thread::spawn(move || drive(stream, config));
    }
}

/// One connection, from accept to close.
pub fn drive(mut socket: TcpStream, config: Arc<Config>) {
    let _ = socket.set_nodelay(true);
    let mut conn = Connection::new(config, Instant::now());
    // A wake (a handler's remote control, from any thread) is handled like
    // a timeout: the flag brings this thread to `handle_timeout`.
    let woken = Arc::new(AtomicBool::new(false));
    let flag = woken.clone();
    conn.set_waker(Arc::new(move || flag.store(true, Ordering::Release)));
    let mut buf = vec![0u8; 8192];
    loop {
        // Drain: events (here only dropped: log or count them in yours)
        // until the engine names a deadline or closes.
        let deadline = loop {
            match conn.poll_output() {
                Output::Event(_) => {}
                Output::Timeout(t) => break Some(t),
                Output::Close => break None,
            }
        };
        // Write what the engine has for the peer, and say how much went.
        while !conn.transmit().is_empty() {
            match socket.write(conn.transmit()) {
                Ok(n) if n > 0 => conn.consume_transmit(n),
                _ => return,
            }
        }
        let Some(deadline) = deadline else {
            let _ = socket.shutdown(std::net::Shutdown::Write);
            return;
        };
        // Read until the deadline (or a wake); a timeout is the time input.
        let wait = deadline.saturating_duration_since(Instant::now());
        let _ = socket.set_read_timeout(Some(wait.clamp(Duration::from_millis(1), WAKE_CHECK)));
        match socket.read(&mut buf) {
            Ok(0) => conn.handle_eof(Instant::now()),
            Ok(n) => conn.handle_receive(Instant::now(), &buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                let now = Instant::now();
                if woken.swap(false, Ordering::AcqRel) || now >= deadline {
                    conn.handle_timeout(now);
                }
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => conn.handle_eof(Instant::now()),
        }
    }
}
