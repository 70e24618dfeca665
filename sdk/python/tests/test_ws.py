"""The ws transport, as callstream's ws bridge drives it: serve_ws() with the
probe bot, and a websockets client in callstream's place; and
`--serve-ws HOST:PORT` as a process.

Needs websockets (pip install './sdk/python[ws]'). Set CALLSTREAM_BOT_NO_WS=1
to skip these where it cannot be installed; otherwise its absence fails."""

import asyncio
import contextlib
import importlib.util
import inspect
import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
import unittest

from support import PROBE, START, WAIT, note_of

import callstream_bot as cs

SKIP = os.environ.get("CALLSTREAM_BOT_NO_WS") == "1"
if not SKIP:
    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect

spec = importlib.util.spec_from_file_location("probe", PROBE)
probe = importlib.util.module_from_spec(spec)
spec.loader.exec_module(probe)

QUERY = f"?call_sid={START['call_sid']}&stream_sid={START['stream_sid']}&account_sid={START['account_sid']}"
CONFIG = {"type": "config", "rate": 16000, "audio": False}


def client(port, query=QUERY):
    kwargs = {"open_timeout": WAIT, "max_size": cs.MAX_LINE, "compression": None}
    if "proxy" in inspect.signature(connect).parameters:
        kwargs["proxy"] = None  # never through an HTTP proxy from the environment
    return connect(f"ws://127.0.0.1:{port}/bot{query}", **kwargs)


class Server:
    """serve_ws() on an event loop of its own, in a thread; its stderr kept."""

    def __init__(self, factory):
        self.loop = asyncio.new_event_loop()
        self.err = io.StringIO()
        ready = threading.Event()

        def on_ready(server):
            self.port = server.sockets[0].getsockname()[1]
            ready.set()

        def run():
            asyncio.set_event_loop(self.loop)
            self.task = self.loop.create_task(cs.serve_ws(factory, "127.0.0.1", 0, ready=on_ready))
            try:
                self.loop.run_until_complete(self.task)
            except BaseException:
                pass
            finally:
                ready.set()

        self.redirect = contextlib.redirect_stderr(self.err)
        self.redirect.__enter__()
        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()
        assert ready.wait(WAIT) and hasattr(self, "port"), "serve_ws did not start"

    def stderr(self):
        return self.err.getvalue().splitlines()

    def close(self):
        self.loop.call_soon_threadsafe(self.task.cancel)
        self.thread.join(WAIT)
        self.redirect.__exit__(None, None, None)


def recv(ws):
    frame = ws.recv(timeout=WAIT)
    assert isinstance(frame, str), frame
    return frame


def note(ws):
    msg = json.loads(recv(ws))
    n = note_of(msg)
    assert n is not None, msg
    return n


def closed(ws):
    """True when the server closes the socket (no message comes first)."""
    try:
        extra = ws.recv(timeout=WAIT)
    except ConnectionClosed:
        return True
    raise AssertionError(f"a message instead of the close: {extra[:200]}")


def do(ws, method, *args, **kwargs):
    ws.send(json.dumps({"type": "do", "method": method, "args": list(args), "kwargs": kwargs}))


@unittest.skipIf(SKIP, "CALLSTREAM_BOT_NO_WS=1")
class WsTransport(unittest.TestCase):
    def setUp(self):
        probe.INSTANCES.clear()
        self.server = Server(probe.Probe)

    def tearDown(self):
        self.server.close()

    def started(self, ws):
        self.assertEqual(json.loads(recv(ws)), CONFIG)
        ws.send(json.dumps(START))
        n = note(ws)
        self.assertEqual(n["h"], "start")
        return n

    def test_config_first_then_start_one_bot_per_socket_off_the_loop(self):
        with client(self.server.port) as ws:
            self.assertEqual(recv(ws), '{"type":"config","rate":16000,"audio":false}')
            ws.send(json.dumps({"type": "state"}))
            self.assertEqual(note(ws)["sids"], [START["call_sid"], START["stream_sid"], START["account_sid"]])
            ws.send(json.dumps(START))
            n = note(ws)
            self.assertEqual(n["instance"], 1)
            self.assertEqual(n["start"], START)
            self.assertEqual(n["parameters"], START["parameters"])
            self.assertFalse(n["thread"], "a handler ran on the main thread")
            with client(self.server.port, query="?call_sid=CAsecond") as ws2:
                self.assertEqual(json.loads(recv(ws2)), CONFIG)
                ws2.send(json.dumps({"type": "state"}))
                self.assertEqual(note(ws2)["sids"], ["CAsecond", "", ""])
                ws2.send(json.dumps({"type": "start", "version": 2}))
                self.assertEqual(note(ws2)["instance"], 2)

    def test_every_call_method_sends_its_exact_frame(self):
        with client(self.server.port) as ws:
            self.started(ws)
            do(ws, "play", "hex:0100ffff", 22050)
            do(ws, "mark", "m-1")
            do(ws, "say", "hex:0100ffff", 16000, text="Hello there")
            do(ws, "clear")
            do(ws, "send_digits", "1234#")
            do(ws, "reply", "r")
            do(ws, "transcript", "t")
            do(ws, "log", "hello", level="warn")
            do(ws, "transfer", "+14155550100", caller_id="+14155550199", timeout=20)
            expected = [
                '{"type":"play","rate":22050,"pcm":"AQD//w=="}',
                '{"type":"mark","name":"m-1"}',
                '{"type":"reply","text":"Hello there"}',
                '{"type":"play","rate":16000,"pcm":"AQD//w=="}',
                '{"type":"mark","name":"reply-1"}',
                '{"type":"log","level":"debug","message":"{\\"h\\": \\"result\\", \\"value\\": \\"reply-1\\"}"}',
                '{"type":"clear"}',
                '{"type":"send_digits","digits":"1234#"}',
                '{"type":"reply","text":"r"}',
                '{"type":"transcript","text":"t"}',
                '{"type":"log","level":"warn","message":"hello"}',
                '{"type":"transfer","to":"+14155550100","caller_id":"+14155550199","timeout":20}',
            ]
            self.assertEqual([recv(ws) for _ in expected], expected)
            # The call is done: callstream's stop follows, and the service
            # closes the socket.
            ws.send(json.dumps({"type": "stop", "reason": "the program ended the call"}))
            self.assertTrue(closed(ws))

    def test_end_and_hangup_close_the_socket(self):
        for method, kwargs, frame in [
            ("end", {"say": "Goodbye!", "voice": "Polly.Amy", "language": "en-GB"}, '{"type":"end","say":"Goodbye!","voice":"Polly.Amy","language":"en-GB"}'),
            ("hangup", {}, '{"type":"hangup"}'),
        ]:
            with client(self.server.port) as ws:
                self.started(ws)
                do(ws, method, **kwargs)
                self.assertEqual(recv(ws), frame)
                ws.send(json.dumps({"type": "stop", "reason": "the program ended the call"}))
                self.assertTrue(closed(ws))

    def test_every_message_reaches_its_handler_and_stop_closes(self):
        with client(self.server.port) as ws:
            self.started(ws)
            utt = {"type": "utterance", "rate": 24000, "pcm": "AQD//w==", "duration_ms": 20}
            audio = {"type": "audio", "rate": 24000, "pcm": "AQD//w==", "seq": 9, "dropped": 0}
            barge = {"type": "barge_in", "heard_ms": 5, "cleared": []}
            for msg in [
                {"type": "speech_started"},
                utt,
                audio,
                barge,
                {"type": "dtmf", "digit": "0"},
                {"type": "mark", "name": "x", "outcome": "played"},
                {"type": "newer", "y": 2},
            ]:
                ws.send(json.dumps(msg))
            self.assertEqual(
                [note(ws) for _ in range(7)],
                [
                    {"h": "speech_started"},
                    {"h": "utterance", "pcm": "0100ffff", "rate": 24000, "duration_ms": 20, "raw": utt},
                    {"h": "audio", "pcm": "0100ffff", "rate": 24000, "seq": 9, "dropped": 0, "raw": audio},
                    {"h": "barge_in", "cleared": [], "heard_ms": 5, "raw": barge, "unheard": []},
                    {"h": "dtmf", "digit": "0"},
                    {"h": "mark", "name": "x", "played": True},
                    {"h": "message", "msg": {"type": "newer", "y": 2}},
                ],
            )
            ws.send(json.dumps({"type": "stop", "reason": "caller hung up"}))
            self.assertEqual(note(ws), {"h": "stop", "reason": "caller hung up"})
            self.assertTrue(closed(ws))

    def test_garbage_binary_frames_and_exceptions(self):
        with client(self.server.port) as ws:
            self.started(ws)
            ws.send("not json")
            ws.send("[1]")
            ws.send(b'{"type":"dtmf","digit":"1"}')  # binary: not the bridge's
            ws.send('{"type":"utterance","rate":16000,"pcm":"!!"}')
            ws.send('{"type":"raise","what":"boom"}')
            ws.send('{"type":"dtmf","digit":"2"}')
            self.assertEqual(json.loads(recv(ws)), {"type": "log", "level": "error", "message": "on_message raised ValueError: boom"})
            self.assertEqual(note(ws), {"h": "dtmf", "digit": "2"})
            do(ws, "config", rate=8000)
            self.assertIn("ProtocolError: config must be the first line", json.loads(recv(ws))["message"])
        prefix = f"callstream_bot: {START['call_sid']}: "
        err = self.server.stderr()
        self.assertIn(prefix + "ignoring a line that is not JSON: 'not json'", err)
        self.assertIn(prefix + "ignoring a line that is not a JSON object: '[1]'", err)
        self.assertIn(prefix + "ignoring a binary frame: the bridge sends text frames", err)
        self.assertIn(prefix + "ignoring an utterance message: field 'pcm' is not base64", err)
        self.assertIn(prefix + "on_message raised ValueError: boom", err)

    def test_a_slow_handler_blocks_neither_pings_nor_other_calls(self):
        with client(self.server.port) as ws, client(self.server.port, query="?call_sid=CAother") as other:
            self.started(ws)
            self.assertEqual(json.loads(recv(other)), CONFIG)
            ws.send(json.dumps({"type": "sleep", "seconds": 3}))
            time.sleep(0.2)
            t0 = time.monotonic()
            self.assertTrue(ws.ping().wait(2), "no pong while a handler ran")
            other.send(json.dumps({"type": "dtmf", "digit": "7"}))
            self.assertEqual(note(other), {"h": "dtmf", "digit": "7"})
            self.assertLess(time.monotonic() - t0, 2)
            self.assertEqual(note(ws), {"h": "slept"})

    def test_a_call_closed_during_a_handler_is_over_and_the_service_goes_on(self):
        with client(self.server.port) as ws:
            self.started(ws)
            ws.send(json.dumps({"type": "sleep", "seconds": 2}))
            time.sleep(0.2)
        with client(self.server.port, query="?call_sid=CAnext") as ws:
            self.assertEqual(json.loads(recv(ws)), CONFIG)
            ws.send(json.dumps({"type": "dtmf", "digit": "4"}))
            self.assertEqual(note(ws), {"h": "dtmf", "digit": "4"})
        deadline = time.monotonic() + WAIT
        line = f"callstream_bot: {START['call_sid']}: the connection closed while a handler ran: the call is over"
        while line not in self.server.stderr() and time.monotonic() < deadline:
            time.sleep(0.05)
        self.assertIn(line, self.server.stderr())

    def test_big_frames_and_a_thread_of_the_bot(self):
        with client(self.server.port) as ws:
            self.started(ws)
            pcm = "AAAA" * (3 * 1024 * 1024 // 4)  # 2.25 MiB of PCM, over websockets' default limit
            ws.send(json.dumps({"type": "utterance", "rate": 16000, "pcm": pcm}))
            n = note(ws)
            self.assertEqual(n, {"h": "utterance", "bytes": 3 * 1024 * 1024 * 3 // 4, "rate": 16000, "duration_ms": 73728})
            ws.send(json.dumps({"type": "thread", "method": "say", "args": ["hex:0000", 16000], "kwargs": {"text": "t"}}))
            self.assertEqual([json.loads(recv(ws))["type"] for _ in range(3)], ["reply", "play", "mark"])


@unittest.skipIf(SKIP, "CALLSTREAM_BOT_NO_WS=1")
class WsFailures(unittest.TestCase):
    def test_a_bot_that_cannot_start_closes_with_1011(self):
        server = Server(probe.Broken)
        try:
            with client(server.port) as ws:
                self.assertEqual(recv(ws), '{"type":"config","rate":8000}')
                with self.assertRaises(ConnectionClosed) as e:
                    ws.recv(timeout=WAIT)
                self.assertEqual(e.exception.rcvd.code, 1011)
        finally:
            server.close()
        self.assertIn(f"callstream_bot: {START['call_sid']}: the bot could not start: RuntimeError: no model", server.stderr())


@unittest.skipIf(SKIP, "CALLSTREAM_BOT_NO_WS=1")
class ServeWsCommand(unittest.TestCase):
    """`bot.py --serve-ws HOST:PORT`: the service as a process."""

    def start(self):
        proc = subprocess.Popen(
            [sys.executable, PROBE, "--serve-ws", "127.0.0.1:0"],
            stderr=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
        )
        line = proc.stderr.readline().decode()
        self.assertTrue(line.startswith("callstream_bot: listening on ws://127.0.0.1:"), line)
        port = int(line.rsplit(":", 1)[1].strip().rstrip("/"))
        return proc, port

    def test_serves_calls_and_exits_0_on_sigterm(self):
        proc, port = self.start()
        try:
            for _ in range(2):  # the service outlives a call
                with client(port) as ws:
                    self.assertEqual(json.loads(recv(ws)), CONFIG)
                    ws.send(json.dumps(START))
                    self.assertEqual(note(ws)["h"], "start")
                    ws.send(json.dumps({"type": "stop", "reason": "r"}))
                    self.assertEqual(note(ws)["h"], "stop")
                    self.assertTrue(closed(ws))
            # A call in a slow handler does not hold the exit: it is closed
            # with 1001 (going away).
            with client(port) as ws:
                recv(ws)
                ws.send(json.dumps({"type": "sleep", "seconds": 30}))
                time.sleep(0.3)
                t0 = time.monotonic()
                proc.send_signal(signal.SIGTERM)
                with self.assertRaises(ConnectionClosed) as e:
                    ws.recv(timeout=WAIT)
                self.assertEqual(e.exception.rcvd.code, 1001)
                self.assertEqual(proc.wait(WAIT), 0)
                self.assertLess(time.monotonic() - t0, 5)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            proc.stderr.close()

    def test_bad_arguments(self):
        out = subprocess.run([sys.executable, PROBE, "--serve-ws", "nonsense"], capture_output=True, timeout=WAIT)
        self.assertEqual(out.returncode, 2)
        self.assertIn(b"--serve-ws wants HOST:PORT", out.stderr)
        out = subprocess.run([sys.executable, PROBE, "--help"], capture_output=True, timeout=WAIT)
        self.assertEqual(out.returncode, 0)
        self.assertIn(b"The test bot.", out.stdout)
        self.assertIn(b"--serve-ws HOST:PORT", out.stdout)


if __name__ == "__main__":
    unittest.main()
