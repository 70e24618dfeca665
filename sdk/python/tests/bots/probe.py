#!/usr/bin/env python3
"""A bot for the tests: it reports every handler call as a `log` line at
level debug ({"h": handler, ...} as JSON, keys sorted), and does what a test
asks with messages of its own types:

    {"type":"do","method":"play","args":["hex:0100ffff",16000],"kwargs":{}}
        calls call.<method>(*args, **kwargs) ("hex:" strings become bytes)
        and reports a result that is not None
    {"type":"raise","what":"boom"}      raises ValueError("boom")
    {"type":"sleep","seconds":1.5}      sleeps in the handler
    {"type":"state","names":["a"]}      reports heard, pending, unheard(names), done
    {"type":"thread","method":...}      like "do", from a thread of the bot's own
    {"type":"print","text":"x"}         print(x), and `echo child x` (neither may reach the protocol)
    {"type":"linger","seconds":30}      starts a (non-daemon) thread that sleeps

PROBE_CONFIG (JSON, or "none") replaces the class's config.
"""

import json
import os
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
import callstream_bot as cs  # noqa: E402

INSTANCES = []


class Probe(cs.Bot):
    """The test bot."""

    config = {"rate": 16000, "audio": False}
    if "PROBE_CONFIG" in os.environ:
        config = None if os.environ["PROBE_CONFIG"] == "none" else json.loads(os.environ["PROBE_CONFIG"])

    def __init__(self):
        INSTANCES.append(self)
        self.number = len(INSTANCES)

    def note(self, call, **what):
        call.log(json.dumps(what, sort_keys=True), level="debug")

    def on_start(self, call):
        self.note(
            call,
            h="start",
            instance=self.number,
            call_sid=call.call_sid,
            stream_sid=call.stream_sid,
            account_sid=call.account_sid,
            parameters=call.parameters,
            version=call.version,
            start=call.start,
            thread=threading.current_thread() is threading.main_thread(),
        )

    def on_utterance(self, call, utterance):
        if len(utterance.pcm) > 64:  # a long one: its size only
            self.note(call, h="utterance", bytes=len(utterance.pcm), rate=utterance.rate, duration_ms=utterance.duration_ms)
            return
        self.note(call, h="utterance", pcm=utterance.pcm.hex(), rate=utterance.rate, duration_ms=utterance.duration_ms, raw=utterance.raw)

    def on_audio(self, call, frame):
        self.note(call, h="audio", pcm=frame.pcm.hex(), rate=frame.rate, seq=frame.seq, dropped=frame.dropped, raw=frame.raw)

    def on_speech_started(self, call):
        self.note(call, h="speech_started")

    def on_barge_in(self, call, barge):
        self.note(call, h="barge_in", cleared=barge.cleared, heard_ms=barge.heard_ms, raw=barge.raw, unheard=call.unheard(barge.cleared))

    def on_dtmf(self, call, digit):
        self.note(call, h="dtmf", digit=digit)

    def on_mark(self, call, name, played):
        self.note(call, h="mark", name=name, played=played)

    def on_error(self, call, of, reason):
        self.note(call, h="error", of=of, reason=reason, done=call.done)

    def on_stop(self, call, reason):
        self.note(call, h="stop", reason=reason)

    def on_message(self, call, msg):
        kind = msg.get("type")
        if kind in ("do", "thread"):
            args = [bytes.fromhex(a[4:]) if isinstance(a, str) and a.startswith("hex:") else a for a in msg.get("args", [])]

            def do():
                result = getattr(call, msg["method"])(*args, **msg.get("kwargs", {}))
                if result is not None:
                    self.note(call, h="result", value=result)

            if kind == "do":
                do()
            else:
                threading.Thread(target=do).start()
        elif kind == "raise":
            raise ValueError(msg.get("what"))
        elif kind == "sleep":
            time.sleep(msg["seconds"])
            self.note(call, h="slept")
        elif kind == "linger":
            threading.Thread(target=time.sleep, args=(msg["seconds"],)).start()
            self.note(call, h="lingering")
        elif kind == "state":
            self.note(call, h="state", sids=[call.call_sid, call.stream_sid, call.account_sid], heard=call.heard, pending=call.pending, unheard=call.unheard(msg.get("names", [])), done=call.done)
        elif kind == "print":
            print(msg["text"])
            sys.stdout.flush()
            os.system(f"echo child {msg['text']}")  # a child process writing to its fd 1
        else:
            self.note(call, h="message", msg=msg)


class Quiet(cs.Bot):
    """Only the defaults: on_error's stderr line, nothing else."""


class Broken(cs.Bot):
    """A bot whose constructor fails."""

    config = {"rate": 8000}

    def __init__(self):
        raise RuntimeError("no model")


if __name__ == "__main__":
    which = {"probe": Probe, "quiet": Quiet, "broken": Broken}[os.environ.get("PROBE_BOT", "probe")]
    sys.exit(cs.run(which))
