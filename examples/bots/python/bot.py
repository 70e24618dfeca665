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

The protocol is the callstream_bot package's (sdk/python): this file is the
call logic only, one handler per event. Run from a checkout, it uses the
package from the repository's sdk/python when it is not installed.
"""

import datetime
import io
import os
import subprocess
import sys
import wave

try:
    import callstream_bot as cs
except ImportError:  # not installed: the copy in this checkout
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "sdk", "python"))
    import callstream_bot as cs

from hearing import RECOGNISER_RATE, Recogniser, intent_of, resample  # noqa: F401  (resample: used by the tests)

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


class OfflineBot(cs.Bot):
    """An offline voice bot: the time, the weather, an agent, goodbye."""

    # Utterances at the recogniser's rate, no raw audio frames.
    config = {"rate": RECOGNISER_RATE, "audio": False}

    def __init__(self, recogniser=None, voice=None, transfer_to=None, clock=local_now):
        self.recogniser = recogniser or Recogniser()
        self.voice = voice or Voice()
        self.transfer_to = transfer_to or os.environ.get("BOT_TRANSFER_TO", "+14155550100")
        self.clock = clock
        # Set while "connecting you" plays: the transfer goes out when its mark returns.
        self.transfer_mark = None

    def on_start(self, call):
        self.say(call, GREETING)

    def on_utterance(self, call, utterance):
        rate = utterance.rate
        # A rate outside what telephony uses would make resampling absurd (a
        # rate of 1 asks for 16000 samples per sample): assume the default.
        if not 4000 <= rate <= 96000:
            rate = RECOGNISER_RATE
        if len(utterance.pcm) < 2:
            log("ignoring an utterance without audio")
            return
        words = self.recogniser.recognise(utterance.pcm, rate)
        call.transcript(words)
        intent = intent_of(words)
        if intent == "time":
            text, spoken = time_answer(self.clock())
            self.say(call, text, spoken)
        elif intent == "weather":
            self.say(call, WEATHER)
        elif intent == "agent":
            self.start_transfer(call)
        elif intent == "bye":
            call.reply(GOODBYE)
            call.end(say=GOODBYE)
        else:
            self.say(call, SORRY)

    def on_dtmf(self, call, digit):
        if digit == "0":
            self.start_transfer(call)

    def on_mark(self, call, name, played):
        if name == self.transfer_mark:
            # Played or cleared by a barge-in, the caller asked for a person: go.
            call.transfer(self.transfer_to)

    def on_barge_in(self, call, barge):
        lost = call.unheard(barge.cleared)
        if lost:
            note = f"barge-in after {barge.heard_ms} ms: not spoken: {' | '.join(lost)}"
            log(note)
            call.log(note)

    def on_stop(self, call, reason):
        log(f"call {call.call_sid} stopped: {reason}")

    def start_transfer(self, call):
        if self.transfer_mark is None:  # else already on the way
            self.transfer_mark = self.say(call, TRANSFERRING)

    def say(self, call, text, spoken=None):
        """reply (for the log), play, and a mark that tells when it was played."""
        rate, pcm = self.voice.speak(spoken or text)
        return call.say(pcm, rate, text=text)


def main(argv=None):
    return cs.run(OfflineBot, argv)


if __name__ == "__main__":
    sys.exit(main())
