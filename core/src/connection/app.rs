//! The application's side of the connection engine: what an incoming call is
//! answered with, what the call does after its stream (the `<Connect action>`
//! webhook), and any routes of its own. The engine verifies every request
//! Twilio signs before it asks the application anything.
//!
//! [`StreamApp`] answers with the building blocks most applications want (a
//! greeting, then the call's audio to the [`Route::MediaStream`] path, with
//! parameters taken from the call); an embedder configures it, or
//! implements [`App`] for another answer.

use crate::http::{Request, Response};
use crate::public_url::PublicBase;
use crate::twiml::{self, TwimlError};

use super::{Route, Routes};

/// What the application decides. Every method is called on the connection's
/// thread between two socket reads: return quickly, never block.
pub trait App: Send + Sync {
    /// The TwiML for a verified incoming call ([`Route::IncomingCall`]), or
    /// for the sample call of [`Route::IncomingCallPreview`]. An error
    /// whose cause is the request's values is answered 400, one that the
    /// configuration causes 500 (the engine tells them apart by building the
    /// sample call too).
    fn incoming_call(&self, call: &IncomingCall<'_>) -> Result<String, TwimlError>;

    /// The answer to the `<Connect action>` webhook ([`Route::StreamEnded`],
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
    /// The application's route table, to name its URLs.
    pub routes: &'a Routes,
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

    /// The absolute URL of `route`, e.g. `https://host/webhook/stream_ended`,
    /// if a path serves it.
    #[must_use]
    pub fn url(&self, route: Route) -> Option<String> {
        self.routes.path(route).map(|p| self.base.http_url(p))
    }

    /// The `wss://` URL of the media stream route, if a path serves it.
    #[must_use]
    pub fn stream_url(&self) -> Option<String> {
        self.routes
            .path(Route::MediaStream)
            .map(|p| self.base.ws_url(p))
    }
}

/// An answer that streams the call: an optional `<Say>` greeting, then
/// `<Connect action>` (the [`Route::StreamEnded`] URL, where one is routed)
/// with a `<Stream>` to the [`Route::MediaStream`] URL, status callbacks to
/// the [`Route::StreamStatus`] URL (where routed), and as `<Parameter>`s
/// [`StreamApp::call_parameters`] then [`StreamApp::extra_parameters`].
/// Without a media stream path it cannot answer: a configuration error
/// (500).
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
    /// `<Parameter>`s taken from the call: (the stream parameter's name, the
    /// Twilio webhook parameter whose value it takes), e.g. `("from",
    /// "From")`. A parameter the call lacks is given empty.
    pub call_parameters: Vec<(String, String)>,
    /// More `<Parameter>`s for every `<Stream>`, after the call's.
    pub extra_parameters: Vec<(String, String)>,
}

impl App for StreamApp {
    fn incoming_call(&self, call: &IncomingCall<'_>) -> Result<String, TwimlError> {
        let url = call.stream_url().ok_or(TwimlError::InvalidStreamUrl {
            url: String::new(),
            reason: "no path is routed to the media stream",
        })?;
        let mut stream = twiml::Stream::new(url)?;
        if let Some(url) = call.url(Route::StreamStatus) {
            stream = stream.status_callback(url);
        }
        for (name, from) in &self.call_parameters {
            stream = stream.parameter(name.as_str(), call.param(from))?;
        }
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
        let mut connect = twiml::Connect::new();
        if let Some(url) = call.url(Route::StreamEnded) {
            connect = connect.action(url);
        }
        response.connect(connect.stream(stream)).to_xml()
    }
}
