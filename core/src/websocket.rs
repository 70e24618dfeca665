//! WebSocket framing (RFC 6455, server side) over in-memory buffers.
//!
//! After the upgrade, a Twilio media stream is a sequence of JSON text
//! messages. This module turns the bytes that arrive on the TCP connection
//! into [`Event`]s and the messages callstream sends into bytes to write. It
//! owns no socket: [`tungstenite`]'s frame engine runs over an in-memory pipe whose
//! reads come from what [`WebSocket::handle_receive`] was given (and say
//! `WouldBlock` once that is used up) and whose writes append to the
//! transmit buffer ([`WebSocket::transmit`]).
//!
//! # Contract
//!
//! - The crate's [run loop](crate#run-loop): its input is
//!   [`handle_receive`](WebSocket::handle_receive), its poller
//!   [`poll_event`](WebSocket::poll_event) (a drain ends at `None`), its
//!   bytes [`transmit`](WebSocket::transmit) and
//!   [`consume_transmit`](WebSocket::consume_transmit).
//! - Pings are answered with pongs without an event (RFC 6455 §5.5.2).
//!   Fragmented messages come out whole. Binary messages are dropped and
//!   counted ([`binary_dropped`](WebSocket::binary_dropped)): Twilio only
//!   sends text.
//! - A message longer than [`MAX_MESSAGE`] bytes fails the connection with
//!   close code 1009; a protocol violation with 1002; text that is not UTF-8
//!   with 1007 (RFC 6455 §7.4.1). A failure comes out once as
//!   [`Event::Failed`]; the close frame is already in the transmit buffer and
//!   the TCP connection should close once it is written (§7.1.7: no need to
//!   wait for the peer's reply).
//! - The close handshake: a close from the peer is answered at once and
//!   reported as [`Event::Closed`] with [`Initiator::Peer`]; a close started
//!   with [`close`](WebSocket::close) is reported as `Closed` with
//!   [`Initiator::Local`] when the peer's reply arrives. The caller owns the
//!   clock, so it decides how long to wait for that reply.
//! - After `Closed` or `Failed`, [`is_finished`](WebSocket::is_finished) is
//!   true: nothing more is read, nothing more can be sent.
//!
//! ```
//! use callstream_core::websocket::{Event, WebSocket};
//! let mut ws = WebSocket::accept(Vec::new(), Vec::new());
//! // A masked text frame "hi" from a client (mask 01 02 03 04).
//! ws.handle_receive(&[0x81, 0x82, 1, 2, 3, 4, b'h' ^ 1, b'i' ^ 2]);
//! match ws.poll_event() {
//!     Some(Event::Text(text)) => assert_eq!(text.as_str(), "hi"),
//!     other => panic!("{other:?}"),
//! }
//! assert!(ws.poll_event().is_none());
//! ws.send_text("hello").unwrap();
//! assert_eq!(ws.transmit(), b"\x81\x05hello");
//! ```

use std::fmt;
use std::io::{self, Read, Write};

use tungstenite::Message;
use tungstenite::error::{CapacityError, Error as TError};
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::frame::{CloseFrame, Utf8Bytes};
use tungstenite::protocol::{Role, WebSocket as TWebSocket, WebSocketConfig};

/// The largest message (and frame) accepted, in bytes of payload. Twilio's
/// messages are a few hundred bytes; anything past this fails the connection
/// with close code 1009.
pub const MAX_MESSAGE: usize = 64 * 1024;

/// The largest reason a close frame can carry: a control frame holds at most
/// 125 bytes (RFC 6455 §5.5), two of which are the code.
pub const MAX_CLOSE_REASON: usize = 123;

/// How much the frame engine reads from the pipe at a time. It zero-fills
/// this much of its buffer before every read, so a small value keeps the cost
/// per message low; larger messages still arrive whole (it reserves the
/// frame's length once the header is known).
const READ_CHUNK: usize = 2048;

/// A complete text message. Its buffer can be handed back with
/// [`WebSocket::recycle`], so that a steady stream of messages reuses the same
/// few buffers instead of allocating one per message.
#[derive(Clone, PartialEq, Eq)]
pub struct Text(String);

impl Text {
    /// The message as a string slice.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::ops::Deref for Text {
    type Target = str;
    fn deref(&self) -> &str {
        self.0.as_str()
    }
}

impl fmt::Debug for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which side started the close handshake.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Initiator {
    /// The peer sent the first close frame; callstream answered it.
    Peer,
    /// callstream sent the first close frame; the peer answered it.
    Local,
}

/// What the WebSocket reports, one at a time, from [`WebSocket::poll_event`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// A complete text message (fragments already joined).
    Text(Text),
    /// A binary message arrived and was dropped (Twilio never sends them).
    BinaryDropped {
        /// Its length in bytes.
        len: usize,
    },
    /// The close handshake finished: both sides sent a close frame. The TCP
    /// connection should close once the transmit buffer is written.
    Closed {
        /// The code in the peer's close frame (`None` when it carried none).
        code: Option<u16>,
        /// The reason in the peer's close frame (may be empty).
        reason: String,
        /// Who started the handshake.
        initiator: Initiator,
    },
    /// The peer broke the protocol; a close frame with
    /// [`WsError::close_code`] is already queued. Close the TCP connection
    /// once the transmit buffer is written.
    Failed(WsError),
}

/// Why the WebSocket failed, and the close code the peer was sent.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum WsError {
    /// A message or frame over [`MAX_MESSAGE`] bytes (close 1009).
    MessageTooBig {
        /// The size announced or reached.
        size: usize,
        /// The limit crossed.
        limit: usize,
    },
    /// Text (or a close reason) that is not UTF-8 (close 1007).
    InvalidUtf8,
    /// Any other violation of RFC 6455, described (close 1002).
    Protocol(String),
}

impl WsError {
    /// The close code sent to the peer for this error (RFC 6455 §7.4.1).
    #[must_use]
    pub fn close_code(&self) -> u16 {
        match self {
            WsError::MessageTooBig { .. } => 1009,
            WsError::InvalidUtf8 => 1007,
            WsError::Protocol(_) => 1002,
        }
    }

    fn close_reason(&self) -> &'static str {
        match self {
            WsError::MessageTooBig { .. } => "message too big",
            WsError::InvalidUtf8 => "invalid utf-8",
            WsError::Protocol(_) => "protocol error",
        }
    }
}

impl fmt::Display for WsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WsError::MessageTooBig { size, limit } => write!(
                f,
                "websocket message of {size} bytes is over the {limit}-byte limit (close 1009)"
            ),
            WsError::InvalidUtf8 => f.write_str("websocket text is not valid UTF-8 (close 1007)"),
            WsError::Protocol(what) => write!(f, "websocket protocol error: {what} (close 1002)"),
        }
    }
}

impl std::error::Error for WsError {}

/// Sending is no longer possible: a close frame was sent or received.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SendError;

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the websocket is closing or closed; nothing more can be sent")
    }
}

impl std::error::Error for SendError {}

/// The in-memory stream the frame engine runs over: reads drain what the
/// connection received (then say `WouldBlock`), writes append to what the
/// connection must transmit.
#[derive(Debug, Default)]
struct Pipe {
    inbound: Vec<u8>,
    read_at: usize,
    outbound: Vec<u8>,
    sent: usize,
}

impl Read for Pipe {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let available = self.inbound.get(self.read_at..).unwrap_or_default();
        if available.is_empty() {
            // Never `Ok(0)`: the frame engine reads that as the peer's EOF,
            // and EOF is the connection's business (`handle_eof`).
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let n = available.len().min(buf.len());
        buf[..n].copy_from_slice(&available[..n]);
        self.read_at += n;
        if self.read_at == self.inbound.len() {
            self.inbound.clear();
            self.read_at = 0;
        }
        Ok(n)
    }
}

impl Write for Pipe {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.outbound.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Open,
    /// We sent a close frame and wait for the peer's.
    CloseSent,
    /// Closed or failed: nothing more in or out.
    Finished,
}

/// Text buffers kept for reuse ([`WebSocket::recycle`]).
const POOL: usize = 4;

/// The server side of one WebSocket connection, over in-memory buffers.
///
/// The common case — a whole, unfragmented, masked text frame within
/// [`MAX_MESSAGE`] — is decoded here, into a recycled buffer, and a text
/// frame out is framed here, straight into the transmit buffer: a media
/// stream's frames cost no allocation. Every other frame (control frames,
/// fragments, binary, anything malformed or too big) goes, whole and in
/// order, to the frame engine, which answers, joins or fails as RFC 6455
/// says. Frames are handed over only at frame boundaries, so the two never
/// disagree on where a frame starts.
pub struct WebSocket {
    inner: TWebSocket<Pipe>,
    state: State,
    binary_dropped: u64,
    /// Bytes received and not yet decoded or handed to the frame engine.
    pending: Vec<u8>,
    pending_at: usize,
    /// The frame engine holds the start of a fragmented message: every frame
    /// goes to it until the message ends.
    fragmented: bool,
    pool: Vec<String>,
}

impl fmt::Debug for WebSocket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebSocket")
            .field("state", &self.state)
            .field("binary_dropped", &self.binary_dropped)
            .field("transmit_len", &self.transmit().len())
            .finish()
    }
}

impl WebSocket {
    /// Where the next frame in is received (its text is then handed out in
    /// that same buffer, and the frame out is framed in the call's spare
    /// text: see [`send_text_owned`](Self::send_text_owned)), and the pool
    /// a spare comes from. See
    /// [`Connection::hot_memory`](crate::connection::Connection::hot_memory).
    pub(crate) fn hot_memory(&self, visit: crate::hot::Visit<'_>) {
        crate::hot::head(visit, self.pending.as_ptr(), self.pending.capacity());
        crate::hot::elements(visit, &self.pool);
    }

    /// Starts the server side of a connection whose upgrade was just
    /// accepted. `read_ahead` holds bytes that arrived after the upgrade
    /// request (frames the client sent early); `transmit` holds bytes not yet
    /// written (usually the `101` answer), which stay ahead of every frame.
    #[must_use]
    pub fn accept(read_ahead: Vec<u8>, transmit: Vec<u8>) -> Self {
        let config = WebSocketConfig::default()
            .read_buffer_size(READ_CHUNK)
            // Write every frame straight into the pipe: it never blocks, and
            // the connection bounds what waits there.
            .write_buffer_size(0)
            .max_write_buffer_size(usize::MAX)
            .max_message_size(Some(MAX_MESSAGE))
            .max_frame_size(Some(MAX_MESSAGE));
        let pipe = Pipe {
            outbound: transmit,
            ..Pipe::default()
        };
        WebSocket {
            inner: TWebSocket::from_partially_read(pipe, Vec::new(), Role::Server, Some(config)),
            state: State::Open,
            binary_dropped: 0,
            pending: read_ahead,
            pending_at: 0,
            fragmented: false,
            pool: Vec::new(),
        }
    }

    /// Adds bytes received from the peer. Nothing is parsed until
    /// [`poll_event`](Self::poll_event); after the connection finished, the
    /// bytes are ignored.
    pub fn handle_receive(&mut self, bytes: &[u8]) {
        if self.state != State::Finished {
            // Drop what was decoded: what is left is at most one partial
            // frame, so the buffer stays bounded however reads split frames.
            if self.pending_at > 0 {
                self.pending.drain(..self.pending_at);
                self.pending_at = 0;
            }
            self.pending.extend_from_slice(bytes);
        }
    }

    /// Hands a message's buffer back for the next one.
    pub fn recycle(&mut self, text: Text) {
        if self.pool.len() < POOL {
            self.pool.push(text.0);
        }
    }

    /// The next whole frame in `pending`: decoded here when it is a plain
    /// text message, else handed to the frame engine. `None`: no whole frame.
    fn next_frame(&mut self) -> Option<Option<Event>> {
        let buf = self.pending.get(self.pending_at..).unwrap_or_default();
        let head = FrameHead::parse(buf)?;
        let total = match head.total() {
            Some(total) if head.len <= MAX_MESSAGE as u64 => total,
            _ => {
                // Too big: the frame engine refuses it from its header (1009).
                let n = buf.len();
                self.hand_over(n);
                return Some(None);
            }
        };
        if buf.len() < total {
            return None;
        }
        let plain = head.fin && head.opcode == 1 && head.rsv == 0 && !self.fragmented;
        if let (true, Some(mask)) = (plain, head.mask) {
            // The usual read holds exactly one frame: its buffer becomes the
            // text and a spare one takes its place, so the payload is not
            // copied a second time into memory this call has not touched
            // since its last frame.
            if self.pending_at == 0
                && total == self.pending.len()
                && self.pending.capacity() <= SWAP_MAX
            {
                if let Some(text) = self.take_whole_pending(head.header, mask) {
                    return Some(Some(Event::Text(text)));
                }
                // Not UTF-8: the frame engine says how that fails (below).
                return self.engine_frame(&head, total);
            }
            let payload = &buf[head.header..total];
            let mut bytes = self.pool.pop().unwrap_or_default().into_bytes();
            bytes.clear();
            bytes.extend_from_slice(payload);
            unmask(&mut bytes, mask);
            match String::from_utf8(bytes) {
                Ok(text) => {
                    self.pending_at += total;
                    return Some(Some(Event::Text(Text(text))));
                }
                // The frame engine says how invalid text fails (1007).
                Err(e) => {
                    let mut bytes = e.into_bytes();
                    bytes.clear();
                    self.pool.push(String::from_utf8(bytes).unwrap_or_default());
                }
            }
        }
        self.engine_frame(&head, total)
    }

    /// Hands the next frame (`total` bytes) to the frame engine.
    fn engine_frame(&mut self, head: &FrameHead, total: usize) -> Option<Option<Event>> {
        match head.opcode {
            1 | 2 if !head.fin => self.fragmented = true,
            0 if head.fin => self.fragmented = false,
            _ => {}
        }
        self.hand_over(total);
        Some(None)
    }

    /// `pending` is one whole masked text frame with a `header`-byte header:
    /// returns its text in `pending`'s own buffer and takes a spare one for
    /// `pending`. `None`, with `pending` as it was, when it is not UTF-8.
    fn take_whole_pending(&mut self, header: usize, mask: [u8; 4]) -> Option<Text> {
        let mut head = [0u8; MAX_HEADER];
        head.get_mut(..header)?
            .copy_from_slice(self.pending.get(..header)?);
        let spare = self.pool.pop().unwrap_or_default().into_bytes();
        let mut bytes = std::mem::replace(&mut self.pending, spare);
        self.pending.clear();
        bytes.drain(..header);
        unmask(&mut bytes, mask);
        match String::from_utf8(bytes) {
            Ok(text) => Some(Text(text)),
            Err(e) => {
                // Put the frame back as it came.
                let mut bytes = e.into_bytes();
                unmask(&mut bytes, mask);
                bytes.splice(0..0, head.iter().take(header).copied());
                let spare = std::mem::replace(&mut self.pending, bytes);
                self.pool.push(String::from_utf8(spare).unwrap_or_default());
                None
            }
        }
    }

    /// Moves the next `n` pending bytes to the frame engine.
    fn hand_over(&mut self, n: usize) {
        let end = self.pending_at + n;
        let bytes = self.pending.get(self.pending_at..end).unwrap_or_default();
        self.inner.get_mut().inbound.extend_from_slice(bytes);
        self.pending_at = end.min(self.pending.len());
    }

    /// The next event from the bytes received so far, or `None` when more
    /// bytes are needed (or the connection is finished). Answers pings and
    /// close frames as a side effect.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<Event> {
        loop {
            if self.state == State::Finished {
                return None;
            }
            // What the frame engine was given comes out first, in order.
            if self.inner.get_ref().inbound.is_empty() {
                match self.next_frame() {
                    Some(Some(event)) => return Some(event),
                    Some(None) => {}
                    None => {
                        // No whole frame: flush a pong queued earlier.
                        if let Err(e) = self.inner.flush() {
                            return self.on_error(e);
                        }
                        return None;
                    }
                }
            }
            match self.inner.read() {
                Ok(Message::Text(text)) => {
                    return Some(Event::Text(Text(text.as_str().to_owned())));
                }
                Ok(Message::Binary(data)) => {
                    self.binary_dropped += 1;
                    return Some(Event::BinaryDropped { len: data.len() });
                }
                // The pong is queued by the engine and written on the next read.
                Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_)) => {}
                Ok(Message::Close(frame)) => {
                    let initiator = match self.state {
                        State::CloseSent => Initiator::Local,
                        _ => Initiator::Peer,
                    };
                    // Writes our answer (when the peer started); a server
                    // then hears `ConnectionClosed`, which is the point.
                    let _ = self.inner.flush();
                    self.state = State::Finished;
                    self.discard_inbound();
                    let (code, reason) = match frame {
                        Some(f) => (Some(u16::from(f.code)), f.reason.as_str().to_owned()),
                        None => (None, String::new()),
                    };
                    return Some(Event::Closed {
                        code,
                        reason,
                        initiator,
                    });
                }
                Err(TError::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => {
                    // Make sure a pong queued by the last read goes out now.
                    if let Err(e) = self.inner.flush() {
                        return self.on_error(e);
                    }
                    // The engine took every byte it was given; go on with
                    // what is pending.
                    self.inner.get_mut().inbound.clear();
                    self.inner.get_mut().read_at = 0;
                }
                Err(e) => return self.on_error(e),
            }
        }
    }

    fn on_error(&mut self, error: TError) -> Option<Event> {
        let error = match error {
            TError::ConnectionClosed | TError::AlreadyClosed => {
                self.state = State::Finished;
                return None;
            }
            TError::Io(e) if e.kind() == io::ErrorKind::WouldBlock => return None,
            TError::Capacity(CapacityError::MessageTooLong { size, max_size }) => {
                WsError::MessageTooBig {
                    size,
                    limit: max_size,
                }
            }
            TError::Utf8(_) => WsError::InvalidUtf8,
            TError::Protocol(p) => WsError::Protocol(p.to_string()),
            other => WsError::Protocol(other.to_string()),
        };
        if self.state == State::Open {
            let frame = CloseFrame {
                code: CloseCode::from(error.close_code()),
                reason: Utf8Bytes::from_static(error.close_reason()),
            };
            // A pong the engine queued goes out first: nothing may follow a
            // close frame (RFC 6455 §5.5.1). The pipe never fails a write,
            // so the frame is in the transmit buffer; an error here only
            // repeats the one being reported.
            let _ = self.inner.flush();
            let _ = self.inner.close(Some(frame));
        }
        self.state = State::Finished;
        self.discard_inbound();
        Some(Event::Failed(error))
    }

    fn discard_inbound(&mut self) {
        let pipe = self.inner.get_mut();
        pipe.inbound = Vec::new();
        pipe.read_at = 0;
        self.pending = Vec::new();
        self.pending_at = 0;
    }

    /// Queues one text message (a single unfragmented frame), framed straight
    /// into the transmit buffer.
    ///
    /// # Errors
    /// [`SendError`] once a close frame was sent or received.
    pub fn send_text(&mut self, text: &str) -> Result<(), SendError> {
        let out = self.outbound_for_text()?;
        let (header, n) = text_header(text.len());
        out.extend_from_slice(&header[..n]);
        out.extend_from_slice(text.as_bytes());
        Ok(())
    }

    /// Like [`send_text`](Self::send_text), but when nothing else waits to
    /// go out the frame is built in `text`'s own buffer (its header put in
    /// front) rather than copied: the buffer that waited before comes back
    /// for the next message. Otherwise `text` itself comes back.
    pub fn send_text_owned(&mut self, text: String) -> (Result<(), SendError>, String) {
        let out = match self.outbound_for_text() {
            Ok(out) => out,
            Err(e) => return (Err(e), text),
        };
        let (header, n) = text_header(text.len());
        // Only the 16-bit length form (126 bytes to 64 KiB, a media message
        // always): a shorter text is as cheap to copy as to shift.
        if n != 4 || !out.is_empty() || out.capacity() > SWAP_MAX {
            out.extend_from_slice(&header[..n]);
            out.extend_from_slice(text.as_bytes());
            return (Ok(()), text);
        }
        let mut bytes = text.into_bytes();
        bytes.splice(0..0, header[..n].iter().copied());
        let mut spare = std::mem::replace(out, bytes);
        spare.clear();
        (Ok(()), String::from_utf8(spare).unwrap_or_default())
    }

    /// The transmit buffer a text frame goes into, once a pong the engine
    /// queued went out ahead of it; an error once a close was sent or came.
    fn outbound_for_text(&mut self) -> Result<&mut Vec<u8>, SendError> {
        if self.state != State::Open {
            return Err(SendError);
        }
        self.inner.flush().map_err(|_| SendError)?;
        Ok(&mut self.inner.get_mut().outbound)
    }

    /// Starts the close handshake with `code` and `reason` (cut to
    /// [`MAX_CLOSE_REASON`] bytes at a character boundary). Does nothing when
    /// a close frame was already sent or received.
    pub fn close(&mut self, code: u16, reason: &str) {
        if self.state != State::Open {
            return;
        }
        let mut end = reason.len().min(MAX_CLOSE_REASON);
        while !reason.is_char_boundary(end) {
            end -= 1;
        }
        let frame = CloseFrame {
            code: CloseCode::from(code),
            reason: Utf8Bytes::from(&reason[..end]),
        };
        // A pong the engine queued goes out first: nothing may follow a
        // close frame (RFC 6455 §5.5.1).
        let _ = self.inner.flush();
        let _ = self.inner.close(Some(frame));
        self.state = State::CloseSent;
    }

    /// Gives up on the connection without a handshake (the peer went away, or
    /// never answered our close): nothing more is read or sent.
    pub fn abort(&mut self) {
        self.state = State::Finished;
        self.discard_inbound();
    }

    /// True while text can still be sent (no close frame sent or received).
    #[must_use]
    pub fn is_open(&self) -> bool {
        self.state == State::Open
    }

    /// True when callstream sent a close frame and waits for the peer's.
    #[must_use]
    pub fn is_closing(&self) -> bool {
        self.state == State::CloseSent
    }

    /// True after [`Event::Closed`], [`Event::Failed`] or [`abort`](Self::abort):
    /// the TCP connection can close once the transmit buffer is written.
    #[must_use]
    pub fn is_finished(&self) -> bool {
        self.state == State::Finished
    }

    /// Binary messages dropped so far.
    #[must_use]
    pub fn binary_dropped(&self) -> u64 {
        self.binary_dropped
    }

    /// Bytes waiting to be written to the peer.
    #[must_use]
    pub fn transmit(&self) -> &[u8] {
        let pipe = self.inner.get_ref();
        pipe.outbound.get(pipe.sent..).unwrap_or_default()
    }

    /// Reports that the first `n` bytes of [`transmit`](Self::transmit) were
    /// written (more than is waiting counts as all of it).
    pub fn consume_transmit(&mut self, n: usize) {
        let pipe = self.inner.get_mut();
        pipe.sent = pipe.sent.saturating_add(n).min(pipe.outbound.len());
        if pipe.sent == pipe.outbound.len() {
            pipe.outbound.clear();
            pipe.sent = 0;
        } else if pipe.sent >= 64 * 1024 && pipe.sent * 2 >= pipe.outbound.len() {
            // Reclaim the written front once it is the larger part, so a
            // slow reader does not make the buffer grow without end.
            pipe.outbound.drain(..pipe.sent);
            pipe.sent = 0;
        }
    }
}

/// Unmasks a client frame's payload in place (RFC 6455 §5.3), eight bytes at
/// a time: a byte at a time was the largest single cost of a media frame's
/// WebSocket work.
fn unmask(payload: &mut [u8], mask: [u8; 4]) {
    let word = u64::from_ne_bytes([
        mask[0], mask[1], mask[2], mask[3], mask[0], mask[1], mask[2], mask[3],
    ]);
    let mut chunks = payload.chunks_exact_mut(8);
    for chunk in &mut chunks {
        let mut b = [0u8; 8];
        b.copy_from_slice(chunk);
        chunk.copy_from_slice(&(u64::from_ne_bytes(b) ^ word).to_ne_bytes());
    }
    // The tail starts at a multiple of 8, so the mask starts over.
    for (b, m) in chunks.into_remainder().iter_mut().zip(mask.iter().cycle()) {
        *b ^= m;
    }
}

/// Buffers change roles (pending bytes become a text, a text becomes the
/// transmit buffer, which joins the spares) only up to this capacity: one
/// that grew larger (a big message, a slow reader's backlog) stays where it
/// grew instead of joining the spares, so a connection holds one such
/// buffer, not one per role.
const SWAP_MAX: usize = 4096;

/// A server's header for a text frame of `len` bytes (FIN + text, the
/// length in its shortest form, never masked: RFC 6455 §5.1) and how many of
/// the bytes it is.
fn text_header(len: usize) -> ([u8; 10], usize) {
    let mut h = [0u8; 10];
    h[0] = 0x81;
    if len < 126 {
        h[1] = len as u8;
        (h, 2)
    } else if let Ok(len) = u16::try_from(len) {
        h[1] = 126;
        h[2..4].copy_from_slice(&len.to_be_bytes());
        (h, 4)
    } else {
        h[1] = 127;
        h[2..10].copy_from_slice(&(len as u64).to_be_bytes());
        (h, 10)
    }
}

/// The longest frame header: 2 bytes, an 8-byte length, a 4-byte mask.
const MAX_HEADER: usize = 14;

/// A frame header (RFC 6455 §5.2), read without consuming anything.
struct FrameHead {
    fin: bool,
    rsv: u8,
    opcode: u8,
    mask: Option<[u8; 4]>,
    /// Payload length as announced.
    len: u64,
    /// Header bytes, extended length and mask included.
    header: usize,
}

impl FrameHead {
    /// `None` until the whole header is in `buf`.
    fn parse(buf: &[u8]) -> Option<FrameHead> {
        let (&b0, rest) = buf.split_first()?;
        let (&b1, rest) = rest.split_first()?;
        let (len, rest, ext) = match b1 & 0x7F {
            126 => {
                let ext: [u8; 2] = rest.get(..2)?.try_into().ok()?;
                (u64::from(u16::from_be_bytes(ext)), &rest[2..], 2)
            }
            127 => {
                let ext: [u8; 8] = rest.get(..8)?.try_into().ok()?;
                (u64::from_be_bytes(ext), &rest[8..], 8)
            }
            n => (u64::from(n), rest, 0),
        };
        let mask = if b1 & 0x80 != 0 {
            Some(rest.get(..4)?.try_into().ok()?)
        } else {
            None
        };
        Some(FrameHead {
            fin: b0 & 0x80 != 0,
            rsv: b0 & 0x70,
            opcode: b0 & 0x0F,
            mask,
            len,
            header: 2 + ext + if mask.is_some() { 4 } else { 0 },
        })
    }

    /// Header plus payload, when it fits in memory.
    fn total(&self) -> Option<usize> {
        usize::try_from(self.len).ok()?.checked_add(self.header)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A client frame, masked with a fixed key (RFC 6455 §5.3).
    fn frame(first: u8, payload: &[u8]) -> Vec<u8> {
        let mask = [0x37, 0xfa, 0x21, 0x3d];
        let mut out = vec![first];
        match payload.len() {
            n if n < 126 => out.push(0x80 | n as u8),
            n if n <= 0xFFFF => {
                out.push(0x80 | 126);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                out.push(0x80 | 127);
                out.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        out.extend_from_slice(&mask);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        out
    }

    fn text(s: &str) -> Vec<u8> {
        frame(0x81, s.as_bytes())
    }

    fn events(ws: &mut WebSocket) -> Vec<Event> {
        std::iter::from_fn(|| ws.poll_event()).collect()
    }

    fn text_event(s: &str) -> Event {
        Event::Text(Text(s.to_owned()))
    }

    #[test]
    fn text_message_comes_out_whole() {
        let mut ws = WebSocket::accept(Vec::new(), Vec::new());
        ws.handle_receive(&text("{\"event\":\"connected\"}"));
        assert_eq!(events(&mut ws), [text_event("{\"event\":\"connected\"}")]);
        assert!(ws.transmit().is_empty());
    }

    #[test]
    fn read_ahead_and_pending_transmit_are_kept() {
        let mut ws = WebSocket::accept(text("early"), b"HTTP/1.1 101 ...\r\n\r\n".to_vec());
        assert_eq!(events(&mut ws), [text_event("early")]);
        ws.send_text("x").unwrap();
        assert_eq!(ws.transmit(), b"HTTP/1.1 101 ...\r\n\r\n\x81\x01x");
    }

    #[test]
    fn several_messages_in_one_read_and_one_message_over_many_reads() {
        let mut ws = WebSocket::accept(Vec::new(), Vec::new());
        let mut bytes = text("a");
        bytes.extend(text("bb"));
        let third = text("ccc");
        bytes.extend_from_slice(&third[..3]);
        ws.handle_receive(&bytes);
        assert_eq!(events(&mut ws), [text_event("a"), text_event("bb")]);
        for b in &third[3..] {
            assert_eq!(events(&mut ws), []);
            ws.handle_receive(&[*b]);
        }
        assert_eq!(events(&mut ws), [text_event("ccc")]);
    }

    #[test]
    fn ping_is_answered_with_pong_carrying_the_same_payload() {
        let mut ws = WebSocket::accept(Vec::new(), Vec::new());
        ws.handle_receive(&frame(0x89, b"hb"));
        assert_eq!(events(&mut ws), []);
        assert_eq!(ws.transmit(), b"\x8a\x02hb");
    }

    #[test]
    fn pong_from_peer_is_ignored() {
        let mut ws = WebSocket::accept(Vec::new(), Vec::new());
        ws.handle_receive(&frame(0x8a, b"x"));
        assert_eq!(events(&mut ws), []);
        assert!(ws.transmit().is_empty());
        assert!(ws.is_open());
    }

    #[test]
    fn fragmented_text_is_reassembled_with_a_ping_in_between() {
        let mut ws = WebSocket::accept(Vec::new(), Vec::new());
        let mut bytes = frame(0x01, b"hel");
        bytes.extend(frame(0x89, b""));
        bytes.extend(frame(0x00, "lo é".as_bytes()));
        bytes.extend(frame(0x80, b"!"));
        ws.handle_receive(&bytes);
        assert_eq!(events(&mut ws), [text_event("hello é!")]);
        assert_eq!(ws.transmit(), b"\x8a\x00");
    }

    #[test]
    fn utf8_split_across_fragments_is_accepted() {
        let mut ws = WebSocket::accept(Vec::new(), Vec::new());
        let e = "é".as_bytes();
        let mut bytes = frame(0x01, &e[..1]);
        bytes.extend(frame(0x80, &e[1..]));
        ws.handle_receive(&bytes);
        assert_eq!(events(&mut ws), [text_event("é")]);
    }

    #[test]
    fn binary_messages_are_dropped_and_counted() {
        let mut ws = WebSocket::accept(Vec::new(), Vec::new());
        let mut bytes = frame(0x82, &[1, 2, 3]);
        bytes.extend(frame(0x02, &[4]));
        bytes.extend(frame(0x80, &[5]));
        bytes.extend(text("after"));
        ws.handle_receive(&bytes);
        assert_eq!(
            events(&mut ws),
            [
                Event::BinaryDropped { len: 3 },
                Event::BinaryDropped { len: 2 },
                text_event("after")
            ]
        );
        assert_eq!(ws.binary_dropped(), 2);
        assert!(ws.is_open());
    }

    #[test]
    fn message_of_exactly_the_limit_is_accepted() {
        let mut ws = WebSocket::accept(Vec::new(), Vec::new());
        let body = "a".repeat(MAX_MESSAGE);
        ws.handle_receive(&text(&body));
        assert_eq!(events(&mut ws), [text_event(&body)]);
    }

    #[test]
    fn frame_one_byte_over_the_limit_closes_with_1009() {
        let mut ws = WebSocket::accept(Vec::new(), Vec::new());
        // Only the header is needed: the length alone fails the connection.
        let bytes = text(&"a".repeat(MAX_MESSAGE + 1));
        ws.handle_receive(&bytes[..14]);
        assert_eq!(
            events(&mut ws),
            [Event::Failed(WsError::MessageTooBig {
                size: MAX_MESSAGE + 1,
                limit: MAX_MESSAGE
            })]
        );
        assert_eq!(ws.transmit(), b"\x88\x11\x03\xf1message too big");
        assert!(ws.is_finished());
        ws.handle_receive(&bytes[14..]);
        assert_eq!(events(&mut ws), []);
    }

    #[test]
    fn fragmented_message_one_byte_over_the_limit_closes_with_1009() {
        let mut ws = WebSocket::accept(Vec::new(), Vec::new());
        let half = "a".repeat(MAX_MESSAGE / 2);
        let mut bytes = frame(0x01, half.as_bytes());
        bytes.extend(frame(0x00, half.as_bytes()));
        bytes.extend(frame(0x80, b"a"));
        ws.handle_receive(&bytes);
        let got = events(&mut ws);
        assert!(
            matches!(got.as_slice(), [Event::Failed(e)] if e.close_code() == 1009),
            "{got:?}"
        );
        assert!(ws.transmit().starts_with(b"\x88\x11\x03\xf1"));
    }

    #[test]
    fn protocol_errors_close_with_1002() {
        let cases: [(&str, Vec<u8>); 7] = [
            ("unmasked frame", b"\x81\x02hi".to_vec()),
            ("reserved bits", frame(0xC1, b"x")),
            ("unknown data opcode", frame(0x83, b"x")),
            ("unknown control opcode", frame(0x8B, b"x")),
            ("fragmented control frame", frame(0x09, b"x")),
            ("control frame over 125 bytes", frame(0x89, &[0; 126])),
            ("continuation with nothing to continue", frame(0x80, b"x")),
        ];
        for (what, bytes) in cases {
            let mut ws = WebSocket::accept(Vec::new(), Vec::new());
            ws.handle_receive(&bytes);
            let got = events(&mut ws);
            assert!(
                matches!(got.as_slice(), [Event::Failed(WsError::Protocol(_))]),
                "{what}: {got:?}"
            );
            assert_eq!(ws.transmit(), b"\x88\x10\x03\xeaprotocol error", "{what}");
            assert!(ws.is_finished(), "{what}");
        }
    }

    #[test]
    fn new_message_inside_a_fragmented_one_is_a_protocol_error() {
        let mut ws = WebSocket::accept(Vec::new(), Vec::new());
        let mut bytes = frame(0x01, b"a");
        bytes.extend(text("b"));
        ws.handle_receive(&bytes);
        assert!(matches!(
            events(&mut ws).as_slice(),
            [Event::Failed(WsError::Protocol(_))]
        ));
    }

    #[test]
    fn an_owned_text_is_framed_as_a_borrowed_one() {
        for len in [0, 125, 126, 300, 65_535, 65_536] {
            let text = "x".repeat(len);
            let mut borrowed = WebSocket::accept(Vec::new(), Vec::new());
            borrowed.send_text(&text).unwrap();
            borrowed.send_text("second").unwrap();
            let mut owned = WebSocket::accept(Vec::new(), Vec::new());
            let (sent, spare) = owned.send_text_owned(text.clone());
            sent.unwrap();
            // Its buffer became the frame's unless it was not worth it.
            let taken = (126..=65_535).contains(&len);
            assert_eq!(spare, if taken { "" } else { text.as_str() }, "{len}");
            // Something already waits: copied behind it, in order.
            let (sent, spare) = owned.send_text_owned("second".into());
            sent.unwrap();
            assert_eq!(spare, "second");
            assert_eq!(owned.transmit(), borrowed.transmit(), "{len}");
        }
        // Half written, then the rest: the next owned text goes behind it.
        let mut ws = WebSocket::accept(Vec::new(), Vec::new());
        let _ = ws.send_text_owned("a".repeat(200));
        ws.consume_transmit(100);
        let (_, spare) = ws.send_text_owned("b".repeat(200));
        assert_eq!(spare.len(), 200);
        assert_eq!(ws.transmit().len(), 104 + 204);
        ws.consume_transmit(308);
        assert!(ws.transmit().is_empty());
        let (_, spare) = ws.send_text_owned("c".repeat(200));
        assert!(spare.is_empty());
        assert_eq!(&ws.transmit()[..4], [0x81, 126, 0, 200]);
        // A transmit buffer grown by a backlog is not handed out as a spare.
        ws.consume_transmit(204);
        ws.send_text(&"d".repeat(20_000)).unwrap();
        ws.consume_transmit(20_004);
        let (_, spare) = ws.send_text_owned("e".repeat(200));
        assert_eq!(spare.len(), 200, "copied behind the big buffer's start");
        assert_eq!(&ws.transmit()[..4], [0x81, 126, 0, 200]);
        ws.close(1000, "");
        let (sent, spare) = ws.send_text_owned("late".into());
        assert_eq!((sent, spare.as_str()), (Err(SendError), "late"));
    }

    #[test]
    fn a_whole_frame_read_becomes_the_text_unless_its_buffer_grew_big() {
        let mut ws = WebSocket::accept(Vec::new(), Vec::new());
        for len in [300, 20_000, 300] {
            let text = "y".repeat(len);
            ws.handle_receive(&frame(0x81, text.as_bytes()));
            let events = events(&mut ws);
            assert_eq!(events, [text_event(&text)], "{len}");
            if len > SWAP_MAX {
                // Copied out: the grown buffer stays the pending one.
                assert!(ws.pending.capacity() >= len);
            }
            for e in events {
                if let Event::Text(t) = e {
                    ws.recycle(t);
                }
            }
        }
        // Not UTF-8 in a whole-frame read: the frame goes back as it came.
        ws.handle_receive(&frame(0x81, &[b'a', 0xff, b'b']));
        assert_eq!(events(&mut ws), [Event::Failed(WsError::InvalidUtf8)]);
    }

    #[test]
    fn invalid_utf8_closes_with_1007() {
        let mut ws = WebSocket::accept(Vec::new(), Vec::new());
        ws.handle_receive(&frame(0x81, &[0xff, 0xfe]));
        assert_eq!(events(&mut ws), [Event::Failed(WsError::InvalidUtf8)]);
        assert_eq!(ws.transmit(), b"\x88\x0f\x03\xefinvalid utf-8");
    }

    #[test]
    fn close_from_peer_is_answered_with_the_same_code() {
        let mut ws = WebSocket::accept(Vec::new(), Vec::new());
        ws.handle_receive(&frame(0x88, b"\x03\xe8bye"));
        assert_eq!(
            events(&mut ws),
            [Event::Closed {
                code: Some(1000),
                reason: "bye".into(),
                initiator: Initiator::Peer
            }]
        );
        assert_eq!(ws.transmit(), b"\x88\x05\x03\xe8bye");
        assert!(ws.is_finished());
        assert_eq!(ws.send_text("late"), Err(SendError));
    }

    #[test]
    fn empty_close_from_peer_is_answered_with_an_empty_close() {
        let mut ws = WebSocket::accept(Vec::new(), Vec::new());
        ws.handle_receive(&frame(0x88, b""));
        assert_eq!(
            events(&mut ws),
            [Event::Closed {
                code: None,
                reason: String::new(),
                initiator: Initiator::Peer
            }]
        );
        assert_eq!(ws.transmit(), b"\x88\x00");
    }

    #[test]
    fn close_with_a_forbidden_code_is_answered_with_1002() {
        let mut ws = WebSocket::accept(Vec::new(), Vec::new());
        // 1005 must never appear on the wire (RFC 6455 §7.4.1).
        ws.handle_receive(&frame(0x88, b"\x03\xed"));
        let got = events(&mut ws);
        assert!(
            matches!(
                got.as_slice(),
                [Event::Closed {
                    code: Some(1002),
                    ..
                }]
            ),
            "{got:?}"
        );
        assert!(ws.transmit().starts_with(b"\x88\x14\x03\xea"));
    }

    #[test]
    fn close_started_here_finishes_when_the_peer_answers() {
        let mut ws = WebSocket::accept(Vec::new(), Vec::new());
        ws.close(1001, "going away");
        assert!(ws.is_closing());
        assert_eq!(ws.transmit(), b"\x88\x0c\x03\xe9going away");
        assert_eq!(ws.send_text("x"), Err(SendError));
        // Data the peer sent before it saw our close still arrives.
        ws.handle_receive(&text("in flight"));
        ws.handle_receive(&frame(0x88, b"\x03\xe9"));
        assert_eq!(
            events(&mut ws),
            [
                text_event("in flight"),
                Event::Closed {
                    code: Some(1001),
                    reason: String::new(),
                    initiator: Initiator::Local
                }
            ]
        );
        assert!(ws.is_finished());
        // No second close frame.
        assert_eq!(ws.transmit(), b"\x88\x0c\x03\xe9going away");
    }

    #[test]
    fn close_reason_is_cut_at_a_character_boundary() {
        let mut ws = WebSocket::accept(Vec::new(), Vec::new());
        ws.close(1000, &"é".repeat(100));
        let out = ws.transmit();
        assert_eq!(out[1] as usize, 2 + 122);
        assert!(std::str::from_utf8(&out[4..]).is_ok());
    }

    #[test]
    fn consume_transmit_keeps_the_unwritten_tail() {
        let mut ws = WebSocket::accept(Vec::new(), b"abc".to_vec());
        ws.consume_transmit(1);
        assert_eq!(ws.transmit(), b"bc");
        ws.send_text("d").unwrap();
        assert_eq!(ws.transmit(), b"bc\x81\x01d");
        ws.consume_transmit(usize::MAX);
        assert!(ws.transmit().is_empty());
    }

    #[test]
    fn a_large_written_front_is_reclaimed() {
        let mut ws = WebSocket::accept(Vec::new(), vec![b'x'; 100_000]);
        ws.consume_transmit(80_000);
        assert_eq!(ws.transmit().len(), 20_000);
        assert!(ws.inner.get_ref().outbound.len() == 20_000);
    }

    #[test]
    fn abort_stops_everything() {
        let mut ws = WebSocket::accept(Vec::new(), Vec::new());
        ws.abort();
        ws.handle_receive(&text("x"));
        assert_eq!(events(&mut ws), []);
        assert!(ws.is_finished());
    }

    /// tungstenite's client role as an independent peer, over byte buffers.
    #[test]
    fn tungstenite_client_peer_round_trip() {
        let mut client = TWebSocket::from_raw_socket(Pipe::default(), Role::Client, None);
        let mut ws = WebSocket::accept(Vec::new(), Vec::new());
        let pump = |client: &mut TWebSocket<Pipe>, ws: &mut WebSocket| {
            let c2s = std::mem::take(&mut client.get_mut().outbound);
            ws.handle_receive(&c2s);
            let got = events(ws);
            let s2c = ws.transmit().to_vec();
            ws.consume_transmit(s2c.len());
            client.get_mut().inbound.extend_from_slice(&s2c);
            got
        };
        client
            .send(Message::text("{\"event\":\"connected\"}"))
            .unwrap();
        client.send(Message::Ping(vec![7u8].into())).unwrap();
        assert_eq!(
            pump(&mut client, &mut ws),
            [text_event("{\"event\":\"connected\"}")]
        );
        assert!(matches!(client.read(), Ok(Message::Pong(p)) if p.as_ref() == [7]));
        ws.send_text("{\"event\":\"clear\"}").unwrap();
        assert_eq!(pump(&mut client, &mut ws), []);
        assert!(matches!(client.read(), Ok(Message::Text(t)) if t == "{\"event\":\"clear\"}"));
        client.close(None).unwrap();
        let got = pump(&mut client, &mut ws);
        assert!(matches!(
            got.as_slice(),
            [Event::Closed {
                initiator: Initiator::Peer,
                ..
            }]
        ));
        assert!(matches!(client.read(), Ok(Message::Close(None))));
    }

    /// Found in review: reads that always end partway through a frame kept
    /// every byte ever received.
    #[test]
    fn reads_out_of_step_with_frames_keep_the_buffer_bounded() {
        let mut ws = WebSocket::accept(Vec::new(), Vec::new());
        let one = frame(0x81, br#"{"event":"media","payload":"abc"}"#);
        let stream: Vec<u8> = one
            .iter()
            .copied()
            .cycle()
            .take(one.len() * 20_000)
            .collect();
        let mut most = 0;
        let mut texts = 0;
        // The first read ends 7 bytes in; every later one is a frame long.
        let mut rest = &stream[..];
        let mut n = 7;
        while !rest.is_empty() {
            let take = n.min(rest.len());
            ws.handle_receive(&rest[..take]);
            rest = &rest[take..];
            n = one.len();
            while let Some(event) = ws.poll_event() {
                if let Event::Text(t) = event {
                    texts += 1;
                    ws.recycle(t);
                }
            }
            most = most.max(ws.pending.len());
        }
        assert_eq!(texts, 20_000);
        assert!(most <= 2 * one.len(), "the buffer reached {most} bytes");
    }

    /// Found in review: a pong the engine queued must not follow our close.
    #[test]
    fn a_queued_pong_goes_out_before_our_close_frame() {
        let mut ws = WebSocket::accept(Vec::new(), Vec::new());
        let mut input = frame(0x89, b"hb");
        input.extend(frame(0x81, b"start"));
        ws.handle_receive(&input);
        assert!(matches!(ws.poll_event(), Some(Event::Text(_))));
        ws.close(1008, "account not allowed");
        let out = ws.transmit();
        let pong = out.iter().position(|&b| b == 0x8A);
        let close = out.iter().position(|&b| b == 0x88).expect("a close frame");
        if let Some(pong) = pong {
            assert!(pong < close, "pong after close: {out:?}");
        }
        // Nothing after the close frame: its header, code and reason end the buffer.
        assert_eq!(out.len(), close + 2 + usize::from(out[close + 1]));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Word-at-a-time unmasking equals the byte-at-a-time definition.
        #[test]
        fn unmask_matches_the_definition(
            payload in proptest::collection::vec(any::<u8>(), 0..100),
            mask in any::<[u8; 4]>(),
        ) {
            let mut fast = payload.clone();
            unmask(&mut fast, mask);
            let slow: Vec<u8> = payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]).collect();
            prop_assert_eq!(fast, slow);
        }

        /// Whole text frames (decoded here) mixed with fragmented messages,
        /// pings and binary frames (the frame engine's), cut anywhere:
        /// every message comes out once, whole, in order, every ping is
        /// answered, and reused buffers never leak one message into the next.
        #[test]
        fn plain_and_engine_frames_keep_their_order(
            messages in proptest::collection::vec((0u8..4, "[a-z{}\":]{0,300}"), 1..12),
            cuts in proptest::collection::vec(1usize..200, 0..20),
        ) {
            let mut wire = Vec::new();
            let mut expected = Vec::new();
            let mut pings = 0;
            for (kind, text) in &messages {
                match kind {
                    0 => wire.extend(frame(0x81, text.as_bytes())),
                    1 => {
                        // Fragmented, with a ping between the fragments.
                        let mid = text.len() / 2;
                        let mid = (0..=mid).rev().find(|&i| text.is_char_boundary(i)).unwrap_or(0);
                        wire.extend(frame(0x01, &text.as_bytes()[..mid]));
                        wire.extend(frame(0x89, b"p"));
                        pings += 1;
                        wire.extend(frame(0x80, &text.as_bytes()[mid..]));
                    }
                    2 => {
                        wire.extend(frame(0x82, text.as_bytes()));
                        continue;
                    }
                    _ => {
                        wire.extend(frame(0x89, b"q"));
                        pings += 1;
                        continue;
                    }
                }
                expected.push(text.clone());
            }
            let mut ws = WebSocket::accept(Vec::new(), Vec::new());
            let mut got = Vec::new();
            let mut rest = &wire[..];
            let mut cuts = cuts.into_iter();
            while !rest.is_empty() {
                let n = cuts.next().unwrap_or(rest.len()).min(rest.len());
                ws.handle_receive(&rest[..n]);
                rest = &rest[n..];
                while let Some(event) = ws.poll_event() {
                    match event {
                        Event::Text(t) => {
                            got.push(t.as_str().to_owned());
                            ws.recycle(t);
                        }
                        Event::BinaryDropped { .. } => {}
                        other => prop_assert!(false, "unexpected {:?}", other),
                    }
                }
            }
            prop_assert_eq!(got, expected);
            // Each ping got its pong (0x8A), and nothing else was sent.
            let pongs = ws.transmit().iter().filter(|&&b| b == 0x8A).count();
            prop_assert!(pongs >= pings, "{} pongs for {} pings", pongs, pings);
            prop_assert!(ws.is_open());
        }

        /// Arbitrary bytes in arbitrary pieces never panic, and once the
        /// connection is finished it stays finished.
        #[test]
        fn arbitrary_bytes_never_panic(
            chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 0..16)
        ) {
            let mut ws = WebSocket::accept(Vec::new(), Vec::new());
            for chunk in &chunks {
                ws.handle_receive(chunk);
                let mut seen = 0;
                while let Some(event) = ws.poll_event() {
                    seen += 1;
                    prop_assert!(seen < 10_000);
                    if matches!(event, Event::Failed(_) | Event::Closed { .. }) {
                        prop_assert!(ws.is_finished());
                    }
                }
            }
        }

        /// Any split of a stream of valid frames gives the same messages.
        #[test]
        fn any_split_gives_the_same_messages(
            messages in proptest::collection::vec("[a-zé]{0,300}", 1..6),
            cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..8),
        ) {
            let bytes: Vec<u8> = messages.iter().flat_map(|m| text(m)).collect();
            let mut offsets: Vec<usize> = cuts.iter().map(|c| c.index(bytes.len() + 1)).collect();
            offsets.push(0);
            offsets.push(bytes.len());
            offsets.sort_unstable();
            let mut ws = WebSocket::accept(Vec::new(), Vec::new());
            let mut got = Vec::new();
            for pair in offsets.windows(2) {
                ws.handle_receive(&bytes[pair[0]..pair[1]]);
                got.extend(events(&mut ws));
            }
            let want: Vec<Event> = messages.iter().map(|m| text_event(m)).collect();
            prop_assert_eq!(got, want);
        }
    }
}
