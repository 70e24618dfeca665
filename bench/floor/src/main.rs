//! `callstream-floor PORT [HOST]`: the syscall floor the adapters are
//! measured against (BENCHMARKS.md, `scripts/floor-compare.sh`).
//!
//! One thread, one epoll instance, every socket registered once,
//! edge-triggered. On readiness a connection reads until the socket is
//! empty, answers the upgrade, unmasks each client frame, echoes Twilio
//! `media` as the outbound `media` message ([`ws::media_echo`]), answers
//! pings and closes on close, then writes what the socket takes. No timers,
//! no pacing, no JSON, base64 or audio: what a frame costs here is one read
//! and one write, so whatever a server spends above it is its own work.
//!
//! It prints the bound address as its first line of output (useful with
//! port 0). `HOST` defaults to 127.0.0.1.

mod ws;

use std::io::{self, Write as _};
use std::net::{TcpListener, TcpStream};
use std::process::ExitCode;

use rustix::buffer::spare_capacity;
use rustix::event::epoll::{self, EventData, EventFlags};
use rustix::io::Errno;
use slab::Slab;

/// The listener's key; connections are keyed by their slab index.
const LISTENER: u64 = u64::MAX;
/// Read room reserved before each read: a batch of frames, not one.
const READ_ROOM: usize = 16 * 1024;

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let Some(port) = args.next().and_then(|p| p.parse::<u16>().ok()) else {
        eprintln!("usage: callstream-floor PORT [HOST]   (PORT 0: any free port)");
        return ExitCode::from(2);
    };
    let host = args.next().unwrap_or_else(|| "127.0.0.1".to_owned());
    match serve(&host, port) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("callstream-floor: {e}");
            ExitCode::FAILURE
        }
    }
}

fn serve(host: &str, port: u16) -> io::Result<()> {
    let listener = TcpListener::bind((host, port))?;
    listener.set_nonblocking(true)?;
    let mut stdout = io::stdout();
    writeln!(stdout, "{}", listener.local_addr()?)?;
    stdout.flush()?;
    let ep = epoll::create(epoll::CreateFlags::CLOEXEC)?;
    epoll::add(
        &ep,
        &listener,
        EventData::new_u64(LISTENER),
        EventFlags::IN | EventFlags::ET,
    )?;
    let mut conns: Slab<Conn> = Slab::new();
    let mut events = Vec::with_capacity(1024);
    loop {
        events.clear();
        match epoll::wait(&ep, spare_capacity(&mut events), None) {
            Ok(_) | Err(Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
        for ev in &events {
            let (data, flags) = (ev.data.u64(), ev.flags);
            if data == LISTENER {
                accept_all(&ep, &listener, &mut conns);
                continue;
            }
            let Ok(key) = usize::try_from(data) else {
                continue;
            };
            let readable = EventFlags::IN | EventFlags::RDHUP | EventFlags::HUP | EventFlags::ERR;
            let keep = match conns.get_mut(key) {
                Some(conn) => conn.on_ready(flags.intersects(readable)),
                None => continue,
            };
            if !keep {
                let conn = conns.remove(key);
                let _ = epoll::delete(&ep, &conn.sock);
            }
        }
    }
}

/// Accepts until the backlog is empty (the listener is edge-triggered too).
fn accept_all(ep: &impl rustix::fd::AsFd, listener: &TcpListener, conns: &mut Slab<Conn>) {
    loop {
        let sock = match listener.accept() {
            Ok((sock, _)) => sock,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            // WouldBlock: done; anything else (out of descriptors, a
            // connection reset before it was taken): try again next edge.
            Err(_) => return,
        };
        if sock.set_nonblocking(true).is_err() {
            continue;
        }
        let _ = sock.set_nodelay(true);
        let entry = conns.vacant_entry();
        let data = EventData::new_u64(entry.key() as u64);
        let flags = EventFlags::IN | EventFlags::OUT | EventFlags::RDHUP | EventFlags::ET;
        if epoll::add(ep, &sock, data, flags).is_ok() {
            entry.insert(Conn {
                sock,
                inbuf: Vec::with_capacity(READ_ROOM),
                out: Vec::new(),
                open: false,
                closing: false,
            });
        }
    }
}

/// One connection: bytes read and not yet whole frames, bytes the socket
/// has not yet taken.
struct Conn {
    sock: TcpStream,
    inbuf: Vec<u8>,
    out: Vec<u8>,
    /// Upgraded.
    open: bool,
    /// Close once `out` is written.
    closing: bool,
}

impl Conn {
    /// Readiness: read everything there is (if `readable`), answer it,
    /// write what the socket takes. False: drop the connection.
    fn on_ready(&mut self, readable: bool) -> bool {
        let mut eof = false;
        while readable && !self.closing {
            self.inbuf.reserve(READ_ROOM);
            match rustix::io::read(&self.sock, spare_capacity(&mut self.inbuf)) {
                Ok(0) => {
                    eof = true;
                    break;
                }
                Ok(_) => {}
                Err(Errno::AGAIN) => break,
                Err(Errno::INTR) => {}
                Err(_) => return false,
            }
        }
        self.handle_input();
        while !self.out.is_empty() {
            match rustix::io::write(&self.sock, &self.out) {
                Ok(n) => {
                    self.out.drain(..n.min(self.out.len()));
                }
                Err(Errno::AGAIN) => break,
                Err(Errno::INTR) => {}
                Err(_) => return false,
            }
        }
        !(eof || self.closing && self.out.is_empty())
    }

    fn handle_input(&mut self) {
        if self.closing {
            return;
        }
        if !self.open {
            match ws::read_head(&self.inbuf) {
                ws::Head::Partial => return,
                ws::Head::Refused => {
                    self.out.extend_from_slice(ws::BAD_REQUEST);
                    self.closing = true;
                    return;
                }
                ws::Head::Upgrade { len, response } => {
                    self.out.extend_from_slice(response.as_bytes());
                    self.inbuf.drain(..len.min(self.inbuf.len()));
                    self.open = true;
                }
            }
        }
        let mut at = 0;
        while let Some(rest) = self.inbuf.get_mut(at..) {
            let frame = match ws::parse_frame(rest) {
                ws::Parse::Partial => break,
                ws::Parse::Error(code) => {
                    self.close(&code.to_be_bytes());
                    break;
                }
                ws::Parse::Frame(f) => f,
            };
            at += frame.end;
            let Some(payload) = rest.get_mut(frame.start..frame.end) else {
                break;
            };
            ws::unmask(payload, frame.mask);
            match frame.opcode {
                // A fragmented message is no Twilio message: not echoed.
                0x1 if frame.fin => {
                    ws::media_echo(payload, &mut self.out);
                }
                0x9 => {
                    ws::server_head(0xA, payload.len(), &mut self.out);
                    self.out.extend_from_slice(payload);
                }
                0x8 => {
                    // Echo the status code (§5.5.1), nothing more.
                    let code = payload.get(..2).unwrap_or_default().to_vec();
                    self.close(&code);
                    break;
                }
                _ => {}
            }
        }
        self.inbuf.drain(..at.min(self.inbuf.len()));
    }

    fn close(&mut self, payload: &[u8]) {
        ws::server_head(0x8, payload.len(), &mut self.out);
        self.out.extend_from_slice(payload);
        self.closing = true;
    }
}
