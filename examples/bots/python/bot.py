#!/usr/bin/env python3
"""An offline voice bot for callstream's program bridge (docs/bridge.md).

It hears with pocketsphinx (a small JSGF grammar: open-vocabulary decoding of
phone audio is too unreliable to act on) and speaks with espeak-ng. It answers
the time, a canned weather report, transfers to a person on "agent" or DTMF 0,
and ends the call on "goodbye".

Two transports, the same messages:

    python3 bot.py                           # exec bridge: JSON lines on stdin/stdout
    python3 bot.py --serve-ws 127.0.0.1:8765 # ws bridge: one WebSocket per call

Environment: BOT_TRANSFER_TO (default +14155550100), BOT_VOICE (espeak-ng
voice, default en-us), BOT_TZ (IANA zone for the time answer, default local).

The call logic is the `Bot` class: one JSON message in, a list of JSON messages
out, no I/O of its own, so both transports and the test drive the same code.
"""

import argparse
import asyncio
import datetime
import io
import json
import os
import signal
import subprocess
import sys
import wave

from hearing import RECOGNISER_RATE, Recogniser, intent_of, resample  # noqa: F401  (resample: used by the tests)

PROTOCOL_VERSION = 2
GREETING = "Hello! Ask me the time or the weather, or say agent to talk to a person."
WEATHER = "It is sunny and mild today, with a light breeze. This is an offline forecast."
SORRY = "Sorry, I can answer about the time or the weather."
TRANSFERRING = "Connecting you to an agent."
GOODBYE = "Goodbye, thanks for calling."


def log(message):
    """Write a line to stderr: callstream logs it with the call SID."""
    print(message, file=sys.stderr, flush=True)


class Voice:
    """espeak-ng to 16-bit PCM in memory (its native 22050 Hz: callstream resamples)."""

    def __init__(self, voice=None):
        self.voice = voice or os.environ.get("BOT_VOICE", "en-us")

    def speak(self, text):
        """Return (rate, pcm bytes) for `text`."""
        wav = subprocess.run(
            ["espeak-ng", "-v", self.voice, "--stdout", text],
            check=True,
            capture_output=True,
            timeout=30,
        ).stdout
        with wave.open(io.BytesIO(wav)) as w:
            # espeak-ng writes a streaming WAV whose length fields are bogus:
            # read frames until the data runs out instead of trusting them.
            return w.getframerate(), w.readframes(1 << 30)


def time_answer(now):
    """(text for the log, text for the voice) telling the time `now`."""
    hour = now.hour % 12 or 12
    half = "AM" if now.hour < 12 else "PM"
    text = f"The time is {hour}:{now.minute:02d} {half}."
    # espeak-ng reads "12:05" as "twelve zero five": say it the way people do.
    if now.minute == 0:
        spoken = f"The time is {hour} o'clock {half}."
    elif now.minute < 10:
        spoken = f"The time is {hour} oh {now.minute} {half}."
    else:
        spoken = text
    return text, spoken


def local_now():
    """The current time in BOT_TZ (an IANA zone) or the machine's zone."""
    zone = os.environ.get("BOT_TZ")
    if zone:
        try:
            from zoneinfo import ZoneInfo

            return datetime.datetime.now(ZoneInfo(zone))
        except Exception as e:  # a bad zone name must not end the call
            log(f"BOT_TZ={zone!r} not usable ({e}); using local time")
    return datetime.datetime.now()


class Bot:
    """One call's logic: `handle(message) -> [messages]`, no I/O of its own.

    `done` becomes true when the call is over for the bot (stop received, or it
    asked callstream to hang up, transfer or end).
    """

    def __init__(self, recogniser, voice, transfer_to=None, clock=local_now):
        self.recogniser = recogniser
        self.voice = voice
        self.transfer_to = transfer_to or os.environ.get("BOT_TRANSFER_TO", "+14155550100")
        self.clock = clock
        self.call_sid = os.environ.get("CALLSTREAM_CALL_SID", "")
        self.done = False
        self.replies = 0
        # mark name -> reply text, for replies queued but not yet played out.
        self.pending = {}
        # What the caller actually heard, in order (barge-in removes replies).
        self.spoken = []
        # Set while "connecting you" plays: the transfer goes out when its mark returns.
        self.transfer_mark = None

    @staticmethod
    def config():
        """The optional first line: utterances at 16 kHz, no raw audio frames."""
        return {"type": "config", "rate": RECOGNISER_RATE, "audio": False}

    def handle(self, msg):
        """Handle one message from callstream; return the messages to send back."""
        if not isinstance(msg, dict) or self.done:
            return []
        kind = msg.get("type")
        try:
            if kind == "start":
                return self.on_start(msg)
            if kind == "utterance":
                return self.on_utterance(msg)
            if kind == "dtmf":
                return self.on_dtmf(msg)
            if kind == "mark":
                return self.on_mark(msg)
            if kind == "barge_in":
                return self.on_barge_in(msg)
            if kind == "error":
                # A line of ours was refused: worth a line in our own log.
                log(f"callstream refused our {msg.get('of')!r}: {msg.get('reason', '')}")
                return []
            if kind == "stop":
                self.done = True
                log(f"call {self.call_sid} stopped: {msg.get('reason', '')}")
                return []
        except Exception as e:  # one bad message never ends the call
            log(f"error handling {kind!r}: {e!r}")
            return [{"type": "log", "level": "error", "message": f"bot error on {kind}: {e}"}]
        # speech_started, audio and anything newer: nothing to do.
        return []

    def on_start(self, msg):
        self.call_sid = str(msg.get("call_sid") or self.call_sid)
        version = msg.get("version")
        out = []
        if not isinstance(version, int) or version < PROTOCOL_VERSION:
            out.append({"type": "log", "level": "warn", "message": f"bot speaks version {PROTOCOL_VERSION}, server says {version}"})
        return out + self.say(GREETING)

    def on_utterance(self, msg):
        pcm = _b64decode(msg.get("pcm"))
        rate = msg.get("rate")
        # A rate outside what telephony uses would make resampling absurd (a
        # rate of 1 asks for 16000 samples per sample): assume the default.
        if isinstance(rate, bool) or not isinstance(rate, int) or not 4000 <= rate <= 96000:
            rate = RECOGNISER_RATE
        if len(pcm) < 2:
            # Nothing decodable (bad base64, no samples): not a turn to answer.
            log("ignoring an utterance without audio")
            return []
        words = self.recogniser.recognise(pcm, rate)
        out = [{"type": "transcript", "text": words}]
        intent = intent_of(words)
        if intent == "time":
            text, spoken = time_answer(self.clock())
            return out + self.say(text, spoken)
        if intent == "weather":
            return out + self.say(WEATHER)
        if intent == "agent":
            return out + self.start_transfer()
        if intent == "bye":
            self.done = True
            return out + [{"type": "reply", "text": GOODBYE}, {"type": "end", "say": GOODBYE}]
        return out + self.say(SORRY)

    def on_dtmf(self, msg):
        if msg.get("digit") == "0":
            return self.start_transfer()
        return []

    def on_mark(self, msg):
        name = msg.get("name")
        text = self.pending.pop(name, None)
        if msg.get("outcome") == "played" and text is not None:
            self.spoken.append(text)
        if name is not None and name == self.transfer_mark:
            # Played or cleared by a barge-in, the caller asked for a person: go.
            self.done = True
            return [{"type": "transfer", "to": self.transfer_to}]
        return []

    def on_barge_in(self, msg):
        cleared = msg.get("cleared") if isinstance(msg.get("cleared"), list) else []
        lost = [self.pending.pop(n) for n in cleared if n in self.pending]
        if not lost:
            return []
        heard = msg.get("heard_ms", 0)
        note = f"barge-in after {heard} ms: not spoken: {' | '.join(lost)}"
        log(note)
        return [{"type": "log", "level": "info", "message": note}]

    def start_transfer(self):
        if self.transfer_mark is not None:
            return []  # already on the way
        out = self.say(TRANSFERRING)
        self.transfer_mark = out[-1]["name"]
        return out

    def say(self, text, spoken=None):
        """reply (for the log), play, and a mark that tells when it was played."""
        self.replies += 1
        name = f"reply-{self.replies}"
        rate, pcm = self.voice.speak(spoken or text)
        self.pending[name] = text
        return [
            {"type": "reply", "text": text},
            {"type": "play", "rate": rate, "pcm": _b64encode(pcm)},
            {"type": "mark", "name": name},
        ]


def _b64encode(data):
    import base64

    return base64.b64encode(data).decode("ascii")


def _b64decode(text):
    import base64
    import binascii

    if not isinstance(text, str):
        return b""
    try:
        return base64.b64decode(text, validate=False)
    except (binascii.Error, ValueError):
        return b""


def parse_line(line):
    """A JSON object from one line, or None for blank or garbage lines."""
    line = line.strip()
    if not line:
        return None
    try:
        msg = json.loads(line)
    except ValueError:
        log(f"ignoring a line that is not JSON: {line[:80]!r}")
        return None
    return msg if isinstance(msg, dict) else None


def encode(msg):
    """One message as one line: json.dumps never emits a raw newline."""
    return json.dumps(msg, separators=(",", ":")) + "\n"


def run_exec():
    """The exec transport: messages in on stdin, out on stdout, one a line."""
    # callstream sends SIGTERM after stop's grace period: leave quietly.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    out = sys.stdout

    def send(msgs):
        for m in msgs:
            out.write(encode(m))
        out.flush()

    send([Bot.config()])
    bot = Bot(Recogniser(), Voice())
    stdin = sys.stdin.buffer
    while True:
        line = stdin.readline()
        if not line:  # EOF: callstream is gone
            return 0
        msg = parse_line(line.decode("utf-8", errors="replace"))
        if msg is None:
            continue
        send(bot.handle(msg))
        if bot.done:
            return 0


async def serve_ws(host, port, ready=None):
    """The ws transport: one Bot per WebSocket, the same messages as text frames."""
    from websockets.asyncio.server import serve

    async def call(ws):
        await ws.send(encode(Bot.config()).rstrip("\n"))
        # Loading the model and decoding take a moment: keep them off the event
        # loop so other calls and the WebSocket's pings stay responsive.
        bot = Bot(await asyncio.to_thread(Recogniser), Voice())
        async for frame in ws:
            if not isinstance(frame, str):
                continue  # the bridge speaks text frames only
            msg = parse_line(frame)
            if msg is None:
                continue
            for m in await asyncio.to_thread(bot.handle, msg):
                await ws.send(encode(m).rstrip("\n"))
            if bot.done:
                break
        await ws.close()

    async with serve(call, host, port, max_size=16 * 1024 * 1024) as server:
        if ready is not None:
            ready(server)
        log(f"bot listening on ws://{host}:{port}/")
        await server.serve_forever()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--serve-ws", metavar="HOST:PORT", help="serve the ws bridge instead of stdin/stdout")
    args = parser.parse_args(argv)
    if args.serve_ws:
        host, _, port = args.serve_ws.rpartition(":")
        try:
            asyncio.run(serve_ws(host.strip("[]") or "127.0.0.1", int(port)))
        except KeyboardInterrupt:
            pass
        return 0
    return run_exec()


if __name__ == "__main__":
    sys.exit(main())
