#!/usr/bin/env python3
"""Writes the seed inputs under fuzz/seeds/<target>/ (committed; rerun after
changing a target's input layout). Each seed is one well-formed input in the
target's own layout, so that the fuzzer starts deep in the code under test
instead of having to discover HTTP, WebSocket framing or Twilio JSON itself."""
import base64
import hashlib
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
MZ = "MZ0123456789abcdef0123456789abcdef"
AC = "AC0123456789abcdef0123456789abcdef"
CA = "CA0123456789abcdef0123456789abcdef"
PAYLOAD = base64.b64encode(bytes([0xFF] * 160)).decode()

INBOUND = {
    "connected": '{"event":"connected","protocol":"Call","version":"1.0.0"}',
    "start": '{"event":"start","sequenceNumber":"1","streamSid":"%s","start":{"accountSid":"%s","streamSid":"%s","callSid":"%s","tracks":["inbound"],"customParameters":{"k":"v"},"mediaFormat":{"encoding":"audio/x-mulaw","sampleRate":8000,"channels":1}}}' % (MZ, AC, MZ, CA),
    "media": '{"event":"media","sequenceNumber":"3","streamSid":"%s","media":{"track":"inbound","chunk":"2","timestamp":"40","payload":"%s"}}' % (MZ, PAYLOAD),
    "dtmf": '{"event":"dtmf","sequenceNumber":"5","streamSid":"%s","dtmf":{"track":"inbound_track","digit":"1"}}' % MZ,
    "mark": '{"event":"mark","sequenceNumber":"6","streamSid":"%s","mark":{"name":"label"}}' % MZ,
    "stop": '{"event":"stop","sequenceNumber":"7","streamSid":"%s","stop":{"accountSid":"%s","callSid":"%s"}}' % (MZ, AC, CA),
}
OUTBOUND = {
    "out_media": '{"event":"media","streamSid":"%s","media":{"payload":"%s"}}' % (MZ, PAYLOAD),
    "out_mark": '{"event":"mark","streamSid":"%s","mark":{"name":"label"}}' % MZ,
    "out_clear": '{"event":"clear","streamSid":"%s"}' % MZ,
}

FORM = (
    "AccountSid=%s&ApiVersion=2010-04-01&CallSid=%s&CallStatus=ringing"
    "&Called=%%2B15017122661&Caller=%%2B15558675310&Direction=inbound"
    "&From=%%2B15558675310&To=%%2B15017122661&FromCity=SAN+FRANCISCO" % (AC, CA)
)

WEBHOOK = (
    "POST /webhook/incoming_call HTTP/1.1\r\nHost: voice.example.com\r\n"
    "Content-Type: application/x-www-form-urlencoded\r\n"
    "X-Twilio-Signature: 0000000000000000000000000000\r\n"
    "Content-Length: %d\r\n\r\n%s" % (len(FORM), FORM)
).encode()
UPGRADE = (
    b"GET /ws/twilio-media HTTP/1.1\r\nHost: voice.example.com\r\n"
    b"Upgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: audio.twilio.com\r\n"
    b"X-Twilio-Signature: 0000000000000000000000000000\r\n\r\n"
)
HEALTHZ = b"GET /healthz HTTP/1.1\r\nHost: example.com\r\nConnection: keep-alive\r\n\r\n"
CHUNKED = (
    b"POST /webhook/stream_status HTTP/1.1\r\nHost: example.com\r\n"
    b"Transfer-Encoding: chunked\r\n\r\n5\r\nA=b&c\r\n0\r\n\r\n"
)


def frame(opcode, payload, fin=True, mask=b"\x11\x22\x33\x44"):
    """A client-to-server WebSocket frame (masked, as RFC 6455 requires)."""
    head = bytes([(0x80 if fin else 0) | opcode])
    n = len(payload)
    if n < 126:
        head += bytes([0x80 | n])
    elif n < 65536:
        head += bytes([0x80 | 126]) + struct.pack(">H", n)
    else:
        head += bytes([0x80 | 127]) + struct.pack(">Q", n)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return head + mask + masked


def script(flags, ops):
    """The `connection` target's layout: a flags byte, then per op a control
    byte; ops 0..=4 are followed by a length byte and that many bytes. Op 5
    jumps to the connection's deadline, 13 moves the clock 20 ms, 6 is EOF,
    7 shutdown."""
    out = bytes([flags])
    for op in ops:
        if isinstance(op, int):
            out += bytes([op])
        else:
            for i in range(0, len(op), 255):
                piece = op[i : i + 255]
                out += bytes([0, len(piece)]) + piece
    return out


def write(target, name, data):
    d = os.path.join(HERE, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def main():
    for name, text in {**INBOUND, **OUTBOUND}.items():
        write("message_parse", name, text)

    write("form_decode", "webhook", FORM)
    write("form_decode", "escapes", "a=%41%zz+b&&=&c&%E2%82%AC=%ff")

    for name, req in {"webhook": WEBHOOK, "upgrade": UPGRADE, "pipelined": HEALTHZ + HEALTHZ, "chunked": CHUNKED}.items():
        write("http_request", name, b"\x05\x00" + req)
    # Small limits (second byte's top bit): this head is over them (431).
    write("http_request", "small_limits", b"\x05\xa3" + WEBHOOK)

    write("handshake", "upgrade", UPGRADE)
    write("handshake", "no_protocol", UPGRADE.replace(b"Sec-WebSocket-Protocol: audio.twilio.com\r\n", b""))
    write("handshake", "old_version", UPGRADE.replace(b"Version: 13", b"Version: 8"))

    call = [INBOUND[k].encode() for k in ("connected", "start", "media", "dtmf", "mark", "media", "stop")]
    stream = b"".join(frame(1, m) for m in call)
    # A message split over a continuation, a ping, and a close 1000.
    stream += frame(1, call[2][:40], fin=False) + frame(0, call[2][40:])
    stream += frame(9, b"ping") + frame(8, struct.pack(">H", 1000))
    write("connection", "call", script(0, [UPGRADE, stream, 5, 6]))
    # A call with the echo handler behind the stream (flag bit 1), its
    # frames 20 ms apart (op 13), so that the echo is paced out.
    paced = [UPGRADE]
    for m in call[:-1] + [INBOUND["media"].encode()] * 3 + [call[-1]]:
        paced += [frame(1, m), 13]
    write("connection", "echo_call", script(2, paced + [frame(8, b"\x03\xe8"), 5, 6]))
    write("connection", "webhook", script(0, [WEBHOOK, HEALTHZ, 6]))
    write("connection", "signed_webhook", script(1, [WEBHOOK, 5, 7]))
    # Load balancers probe with HEAD; the answer must carry no body.
    write("connection", "head_probe", script(0, [HEALTHZ.replace(b"GET", b"HEAD"), HEALTHZ, 6]))
    write("connection", "small_limits", script(12, [HEALTHZ, WEBHOOK, 6]))
    write("connection", "shutdown_mid_call", script(0, [UPGRADE, b"".join(frame(1, m) for m in call[:3]), 7, frame(8, b"\x03\xe8"), 5]))

    # A JSON status webhook that waits for 100 Continue, its body later.
    body = b'{"AccountSid":"%s","CallStatus":"completed"}' % AC.encode()
    expect = (
        b"POST /webhook/call_status?bodySHA256=%s HTTP/1.1\r\nHost: voice.example.com\r\n"
        b"Content-Type: application/json\r\nExpect: 100-continue\r\n"
        b"X-Twilio-Signature: 0000000000000000000000000000\r\n"
        b"X-Twilio-Webhooks-Signature-Settings: key=k1,algorithm=HMAC_SHA256\r\n"
        b"Forwarded: proto=https;host=voice.example.com\r\nContent-Length: %d\r\n\r\n"
        % (hashlib.sha256(body).hexdigest().encode(), len(body))
    )
    write("connection", "json_expect_continue", script(1, [expect, body, 5, 6]))

    # signature_settings: header values.
    for name, value in {
        "sha256": "key=webhooks_sharedkey_1,algorithm=HMAC_SHA256",
        "sha1_spaces": " algorithm = hmac_sha1 , key = k ,",
        "unknown": "key=k,algorithm=HMAC_SHA512,version=2",
    }.items():
        write("signature_settings", name, value)

    # verify: flags, then target, body, Content-Type, signature, settings,
    # Forwarded, Host, split on 0x00.
    def fields(flags, *parts):
        return bytes([flags]) + b"\x00".join(parts)
    write("verify", "json_oracle", fields(0x22, b"/webhook/call_status", body, b"", b"", b"", b"", b"internal:8080"))
    write("verify", "form_shared_key", fields(0x05, b"/webhook/call_status?x=1", FORM.encode(),
        b"application/x-www-form-urlencoded", b"A" * 43 + b"=", b"key=k1,algorithm=HMAC_SHA256",
        b'for=192.0.2.1;proto=https;host="voice.example.com"', b"10.0.0.1:8080"))
    write("verify", "upgrade_duplicated", fields(0x19, b"/ws/twilio-media", b"", b"", b"A" * 27 + b"=", b"",
        b"proto=https", b"voice.example.com"))

    # call_session: its own byte interpreter (see the target); one byte per
    # choice (sid, kind, arguments, then whether to tick 20 ms). start, media x3, mark, dtmf, remote play + timeout, stop.
    write("call_session", "call", bytes([
        0, 1, 1,
        0, 2, 2, 0, 2, 0, 80, 0xFF, 1,
        0, 3, 3, 0, 3, 0, 80, 0x7F, 1,
        0, 4, 4, 0, 4, 0, 80, 0x00, 0,
        0, 6, 1, 1,
        0, 7, 5, 1,
        0, 10, 20, 0, 0,
        0, 8, 0,
    ]))

    # websocket: op 2 = a client frame (head, length, repeat, mask, payload),
    # 5 = send_text, 6 = close (code index, reason), 7 = consume_transmit,
    # 0 = raw bytes.
    def ws_frame(head, payload, repeat=0, mask=1):
        return bytes([2, head, len(payload), repeat, mask]) + payload
    dtmf, mark = INBOUND["dtmf"].encode(), INBOUND["mark"].encode()
    write("websocket", "session", b"".join([
        ws_frame(0x81, dtmf),
        ws_frame(0x01, mark[:50]), ws_frame(0x89, b"ping"), ws_frame(0x80, mark[50:]),
        bytes([5, 11]) + b"hello there", bytes([7, 255]),
        ws_frame(0x82, b"\x00\x01"),
        ws_frame(0x88, b"\x03\xe8bye"),
    ]))
    write("websocket", "local_close", ws_frame(0x81, mark) + bytes([6, 1, 4]) + b"done" + ws_frame(0x88, b"\x03\xe9", mask=0))
    write("websocket", "too_big", ws_frame(0x81, b"x" * 255, repeat=255))
    write("websocket", "raw_split", bytes([0, 3, 0x81, 0x85, 0, 0, 8, 0, 0, 0]) + b"hello")

    sep = b"\x00"
    write("public_url", "forwarded", b"\x2f" + sep.join([
        b"https://voice.example.com/prefix", b"/ws/twilio-media?x=1", b"internal:8080",
        b"https", b"voice.example.com", b"0000000000000000000000000000"]))
    write("public_url", "host_only", b"\x09" + sep.join([
        b"http://[::1]:8080", b"/webhook/incoming_call", b"127.0.0.1:8080", b"", b"", b"sig"]))


if __name__ == "__main__":
    main()
