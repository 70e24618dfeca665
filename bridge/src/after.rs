//! The call after the stream: what a program's `transfer`, `end` or `hangup`
//! makes of the call once its media stream is closed.
//!
//! Twilio asks the `<Connect action>` URL (`/webhook/stream_ended`) what to
//! do next; [`BridgeApp`] answers with the TwiML the program asked for,
//! kept per CallSid in [`After`] (bounded in count and age). That needs the
//! action request to reach the instance that held the call. With an account
//! SID and auth token set, a transfer or goodbye instead redirects the live
//! call through Twilio's REST API ([`Rest`]), which works from any instance;
//! the memory is then the fallback when the REST call fails.
use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine as _;
use callstream_core::connection::{App, IncomingCall};
use callstream_core::http::{Request, Response};
use callstream_core::twiml::{self, TwimlError};

/// Most decisions kept (the oldest is forgotten past it).
pub const MAX_DECISIONS: usize = 10_000;
/// Longest a decision waits for its `stream_ended` request.
pub const DECISION_TTL: Duration = Duration::from_secs(600);
/// Longest the REST redirect may take, connect included.
pub const REST_TIMEOUT: Duration = Duration::from_secs(10);

/// What the call does after the stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Next {
    /// `<Dial>` this E.164 number.
    Dial(String),
    /// `<Say>` this (if anything), then `<Hangup/>`.
    Say(Option<String>),
    /// `<Hangup/>`.
    Hangup,
}

impl Next {
    /// The TwiML document.
    pub fn twiml(&self) -> Result<String, TwimlError> {
        let r = twiml::Response::new();
        match self {
            Next::Dial(to) => r.dial(twiml::Dial::number(to.as_str())?),
            Next::Say(Some(text)) => r.say(text.as_str()).hangup(),
            Next::Say(None) | Next::Hangup => r.hangup(),
        }
        .to_xml()
    }
}

impl fmt::Display for Next {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Next::Dial(to) => write!(f, "transfer to {to}"),
            Next::Say(Some(_)) => f.write_str("end with a goodbye"),
            Next::Say(None) => f.write_str("end"),
            Next::Hangup => f.write_str("hangup"),
        }
    }
}

/// Twilio's REST API, to redirect a live call.
#[derive(Clone)]
pub struct Rest {
    /// `https://api.twilio.com` (a test stands a local endpoint in).
    pub base: String,
    /// `AC…`
    pub account_sid: String,
    /// The auth token (basic auth password).
    pub auth_token: String,
}

impl fmt::Debug for Rest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Rest")
            .field("base", &self.base)
            .field("account_sid", &self.account_sid)
            .finish_non_exhaustive()
    }
}

impl Rest {
    /// Updates the call with `twiml`: `POST
    /// {base}/2010-04-01/Accounts/{AccountSid}/Calls/{CallSid}.json`, form
    /// field `Twiml`, basic auth. Blocks: never call it on a pump thread.
    pub fn redirect(&self, call_sid: &str, twiml: &str) -> Result<(), String> {
        let url = format!(
            "{}/2010-04-01/Accounts/{}/Calls/{}.json",
            self.base.trim_end_matches('/'),
            self.account_sid,
            call_sid
        );
        let auth = base64::engine::general_purpose::STANDARD
            .encode(format!("{}:{}", self.account_sid, self.auth_token));
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(REST_TIMEOUT))
            .http_status_as_error(false)
            .build()
            .into();
        let resp = agent
            .post(&url)
            .header("Authorization", &format!("Basic {auth}"))
            .send_form([("Twiml", twiml)])
            .map_err(|e| e.to_string())?;
        let status = resp.status().as_u16();
        if (200..300).contains(&status) {
            Ok(())
        } else {
            Err(format!("Twilio answered {status}"))
        }
    }
}

#[derive(Default)]
struct Decisions {
    by_call: HashMap<String, (Next, Instant)>,
    order: VecDeque<(String, Instant)>,
}

/// The decisions of calls whose stream is ending, by CallSid.
#[derive(Default)]
pub struct After {
    decisions: Mutex<Decisions>,
    rest: Option<Rest>,
}

impl fmt::Debug for After {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("After")
            .field("rest", &self.rest)
            .finish_non_exhaustive()
    }
}

impl After {
    /// A store that redirects through `rest` when given.
    #[must_use]
    pub fn new(rest: Option<Rest>) -> After {
        After {
            decisions: Mutex::default(),
            rest,
        }
    }

    /// The program of call `call_sid` decided `next`. With REST set, a
    /// transfer or an end redirects the live call at once (blocking: call it
    /// off the pump); otherwise, or when that fails, it is kept for the
    /// call's `stream_ended` request.
    pub fn decide(&self, call_sid: &str, next: Next) {
        if let (Some(rest), Next::Dial(_) | Next::Say(_)) = (&self.rest, &next) {
            match next
                .twiml()
                .map_err(|e| e.to_string())
                .and_then(|x| rest.redirect(call_sid, &x))
            {
                Ok(()) => {
                    tracing::info!(call_sid, next = %next, "BRIDGE_REDIRECT the live call was updated through the REST API");
                    return;
                }
                Err(e) => {
                    tracing::warn!(call_sid, next = %next, error = %e, "BRIDGE_REDIRECT failed; answering the stream_ended request from memory instead");
                }
            }
        }
        self.keep(call_sid, next, Instant::now());
    }

    fn keep(&self, call_sid: &str, next: Next, now: Instant) {
        let mut d = self.decisions.lock().unwrap_or_else(|p| p.into_inner());
        Self::expire(&mut d, now);
        while d.by_call.len() >= MAX_DECISIONS {
            match d.order.pop_front() {
                Some((sid, at)) => {
                    if d.by_call.get(&sid).is_some_and(|(_, t)| *t == at) {
                        d.by_call.remove(&sid);
                    }
                }
                None => break,
            }
        }
        d.by_call.insert(call_sid.to_owned(), (next, now));
        d.order.push_back((call_sid.to_owned(), now));
    }

    fn expire(d: &mut Decisions, now: Instant) {
        while let Some((sid, at)) = d.order.front() {
            if now.saturating_duration_since(*at) < DECISION_TTL {
                break;
            }
            if d.by_call.get(sid).is_some_and(|(_, t)| t == at) {
                d.by_call.remove(sid);
            }
            d.order.pop_front();
        }
    }

    /// Takes the decision for `call_sid`, if one is kept and not too old.
    pub fn take(&self, call_sid: &str) -> Option<Next> {
        self.take_at(call_sid, Instant::now())
    }

    fn take_at(&self, call_sid: &str, now: Instant) -> Option<Next> {
        let mut d = self.decisions.lock().unwrap_or_else(|p| p.into_inner());
        Self::expire(&mut d, now);
        d.by_call.remove(call_sid).map(|(n, _)| n)
    }

    /// Decisions kept now.
    pub fn len(&self) -> usize {
        self.decisions.lock().map(|d| d.by_call.len()).unwrap_or(0)
    }

    /// Whether none is kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// callstream's [`StreamApp`] with the answer to `stream_ended` from the
/// program's decision.
pub struct BridgeApp {
    /// The application it wraps (the incoming-call answer, other routes).
    pub stream: std::sync::Arc<dyn App>,
    /// The decisions.
    pub after: std::sync::Arc<After>,
}

impl App for BridgeApp {
    fn incoming_call(&self, call: &IncomingCall<'_>) -> Result<String, TwimlError> {
        self.stream.incoming_call(call)
    }

    fn stream_ended(&self, params: &[(String, String)]) -> Option<String> {
        let sid = params
            .iter()
            .find(|(k, _)| k == "CallSid")
            .map(|(_, v)| v)?;
        let next = self.after.take(sid)?;
        match next.twiml() {
            Ok(xml) => {
                tracing::info!(call_sid = %sid, next = %next, "BRIDGE_AFTER answered stream_ended");
                Some(xml)
            }
            Err(e) => {
                tracing::error!(call_sid = %sid, error = %e, "BRIDGE_AFTER cannot build the TwiML; answering 204");
                None
            }
        }
    }

    fn route(&self, request: &Request) -> Option<Response> {
        self.stream.route(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_twiml() {
        assert!(
            Next::Dial("+14155550100".into())
                .twiml()
                .unwrap()
                .ends_with("<Response><Dial><Number>+14155550100</Number></Dial></Response>")
        );
        assert!(
            Next::Say(Some("Goodbye & thanks".into()))
                .twiml()
                .unwrap()
                .ends_with("<Response><Say>Goodbye &amp; thanks</Say><Hangup/></Response>")
        );
        assert!(
            Next::Hangup
                .twiml()
                .unwrap()
                .ends_with("<Response><Hangup/></Response>")
        );
        assert!(Next::Dial("5550100".into()).twiml().is_err());
    }

    #[test]
    fn a_decision_is_taken_once() {
        let a = After::new(None);
        a.decide("CA1", Next::Hangup);
        assert_eq!(a.take("CA1"), Some(Next::Hangup));
        assert_eq!(a.take("CA1"), None);
    }

    #[test]
    fn decisions_are_bounded_in_count_and_age() {
        let a = After::new(None);
        let t0 = Instant::now();
        for i in 0..=MAX_DECISIONS {
            a.keep(&format!("CA{i}"), Next::Hangup, t0);
        }
        assert_eq!(a.len(), MAX_DECISIONS);
        assert_eq!(a.take_at("CA0", t0), None, "the oldest is forgotten");
        assert_eq!(a.take_at("CA1", t0), Some(Next::Hangup));
        assert_eq!(a.take_at("CA2", t0 + DECISION_TTL), None, "too old");
        assert!(a.is_empty());
    }

    #[test]
    fn a_newer_decision_for_the_same_call_wins_and_survives_the_old_ones_expiry() {
        let a = After::new(None);
        let t0 = Instant::now();
        a.keep("CA1", Next::Hangup, t0);
        a.keep("CA1", Next::Say(None), t0 + Duration::from_secs(1));
        assert_eq!(a.take_at("CA1", t0 + DECISION_TTL), Some(Next::Say(None)));
    }
}
