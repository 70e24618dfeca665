//! The floor binary over a real socket: the upgrade, a `media` echo Twilio
//! accepts, nothing for other messages, pings, close, refusals.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};

use callstream_twilio::check::{ServerMessage, check_text};

const SID: &str = "MZ18ad3ab5a668481ce02b83e7395059f0";

struct Floor(Child, String);

impl Drop for Floor {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn floor() -> Floor {
    let mut child = Command::new(env!("CARGO_BIN_EXE_callstream-floor"))
        .arg("0")
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the floor");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("its address");
    Floor(child, line.trim().to_owned())
}

/// A masked client frame with `opcode`, FIN set.
fn masked(opcode: u8, payload: &[u8]) -> Vec<u8> {
    callstream_twilio::frame::client_frame(0x80 | opcode, payload)
}

/// Reads one unmasked server frame: (opcode, payload).
fn read_frame(s: &mut TcpStream) -> (u8, Vec<u8>) {
    let mut head = [0u8; 2];
    s.read_exact(&mut head).expect("frame head");
    assert_eq!(head[1] & 0x80, 0, "server frames are unmasked");
    let len = match head[1] {
        126 => {
            let mut b = [0u8; 2];
            s.read_exact(&mut b).expect("length");
            usize::from(u16::from_be_bytes(b))
        }
        n => usize::from(n),
    };
    let mut payload = vec![0u8; len];
    s.read_exact(&mut payload).expect("payload");
    (head[0], payload)
}

fn upgraded(addr: &str) -> TcpStream {
    let mut s = TcpStream::connect(addr).expect("connect");
    // Split across writes: the head may arrive in pieces.
    s.write_all(b"GET /ws/twilio-media HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n")
        .expect("write");
    s.flush().expect("flush");
    s.write_all(b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
        .expect("write");
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut byte).expect("101");
        head.push(byte[0]);
    }
    let head = String::from_utf8(head).expect("text");
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    assert!(
        head.contains("\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"),
        "{head}"
    );
    s
}

#[test]
fn echoes_media_answers_pings_and_closes() {
    let floor = floor();
    let mut s = upgraded(&floor.1);
    let start = format!(r#"{{"event":"start","sequenceNumber":"1","streamSid":"{SID}"}}"#);
    let media = |payload: &str| {
        format!(
            r#"{{"event":"media","sequenceNumber":"2","streamSid":"{SID}","media":{{"track":"inbound","chunk":"1","timestamp":"0","payload":"{payload}"}}}}"#
        )
    };
    // Several frames in one write, the start not echoed.
    let mut wire = masked(0x1, start.as_bytes());
    wire.extend(masked(0x1, media("/v7+").as_bytes()));
    wire.extend(masked(0x1, media(&"f".repeat(216)).as_bytes()));
    s.write_all(&wire).expect("write");
    for want in [vec![0xfe; 3], [0x7d, 0xf7, 0xdf].repeat(54)] {
        let (op, text) = read_frame(&mut s);
        assert_eq!(op, 0x81);
        let text = String::from_utf8(text).expect("utf-8");
        assert_eq!(check_text(&text, Some(SID)), Ok(ServerMessage::Media(want)));
    }
    // A frame split mid-payload is echoed once whole.
    let wire = masked(0x1, media("AAAA").as_bytes());
    s.write_all(&wire[..30]).expect("write");
    s.flush().expect("flush");
    std::thread::sleep(std::time::Duration::from_millis(20));
    s.write_all(&wire[30..]).expect("write");
    let (_, text) = read_frame(&mut s);
    let text = String::from_utf8(text).expect("utf-8");
    assert_eq!(
        check_text(&text, Some(SID)),
        Ok(ServerMessage::Media(vec![0; 3]))
    );
    // The next frame after a ping is its pong: nothing else was queued.
    s.write_all(&masked(0x9, b"hi")).expect("write");
    assert_eq!(read_frame(&mut s), (0x8a, b"hi".to_vec()));
    s.write_all(&masked(0x8, &1000u16.to_be_bytes()))
        .expect("write");
    assert_eq!(read_frame(&mut s), (0x88, 1000u16.to_be_bytes().to_vec()));
    let mut rest = Vec::new();
    s.read_to_end(&mut rest).expect("closed");
    assert!(rest.is_empty());
}

#[test]
fn refuses_what_is_not_an_upgrade_or_a_masked_frame() {
    let floor = floor();
    let mut s = TcpStream::connect(&floor.1).expect("connect");
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("write");
    let mut answer = String::new();
    s.read_to_string(&mut answer).expect("400, then closed");
    assert!(answer.starts_with("HTTP/1.1 400 "), "{answer}");

    // An unmasked client frame: close 1002.
    let mut s = upgraded(&floor.1);
    s.write_all(&[0x81, 0x02, b'h', b'i']).expect("write");
    assert_eq!(read_frame(&mut s), (0x88, 1002u16.to_be_bytes().to_vec()));
    // A frame over the limit: close 1009 (the other connection is unharmed).
    let mut t = upgraded(&floor.1);
    t.write_all(&[0x81, 0xff, 0, 0, 0, 0, 0, 1, 0, 1])
        .expect("write");
    assert_eq!(read_frame(&mut t), (0x88, 1009u16.to_be_bytes().to_vec()));
}
