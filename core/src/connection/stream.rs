//! The media-stream half of a connection: WebSocket frames in and out, and
//! the call machine ([`Session`]) behind them.
//!
//! With [`Config::session`] set, every text frame goes to
//! [`Session::handle_text`]; the session's `Send` becomes a text frame, its
//! `Close` our close frame, its events [`Event::Call`], and its deadline is
//! folded into the connection's. Without one, each message is parsed and
//! handed out as [`Event::StreamMessage`].

use std::collections::VecDeque;
use std::time::Instant;

use super::{CloseReason, Config, Event, Route, Waker};
use crate::call::{CallOutput, CallStats};
use crate::handler::Session;
use crate::message::{self, Inbound};
use crate::websocket::{self, Text, WebSocket};
use crate::wire::Fact;

/// Close code for a stream refused by policy (another account's call).
const POLICY: u16 = 1008;
/// Close code for a server going away (shutdown, idle stream).
const GOING_AWAY: u16 = 1001;
/// Close code for a server too busy for the stream now (IANA's WebSocket
/// close code registry, "Try Again Later").
const TRY_AGAIN_LATER: u16 = 1013;

// Events travel by value (see `Output`).
#[allow(clippy::large_enum_variant)]
pub(super) enum StreamStep {
    Progress,
    /// An event to hand out now (the connection's queue is empty).
    Emit(Event),
    Idle(Instant),
    Finished(CloseReason),
}

pub(super) struct StreamPhase {
    ws: WebSocket,
    /// When the stream opened: `start` is due within
    /// [`Config::stream_start_timeout`] of it.
    opened: Instant,
    /// When the last Twilio message (a text frame) arrived. Only messages
    /// count: a peer that sends pings or dribbles a frame byte by byte is
    /// not a call, and must not hold the connection open.
    last_message: Instant,
    /// When we sent a close frame: give up waiting for the answer then.
    close_deadline: Option<Instant>,
    /// The peer closed its side.
    eof: bool,
    /// A timer ended the stream; reported (after the session's last words)
    /// by the next `step`.
    ended: Option<CloseReason>,
    session: Option<Session>,
    /// The session has output to drain (after input, a timeout or a wake).
    session_dirty: bool,
    session_deadline: Option<Instant>,
    /// A `start` was seen (and checked against [`Config::account_sid`]).
    started: bool,
    /// A `start` named another account: nothing more reaches the session.
    refused: bool,
    /// The server is shutting down and this call may go on until then
    /// ([`Config::shutdown_grace`]); then it is closed with 1001.
    grace_until: Option<Instant>,
}

impl StreamPhase {
    /// See [`Connection::hot_memory`](super::Connection::hot_memory).
    pub(super) fn hot_memory(&self, visit: crate::hot::Visit<'_>) {
        visit(crate::hot::of(self), size_of::<StreamPhase>());
        self.ws.hot_memory(visit);
        if let Some(session) = &self.session {
            session.hot_memory(visit);
        }
    }

    /// See [`Connection::drop_session`](super::Connection::drop_session).
    pub(super) fn drop_session(&mut self) {
        // Out of the field first: if its drop panics, the field is empty.
        let session = self.session.take();
        drop(session);
    }

    pub(super) fn new(
        now: Instant,
        config: &Config,
        read_ahead: Vec<u8>,
        transmit: Vec<u8>,
        waker: Option<Waker>,
    ) -> Self {
        let session = config.session.as_ref().map(|factory| factory(now, waker));
        StreamPhase {
            ws: WebSocket::accept(read_ahead, transmit),
            opened: now,
            last_message: now,
            close_deadline: None,
            eof: false,
            ended: None,
            session_dirty: session.is_some(),
            session,
            session_deadline: None,
            started: false,
            refused: false,
            grace_until: None,
        }
    }

    pub(super) fn handle_receive(&mut self, bytes: &[u8]) {
        self.ws.handle_receive(bytes);
    }

    pub(super) fn eof(&mut self) {
        self.eof = true;
    }

    pub(super) fn transmit(&self) -> &[u8] {
        self.ws.transmit()
    }

    pub(super) fn consume_transmit(&mut self, n: usize) {
        self.ws.consume_transmit(n);
    }

    pub(super) fn binary_dropped(&self) -> u64 {
        self.ws.binary_dropped()
    }

    pub(super) fn call_stats(&self) -> Option<CallStats> {
        self.session.as_ref().map(|s| *s.stats())
    }

    /// Starts the close handshake (once) and arms the wait for its answer.
    fn close(&mut self, now: Instant, config: &Config, code: u16, reason: &str) {
        if self.ws.is_open() {
            self.ws.close(code, reason);
            self.close_deadline = Some(now + config.close_timeout);
        }
    }

    /// The server is shutting down. A live call (started, not ended) may
    /// finish on its own within [`Config::shutdown_grace`]; anything else
    /// (a stream that never started) is closed with 1001 now.
    pub(super) fn shutdown(&mut self, now: Instant, config: &Config) {
        if self.grace_until.is_some() {
            return;
        }
        if self.is_call_live() && !config.shutdown_grace.is_zero() {
            self.grace_until = Some(now + config.shutdown_grace);
        } else {
            self.close(now, config, GOING_AWAY, "server shutting down");
        }
    }

    /// Whether `start` arrived (the call may have ended since).
    pub(super) fn is_started(&self) -> bool {
        self.started
    }

    /// The server is over its budget for streams that have not started: a
    /// stream still waiting for `start` is closed with 1013 and ends
    /// [`CloseReason::Shed`]; a started one is left alone. True when it was
    /// shed.
    pub(super) fn shed(&mut self) -> bool {
        if self.started || self.ended.is_some() || !self.ws.is_open() {
            return false;
        }
        self.ws.close(TRY_AGAIN_LATER, "server busy");
        self.fail(CloseReason::Shed);
        true
    }

    /// Whether a call runs on this stream: its `start` arrived and it has
    /// not ended.
    pub(super) fn is_call_live(&self) -> bool {
        if self.ended.is_some() || !self.ws.is_open() {
            return false;
        }
        match &self.session {
            Some(session) => session.call().stream_id().is_some() && !session.call().is_ended(),
            None => self.started,
        }
    }

    /// Ends the stream at once (e.g. the peer stopped reading): nothing more
    /// is read or sent; `step` reports `reason`.
    pub(super) fn fail(&mut self, reason: CloseReason) {
        self.ws.abort();
        self.ended.get_or_insert(reason);
    }

    pub(super) fn handle_timeout(&mut self, now: Instant, config: &Config) {
        if self.ws.is_finished() || self.ended.is_some() {
            return;
        }
        // The session's own deadline, or a wake from a remote control: it
        // applies queued commands and lets time advance.
        if let Some(session) = &mut self.session {
            session.handle_timeout(now);
            self.session_dirty = true;
        }
        if self.grace_until.is_some_and(|d| now >= d) {
            self.grace_until = None;
            self.close(now, config, GOING_AWAY, "server shutting down");
        }
        if self.close_deadline.is_some_and(|d| now >= d) {
            self.fail(CloseReason::CloseTimeout);
        } else if self.start_due(config).is_some_and(|d| now >= d) {
            // Twilio sends `connected` and `start` together, at once: a
            // stream without `start` by now is not a call (docs/protocol.md §2).
            self.ws.close(POLICY, "no start");
            self.fail(CloseReason::StartTimeout);
        } else if now >= self.last_message + config.stream_idle_timeout {
            // The peer sent no message for long: it will not answer a close
            // either, so send one for the record and go.
            self.ws.close(GOING_AWAY, "idle");
            self.fail(CloseReason::StreamIdle);
        }
    }

    /// When `start` is due, until it has come.
    fn start_due(&self, config: &Config) -> Option<Instant> {
        (!self.started).then(|| self.opened + config.stream_start_timeout)
    }

    fn deadline(&self, config: &Config) -> Instant {
        let idle = self.last_message + config.stream_idle_timeout;
        [
            self.close_deadline,
            self.session_deadline,
            self.grace_until,
            self.start_due(config),
        ]
        .into_iter()
        .flatten()
        .fold(idle, Instant::min)
    }

    pub(super) fn step(
        &mut self,
        now: Instant,
        config: &Config,
        events: &mut VecDeque<Event>,
    ) -> StreamStep {
        if let Some(reason) = self.ended.take() {
            self.end_session(now, config, None, events);
            return StreamStep::Finished(reason);
        }
        if self.session_dirty {
            self.drain_session(now, config, events);
            return StreamStep::Progress;
        }
        match self.ws.poll_event() {
            Some(websocket::Event::Text(text)) => match self.on_text(now, config, text, events) {
                Some(event) => StreamStep::Emit(event),
                None => StreamStep::Progress,
            },
            Some(websocket::Event::BinaryDropped { len }) => {
                events.push_back(Event::BinaryDropped { len });
                StreamStep::Progress
            }
            Some(websocket::Event::Closed {
                code, initiator, ..
            }) => {
                self.end_session(now, config, None, events);
                StreamStep::Finished(CloseReason::WebSocketClosed { code, initiator })
            }
            Some(websocket::Event::Failed(error)) => {
                self.end_session(now, config, Some(&error.to_string()), events);
                StreamStep::Finished(CloseReason::WebSocketFailed(error))
            }
            None if self.ws.is_finished() || self.eof => {
                self.end_session(now, config, None, events);
                StreamStep::Finished(CloseReason::PeerClosed)
            }
            None => StreamStep::Idle(self.deadline(config)),
        }
    }

    /// Drains the session until its deadline: frames to Twilio, events to
    /// the application.
    fn drain_session(&mut self, now: Instant, config: &Config, events: &mut VecDeque<Event>) {
        self.session_dirty = false;
        let Some(session) = &mut self.session else {
            return;
        };
        loop {
            match session.poll_output() {
                CallOutput::Send(text) => {
                    // After a close frame nothing more may be sent; what the
                    // session still says is dropped (it learns of the close).
                    let (_, spare) = self.ws.send_text_owned(text);
                    session.recycle(spare);
                }
                CallOutput::Close { code, reason } => {
                    if self.ws.is_open() {
                        self.ws.close(code, &reason);
                        self.close_deadline = Some(now + config.close_timeout);
                    }
                }
                CallOutput::Event(event) => events.push_back(Event::Call(event)),
                CallOutput::Timeout(deadline) => {
                    self.session_deadline = Some(deadline);
                    return;
                }
            }
        }
    }

    /// Tells the session the stream is over (closed, or failed with
    /// `error`) and collects its last events (`Stopped` with the stats).
    fn end_session(
        &mut self,
        now: Instant,
        config: &Config,
        error: Option<&str>,
        events: &mut VecDeque<Event>,
    ) {
        if let Some(session) = &mut self.session {
            match error {
                Some(error) => session.handle_error(now, error),
                None => session.handle_closed(now),
            }
            self.drain_session(now, config, events);
        }
    }

    /// Feeds the session, or parses the message for the application (the
    /// event is returned, not queued).
    fn on_text(
        &mut self,
        now: Instant,
        config: &Config,
        text: Text,
        events: &mut VecDeque<Event>,
    ) -> Option<Event> {
        self.last_message = now;
        if self.refused {
            // The stream is closing for another account: a second `start`
            // must not get the call past the check.
            self.ws.recycle(text);
            return None;
        }
        if let Some(session) = &mut self.session {
            // The session parses every message, once; until `start` the
            // account check reads that parse before the call sees it.
            let mut foreign = None;
            match &config.account_sid {
                Some(ours) if !self.started => {
                    session.handle_text_if(now, &text, |fact| match fact {
                        Fact::Start(start) if start.account_id != ours.as_str() => {
                            foreign = Some(start.account_id.clone());
                            false
                        }
                        _ => true,
                    });
                }
                _ => session.handle_text(now, &text),
            }
            self.session_dirty = true;
            // The call machine parsed it: a `start` names the stream.
            self.started |= foreign.is_some() || session.call().stream_id().is_some();
            self.ws.recycle(text);
            if let Some(account_sid) = foreign {
                self.refuse(now, config, account_sid, events);
            }
            return None;
        }
        match message::parse(&text) {
            Ok(inbound) => self
                .check_account(now, config, &inbound, events)
                .then(|| Event::StreamMessage(inbound.into_owned())),
            Err(error) => Some(Event::InvalidStreamMessage {
                error: error.to_string(),
            }),
        }
    }

    /// False (and the stream closing with 1008) when `start` names another
    /// account than the configured one.
    fn check_account(
        &mut self,
        now: Instant,
        config: &Config,
        inbound: &Inbound<'_>,
        events: &mut VecDeque<Event>,
    ) -> bool {
        let Inbound::Start(start) = inbound else {
            return true;
        };
        self.started = true;
        match &config.account_sid {
            Some(ours) if start.account_sid != *ours => {
                self.refuse(now, config, start.account_sid.to_string(), events);
                false
            }
            _ => true,
        }
    }

    /// Closes the stream (1008) for `account_sid`, another account than the
    /// configured one.
    fn refuse(
        &mut self,
        now: Instant,
        config: &Config,
        account_sid: String,
        events: &mut VecDeque<Event>,
    ) {
        events.push_back(Event::AccountRejected {
            route: Route::MediaStream,
            account_sid,
        });
        self.refused = true;
        self.close(now, config, POLICY, "account not allowed");
    }
}
