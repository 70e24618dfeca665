//! Servers for the tools' tests: deliberately broken ones (each a way a
//! deployment fails Twilio), and a TLS front with a self-signed certificate
//! before a real callstream server.
#![allow(dead_code)]

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use callstream_twilio::upgrade::accept_key;

/// A way to be broken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Broken {
    /// Every request is redirected (a trailing-slash or http→https rule).
    Redirect,
    /// The upgrade needs `Sec-WebSocket-Protocol: audio.twilio.com`.
    RequiresSubprotocol,
    /// Webhooks answer after 300 ms.
    Slow,
    /// The preview's TwiML is not well-formed; signatures are not checked.
    BadTwiml,
    /// After the 101, a binary frame and a message with an extra field.
    BadMessages,
}

/// A one-request-per-connection HTTP server behaving as `mode`.
pub struct BrokenServer {
    /// Where it listens.
    pub addr: SocketAddr,
}

impl BrokenServer {
    /// Starts it on an ephemeral loopback port; it runs until the test ends.
    pub fn start(mode: Broken) -> BrokenServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                std::thread::spawn(move || {
                    let _ = serve(mode, conn);
                });
            }
        });
        BrokenServer { addr }
    }
}

struct Request {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

fn read_request(conn: &mut TcpStream) -> io::Result<Request> {
    let mut buf = Vec::new();
    let mut b = [0u8; 1024];
    loop {
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut req = httparse::Request::new(&mut headers);
        if let httparse::Status::Complete(n) = req.parse(&buf).map_err(io::Error::other)? {
            let headers: Vec<(String, String)> = req
                .headers
                .iter()
                .map(|h| {
                    (
                        h.name.to_owned(),
                        String::from_utf8_lossy(h.value).into_owned(),
                    )
                })
                .collect();
            let r = Request {
                method: req.method.unwrap_or_default().to_owned(),
                path: req.path.unwrap_or_default().to_owned(),
                headers,
            };
            let len: usize = r
                .header("content-length")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            while buf.len() < n + len {
                let k = conn.read(&mut b)?;
                if k == 0 {
                    break;
                }
                buf.extend_from_slice(&b[..k]);
            }
            return Ok(r);
        }
        let k = conn.read(&mut b)?;
        if k == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&b[..k]);
    }
}

const TWIML: &str = r#"<?xml version="1.0" encoding="UTF-8"?><Response><Connect><Stream url="wss://HOST/ws/twilio-media"/></Connect></Response>"#;

fn serve(mode: Broken, mut conn: TcpStream) -> io::Result<()> {
    let req = read_request(&mut conn)?;
    let host = req.header("host").unwrap_or("localhost").to_owned();
    let path = req.path.split('?').next().unwrap_or("/").to_owned();
    let answer = |status: &str, headers: &str, body: &str| {
        format!(
            "HTTP/1.1 {status}\r\n{headers}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
    };
    if mode == Broken::Redirect {
        let to = format!("Location: https://elsewhere.test{path}/\r\n");
        return conn.write_all(answer("308 Permanent Redirect", &to, "").as_bytes());
    }
    if req.header("upgrade").is_some() {
        let key = req
            .header("sec-websocket-key")
            .unwrap_or_default()
            .to_owned();
        let offered = req.header("sec-websocket-protocol").map(str::to_owned);
        if mode == Broken::RequiresSubprotocol && offered.is_none() {
            return conn
                .write_all(answer("400 Bad Request", "", "subprotocol required").as_bytes());
        }
        let proto = offered.map_or(String::new(), |p| {
            format!("Sec-WebSocket-Protocol: {p}\r\n")
        });
        let head = format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n{proto}\r\n",
            accept_key(&key)
        );
        conn.write_all(head.as_bytes())?;
        if mode == Broken::BadMessages {
            std::thread::sleep(Duration::from_millis(100));
            let bad =
                r#"{"event":"clear","streamSid":"MZ00000000000000000000000000000000","extra":1}"#;
            let mut out = vec![0x82, 3, 1, 2, 3];
            out.extend_from_slice(&[0x81, bad.len() as u8]);
            out.extend_from_slice(bad.as_bytes());
            conn.write_all(&out)?;
            std::thread::sleep(Duration::from_millis(300));
            conn.write_all(&[0x88, 2, 0x03, 0xE8])?;
        }
        // Hold the socket until the client goes.
        let mut sink = [0u8; 4096];
        while conn.read(&mut sink).map(|n| n > 0).unwrap_or(false) {}
        return Ok(());
    }
    if path.starts_with("/webhook/incoming_call_preview") {
        let body = if mode == Broken::BadTwiml {
            "<?xml version=\"1.0\"?><Response><Say>Tom & Jerry</Say></Response>".to_owned()
        } else {
            TWIML.replace("HOST", &host)
        };
        return conn
            .write_all(answer("200 OK", "Content-Type: application/xml\r\n", &body).as_bytes());
    }
    if req.method == "POST" && path == "/webhook/incoming_call" {
        let body = TWIML.replace("HOST", &host);
        return conn
            .write_all(answer("200 OK", "Content-Type: application/xml\r\n", &body).as_bytes());
    }
    if mode == Broken::Slow {
        std::thread::sleep(Duration::from_millis(300));
    }
    conn.write_all(answer("204 No Content", "", "").as_bytes())
}

/// A TLS front with a self-signed certificate for `localhost` before
/// `backend`: TLS ends here and plain bytes go on, as at a cloud front.
pub struct TlsFront {
    /// Where it listens (connect as `localhost`).
    pub port: u16,
    /// The certificate, PEM, for `--ca-file`.
    pub ca_file: PathBuf,
    _dir: tempfile::TempDir,
}

impl TlsFront {
    /// Starts the front.
    pub fn start(backend: SocketAddr) -> TlsFront {
        let key = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let ca_file = dir.path().join("ca.pem");
        std::fs::write(&ca_file, key.cert.pem()).unwrap();
        let cert = rustls::pki_types::CertificateDer::from(key.cert.der().to_vec());
        let pkey =
            rustls::pki_types::PrivateKeyDer::try_from(key.signing_key.serialize_der()).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = Arc::new(
            rustls::ServerConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_no_client_auth()
                .with_single_cert(vec![cert], pkey)
                .unwrap(),
        );
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let config = Arc::clone(&config);
                std::thread::spawn(move || {
                    let _ = relay(config, conn, backend);
                });
            }
        });
        TlsFront {
            port,
            ca_file,
            _dir: dir,
        }
    }
}

/// Relays bytes both ways, polling each side with a short timeout.
fn relay(
    config: Arc<rustls::ServerConfig>,
    conn: TcpStream,
    backend: SocketAddr,
) -> io::Result<()> {
    let tick = Some(Duration::from_millis(2));
    conn.set_read_timeout(tick)?;
    let mut tls = rustls::StreamOwned::new(
        rustls::ServerConnection::new(config).map_err(io::Error::other)?,
        conn,
    );
    let mut back = TcpStream::connect(backend)?;
    back.set_read_timeout(tick)?;
    back.set_nodelay(true)?;
    let mut buf = vec![0u8; 64 * 1024];
    let quiet = |e: &io::Error| {
        matches!(
            e.kind(),
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
        )
    };
    loop {
        match tls.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => back.write_all(&buf[..n])?,
            Err(e) if quiet(&e) => {}
            Err(e) => return Err(e),
        }
        match back.read(&mut buf) {
            Ok(0) => {
                tls.conn.send_close_notify();
                let _ = tls.flush();
                return Ok(());
            }
            Ok(n) => {
                tls.write_all(&buf[..n])?;
                tls.flush()?;
            }
            Err(e) if quiet(&e) => {}
            Err(e) => return Err(e),
        }
    }
}
