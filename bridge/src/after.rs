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

/// A transfer: where to, shown as whom, ringing how long.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Transfer {
    /// An E.164 number or a `sip:`/`sips:` URI.
    pub to: String,
    /// The number the callee sees (E.164).
    pub caller_id: Option<String>,
    /// Seconds to ring (5 to 600; Twilio's default 30).
    pub timeout: Option<u32>,
}

impl Transfer {
    /// A transfer to `to`, as the call's number, with Twilio's ring time.
    #[must_use]
    pub fn to(to: impl Into<String>) -> Transfer {
        Transfer {
            to: to.into(),
            ..Transfer::default()
        }
    }
}

/// A goodbye: what is said, in which voice and language.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Goodbye {
    /// The words (`<Say>`); none: just hang up.
    pub say: Option<String>,
    /// The `<Say voice>`.
    pub voice: Option<String>,
    /// The `<Say language>`.
    pub language: Option<String>,
}

/// What the call does after the stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Next {
    /// `<Dial>` a number or SIP URI.
    Dial(Transfer),
    /// `<Say>` this (if anything), then `<Hangup/>`.
    Say(Goodbye),
    /// `<Hangup/>`.
    Hangup,
}

impl Next {
    /// The TwiML document; an error for a target, caller ID, ring time,
    /// voice or language Twilio would refuse.
    pub fn twiml(&self) -> Result<String, TwimlError> {
        let r = twiml::Response::new();
        match self {
            Next::Dial(t) => {
                let sip =
                    t.to.get(..4)
                        .is_some_and(|p| p.eq_ignore_ascii_case("sip:"))
                        || t.to
                            .get(..5)
                            .is_some_and(|p| p.eq_ignore_ascii_case("sips:"));
                let mut dial = if sip {
                    twiml::Dial::sip(t.to.as_str())?
                } else {
                    twiml::Dial::number(t.to.as_str())?
                };
                if let Some(id) = &t.caller_id {
                    // A caller ID is a number the account owns: E.164.
                    twiml::Dial::number(id.as_str())?;
                    dial = dial.caller_id(id.as_str());
                }
                if let Some(seconds) = t.timeout {
                    dial = dial.timeout(seconds)?;
                }
                r.dial(dial)
            }
            Next::Say(g) => match &g.say {
                Some(text) => {
                    let mut say = twiml::Say::new(text.as_str());
                    if let Some(v) = &g.voice {
                        say = say.voice(v.as_str());
                    }
                    if let Some(l) = &g.language {
                        say = say.language(l.as_str());
                    }
                    r.say(say).hangup()
                }
                None => r.hangup(),
            },
            Next::Hangup => r.hangup(),
        }
        .to_xml()
    }
}

impl fmt::Display for Next {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Next::Dial(t) => write!(f, "transfer to {}", t.to),
            Next::Say(Goodbye { say: Some(_), .. }) => f.write_str("end with a goodbye"),
            Next::Say(_) => f.write_str("end"),
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
            Next::Dial(Transfer::to("+14155550100"))
                .twiml()
                .unwrap()
                .ends_with("<Response><Dial><Number>+14155550100</Number></Dial></Response>")
        );
        assert!(
            Next::Say(Goodbye {
                say: Some("Goodbye & thanks".into()),
                ..Goodbye::default()
            })
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
        assert!(Next::Dial(Transfer::to("5550100")).twiml().is_err());
        let sip = Next::Dial(Transfer {
            to: "sip:agent@pbx.example.com".into(),
            caller_id: Some("+14155550100".into()),
            timeout: Some(15),
        });
        assert!(
            sip.twiml().unwrap().ends_with(
                r#"<Dial callerId="+14155550100" timeout="15"><Sip>sip:agent@pbx.example.com</Sip></Dial></Response>"#
            ),
            "{:?}",
            sip.twiml()
        );
        for bad in [
            Transfer {
                caller_id: Some("anonymous".into()),
                ..Transfer::to("+14155550100")
            },
            Transfer {
                timeout: Some(2),
                ..Transfer::to("+14155550100")
            },
            Transfer::to("sip:"),
        ] {
            assert!(Next::Dial(bad.clone()).twiml().is_err(), "{bad:?}");
        }
        let said = Next::Say(Goodbye {
            say: Some("Shalom".into()),
            voice: Some("Google.he-IL-Standard-A".into()),
            language: Some("he-IL".into()),
        });
        assert!(
            said.twiml().unwrap().contains(
                r#"<Say language="he-IL" voice="Google.he-IL-Standard-A">Shalom</Say><Hangup/>"#
            ),
            "{:?}",
            said.twiml()
        );
        let bad_voice = Next::Say(Goodbye {
            say: Some("x".into()),
            voice: Some("no voice!".into()),
            language: None,
        });
        assert!(bad_voice.twiml().is_err());
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
        a.keep(
            "CA1",
            Next::Say(Goodbye::default()),
            t0 + Duration::from_secs(1),
        );
        assert_eq!(
            a.take_at("CA1", t0 + DECISION_TTL),
            Some(Next::Say(Goodbye::default()))
        );
    }
}
