//! callstream's routes: the paths the product serves, what the core's
//! connection engine does at each, and its answers there (the incoming-call
//! TwiML's stream parameters, the version document). The core carries no
//! paths of its own; this table is the server's.
use callstream_core::connection::{Route, Routes};

/// Every path callstream serves, and its route. Metrics and logs label a
/// request with its path ([`label`]).
pub const TABLE: [(&str, Route); 10] = [
    ("/healthz", Route::Healthz),
    ("/version", Route::Version),
    ("/metrics", Route::Metrics),
    ("/webhook/incoming_call", Route::IncomingCall),
    ("/webhook/incoming_call_preview", Route::IncomingCallPreview),
    ("/webhook/stream_status", Route::StreamStatus),
    ("/webhook/stream_ended", Route::StreamEnded),
    ("/webhook/call_status", Route::CallStatus),
    ("/webhook/handle_recording", Route::HandleRecording),
    ("/ws/twilio-media", Route::MediaStream),
];

/// The `<Parameter>`s every stream carries, from the call's webhook: the
/// call's SID, the caller and the number called, the call's direction, the
/// caller's name (with Twilio's caller name lookup on) and the number that
/// forwarded the call (docs/bridge.md's `start.parameters`; empty when the
/// webhook did not say).
pub const CALL_PARAMETERS: [(&str, &str); 6] = [
    ("call_sid", "CallSid"),
    ("from", "From"),
    ("to", "To"),
    ("direction", "Direction"),
    ("caller_name", "CallerName"),
    ("forwarded_from", "ForwardedFrom"),
];

/// `GET /version`: the server's name and version, fixed at build time.
pub const VERSION_JSON: &str = concat!(
    "{\"name\":\"callstream\",\"version\":\"",
    env!("CARGO_PKG_VERSION"),
    "\"}"
);

/// The route table the engine serves.
#[must_use]
pub fn table() -> Routes {
    TABLE.iter().fold(Routes::new(), |routes, &(path, route)| {
        routes.route(path, route)
    })
}

/// A request's label in metrics and logs: its route's path, `unknown` for
/// any other path (one label, so that metrics stay bounded).
#[must_use]
pub fn label(route: Route) -> &'static str {
    TABLE
        .iter()
        .find(|(_, r)| *r == route)
        .map_or("unknown", |(path, _)| path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_but_unknown_has_one_path_and_its_label() {
        let routes = table();
        for (path, route) in TABLE {
            assert_eq!(routes.find(path), route);
            assert_eq!(routes.find(&format!("{path}/")), route);
            assert_eq!(label(route), path);
        }
        assert_eq!(label(Route::Unknown), "unknown");
        assert_eq!(routes.find("/webhook"), Route::Unknown);
        assert_eq!(routes.iter().count(), TABLE.len());
    }
}
