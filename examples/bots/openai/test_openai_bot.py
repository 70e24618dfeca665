#!/usr/bin/env python3
"""Offline test of the OpenAI bot (bot.py) against the local fake (fake_openai.py).

It cannot reach OpenAI: every request of the bot goes to fake_openai.py on
127.0.0.1, which answers with OpenAI's documented shapes. The test plays
callstream's part of the exec bridge (bot.py a subprocess, JSON lines on its
pipes) and the caller's, and checks what the bot writes and what it asked the
fake, including that the official `openai` package itself, with strict
response validation, parses every kind of answer the fake gives.

    python3 examples/bots/openai/test_openai_bot.py   # prints "N passed, M failed"

Needs the openai package (setup.sh installs it); uses espeak-ng for the fake's
voice when installed (a tone otherwise). Exit code 0 when every test passed.
"""

import base64
import io
import json
import os
import random
import subprocess
import sys
import threading
import time
import traceback
import urllib.error
import urllib.request
import wave

HERE = os.path.dirname(os.path.abspath(__file__))
BOT = os.path.join(HERE, "bot.py")
sys.path.insert(0, HERE)
from fake_openai import FakeOpenAI  # noqa: E402

KEY = "sk-test-" + "0123456789abcdef"
# Only for an answer that never comes (then the test fails); never a timing
# assertion. Ordering is proved with the fake's recorded timestamps.
WAIT = 60
TRANSFER_TO = "+15550001111"
GREETING = "Hello! How can I help you today?"
START = {
    "type": "start",
    "version": 2,
    "call_sid": "CA5f6c1e0e8a7b4c3d2e1f0a9b8c7d6e5f",
    "stream_sid": "MZ0a1b2c3d4e5f60718293a4b5c6d7e8f9",
    "account_sid": "AC00112233445566778899aabbccddeeff",
    "parameters": {"call_sid": "CA5f6c1e0e8a7b4c3d2e1f0a9b8c7d6e5f", "from": "+15551230000", "to": "+15559870000",
                   "direction": "inbound", "caller_name": "", "forwarded_from": ""},
}
TIME_1 = "It is three o'clock."
TIME_2 = "Is there anything else?"
STORY = ["Once upon a time there was a phone.", "It rang all day long.", "Then it rested."]


def rules():
    """The fake model's answers for these tests."""
    return [
        {"match": "time", "say": [TIME_1, TIME_2], "hold": "time"},
        {"match": "story", "say": STORY},
        {"match": "slow", "say": ["First part.", "Second part that nobody hears."], "hold": "slow"},
        {"match": "goodbye", "say": ["Goodbye, thanks for calling."], "tool": {"name": "end_call", "arguments": {"farewell": "Goodbye!"}}},
        {"match": "bye now", "say": [], "tool": {"name": "end_call", "arguments": {"farewell": "Bye now, take care."}}},
        {"match": "agent", "say": ["Let me get someone for you."], "tool": {"name": "transfer_call", "arguments": {"announcement": "Connecting you now."}}},
        {"match": "", "say": ["You said {heard}."]},
    ]


def caller_audio(text, seconds=0.6):
    """Distinct 16 kHz PCM for each text (seeded noise): the fake's table maps it back."""
    rnd = random.Random(text)
    return b"".join(rnd.randint(-3000, 3000).to_bytes(2, "little", signed=True) for _ in range(int(16000 * seconds)))


class Bot:
    """bot.py as callstream's exec bridge runs it: one process, JSON lines."""

    def __init__(self, fake, env=None, autoplay=True, key=KEY, base_url=None):
        self.fake = fake
        self.autoplay = autoplay  # answer each mark "played" at once, as a caller who listens
        full = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "BOT_", "CALLSTREAM_"))}
        full.update(
            CALLSTREAM_CALL_SID=START["call_sid"],
            CALLSTREAM_STREAM_SID=START["stream_sid"],
            CALLSTREAM_ACCOUNT_SID=START["account_sid"],
            CALLSTREAM_PARAM_FROM="+15551230000",
            OPENAI_BASE_URL=base_url or fake.base_url,
        )
        if key is not None:
            full["OPENAI_API_KEY"] = key
        full.update(env or {})
        self.proc = subprocess.Popen(
            [sys.executable, BOT], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=full, cwd="/"
        )
        self.out = []  # (time.monotonic(), message) in the order the bot wrote them
        self.err = []
        self.cond = threading.Condition()
        threading.Thread(target=self._read_out, daemon=True).start()
        threading.Thread(target=self._read_err, daemon=True).start()

    def _read_out(self):
        for line in self.proc.stdout:
            msg = json.loads(line)
            with self.cond:
                self.out.append((time.monotonic(), msg))
                self.cond.notify_all()
            if self.autoplay and msg.get("type") == "mark":
                self.send({"type": "mark", "name": msg["name"], "outcome": "played"})
        with self.cond:
            self.cond.notify_all()

    def _read_err(self):
        for line in self.proc.stderr:
            with self.cond:
                self.err.append(line.decode(errors="replace").rstrip("\n"))
                self.cond.notify_all()

    def send(self, msg):
        try:
            self.proc.stdin.write((json.dumps(msg) + "\n").encode())
            self.proc.stdin.flush()
        except (BrokenPipeError, ValueError):
            pass

    def start(self):
        self.send(START)

    def utter(self, text):
        """The caller says `text`: an utterance whose audio the fake transcribes as `text`."""
        pcm = caller_audio(text)
        self.fake.hear(pcm, text)
        self.send({"type": "utterance", "rate": 16000, "pcm": base64.b64encode(pcm).decode(), "duration_ms": len(pcm) // 32})
        return pcm

    def wait(self, pred, what, start=0):
        """The index and message of the first message from `start` on that satisfies `pred`."""
        deadline = time.monotonic() + WAIT
        with self.cond:
            while True:
                for i in range(start, len(self.out)):
                    if pred(self.out[i][1]):
                        return i, self.out[i][1]
                left = deadline - time.monotonic()
                if left <= 0 or (self.proc.poll() is not None and self.proc.stdout.closed):
                    raise AssertionError(f"no {what} from the bot; it wrote {self.summary()}; stderr: {self.err[-8:]}")
                self.cond.wait(min(left, 0.5))

    def wait_err(self, needle):
        deadline = time.monotonic() + WAIT
        with self.cond:
            while not any(needle in line for line in self.err):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no stderr line with {needle!r}: {self.err[-8:]}")
                self.cond.wait(min(left, 0.5))

    def said(self, text, start=0):
        """Wait for the bot to say `text` whole: (index of its mark, its reply, plays, mark)."""
        i, _ = self.wait(lambda m: m.get("type") == "reply" and m.get("text") == text, f"reply {text!r}", start)
        j, mark = self.wait(lambda m: m.get("type") == "mark", f"mark after {text!r}", i)
        plays = [m for _, m in self.out[i:j] if m.get("type") == "play"]
        return j, plays, mark

    def messages(self, kind):
        with self.cond:
            return [m for _, m in self.out if m.get("type") == kind]

    def summary(self):
        with self.cond:
            return [m["type"] + (f":{m.get('text') or m.get('name') or m.get('message', '')}" if m["type"] != "play" else "") for _, m in self.out]

    def stop(self):
        """`stop`, then end of input, as callstream does; the bot's exit status."""
        self.send({"type": "stop", "reason": "test over"})
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        try:
            return self.proc.wait(WAIT)
        finally:
            self.kill()

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        for f in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            try:
                f.close()
            except OSError:
                pass


def pcm_of(plays):
    return b"".join(base64.b64decode(p["pcm"]) for p in plays)


def check_audio(fake, bot, text, plays):
    """The plays are the fake's speech for `text`, whole and in order, 24 kHz, whole samples."""
    assert plays, f"no play for {text!r}"
    for p in plays:
        assert p["rate"] == 24000, p["rate"]
        assert len(base64.b64decode(p["pcm"])) % 2 == 0, "a play of an odd number of bytes"
    req = [r for r in fake.of("/v1/audio/speech") if r.get("input") == text]
    assert req, f"no speech request for {text!r}"
    assert pcm_of(plays) == req[-1]["pcm"], f"the plays for {text!r} are not the fake's speech ({len(pcm_of(plays))} vs {len(req[-1]['pcm'])} bytes)"


def chat_requests(fake):
    return [r for r in fake.of("/v1/chat/completions") if r.get("status") == 200]


def history(record):
    return [(m["role"], m.get("content")) for m in record["json"]["messages"] if m["role"] != "system"]


# -- the tests ---------------------------------------------------------------


def test_greeting_is_spoken_at_24khz_with_a_mark(fake):
    bot = Bot(fake, env={"BOT_VOICE": "coral", "BOT_TTS_MODEL": "tts-test"})
    try:
        _, first = bot.wait(lambda m: True, "first line")
        assert first == {"type": "config", "rate": 16000, "audio": False}, first
        bot.start()
        _, plays, mark = bot.said(GREETING)
        check_audio(fake, bot, GREETING, plays)
        assert mark["name"], mark
        req = fake.of("/v1/audio/speech")[-1]["json"]
        assert req == {"model": "tts-test", "voice": "coral", "input": GREETING, "response_format": "pcm"}, req
        # The fake sends its speech in odd-sized chunks: the bot carried bytes over.
        assert len(fake.of("/v1/audio/speech")[-1]["pcm"]) > 4801
        assert bot.stop() == 0
    finally:
        bot.kill()


def test_utterance_is_sent_as_a_valid_wav_and_answered(fake):
    bot = Bot(fake)
    try:
        bot.start()
        bot.said(GREETING)
        pcm = bot.utter("tell me a story")
        _, t = bot.wait(lambda m: m.get("type") == "transcript", "transcript")
        assert t["text"] == "tell me a story", t
        rec = fake.of("/v1/audio/transcriptions")[-1]
        assert rec["status"] == 200, rec
        assert rec["fields"]["model"] == "gpt-4o-mini-transcribe", rec["fields"]
        assert rec["file"]["filename"] == "turn.wav" and rec["file"]["content_type"] == "audio/wav", rec["file"]
        with wave.open(io.BytesIO(rec["file"]["data"])) as w:
            assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (1, 2, 16000)
            assert w.readframes(w.getnframes()) == pcm, "the WAV does not hold the utterance"
        assert rec["file"]["data"][:4] == b"RIFF" and rec["file"]["data"][8:12] == b"WAVE"
        for sentence in STORY:
            _, plays, _ = bot.said(sentence)
            check_audio(fake, bot, sentence, plays)
        req = chat_requests(fake)[-1]["json"]
        assert req["model"] == "gpt-4o-mini" and req["stream"] is True, req
        assert history(chat_requests(fake)[-1]) == [("assistant", GREETING), ("user", "tell me a story")]
        assert [t["function"]["name"] for t in req["tools"]] == ["end_call"], req["tools"]
        assert bot.stop() == 0
    finally:
        bot.kill()


def test_first_sentence_plays_before_the_chat_stream_ends(fake):
    bot = Bot(fake)
    try:
        bot.start()
        bot.said(GREETING)
        bot.utter("what time is it")
        i, _ = bot.wait(lambda m: m.get("type") == "reply" and m.get("text") == TIME_1, "first sentence")
        k, _ = bot.wait(lambda m: m.get("type") == "play", "first sentence's play", i)
        t_play = bot.out[k][0]
        chat = chat_requests(fake)[-1]
        # The fake holds the stream inside the second sentence until released:
        # the first sentence was spoken while the stream was still open.
        assert "held_at" in chat and "released_at" not in chat, chat.keys()
        speech1 = [r for r in fake.of("/v1/audio/speech") if r.get("input") == TIME_1][0]
        fake.release("time")
        _, plays2, _ = bot.said(TIME_2, i)
        check_audio(fake, bot, TIME_2, plays2)
        assert chat["hold_timed_out"] is False
        assert chat["held_at"] < speech1["t"] < chat["released_at"] < chat["t_end"], "speech did not overlap the chat stream"
        assert t_play < chat["released_at"] < chat["t_end"], "the first play did not go out before the stream finished"
        speech2 = [r for r in fake.of("/v1/audio/speech") if r.get("input") == TIME_2][0]
        assert speech2["t"] > chat["released_at"]
        _, plays1, _ = bot.said(TIME_1)
        check_audio(fake, bot, TIME_1, plays1)
        assert bot.stop() == 0
    finally:
        fake.release("time")
        bot.kill()


def test_barge_in_keeps_unheard_sentences_out_of_the_history(fake):
    bot = Bot(fake, autoplay=False)
    try:
        bot.start()
        _, _, mark = bot.said(GREETING)
        bot.send({"type": "mark", "name": mark["name"], "outcome": "played"})
        bot.utter("tell me a story")
        names = [bot.said(s)[2]["name"] for s in STORY]
        # The caller hears the first sentence, then talks over the second.
        bot.send({"type": "mark", "name": names[0], "outcome": "played"})
        bot.send({"type": "speech_started"})
        bot.send({"type": "barge_in", "heard_ms": 640, "cleared": names[1:]})
        for n in names[1:]:
            bot.send({"type": "mark", "name": n, "outcome": "cleared"})
        bot.utter("what is your name")
        bot.said("You said what is your name.")
        hist = history(chat_requests(fake)[-1])
        assert hist == [
            ("assistant", GREETING),
            ("user", "tell me a story"),
            ("assistant", STORY[0]),
            ("user", "what is your name"),
        ], hist
        assert bot.stop() == 0
    finally:
        bot.kill()


def test_barge_in_while_the_reply_is_being_written_stops_it(fake):
    bot = Bot(fake, autoplay=False)
    try:
        bot.start()
        _, _, mark = bot.said(GREETING)
        bot.send({"type": "mark", "name": mark["name"], "outcome": "played"})
        bot.utter("say something slow")
        _, _, mark1 = bot.said("First part.")
        bot.send({"type": "speech_started"})
        bot.send({"type": "barge_in", "heard_ms": 300, "cleared": [mark1["name"]]})
        bot.send({"type": "mark", "name": mark1["name"], "outcome": "cleared"})
        bot.wait_err("reply interrupted (barge-in)")
        fake.release("slow")
        assert fake.wait_for(lambda r: r["path"] == "/v1/chat/completions" and r.get("t_end") and r.get("released_at")), "the stream never ended"
        bot.utter("hello again")
        bot.said("You said hello again.")
        spoken = [m["text"] for m in bot.messages("reply")]
        assert "Second part that nobody hears." not in spoken, spoken
        assert not [r for r in fake.of("/v1/audio/speech") if "nobody" in r.get("input", "")], "the rest was synthesised"
        hist = history(chat_requests(fake)[-1])
        assert hist == [("assistant", GREETING), ("user", "say something slow"), ("user", "hello again")], hist
        assert bot.stop() == 0
    finally:
        fake.release("slow")
        bot.kill()


def test_goodbye_ends_the_call_through_a_tool_call(fake):
    bot = Bot(fake, autoplay=False)
    try:
        bot.start()
        _, _, mark = bot.said(GREETING)
        bot.send({"type": "mark", "name": mark["name"], "outcome": "played"})
        bot.utter("goodbye")
        j, plays, mark = bot.said("Goodbye, thanks for calling.")
        check_audio(fake, bot, "Goodbye, thanks for calling.", plays)
        # The hangup waits for the goodbye to be heard: the bot says so, and
        # has not hung up before saying it.
        k, _ = bot.wait(lambda m: m.get("type") == "log" and m["message"].startswith("end: waiting for 1"), "waiting log", j)
        assert not [m for _, m in bot.out[: k + 1] if m["type"] in ("hangup", "end")], bot.summary()
        bot.send({"type": "mark", "name": mark["name"], "outcome": "played"})
        _, end = bot.wait(lambda m: m.get("type") in ("hangup", "end", "transfer"), "hangup", k)
        assert end == {"type": "hangup"}, end
        chat = chat_requests(fake)[-1]
        assert chat["tool_call"]["name"] == "end_call", chat["tool_call"]
        tool = [t for t in chat["json"]["tools"] if t["function"]["name"] == "end_call"][0]
        assert tool["type"] == "function" and tool["function"]["parameters"]["type"] == "object", tool
        assert bot.stop() == 0
    finally:
        bot.kill()


def test_a_farewell_only_in_the_tool_call_is_spoken_then_hangup(fake):
    bot = Bot(fake)
    try:
        bot.start()
        bot.said(GREETING)
        bot.utter("ok bye now")
        j, plays, _ = bot.said("Bye now, take care.")
        check_audio(fake, bot, "Bye now, take care.", plays)
        _, end = bot.wait(lambda m: m.get("type") in ("hangup", "end"), "hangup", j)
        assert end == {"type": "hangup"}, end
        assert bot.stop() == 0
    finally:
        bot.kill()


def test_goodbye_when_speech_fails_ends_with_twilios_say(fake):
    bot = Bot(fake)
    try:
        bot.start()
        bot.said(GREETING)
        fake.fail("/v1/audio/speech", 500, times=100)
        bot.utter("bye now")
        _, end = bot.wait(lambda m: m.get("type") in ("hangup", "end"), "end")
        assert end == {"type": "end", "say": "Bye now, take care."}, end
        assert bot.stop() == 0
    finally:
        fake.fail("/v1/audio/speech", 500, times=0)
        bot.kill()


def test_transfer_through_a_tool_call(fake):
    bot = Bot(fake, env={"BOT_TRANSFER_TO": TRANSFER_TO})
    try:
        bot.start()
        bot.said(GREETING)
        bot.utter("an agent please")
        j, _, _ = bot.said("Let me get someone for you.")
        _, t = bot.wait(lambda m: m.get("type") in ("transfer", "hangup", "end"), "transfer", j)
        assert t == {"type": "transfer", "to": TRANSFER_TO}, t
        names = [x["function"]["name"] for x in chat_requests(fake)[-1]["json"]["tools"]]
        assert names == ["end_call", "transfer_call"], names
        assert bot.stop() == 0
    finally:
        bot.kill()


def test_no_transfer_without_a_number(fake):
    bot = Bot(fake)
    try:
        bot.start()
        bot.said(GREETING)
        bot.utter("an agent please")
        j, _, _ = bot.said("Let me get someone for you.")
        chat = chat_requests(fake)[-1]
        assert chat.get("tool_not_offered") == "transfer_call", chat.get("tool_not_offered")
        bot.utter("tell me a story")
        bot.said(STORY[0], j)
        assert not bot.messages("transfer")
        assert bot.stop() == 0
    finally:
        bot.kill()


def test_a_transfer_number_callstream_would_refuse_turns_transfers_off(fake):
    bot = Bot(fake, env={"BOT_TRANSFER_TO": "12"})
    try:
        bot.start()
        bot.said(GREETING)
        bot.utter("an agent please")
        bot.said("Let me get someone for you.")
        names = [x["function"]["name"] for x in chat_requests(fake)[-1]["json"]["tools"]]
        assert names == ["end_call"], names
        assert any("BOT_TRANSFER_TO='12'" in line for line in bot.err), bot.err
        assert not bot.messages("transfer")
        assert bot.stop() == 0
    finally:
        bot.kill()


def test_chat_500_apologises_and_the_call_goes_on(fake):
    bot = Bot(fake)
    try:
        bot.start()
        bot.said(GREETING)
        before = len(fake.of("/v1/chat/completions"))
        fake.fail("/v1/chat/completions", 500, times=2)  # the first try and the bot's one retry
        bot.utter("tell me a story")
        j, plays, _ = bot.said("Sorry, I am having trouble right now. Please say that again in a moment.")
        check_audio(fake, bot, "Sorry, I am having trouble right now. Please say that again in a moment.", plays)
        logs = [m for m in bot.messages("log") if m["level"] == "error"]
        assert logs and "InternalServerError" in logs[0]["message"], logs
        assert len(fake.of("/v1/chat/completions")) - before == 2, "expected one retry"
        bot.utter("tell me a story")
        bot.said(STORY[0], j)
        assert bot.proc.poll() is None
        assert bot.stop() == 0
    finally:
        fake.fail("/v1/chat/completions", 500, times=0)
        bot.kill()


def test_transcription_500_apologises_and_the_call_goes_on(fake):
    bot = Bot(fake)
    try:
        bot.start()
        bot.said(GREETING)
        fake.fail("/v1/audio/transcriptions", 503, times=2)
        bot.utter("tell me a story")
        j, _, _ = bot.said("Sorry, I am having trouble right now. Please say that again in a moment.")
        bot.utter("tell me a story")
        bot.said(STORY[0], j)
        assert bot.stop() == 0
    finally:
        fake.fail("/v1/audio/transcriptions", 500, times=0)
        bot.kill()


def test_speech_errors_never_end_the_call(fake):
    bot = Bot(fake)
    try:
        fake.fail("/v1/audio/speech", 500, times=4)  # the greeting and the apology, each tried twice
        bot.start()
        bot.wait_err("apology too")
        assert not bot.messages("play")
        bot.utter("tell me a story")
        bot.said(STORY[0])
        assert bot.stop() == 0
    finally:
        fake.fail("/v1/audio/speech", 500, times=0)
        bot.kill()


def test_network_errors_never_end_the_call(fake):
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    bot = Bot(fake, base_url=f"http://127.0.0.1:{port}/v1")
    try:
        bot.start()
        bot.utter("tell me a story")
        _, log = bot.wait(lambda m: m.get("type") == "log" and "transcription" in m.get("message", ""), "error log")
        assert log["level"] == "error" and "APIConnectionError" in log["message"], log
        assert bot.proc.poll() is None, "the bot died"
        assert bot.stop() == 0
    finally:
        bot.kill()


def test_a_wrong_key_is_logged_and_the_call_goes_on(fake):
    bot = Bot(fake, key="sk-wrong")
    try:
        bot.start()
        bot.utter("tell me a story")
        _, log = bot.wait(lambda m: m.get("type") == "log" and "transcription" in m.get("message", ""), "error log")
        assert "AuthenticationError" in log["message"], log
        assert bot.proc.poll() is None
        assert bot.stop() == 0
    finally:
        bot.kill()


def test_silence_is_not_answered(fake):
    bot = Bot(fake)
    try:
        bot.start()
        bot.said(GREETING)
        before = len(fake.of("/v1/chat/completions"))
        bot.utter("")
        bot.wait_err("heard nothing")
        assert len(fake.of("/v1/chat/completions")) == before
        assert not bot.messages("transcript")
        assert bot.stop() == 0
    finally:
        bot.kill()


def test_missing_key_is_a_clear_error(fake):
    for key in (None, ""):
        bot = Bot(fake, key=key)
        try:
            rc = bot.proc.wait(WAIT)
            deadline = time.monotonic() + WAIT
            while not bot.err and time.monotonic() < deadline:
                time.sleep(0.05)
            assert rc == 2, rc
            assert any("OPENAI_API_KEY is not set" in line for line in bot.err), bot.err
            assert not bot.out, f"wrote {bot.summary()} without a key"
        finally:
            bot.kill()


def test_sentences_are_cut_where_they_end(fake):
    import bot as botlib

    done, rest = botlib.split_sentences("It costs 3.50 dollars. Dr. Smith said \"hi!\" Then **bold** text?\nA list")
    assert done == ["It costs 3.50 dollars.", "Dr. Smith said \"hi!\"", "Then bold text?"], done
    assert rest == "A list", rest
    # A full stop at the end of what arrived so far may be "3." of "3.50": wait for more.
    assert botlib.split_sentences("It costs 3.") == ([], "It costs 3.")
    assert botlib.split_sentences("Yes. ") == (["Yes."], "")


def test_the_openai_package_accepts_the_fake_strictly(fake):
    import openai
    from openai.types.chat import ChatCompletionChunk

    client = openai.OpenAI(api_key=KEY, base_url=fake.base_url, _strict_response_validation=True, max_retries=0)
    pcm = caller_audio("what time is it")
    fake.hear(pcm, "what time is it")
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(pcm)
    for model in ("gpt-4o-mini-transcribe", "whisper-1"):
        t = client.audio.transcriptions.create(model=model, file=("turn.wav", buf.getvalue(), "audio/wav"))
        assert t.text == "what time is it", t
    t = client.audio.transcriptions.create(model="whisper-1", file=("turn.wav", buf.getvalue(), "audio/wav"), response_format="verbose_json")
    assert t.text == "what time is it" and t.duration > 0, t
    tools = [{"type": "function", "function": {"name": "end_call", "parameters": {"type": "object", "properties": {"farewell": {"type": "string"}}}}}]
    chunks = list(client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "goodbye"}],
                                                 tools=tools, stream=True, stream_options={"include_usage": True}))
    assert all(isinstance(c, ChatCompletionChunk) for c in chunks)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    args = "".join(tc.function.arguments or "" for c in chunks if c.choices for tc in c.choices[0].delta.tool_calls or [])
    assert text == "Goodbye, thanks for calling." and json.loads(args) == {"farewell": "Goodbye!"}, (text, args)
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "tool_calls"
    assert chunks[-1].usage is not None and chunks[-1].choices == []
    # Each chunk also validates as the package's type, field by field.
    for obj in fake.of("/v1/chat/completions")[-1]["chunks"]:
        ChatCompletionChunk.model_validate(obj, strict=False)
    done = client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "goodbye"}], tools=tools)
    assert done.choices[0].message.tool_calls[0].function.name == "end_call", done
    with client.audio.speech.with_streaming_response.create(model="gpt-4o-mini-tts", voice="alloy", input="Hi there.", response_format="pcm") as r:
        audio = b"".join(r.iter_bytes())
    assert audio == fake.of("/v1/audio/speech")[-1]["pcm"] and len(audio) % 2 == 0
    wav = client.audio.speech.create(model="gpt-4o-mini-tts", voice="alloy", input="Hi there.", response_format="wav").read()
    with wave.open(io.BytesIO(wav)) as w:
        assert w.getframerate() == 24000 and w.readframes(w.getnframes()) == audio
    # Errors come back in OpenAI's shape, as the package's exception types.
    expect = [
        (lambda c: c.chat.completions.create(model="gpt-4o-mini", messages=[]), openai.BadRequestError, "messages"),
        (lambda c: c.audio.speech.create(model="gpt-4o-mini-tts", voice="alloy", input="x", response_format="pcm", speed=9), openai.BadRequestError, "speed"),
        (lambda c: c.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "tool", "content": "x", "tool_call_id": "call_1"}]), openai.BadRequestError, "messages.[0].role"),
    ]
    for call, kind, param in expect:
        try:
            call(client)
            raise AssertionError(f"no {kind.__name__}")
        except kind as e:
            assert e.body["param"] == param and e.body["type"] == "invalid_request_error", e.body
    wrong = openai.OpenAI(api_key="sk-wrong", base_url=fake.base_url, max_retries=0)
    try:
        wrong.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
        raise AssertionError("a wrong key was accepted")
    except openai.AuthenticationError as e:
        assert e.status_code == 401 and e.code == "invalid_api_key", e.body


def test_the_fake_refuses_malformed_requests(fake):
    def post(path, body, ctype="application/json", key=KEY):
        req = urllib.request.Request(fake.base_url.rsplit("/v1", 1)[0] + path, data=body, method="POST")
        req.add_header("Content-Type", ctype)
        if key:
            req.add_header("Authorization", f"Bearer {key}")
        try:
            with urllib.request.urlopen(req, timeout=WAIT) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    cases = [
        ("/v1/chat/completions", b'{"model":"m","messages":[{"role":"user","content":"hi"}]}', "application/json", None, 401),
        ("/v1/chat/completions", b"{not json", "application/json", KEY, 400),
        ("/v1/chat/completions", b'{"messages":[{"role":"user","content":"hi"}]}', "application/json", KEY, 400),
        ("/v1/chat/completions", b'{"model":"m","messages":[{"role":"robot","content":"hi"}]}', "application/json", KEY, 400),
        ("/v1/chat/completions", b'{"model":"m","messages":[{"role":"user","content":"hi"}],"tools":[{"type":"function"}]}', "application/json", KEY, 400),
        ("/v1/audio/speech", b'{"model":"m","voice":"alloy"}', "application/json", KEY, 400),
        ("/v1/audio/speech", b'{"model":"m","input":"hi","voice":"alloy","response_format":"ogg"}', "application/json", KEY, 400),
        ("/v1/audio/transcriptions", b'{"model":"m"}', "application/json", KEY, 400),
        ("/v1/audio/transcriptions", b'--b\r\nContent-Disposition: form-data; name="model"\r\n\r\nwhisper-1\r\n--b--\r\n', "multipart/form-data; boundary=b", KEY, 400),
        ("/v1/audio/transcriptions", b'--b\r\nContent-Disposition: form-data; name="model"\r\n\r\nwhisper-1\r\n--b\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\nContent-Type: audio/wav\r\n\r\nnot a wav\r\n--b--\r\n', "multipart/form-data; boundary=b", KEY, 400),
        ("/v1/nothing", b"{}", "application/json", KEY, 404),
    ]
    for path, body, ctype, key, status in cases:
        got, data = post(path, body, ctype, key)
        assert got == status, (path, body[:60], got, data[:200])
        err = json.loads(data)["error"]
        assert set(err) == {"message", "type", "param", "code"} and err["message"], err


TESTS = [v for k, v in list(globals().items()) if k.startswith("test_")]


def main():
    only = sys.argv[1:]
    passed = failed = 0
    for test in TESTS:
        if only and not any(o in test.__name__ for o in only):
            continue
        fake = FakeOpenAI(key=KEY, rules=rules()).start()
        t0 = time.monotonic()
        try:
            test(fake)
            passed += 1
            print(f"ok   {test.__name__} ({time.monotonic() - t0:.1f} s)", flush=True)
        except Exception:
            failed += 1
            print(f"FAIL {test.__name__}", flush=True)
            traceback.print_exc()
        finally:
            fake.stop()
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
