//! The application's side of the connection engine: what an incoming call is
//! answered with, what the call does after its stream (the `<Connect action>`
//! webhook), and any routes of its own. The engine verifies every request
//! Twilio signs before it asks the application anything.
//!
//! [`StreamApp`] is callstream's own answer (a greeting, then the call's audio
//! to `/ws/twilio-media`); an embedder implements [`App`] for another.

use crate::http::{Request, Response};
use crate::public_url::PublicBase;
use crate::twiml::{self, TwimlError};

use super::Route;

/// What the application decides. Every method is called on the connection's
/// thread between two socket reads: return quickly, never block.
pub trait App: Send + Sync {
    /// The TwiML for a verified incoming call (`/webhook/incoming_call`), or
    /// for the sample call of `/webhook/incoming_call_preview`. An error
    /// whose cause is the request's values is answered 400, one that the
    /// configuration causes 500 (the engine tells them apart by building the
    /// sample call too).
    fn incoming_call(&self, call: &IncomingCall<'_>) -> Result<String, TwimlError>;

    /// The answer to the `<Connect action>` webhook (`/webhook/stream_ended`,
    /// verified): the TwiML for what the call does next (`<Dial>` to
    /// transfer, `<Say>` then `<Hangup/>`), or `None` for 204 (the call
    /// ends). Default: `None`.
    fn stream_ended(&self, params: &[(String, String)]) -> Option<String> {
        let _ = params;
        None
    }

    /// A request to a path the engine does not serve: `Some` answers it,
    /// `None` is 404. Not verified (the engine cannot know whether Twilio
    /// signs it): use [`crate::connection::Config`]'s check yourself if it
    /// must be. Default: `None`.
    fn route(&self, request: &Request) -> Option<Response> {
        let _ = request;
        None
    }
}

/// An incoming call, as the application sees it.
#[derive(Debug)]
pub struct IncomingCall<'a> {
    /// Twilio's parameters (`CallSid`, `From`, `To`, …), in the order sent.
    pub params: &'a [(String, String)],
    /// The public base URL the call reached (configured, or rebuilt from the
    /// request behind trusted proxies).
    pub base: &'a PublicBase,
    /// Whether this is the unsigned sample call of the preview route.
    pub preview: bool,
}

impl IncomingCall<'_> {
    /// The first value of parameter `name`, or `""`.
    #[must_use]
    pub fn param(&self, name: &str) -> &str {
        self.params
            .iter()
            .find(|(k, _)| k == name)
            .map_or("", |(_, v)| v.as_str())
    }

    /// The absolute URL of one of the engine's routes, e.g.
    /// `https://host/webhook/stream_ended`.
    #[must_use]
    pub fn url(&self, route: Route) -> String {
        self.base.http_url(route.as_str())
    }

    /// The `wss://` URL of the media stream route.
    #[must_use]
    pub fn stream_url(&self) -> String {
        self.base.ws_url(Route::MediaStream.as_str())
    }
}

/// callstream's own answer: an optional `<Say>` greeting, then `<Connect
/// action=…/webhook/stream_ended>` with a `<Stream>` to `/ws/twilio-media`,
/// status callbacks to `/webhook/stream_status`, and the parameters
/// `call_sid`, `from`, `to` and [`StreamApp::extra_parameters`].
#[derive(Clone, Debug, Default)]
pub struct StreamApp {
    /// Said to the caller before the stream connects.
    pub greeting: Option<String>,
    /// The greeting's `<Say language>` (e.g. `en-GB`, `he-IL`); `None`:
    /// Twilio's default. Checked by the TwiML builder
    /// ([`twiml::is_language_tag`]).
    pub greeting_language: Option<String>,
    /// The greeting's `<Say voice>` (e.g. `Polly.Joanna-Neural`); `None`:
    /// Twilio's default. Checked by the TwiML builder ([`twiml::is_voice_name`]).
    pub greeting_voice: Option<String>,
    /// More `<Parameter>`s for every `<Stream>`, after `call_sid`, `from`, `to`.
    pub extra_parameters: Vec<(String, String)>,
}

impl App for StreamApp {
    fn incoming_call(&self, call: &IncomingCall<'_>) -> Result<String, TwimlError> {
        let mut stream = twiml::Stream::new(call.stream_url())?
            .status_callback(call.url(Route::StreamStatus))
            .parameter("call_sid", call.param("CallSid"))?
            .parameter("from", call.param("From"))?
            .parameter("to", call.param("To"))?;
        for (name, value) in &self.extra_parameters {
            stream = stream.parameter(name.as_str(), value.as_str())?;
        }
        let mut response = twiml::Response::new();
        if let Some(greeting) = &self.greeting {
            let mut say = twiml::Say::new(greeting.as_str());
            if let Some(language) = &self.greeting_language {
                say = say.language(language.as_str());
            }
            if let Some(voice) = &self.greeting_voice {
                say = say.voice(voice.as_str());
            }
            response = response.say(say);
        }
        response
            .connect(
                twiml::Connect::new()
                    .action(call.url(Route::StreamEnded))
                    .stream(stream),
            )
            .to_xml()
    }
}
