//! The ws transport: one WebSocket per call to a service, the same messages
//! as text frames. A blocking tungstenite client on its own thread (TLS with
//! the system's roots for `wss://`): it writes what the link's outbox holds,
//! then reads for up to [`READ_SLICE`], and again. Connecting has a timeout
//! ([`CONNECT_TIMEOUT`], the TCP connect, TLS and the upgrade together); a
//! service that is down, slow to accept or drops mid-call is the bridge's
//! failure, handled like a crashed program.
use std::io::ErrorKind;
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tungstenite::client::IntoClientRequest;
use tungstenite::protocol::WebSocketConfig;
use tungstenite::stream::MaybeTlsStream;
use tungstenite::{Message, WebSocket};

use super::exec::{Facts, MAX_LINE};
use super::link::Link;

/// Longest wait for the service to accept the call.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest a write to the service may block (a service that stopped reading).
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a read waits before the outbox is looked at again: the most a
/// message to the service waits while the service is quiet.
pub const READ_SLICE: Duration = Duration::from_millis(5);
/// How long the closing handshake may take after `stop`.
const CLOSE_WAIT: Duration = Duration::from_secs(1);

/// `url` with the call's facts as query parameters.
#[must_use]
pub fn call_url(url: &str, facts: &Facts<'_>) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    // SIDs are letters and digits: nothing to escape.
    format!(
        "{url}{sep}call_sid={}&stream_sid={}&account_sid={}",
        facts.call_sid, facts.stream_sid, facts.account_sid
    )
}

pub use callstream_server::handlers::loggable_url;

/// `url` without its userinfo, and that userinfo (`user:password`,
/// percent-decoded) when it has one.
fn split_credentials(url: &str) -> (String, Option<String>) {
    let Some((scheme, rest)) = url.split_once("://") else {
        return (url.to_owned(), None);
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => (
            format!("{scheme}://{host}{tail}"),
            Some(percent_decode(userinfo)),
        ),
        None => (url.to_owned(), None),
    }
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = b
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (b[i], hex) {
            (b'%', Some(v)) => {
                out.push(v);
                i += 3;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Whether a handler URL's host is this machine (`localhost`, `127.x`,
/// `[::1]`).
#[must_use]
pub fn is_loopback(url: &str) -> bool {
    let (url, _) = split_credentials(url);
    let rest = url.split_once("://").map_or(url.as_str(), |(_, r)| r);
    let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => authority.rsplit_once(':').map_or(authority, |(h, _)| h),
    };
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Whether a handler URL carries credentials (`ws://user:pass@host/…`).
#[must_use]
pub fn has_credentials(url: &str) -> bool {
    split_credentials(url).1.is_some()
}

/// Connects to the service; `bearer`: the configured token, sent as
/// `Authorization: Bearer` (the server refuses it beside URL credentials).
fn connect(
    url: &str,
    bearer: Option<&str>,
) -> Result<WebSocket<MaybeTlsStream<TcpStream>>, String> {
    let deadline = Instant::now() + CONNECT_TIMEOUT;
    // Credentials in the URL go as HTTP Basic authentication (RFC 7617),
    // never in the request line or `Host`.
    let (url, credentials) = split_credentials(url);
    let mut request = url.into_client_request().map_err(|e| e.to_string())?;
    let authorization = match (credentials, bearer) {
        (Some(userinfo), _) => {
            use base64::Engine as _;
            Some(format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(userinfo)
            ))
        }
        (None, Some(token)) => Some(format!("Bearer {token}")),
        (None, None) => None,
    };
    if let Some(value) = authorization {
        let value = tungstenite::http::HeaderValue::from_str(&value).map_err(|e| e.to_string())?;
        request
            .headers_mut()
            .insert(tungstenite::http::header::AUTHORIZATION, value);
    }
    let uri = request.uri();
    let host = uri
        .host()
        .ok_or("no host")?
        .trim_matches(['[', ']'])
        .to_owned();
    let port = uri
        .port_u16()
        .unwrap_or(if uri.scheme_str() == Some("wss") {
            443
        } else {
            80
        });
    let addrs: Vec<_> = (host.as_str(), port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {host}: {e}"))?
        .collect();
    let mut last = format!("{host} has no address");
    let mut stream = None;
    for a in addrs {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            last = "connect timed out".to_owned();
            break;
        }
        match TcpStream::connect_timeout(&a, left) {
            Ok(s) => {
                stream = Some(s);
                break;
            }
            Err(e) => last = format!("{a}: {e}"),
        }
    }
    let stream = stream.ok_or(last)?;
    let _ = stream.set_nodelay(true);
    // The TLS and WebSocket handshakes must finish by the same deadline.
    let left = deadline
        .saturating_duration_since(Instant::now())
        .max(Duration::from_millis(1));
    stream
        .set_read_timeout(Some(left))
        .map_err(|e| e.to_string())?;
    stream
        .set_write_timeout(Some(left))
        .map_err(|e| e.to_string())?;
    let config = WebSocketConfig::default()
        .max_message_size(Some(MAX_LINE))
        .max_frame_size(Some(MAX_LINE));
    let (ws, _) = tungstenite::client_tls_with_config(request, stream, Some(config), None)
        .map_err(|e| match e {
            tungstenite::HandshakeError::Failure(e) => e.to_string(),
            tungstenite::HandshakeError::Interrupted(_) => "handshake timed out".to_owned(),
        })?;
    let tcp = match ws.get_ref() {
        MaybeTlsStream::Plain(s) => s,
        MaybeTlsStream::Rustls(s) => s.get_ref(),
        _ => return Err("unexpected stream kind".to_owned()),
    };
    tcp.set_read_timeout(Some(READ_SLICE))
        .map_err(|e| e.to_string())?;
    tcp.set_write_timeout(Some(WRITE_TIMEOUT))
        .map_err(|e| e.to_string())?;
    Ok(ws)
}

fn timed_out(e: &tungstenite::Error) -> bool {
    matches!(e, tungstenite::Error::Io(io) if matches!(io.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut))
}

/// Connects to `url` for the call and runs the link over it until the call
/// ends or the service goes. Run it on its own thread.
pub fn run(url: &str, bearer: Option<&str>, facts: &Facts<'_>, link: Arc<Link>) {
    let full = call_url(url, facts);
    let shown = loggable_url(url);
    let mut ws = match connect(&full, bearer) {
        Ok(ws) => ws,
        Err(e) => {
            link.fail(&format!("cannot connect to {shown}: {e}"));
            return;
        }
    };
    tracing::info!(call_sid = %link.call_sid, url = %shown, "BRIDGE_WS connected");
    let mut closing: Option<Instant> = None;
    loop {
        // Everything queued goes out first.
        if closing.is_none() {
            loop {
                match link.outbox.pop(Some(Duration::ZERO)) {
                    Ok(Some(o)) => {
                        let (line, at) = link.line_for(o);
                        if let Err(e) = ws.write(Message::text(line)) {
                            return link.gone(&format!("writing to the service failed: {e}"));
                        }
                        if let Err(e) = ws.flush() {
                            return link.gone(&format!("writing to the service failed: {e}"));
                        }
                        if let Some(at) = at {
                            link.utterance_written(at);
                        }
                    }
                    Ok(None) => break,
                    Err(()) => {
                        let _ = ws.close(None);
                        let _ = ws.flush();
                        closing = Some(Instant::now());
                        break;
                    }
                }
            }
        }
        if closing.is_some_and(|t| t.elapsed() > CLOSE_WAIT) {
            return;
        }
        match ws.read() {
            Ok(Message::Text(t)) => {
                if closing.is_none() {
                    link.handle_line(t.as_bytes());
                }
            }
            Ok(Message::Binary(_)) => {
                link.garbage("binary frame", "the bridge speaks text frames only")
            }
            Ok(Message::Close(c)) => {
                if closing.is_none() {
                    let code =
                        c.map_or_else(|| "none".to_owned(), |c| u16::from(c.code).to_string());
                    link.gone(&format!("the service closed the connection (code {code})"));
                }
                // Answer the close (tungstenite queues the reply) and wait
                // for the end.
                let _ = ws.flush();
            }
            Ok(_) => {}
            Err(e) if timed_out(&e) => {}
            Err(tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed) => {
                return link.gone("the connection closed");
            }
            Err(tungstenite::Error::Capacity(e)) => {
                return link.fail(&format!(
                    "a message over the limit of {MAX_LINE} bytes: {e}"
                ));
            }
            Err(e) => return link.gone(&format!("the connection failed: {e}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts_are_told_from_others() {
        for url in [
            "ws://localhost:8765/bot",
            "ws://127.0.0.1/bot",
            "ws://u:p@127.9.9.9:1/x",
            "ws://[::1]:8765/",
            "ws://LOCALHOST",
        ] {
            assert!(is_loopback(url), "{url}");
        }
        for url in [
            "ws://bot.example.com/bot",
            "ws://10.0.0.5:8765/",
            "ws://[2001:db8::1]:80/",
            "ws://localhost.example.com/",
            "ws://127.0.0.1.example.com/",
        ] {
            assert!(!is_loopback(url), "{url}");
        }
    }

    #[test]
    fn credentials_leave_the_url_for_basic_authentication() {
        assert_eq!(
            split_credentials("wss://user:p%40ss@h:443/bot?k=1"),
            (
                "wss://h:443/bot?k=1".to_owned(),
                Some("user:p@ss".to_owned())
            )
        );
        assert_eq!(
            split_credentials("ws://h/bot?at=x@y"),
            ("ws://h/bot?at=x@y".to_owned(), None)
        );
        assert_eq!(
            split_credentials("ws://a@b@h/"),
            ("ws://h/".to_owned(), Some("a@b".to_owned()))
        );
        assert_eq!(percent_decode("%zz%41"), "%zzA");
    }

    #[test]
    fn logged_urls_keep_no_credentials() {
        for (url, shown) in [
            ("ws://h:1/bot", "ws://h:1/bot"),
            ("wss://user:secret@h/bot?key=s3cr3t", "wss://h/bot?…"),
            ("WSS://a@b@h:443?key=x#f", "WSS://h:443?…"),
            ("ws://h/p#frag", "ws://h/p?…"),
            ("exec:python3 bot.py ?x", "exec:python3 bot.py ?x"),
            ("echo", "echo"),
        ] {
            assert_eq!(loggable_url(url), shown, "{url}");
        }
    }

    #[test]
    fn facts_go_in_the_query() {
        let f = Facts {
            call_sid: "CA1",
            stream_sid: "MZ1",
            account_sid: "AC1",
            parameters: &[],
        };
        assert_eq!(
            call_url("ws://h:1/bot", &f),
            "ws://h:1/bot?call_sid=CA1&stream_sid=MZ1&account_sid=AC1"
        );
        assert_eq!(
            call_url("wss://h/bot?k=v", &f),
            "wss://h/bot?k=v&call_sid=CA1&stream_sid=MZ1&account_sid=AC1"
        );
    }
}
