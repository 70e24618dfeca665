//! The HTTP half of a connection: one request at a time, routed and answered.

use std::time::Instant;

use super::stream::StreamPhase;
use super::{CloseReason, Config, Connection, Event, IncomingCall, Phase, Route, Step};
use crate::handshake;
use crate::http::{Expiry, Request, Response};
use crate::public_url::{self, PublicBase, RequestParts};
use crate::twiml;
use crate::verify::{Check, Reason, SignedRequest};

/// TwiML must not be cached: every call gets its own parameters.
const XML: &str = "application/xml; charset=utf-8";

/// Prometheus' text exposition format.
const PROMETHEUS: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The sample call behind `/webhook/incoming_call_preview`.
const PREVIEW_CALL: [(&str, &str); 3] = [
    ("CallSid", "CA00000000000000000000000000000000"),
    ("From", "+15550100000"),
    ("To", "+15550100001"),
];

/// The 400 body for a request whose public URL cannot be rebuilt. Fixed
/// text: the offending header is never reflected.
const BAD_ORIGIN: &str = "invalid Host or forwarded header";

/// The 400 body for a call whose parameters break a TwiML rule.
const BAD_CALL: &str = "call parameters cannot be put in TwiML";

/// Why an incoming call gets 500 when the stream URL would be `ws://` (an
/// `http://` public base, or a trusted `X-Forwarded-Proto: http`).
const INSECURE: &str = "the stream URL would be ws://, and Twilio only connects to wss://: \
configure an https:// public base URL, or put the server behind TLS";

/// The interim answer to `Expect: 100-continue` (RFC 9110 §15.2.1).
const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// How much of a hostile value an event keeps.
const EXCERPT: usize = 64;

/// What a route decided.
enum Answer {
    /// An HTTP response; the connection goes on unless it says `close`.
    Http(Response),
    /// A refused request whose framing may still be fine, but the client
    /// expected something else (an upgrade): answer and close.
    HttpClose(Response, CloseReason),
    /// The upgrade is accepted: write these bytes (the 101), then frames.
    Upgrade {
        response: Vec<u8>,
        subprotocol: Option<String>,
    },
}

impl Connection {
    pub(super) fn step_http(&mut self) -> Step {
        if let Some(reason) = self.close_after_answer.take() {
            self.finish(reason);
            return Step::Progress;
        }
        let Phase::Http(parser) = &mut self.phase else {
            return Step::Progress;
        };
        match parser.poll_request() {
            Ok(Some(request)) => {
                let started = self.request_started.unwrap_or(self.now);
                // Bytes left over belong to the next (pipelined) request;
                // they arrived by now.
                self.request_started = (!parser.buffered().is_empty()).then_some(self.now);
                self.handle_request(request, started);
                Step::Progress
            }
            Ok(None) => {
                if parser.poll_continue() && !self.eof && !self.draining {
                    // The client waits for this before sending its body.
                    self.out.extend_from_slice(CONTINUE);
                    return Step::Progress;
                }
                if self.eof {
                    self.finish(CloseReason::PeerClosed);
                    Step::Progress
                } else if self.draining && parser.is_idle() {
                    self.finish(CloseReason::Shutdown);
                    Step::Progress
                } else {
                    Step::Idle(parser.poll_timeout())
                }
            }
            Err(error) => {
                let status = error.status();
                Response::for_parse_error(&error).write_to(&mut self.out);
                self.emit(Event::Malformed {
                    status,
                    reason: error.to_string(),
                });
                self.finish(CloseReason::BadRequest { status });
                Step::Progress
            }
        }
    }

    pub(super) fn http_expired(&mut self, expiry: Expiry) {
        match expiry {
            Expiry::RequestTimeout => {
                Response::request_timeout().write_to(&mut self.out);
                self.finish(CloseReason::RequestTimeout);
            }
            _ => self.finish(CloseReason::IdleTimeout),
        }
    }

    fn handle_request(&mut self, request: Request, started: Instant) {
        self.detect_front(&request);
        let route = self.config.routes.find(request.path());
        let answer = self.route(route, &request);
        let latency = self.now.saturating_duration_since(started);
        // The answer to HEAD is the head alone: a keep-alive client stops
        // reading at the empty line (RFC 9112 §6.3), so a body would be read
        // as the start of the next response.
        let head_only = request.method() == "HEAD";
        let write = |response: &Response, out: &mut Vec<u8>| {
            if head_only {
                response.write_head_to(out);
            } else {
                response.write_to(out);
            }
        };
        match answer {
            Answer::Http(mut response) => {
                // An HTTP/1.0 client, `Connection: close`, a half-closed
                // peer or a draining server: this answer is the last.
                let last = !request.keep_alive() || self.draining || response.closes();
                if last {
                    response = response.close();
                    self.close_after_answer = Some(CloseReason::Done);
                }
                write(&response, &mut self.out);
                self.emit_request(request.method(), route, response.status(), latency);
            }
            Answer::HttpClose(response, reason) => {
                let response = response.close();
                write(&response, &mut self.out);
                self.emit_request(request.method(), route, response.status(), latency);
                self.close_after_answer = Some(reason);
            }
            Answer::Upgrade {
                response,
                subprotocol,
            } => {
                self.out.extend_from_slice(&response);
                self.emit_request(request.method(), route, 101, latency);
                self.emit(Event::Upgraded { subprotocol });
                self.upgrade();
                return;
            }
        }
        // The next request on this connection is built in this one's buffers.
        if let Phase::Http(parser) = &mut self.phase {
            parser.recycle(request);
        }
    }

    fn emit_request(
        &mut self,
        method: &str,
        route: Route,
        status: u16,
        latency: std::time::Duration,
    ) {
        self.emit(Event::Request {
            method: method.to_owned(),
            route,
            status,
            latency,
        });
    }

    /// Switches to the media stream: bytes after the upgrade request are its
    /// first frames, and the 101 stays ahead of every frame we send.
    fn upgrade(&mut self) {
        let Phase::Http(parser) = &mut self.phase else {
            return;
        };
        let read_ahead = parser.take_buffered();
        let mut out = std::mem::take(&mut self.out);
        out.drain(..self.sent.min(out.len()));
        self.sent = 0;
        let stream = StreamPhase::new(self.now, &self.config, read_ahead, out, self.waker.clone());
        self.phase = Phase::Stream(Box::new(stream));
        if self.draining
            && let Phase::Stream(s) = &mut self.phase
        {
            s.shutdown(self.now, &self.config);
        }
    }

    fn route(&mut self, route: Route, request: &Request) -> Answer {
        let method = request.method();
        let allowed: &[&str] = match route {
            Route::Unknown => {
                return Answer::Http(
                    self.config
                        .app
                        .route(request)
                        .unwrap_or_else(Response::not_found),
                );
            }
            Route::Metrics if self.config.metrics.is_none() => {
                return Answer::Http(Response::not_found());
            }
            Route::Version if self.config.version.is_none() => {
                return Answer::Http(Response::not_found());
            }
            Route::IncomingCall => &["GET", "POST"],
            Route::StreamStatus
            | Route::StreamEnded
            | Route::CallStatus
            | Route::HandleRecording => &["POST"],
            Route::MediaStream => &["GET"],
            // RFC 9110 §9.1: a GET resource answers HEAD too (load balancers
            // probe health that way); the answer is the head alone.
            _ => &["GET", "HEAD"],
        };
        if !allowed.contains(&method) {
            if route == Route::MediaStream {
                let reason = format!("method {} is not GET", excerpt(method));
                self.emit(Event::HandshakeRejected {
                    status: 405,
                    reason,
                });
            }
            return Answer::Http(Response::method_not_allowed(allowed));
        }
        match route {
            Route::Healthz => {
                Answer::Http(Response::ok_text("ok").header("Cache-Control", "no-store"))
            }
            Route::Version => Answer::Http(
                Response::new(200)
                    .header("Content-Type", "application/json")
                    .header("Cache-Control", "no-store")
                    .body(self.config.version.clone().unwrap_or_default()),
            ),
            Route::Metrics => {
                let text = self
                    .config
                    .metrics
                    .as_ref()
                    .map(|render| render())
                    .unwrap_or_default();
                Answer::Http(
                    Response::new(200)
                        .header("Content-Type", PROMETHEUS)
                        .header("Cache-Control", "no-store")
                        .body(text),
                )
            }
            Route::IncomingCallPreview => {
                self.incoming_call_answer(request, &preview_params(), true)
            }
            Route::IncomingCall => self.incoming_call(request),
            Route::MediaStream => self.upgrade_request(request),
            _ => self.status_webhook(route, request),
        }
    }

    /// The incoming-call webhook: verify, then answer the application's
    /// TwiML.
    fn incoming_call(&mut self, request: &Request) -> Answer {
        let params = match self.verify(Route::IncomingCall, request) {
            Ok(params) => params,
            Err(answer) => return answer,
        };
        let answer = self.incoming_call_answer(request, &params, false);
        if matches!(&answer, Answer::Http(r) if r.status() == 200) {
            self.emit(Event::Webhook {
                route: Route::IncomingCall,
                params,
            });
        }
        answer
    }

    fn incoming_call_answer(
        &mut self,
        request: &Request,
        params: &[(String, String)],
        preview: bool,
    ) -> Answer {
        let base = match self.public_base(request) {
            Ok(base) => base,
            Err(answer) => return answer,
        };
        let xml = self.config.app.incoming_call(&IncomingCall {
            params,
            base: &base,
            routes: &self.config.routes,
            preview,
        });
        match xml {
            Ok(xml) => Answer::Http(
                Response::new(200)
                    .header("Content-Type", XML)
                    .header("Cache-Control", "no-store")
                    .body(xml),
            ),
            Err(error) => {
                // Whose fault? If the sample call builds, the request's own
                // values broke a TwiML rule (e.g. a 600-character `From`):
                // 400, and never reflected. Otherwise the configuration did.
                let sample = preview_params();
                let sample = IncomingCall {
                    params: &sample,
                    base: &base,
                    routes: &self.config.routes,
                    preview: true,
                };
                match self.config.app.incoming_call(&sample) {
                    Ok(_) => Answer::Http(Response::bad_request(BAD_CALL)),
                    Err(_) => {
                        let reason = match error {
                            twiml::TwimlError::InsecureStreamUrl { .. } => INSECURE.to_owned(),
                            other => format!("cannot build the incoming-call TwiML: {other}"),
                        };
                        let body = format!("{reason}\n");
                        self.emit(Event::ConfigError { reason });
                        Answer::Http(Response::text(500, &body))
                    }
                }
            }
        }
    }

    /// The status callbacks: verify, answer 204 at once, hand the parameters
    /// to the application as an event (the answer never waits for it).
    fn status_webhook(&mut self, route: Route, request: &Request) -> Answer {
        let params = match self.verify(route, request) {
            Ok(params) => params,
            Err(answer) => return answer,
        };
        let next = if route == Route::StreamEnded {
            self.config.app.stream_ended(&params)
        } else {
            None
        };
        self.emit(Event::Webhook { route, params });
        Answer::Http(match next {
            Some(xml) => Response::new(200)
                .header("Content-Type", XML)
                .header("Cache-Control", "no-store")
                .body(xml),
            None => Response::no_content(),
        })
    }

    /// The WebSocket upgrade: RFC 6455 checks, then the signature over the
    /// `wss://` URL with no parameters (docs/protocol.md §1).
    fn upgrade_request(&mut self, request: &Request) -> Answer {
        let upgrade = match handshake::check_upgrade(request) {
            Ok(upgrade) => upgrade,
            Err(error) => {
                let status = error.status();
                self.emit(Event::HandshakeRejected {
                    status,
                    reason: error.reason().to_owned(),
                });
                let reason = CloseReason::HandshakeRejected { status };
                return Answer::HttpClose(error.response(), reason);
            }
        };
        if let Err(answer) = self.verify(Route::MediaStream, request) {
            let status = match &answer {
                Answer::Http(r) | Answer::HttpClose(r, _) => r.status(),
                Answer::Upgrade { .. } => 101,
            };
            let reason = if status == 403 {
                "signature check failed".to_owned()
            } else {
                "invalid public URL".to_owned()
            };
            self.emit(Event::HandshakeRejected { status, reason });
            return match answer {
                Answer::Http(r) | Answer::HttpClose(r, _) => {
                    Answer::HttpClose(r, CloseReason::HandshakeRejected { status })
                }
                other => other,
            };
        }
        if self.refuse_upgrades {
            let status = 503;
            self.emit(Event::HandshakeRejected {
                status,
                reason: "no call slot free".to_owned(),
            });
            return Answer::HttpClose(
                Response::service_unavailable(),
                CloseReason::HandshakeRejected { status },
            );
        }
        Answer::Upgrade {
            response: handshake::response_101(&upgrade),
            subprotocol: upgrade.subprotocol,
        }
    }

    /// The whole check ([`crate::verify`]): the signature (when keys are
    /// configured) and the account (when one is). Gives the request's
    /// decoded parameters (form body, GET query, JSON fields).
    fn verify(&mut self, route: Route, request: &Request) -> Result<Vec<(String, String)>, Answer> {
        let routed = Routed {
            request,
            websocket: route == Route::MediaStream,
        };
        match self.config.verifier().verify(&routed) {
            Ok(verified) => {
                if verified.check == Check::SignaturesOff
                    && Config::first(&self.config.shared.signatures_off_reported)
                {
                    self.emit(Event::SignaturesOff);
                }
                Ok(verified.params)
            }
            Err(refusal) => Err(match refusal.reason {
                // Never the offending value: it came from the request.
                Reason::InvalidOrigin => Answer::Http(Response::bad_request(BAD_ORIGIN)),
                // Form errors never quote the input.
                Reason::InvalidForm(e) => Answer::Http(Response::bad_request(&e.to_string())),
                reason if reason.is_account() => {
                    let account_sid = match reason {
                        Reason::AccountMismatch { account_sid } => account_sid,
                        _ => String::new(),
                    };
                    self.emit(Event::AccountRejected { route, account_sid });
                    Answer::Http(Response::forbidden())
                }
                reason => {
                    self.emit(Event::SignatureRejected {
                        route,
                        urls_tried: refusal.urls_tried,
                        reason,
                    });
                    Answer::Http(Response::forbidden())
                }
            }),
        }
    }

    /// The base URL for the TwiML: the configured one, else rebuilt from the
    /// request like the signed URL (an invalid host is 400, never reflected).
    fn public_base(&self, request: &Request) -> Result<PublicBase, Answer> {
        let parts = request_parts(request, false);
        public_url::request_base(
            self.config.public_base_url.as_ref(),
            &parts.as_parts(),
            self.config.trust_forwarded,
        )
        // Never the offending value: it came from the request.
        .map_err(|_| Answer::Http(Response::bad_request(BAD_ORIGIN)))
    }

    /// Reports, once per `Config`, what front sits before the server.
    fn detect_front(&mut self, request: &Request) {
        if self
            .config
            .shared
            .front_reported
            .load(std::sync::atomic::Ordering::Relaxed)
        {
            return;
        }
        let Some(what) = front(request) else {
            return;
        };
        if Config::first(&self.config.shared.front_reported) {
            self.emit(Event::FrontDetected { what });
        }
    }
}

/// What sits in front, judged from headers fronts add. One pass over the
/// headers: this runs on every request until a front is first seen.
fn front(request: &Request) -> Option<String> {
    const FORWARDED: [&str; 5] = [
        "forwarded",
        "x-forwarded-for",
        "x-forwarded-proto",
        "x-forwarded-host",
        "x-real-ip",
    ];
    let mut via = None;
    let mut trace = false;
    let mut cf_ray = false;
    let mut forwarded: Option<usize> = None;
    for (name, value) in request.headers() {
        if name.eq_ignore_ascii_case("via") {
            via = via.or(Some(value));
        } else if name.eq_ignore_ascii_case("x-cloud-trace-context") {
            trace = true;
        } else if name.eq_ignore_ascii_case("cf-ray") {
            cf_ray = true;
        } else if let Some(i) = FORWARDED.iter().position(|h| name.eq_ignore_ascii_case(h)) {
            forwarded = Some(forwarded.map_or(i, |f| f.min(i)));
        }
    }
    let via = via.map(String::from_utf8_lossy);
    if let Some(via) = via
        .as_deref()
        .filter(|v| v.to_ascii_lowercase().contains("google"))
    {
        return Some(format!("Google Front End (Via: {})", excerpt(via)));
    }
    if trace {
        return Some("Google Cloud (X-Cloud-Trace-Context)".to_owned());
    }
    if cf_ray {
        return Some("Cloudflare (CF-Ray)".to_owned());
    }
    if let Some(via) = via {
        return Some(format!("a proxy (Via: {})", excerpt(&via)));
    }
    forwarded.map(|i| format!("a proxy ({})", FORWARDED[i]))
}

/// At most [`EXCERPT`] characters of a hostile value.
fn excerpt(s: &str) -> &str {
    crate::excerpt::prefix(s, EXCERPT)
}

/// The owned pieces of [`RequestParts`] for one request.
struct Parts<'a> {
    path_and_query: std::borrow::Cow<'a, str>,
    host: Option<&'a str>,
    forwarded_proto: Option<&'a str>,
    forwarded_host: Option<&'a str>,
    forwarded: Option<&'a str>,
    websocket: bool,
}

impl Parts<'_> {
    fn as_parts(&self) -> RequestParts<'_> {
        RequestParts {
            path_and_query: &self.path_and_query,
            host: self.host,
            forwarded_proto: self.forwarded_proto,
            forwarded_host: self.forwarded_host,
            forwarded: self.forwarded,
            websocket: self.websocket,
        }
    }
}

fn request_parts(request: &Request, websocket: bool) -> Parts<'_> {
    // Twilio signs the target verbatim; an absolute-form target is cut back
    // to its path and query.
    let path_and_query = if request.target().starts_with('/') {
        std::borrow::Cow::Borrowed(request.target())
    } else {
        match request.query() {
            Some(q) => std::borrow::Cow::Owned(format!("{}?{q}", request.path())),
            None => std::borrow::Cow::Borrowed(request.path()),
        }
    };
    // One pass for the four headers; like `Request::header`, the first line
    // of each counts, and a value that is not UTF-8 counts as absent.
    let mut found: [Option<&[u8]>; 4] = [None; 4];
    for (name, value) in request.headers() {
        let slot = if name.eq_ignore_ascii_case("host") {
            0
        } else if name.eq_ignore_ascii_case("x-forwarded-proto") {
            1
        } else if name.eq_ignore_ascii_case("x-forwarded-host") {
            2
        } else if name.eq_ignore_ascii_case("forwarded") {
            3
        } else {
            continue;
        };
        found[slot] = found[slot].or(Some(value));
    }
    let [host, forwarded_proto, forwarded_host, forwarded] =
        found.map(|v| v.and_then(|v| std::str::from_utf8(v).ok()));
    Parts {
        path_and_query,
        host,
        forwarded_proto,
        forwarded_host,
        forwarded,
        websocket,
    }
}

/// The sample call behind `/webhook/incoming_call_preview`.
fn preview_params() -> Vec<(String, String)> {
    PREVIEW_CALL
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// A request as the check sees it on a route: the route, not the headers,
/// says whether it is the WebSocket upgrade.
struct Routed<'a> {
    request: &'a Request,
    websocket: bool,
}

impl SignedRequest for Routed<'_> {
    fn method(&self) -> &str {
        self.request.method()
    }
    fn target(&self) -> &str {
        self.request.target()
    }
    fn headers(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.request.headers()
    }
    fn body(&self) -> &[u8] {
        &self.request.body
    }
    fn is_websocket(&self) -> bool {
        self.websocket
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Instant;

    use super::super::{Config, Connection, Output};

    /// Feeds `input`, drains, and returns everything written.
    fn exchange(input: &[u8]) -> String {
        let now = Instant::now();
        let config = Config {
            routes: crate::connection::Routes::new()
                .route("/healthz", crate::connection::Route::Healthz)
                .route("/ws/twilio-media", crate::connection::Route::MediaStream),
            ..Config::default()
        };
        let mut conn = Connection::new(Arc::new(config), now);
        conn.handle_receive(now, input);
        while let Output::Event(_) = conn.poll_output() {}
        String::from_utf8(conn.transmit().to_vec()).unwrap()
    }

    /// Found by the `connection` fuzz target: a `HEAD` answered with a body
    /// left the body on the wire, and a keep-alive client (a load balancer's
    /// probe) read it as the start of the next response.
    #[test]
    fn head_is_answered_without_content_and_the_next_answer_stays_framed() {
        let wire = exchange(
            b"HEAD /healthz HTTP/1.1\r\nHost: example.com\r\n\r\n\
              HEAD /nowhere HTTP/1.1\r\nHost: example.com\r\n\r\n\
              GET /healthz HTTP/1.1\r\nHost: example.com\r\n\r\n",
        );
        assert_eq!(
            wire,
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\n\
             Cache-Control: no-store\r\nContent-Length: 2\r\n\r\n\
             HTTP/1.1 404 Not Found\r\nContent-Type: text/plain; charset=utf-8\r\n\
             Content-Length: 10\r\n\r\n\
             HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\n\
             Cache-Control: no-store\r\nContent-Length: 2\r\n\r\nok"
        );
    }

    #[test]
    fn head_on_the_stream_route_is_a_405_without_content() {
        let wire = exchange(b"HEAD /ws/twilio-media HTTP/1.1\r\nHost: example.com\r\n\r\n");
        assert!(wire.starts_with("HTTP/1.1 405 "), "{wire}");
        assert!(wire.ends_with("\r\n\r\n"), "{wire}");
    }
}
