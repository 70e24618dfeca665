//! The media-stream half of a connection: WebSocket frames in and out, each
//! Twilio message parsed.

use std::collections::VecDeque;
use std::time::Instant;

use super::{CloseReason, Config, Event, Route, Waker};
use crate::message::{self, Inbound};

use crate::websocket::{self, Text, WebSocket};

/// Close code for a stream refused by policy (another account's call).
const POLICY: u16 = 1008;
/// Close code for a server going away (shutdown, idle stream).
const GOING_AWAY: u16 = 1001;

pub(super) enum StreamStep {
    Progress,
    Idle(Instant),
    Finished(CloseReason),
}

pub(super) struct StreamPhase {
    ws: WebSocket,
    last_receive: Instant,
    /// When we sent a close frame: give up waiting for the answer then.
    close_deadline: Option<Instant>,
    /// The peer closed its side.
    eof: bool,
    #[allow(dead_code)]
    waker: Option<Waker>,
}

impl StreamPhase {
    pub(super) fn new(
        now: Instant,
        _config: &Config,
        read_ahead: Vec<u8>,
        transmit: Vec<u8>,
        waker: Option<Waker>,
    ) -> Self {
        StreamPhase {
            ws: WebSocket::accept(read_ahead, transmit),
            last_receive: now,
            close_deadline: None,
            eof: false,
            waker,
        }
    }

    pub(super) fn receive(&mut self, now: Instant, bytes: &[u8]) {
        self.last_receive = now;
        self.ws.receive(bytes);
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

    /// Starts the close handshake (once) and arms the wait for its answer.
    fn close(&mut self, now: Instant, config: &Config, code: u16, reason: &str) {
        if self.ws.is_open() {
            self.ws.close(code, reason);
            self.close_deadline = Some(now + config.close_timeout);
        }
    }

    pub(super) fn shutdown(&mut self, now: Instant, config: &Config) {
        self.close(now, config, GOING_AWAY, "server shutting down");
    }

    pub(super) fn abort(&mut self, _now: Instant) {
        self.ws.abort();
    }

    pub(super) fn handle_timeout(&mut self, now: Instant, config: &Config) -> Option<CloseReason> {
        if self.ws.is_finished() {
            return None;
        }
        if self.close_deadline.is_some_and(|d| now >= d) {
            self.ws.abort();
            return Some(CloseReason::CloseTimeout);
        }
        if now >= self.last_receive + config.stream_idle_timeout {
            // The peer sent nothing for long: it will not answer a close
            // either, so send one for the record and go.
            self.ws.close(GOING_AWAY, "idle");
            self.ws.abort();
            return Some(CloseReason::StreamIdle);
        }
        None
    }

    fn deadline(&self, config: &Config) -> Instant {
        let idle = self.last_receive + config.stream_idle_timeout;
        match self.close_deadline {
            Some(d) => d.min(idle),
            None => idle,
        }
    }

    pub(super) fn step(
        &mut self,
        now: Instant,
        config: &Config,
        events: &mut VecDeque<Event>,
    ) -> StreamStep {
        match self.ws.poll_event() {
            Some(websocket::Event::Text(text)) => {
                self.on_text(now, config, text, events);
                StreamStep::Progress
            }
            Some(websocket::Event::BinaryDropped { len }) => {
                events.push_back(Event::BinaryDropped { len });
                StreamStep::Progress
            }
            Some(websocket::Event::Closed {
                code, initiator, ..
            }) => StreamStep::Finished(CloseReason::WebSocketClosed { code, initiator }),
            Some(websocket::Event::Failed(error)) => {
                StreamStep::Finished(CloseReason::WebSocketFailed(error))
            }
            None if self.ws.is_finished() || self.eof => {
                StreamStep::Finished(CloseReason::PeerClosed)
            }
            None => StreamStep::Idle(self.deadline(config)),
        }
    }

    fn on_text(&mut self, now: Instant, config: &Config, text: Text, events: &mut VecDeque<Event>) {
        match message::parse(&text) {
            Ok(inbound) => {
                if let (Some(ours), Inbound::Start(start)) = (&config.account_sid, &inbound) {
                    if start.account_sid != *ours {
                        events.push_back(Event::AccountRejected {
                            route: Route::MediaStream,
                            account_sid: start.account_sid.to_string(),
                        });
                        self.close(now, config, POLICY, "account not allowed");
                        return;
                    }
                }
                events.push_back(Event::StreamMessage(inbound.into_owned()));
            }
            Err(error) => events.push_back(Event::InvalidStreamMessage {
                error: error.to_string(),
            }),
        }
    }
}
