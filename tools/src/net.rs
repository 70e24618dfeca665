//! Connections: plain TCP or TLS (rustls with Mozilla's roots, or the CAs of
//! `--ca-file` for a private deployment), and one HTTP/1.1 exchange on them,
//! read with the Twilio model's response reader.

use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use callstream_twilio::response::{self, Head, Response};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName};

use crate::target::Target;

/// The most bytes of an HTTP answer read here.
pub const MAX_ANSWER: usize = 1 << 20;

/// A connection to a server.
#[derive(Debug)]
pub enum Conn {
    /// Plain TCP.
    Plain(TcpStream),
    /// TLS over TCP.
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

impl Conn {
    /// The TCP socket underneath.
    #[must_use]
    pub fn tcp(&self) -> &TcpStream {
        match self {
            Conn::Plain(s) => s,
            Conn::Tls(s) => &s.sock,
        }
    }
}

impl Read for Conn {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Conn::Plain(s) => s.read(buf),
            Conn::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Conn {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Conn::Plain(s) => s.write(buf),
            Conn::Tls(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Conn::Plain(s) => s.flush(),
            Conn::Tls(s) => s.flush(),
        }
    }
}

/// The TLS client configuration: Mozilla's roots, plus (or, for a private
/// deployment, only) the certificates in `ca_file` (PEM).
///
/// # Errors
/// The CA file cannot be read or holds no usable certificate.
pub fn tls_config(ca_file: Option<&Path>) -> io::Result<Arc<rustls::ClientConfig>> {
    let mut roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    if let Some(path) = ca_file {
        let mut added = 0;
        for cert in CertificateDer::pem_file_iter(path)
            .map_err(|e| io::Error::other(format!("{}: {e}", path.display())))?
        {
            let cert = cert.map_err(|e| io::Error::other(format!("{}: {e}", path.display())))?;
            roots.add(cert).map_err(io::Error::other)?;
            added += 1;
        }
        if added == 0 {
            return Err(io::Error::other(format!(
                "{}: no certificate in it",
                path.display()
            )));
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(io::Error::other)?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// Opens a connection to `target` (TLS when its scheme says so) and, for TLS,
/// completes the handshake, so that what is timed after it is the server's
/// answer alone.
///
/// # Errors
/// The name does not resolve, the connection or the TLS handshake fails.
pub fn connect(
    target: &Target,
    tls: &Arc<rustls::ClientConfig>,
    timeout: Duration,
) -> io::Result<Conn> {
    let addrs: Vec<_> = (target.host.as_str(), target.port)
        .to_socket_addrs()?
        .collect();
    let mut last = io::Error::other(format!("{} resolves to no address", target.host));
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, timeout) {
            Ok(s) => {
                s.set_nodelay(true)?;
                s.set_read_timeout(Some(timeout))?;
                s.set_write_timeout(Some(timeout))?;
                if !target.tls {
                    return Ok(Conn::Plain(s));
                }
                let name = ServerName::try_from(target.host.clone())
                    .map_err(|e| io::Error::other(format!("{}: {e}", target.host)))?;
                let tls = rustls::ClientConnection::new(Arc::clone(tls), name)
                    .map_err(io::Error::other)?;
                let mut stream = rustls::StreamOwned::new(tls, s);
                while stream.conn.is_handshaking() {
                    stream.conn.complete_io(&mut stream.sock)?;
                }
                return Ok(Conn::Tls(Box::new(stream)));
            }
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// Sends `request` and reads one whole answer to `method`. Returns the
/// answer and how long it took from the request's first byte. Besides
/// `Content-Length`, a chunked body (Node's default) and one that runs to
/// the end of the connection are read too: Twilio reads any HTTP/1.1 server.
///
/// # Errors
/// The connection fails or closes early, or the answer is not HTTP.
pub fn exchange(conn: &mut Conn, request: &[u8], method: &str) -> io::Result<(Response, Duration)> {
    let sent = Instant::now();
    conn.write_all(request)?;
    conn.flush()?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let mut eof = false;
    loop {
        if let Some(head) = response::parse_head(&buf).map_err(io::Error::other)? {
            let body = buf.get(head.len..).unwrap_or_default();
            let framed = match head.body_len(method) {
                Ok(n) => body.get(..n).map(<[u8]>::to_vec),
                Err(response::ResponseError::TransferEncoding) => dechunk(body)?,
                Err(response::ResponseError::NoContentLength) if eof => Some(body.to_vec()),
                Err(response::ResponseError::NoContentLength) => None,
                Err(e) => return Err(io::Error::other(e)),
            };
            if let Some(body) = framed {
                let answer = Response {
                    status: head.status,
                    headers: head.headers,
                    body: String::from_utf8_lossy(&body).into_owned(),
                };
                return Ok((answer, sent.elapsed()));
            }
        }
        if eof || buf.len() > MAX_ANSWER {
            return Err(io::Error::other(format!(
                "no complete answer ({} bytes)",
                buf.len()
            )));
        }
        let n = read_some(conn, &mut chunk)?;
        eof = n == 0;
        buf.extend_from_slice(chunk.get(..n).unwrap_or_default());
    }
}

/// A chunked body (RFC 9112 §7.1): the content, or `None` while incomplete.
///
/// # Errors
/// A chunk size that is not hexadecimal.
pub fn dechunk(mut bytes: &[u8]) -> io::Result<Option<Vec<u8>>> {
    let mut out = Vec::new();
    loop {
        let Some(eol) = bytes.windows(2).position(|w| w == b"\r\n") else {
            return Ok(None);
        };
        let line = String::from_utf8_lossy(bytes.get(..eol).unwrap_or_default());
        let size = line.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size, 16)
            .map_err(|_| io::Error::other(format!("bad chunk size {size:?}")))?;
        bytes = bytes.get(eol + 2..).unwrap_or_default();
        if size == 0 {
            // Trailers, if any, end with an empty line; none are needed here.
            return Ok(bytes.windows(2).any(|w| w == b"\r\n").then_some(out));
        }
        let Some(data) = bytes.get(..size) else {
            return Ok(None);
        };
        out.extend_from_slice(data);
        let Some(rest) = bytes.get(size + 2..) else {
            return Ok(None);
        };
        bytes = rest;
    }
}

/// Sends an upgrade request and reads the head of the answer; returns the
/// head, the bytes after it (the first frames, if any) and the time taken.
///
/// # Errors
/// The connection fails or closes before a whole head.
pub fn upgrade(conn: &mut Conn, request: &[u8]) -> io::Result<(Head, Vec<u8>, Duration)> {
    let sent = Instant::now();
    conn.write_all(request)?;
    conn.flush()?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(head) = response::parse_head(&buf).map_err(io::Error::other)? {
            let rest = buf.split_off(head.len.min(buf.len()));
            return Ok((head, rest, sent.elapsed()));
        }
        let n = read_some(conn, &mut chunk)?;
        if n == 0 || buf.len() > MAX_ANSWER {
            return Err(io::Error::other("closed before a whole answer"));
        }
        buf.extend_from_slice(chunk.get(..n).unwrap_or_default());
    }
}

/// A read that treats a TLS peer closing without `close_notify` as the end
/// of the stream, as browsers and curl do.
fn read_some(conn: &mut Conn, buf: &mut [u8]) -> io::Result<usize> {
    match conn.read(buf) {
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(0),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::dechunk;

    #[test]
    fn chunked_bodies() {
        let body = b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\n\r\n";
        assert_eq!(dechunk(body).unwrap().as_deref(), Some(&b"hello world"[..]));
        for cut in 0..body.len() - 1 {
            assert_eq!(dechunk(&body[..cut]).unwrap(), None, "{cut}");
        }
        assert!(dechunk(b"zz\r\n").is_err());
        assert!(dechunk(b"ffffffffffffffffffff\r\n").is_err());
    }
}
