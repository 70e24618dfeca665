#!/usr/bin/env python3
"""A voice bot on OpenAI's API for callstream's program bridge (docs/bridge.md).

Each caller turn is transcribed (speech to text), answered by a chat model
whose reply is streamed, and every complete sentence of the reply is spoken
(text to speech, 24 kHz PCM streamed straight into `play`) while the rest is
still being written. The model can end the call and transfer it to a person
with function calling. What the caller did not hear (a barge-in cut it) is left
out of the conversation the model sees next.

    python3 bot.py                           # exec bridge: JSON lines on stdin/stdout
    python3 bot.py --serve-ws 127.0.0.1:8765 # ws bridge: one WebSocket per call

Environment (see README.md):

    OPENAI_API_KEY      required
    OPENAI_BASE_URL     another OpenAI-compatible server (read by the openai package)
    BOT_STT_MODEL       default gpt-4o-mini-transcribe
    BOT_CHAT_MODEL      default gpt-4o-mini
    BOT_TTS_MODEL       default gpt-4o-mini-tts
    BOT_VOICE           default alloy
    BOT_SYSTEM_PROMPT   the model's instructions (a phone-friendly default)
    BOT_GREETING        the first words of each call
    BOT_TRANSFER_TO     E.164 number or sip: URI; unset, the model cannot transfer
    BOT_LANGUAGE        ISO-639-1 code for the transcription (optional, e.g. en)

Written on the callstream_bot package (sdk/python); run from a checkout it
needs no install of that package.
"""

import datetime
import io
import json
import os
import queue
import re
import sys
import threading
import wave

HERE = os.path.dirname(os.path.abspath(__file__))
try:
    import callstream_bot as cs
except ImportError:  # run from a checkout: the package is at <repo>/sdk/python
    sys.path.insert(0, os.path.join(HERE, "..", "..", "..", "sdk", "python"))
    import callstream_bot as cs

TTS_RATE = 24000  # OpenAI's documented pcm: 24 kHz, 16-bit LE mono, no header
STT_RATE = 16000  # what the bot asks callstream for (config), and sends on
MIN_PLAY = TTS_RATE * 2 // 10  # bytes: speech goes out in plays of 100 ms or more
MAX_TURNS = 20  # earlier turns are dropped from what the model sees

APOLOGY = "Sorry, I am having trouble right now. Please say that again in a moment."
TRANSFER_FAILED = "Sorry, I could not transfer your call."
DEFAULT_GREETING = "Hello! How can I help you today?"
DEFAULT_PROMPT = (
    "You are a friendly, helpful voice assistant answering a phone call. "
    "Your words are spoken aloud by a text-to-speech voice: answer in one to three short sentences "
    "of plain spoken language, with no lists, markdown, emoji or web addresses. "
    "The caller's words come from speech recognition and may contain mistakes: "
    "if something is unclear, ask. When the caller says goodbye or wants to end the call, "
    "call the end_call function."
)
TRANSFER_PROMPT = " When the caller asks for a person, an agent or an operator, call the transfer_call function."


def log(message):
    """A line on stderr: callstream logs it with the call SID."""
    print(f"openai-bot: {message}", file=sys.stderr, flush=True)


class Settings:
    """What the environment says, read once."""

    def __init__(self, env=os.environ):
        self.stt_model = env.get("BOT_STT_MODEL") or "gpt-4o-mini-transcribe"
        self.chat_model = env.get("BOT_CHAT_MODEL") or "gpt-4o-mini"
        self.tts_model = env.get("BOT_TTS_MODEL") or "gpt-4o-mini-tts"
        self.voice = env.get("BOT_VOICE") or "alloy"
        self.greeting = env.get("BOT_GREETING") or DEFAULT_GREETING
        self.transfer_to = (env.get("BOT_TRANSFER_TO") or "").strip() or None
        if self.transfer_to and not re.fullmatch(r"\+\d{2,15}|sips?:[^\s@]+@[^\s@]+|sips?:[^\s@]+", self.transfer_to):
            # callstream would refuse the transfer mid-call (docs/bridge.md): say so now instead.
            log(f"BOT_TRANSFER_TO={self.transfer_to!r} is not an E.164 number (+ and 2 to 15 digits) or a sip: URI: transfers are off")
            self.transfer_to = None
        self.language = (env.get("BOT_LANGUAGE") or "").strip() or None
        prompt = env.get("BOT_SYSTEM_PROMPT") or DEFAULT_PROMPT
        self.system_prompt = prompt + (TRANSFER_PROMPT if self.transfer_to and not env.get("BOT_SYSTEM_PROMPT") else "")

    def tools(self):
        """The functions the model may call (OpenAI function calling)."""
        tools = [
            {
                "type": "function",
                "function": {
                    "name": "end_call",
                    "description": "Hang up the phone call. Use it when the caller says goodbye or clearly wants to end the call.",
                    "parameters": {
                        "type": "object",
                        "properties": {
                            "farewell": {"type": "string", "description": "A short goodbye to say before hanging up, unless you already said one."},
                        },
                        "required": ["farewell"],
                        "additionalProperties": False,
                    },
                },
            }
        ]
        if self.transfer_to:
            tools.append(
                {
                    "type": "function",
                    "function": {
                        "name": "transfer_call",
                        "description": "Transfer the caller to a person. Use it when the caller asks for a human, an agent or an operator.",
                        "parameters": {
                            "type": "object",
                            "properties": {
                                "announcement": {"type": "string", "description": "What to say before transferring, such as 'Connecting you to an agent now.'"},
                            },
                            "required": ["announcement"],
                            "additionalProperties": False,
                        },
                    },
                }
            )
        return tools


def make_client():
    """The OpenAI client. It reads OPENAI_API_KEY and OPENAI_BASE_URL itself.

    A phone caller cannot wait long: one retry (the package retries
    connection errors, 408, 409, 429 and 5xx), and 30 s at most a request.
    """
    import openai

    return openai.OpenAI(max_retries=1, timeout=30.0)


def wav_of(pcm, rate):
    """16-bit LE mono PCM wrapped in a WAV file (the 44-byte header in front)."""
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm)
    return buf.getvalue()


# A sentence ends at . ! ? (or …) with optional closing quotes or brackets,
# followed by white space; or at a line break.
_END = re.compile(r"[.!?\u2026]+[\"'\u201d\u2019)\]]*\s+|\n+")
# "Dr. Smith", "e.g. this", "J. Smith": a full stop that does not end a sentence.
_NOT_AN_END = re.compile(r"(?:\b(?:Mr|Mrs|Ms|Dr|St|Jr|Sr|Prof|vs|etc|e\.g|i\.e)|\b[A-Z])\.\s+$")
_MARKUP = re.compile(r"[*_#`]+")


def split_sentences(text):
    """(complete sentences, the rest still being written) of streamed text."""
    done, start = [], 0
    for m in _END.finditer(text):
        piece = text[start:m.end()]
        if _NOT_AN_END.search(piece):
            continue
        sentence = speakable(piece)
        if sentence:
            done.append(sentence)
        start = m.end()
    return done, text[start:]


def speakable(text):
    """A sentence as the voice should get it: no markdown, no stray space."""
    return " ".join(_MARKUP.sub("", text).split())


class Turn:
    """One reply of the bot: the sentences it queued and what became of them."""

    def __init__(self, user=None, kind="reply"):
        self.user = user  # what the caller said (None: the greeting)
        self.kind = kind  # "greeting", "reply", or "apology" (never shown to the model)
        self.sentences = []  # [mark name, text, state]: state queued, played or cleared
        self.cancelled = threading.Event()
        self.generating = True  # chat still streaming or sentences still being spoken
        self.spoken = False  # some sentence got a play

    def heard(self):
        """The text of the sentences the caller heard in full."""
        return " ".join(text for _, text, state in self.sentences if state == "played")

    def unresolved(self):
        return [name for name, _, state in self.sentences if state == "queued"]


class Conversation:
    """One call's conversation: runs the API calls on two threads of its own
    (a thinker: transcription and chat; a speaker: text to speech and play),
    so that the handlers return at once and barge-in, marks and stop are seen
    while a reply is being made. `call` is the callstream_bot Call (or
    anything with its methods)."""

    def __init__(self, call, client, settings):
        self.call = call
        self.client = client
        self.settings = settings
        self.tools = settings.tools()
        self.turns = []
        self.current = None  # the turn being generated or spoken
        self.marks = {}  # mark name -> its [name, text, state] entry
        self.n_marks = 0
        self.action = None  # (kind, argument, marks to wait for): end or transfer after our words
        self.lock = threading.RLock()
        self.jobs = queue.Queue()  # for the thinker
        self.speech = queue.Queue()  # for the speaker
        self.stopped = threading.Event()
        for target, name in ((self._think, "thinker"), (self._speak, "speaker")):
            threading.Thread(target=target, name=name, daemon=True).start()

    # -- events, from the handlers (return at once) -------------------------

    def greet(self):
        turn = self._new_turn(None, "greeting")
        self.speech.put(("say", turn, self.settings.greeting))
        self.speech.put(("done", turn, None))

    def utterance(self, pcm, rate):
        self._interrupt("the caller spoke again")
        self.jobs.put((pcm, rate))

    def barge_in(self, cleared):
        with self.lock:
            for name in cleared:
                self._resolve(name, "cleared")
        self._interrupt("barge-in")

    def mark(self, name, played):
        with self.lock:
            self._resolve(name, "played" if played else "cleared")
        self._maybe_act()

    def refused(self, of, reason):
        """callstream refused a line of ours (a transfer to a number it does
        not take leaves the call on). BOT_TRANSFER_TO is checked at start, so
        this is the unexpected case."""
        log(f"callstream refused our {of!r}: {reason}")
        if of in ("transfer", "end", "hangup"):
            with self.lock:
                self.action = None
            if of == "transfer":
                turn = self._new_turn(None, "apology")
                self.speech.put(("say", turn, TRANSFER_FAILED))
                self.speech.put(("done", turn, None))

    def stop(self):
        self.stopped.set()
        self._interrupt("the call ended")
        self.jobs.put(None)
        self.speech.put(None)

    # -- bookkeeping ---------------------------------------------------------

    def _new_turn(self, user, kind):
        turn = Turn(user, kind)
        with self.lock:
            if kind != "apology":
                self.turns.append(turn)
                del self.turns[:-MAX_TURNS]
            self.current = turn
        return turn

    def _interrupt(self, why):
        """Stop the reply in progress: no more sentences of it are spoken."""
        with self.lock:
            turn = self.current
            if turn is None or turn.cancelled.is_set():
                return
            if not turn.generating and not turn.unresolved():
                return  # finished and heard: nothing to stop
            turn.cancelled.set()
            queued = turn.unresolved()
        log(f"reply interrupted ({why})")
        if queued and not self.call.done and not self.stopped.is_set():
            # Audio of it may still be queued (written after a barge-in, or no
            # barge-in happened): drop it; its marks come back cleared.
            self.call.clear()

    def _resolve(self, name, state):
        entry = self.marks.get(name)
        if entry is not None and entry[2] == "queued":
            entry[2] = state

    def _maybe_act(self):
        """Hang up or transfer once the words before it are done."""
        with self.lock:
            if self.action is None or self.call.done:
                return
            kind, argument, waiting = self.action
            if any(self.marks[n][2] == "queued" for n in waiting):
                return
            self.action = None
        if kind == "end":
            if argument:  # the farewell could not be spoken with our voice: Twilio says it
                self.call.end(say=argument)
            else:
                self.call.hangup()
        else:
            self.call.transfer(argument)

    def messages(self):
        """What the model sees: the instructions, then each turn as the caller heard it."""
        now = datetime.datetime.now().astimezone()
        system = f"{self.settings.system_prompt}\nIt is now {now:%A %d %B %Y, %H:%M} ({now:%Z})."
        out = [{"role": "system", "content": system}]
        with self.lock:
            for turn in self.turns:
                if turn.user:
                    out.append({"role": "user", "content": turn.user})
                heard = turn.heard()
                if heard:
                    out.append({"role": "assistant", "content": heard})
        return out

    # -- the thinker: transcription, then the chat stream -------------------

    def _think(self):
        while True:
            job = self.jobs.get()
            if job is None or self.stopped.is_set():
                return
            try:
                self._answer(*job)
            except Exception as e:  # never let one turn end the call
                log(f"error answering a turn: {type(e).__name__}: {e}")

    def _answer(self, pcm, rate):
        try:
            result = self.client.audio.transcriptions.create(
                model=self.settings.stt_model,
                file=("turn.wav", wav_of(pcm, rate), "audio/wav"),
                **({"language": self.settings.language} if self.settings.language else {}),
            )
            text = (result.text or "").strip()
        except Exception as e:
            self._failed("transcription", e)
            return
        if self.stopped.is_set():
            return
        if not text:
            log("heard nothing in that turn")
            return
        self.call.transcript(text)
        if not self.jobs.empty():
            # The caller already said more: answer it all at once.
            self._new_turn(text, "reply").generating = False
            return
        turn = self._new_turn(text, "reply")
        try:
            self._chat(turn)
        except Exception as e:
            self._failed("chat", e, turn)
        finally:
            self.speech.put(("done", turn, None))

    def _chat(self, turn):
        kwargs = {"model": self.settings.chat_model, "messages": self.messages(), "stream": True}
        if self.tools:
            kwargs["tools"] = self.tools
        stream = self.client.chat.completions.create(**kwargs)
        text, said, calls = "", 0, {}
        try:
            for chunk in stream:
                if turn.cancelled.is_set():
                    return
                if not chunk.choices:
                    continue
                delta = chunk.choices[0].delta
                if delta.content:
                    text += delta.content
                    sentences, text = split_sentences(text)
                    for sentence in sentences:
                        self.speech.put(("say", turn, sentence))
                        said += 1
                for tc in delta.tool_calls or []:
                    entry = calls.setdefault(tc.index, {"name": "", "arguments": ""})
                    if tc.function is not None:
                        entry["name"] += tc.function.name or ""
                        entry["arguments"] += tc.function.arguments or ""
        finally:
            stream.close()
        rest = speakable(text)
        if rest:
            self.speech.put(("say", turn, rest))
            said += 1
        for call in calls.values():
            self._tool(turn, call, said)

    def _tool(self, turn, call, said):
        try:
            args = json.loads(call["arguments"] or "{}")
        except ValueError:
            args = {}
        if not isinstance(args, dict):
            args = {}
        name = call["name"]
        log(f"the model called {name}({json.dumps(args)})")
        if name == "end_call":
            words = str(args.get("farewell") or "").strip()
            if words and not said:
                self.speech.put(("say", turn, words))
            self.speech.put(("act", turn, ("end", words)))
        elif name == "transfer_call" and self.settings.transfer_to:
            words = str(args.get("announcement") or "").strip()
            if words and not said:
                self.speech.put(("say", turn, words))
            self.speech.put(("act", turn, ("transfer", self.settings.transfer_to)))
        else:
            log(f"ignoring a call to an unknown function {name!r}")

    def _failed(self, what, error, turn=None):
        """An API call failed: log it, and apologise if the caller got no answer."""
        note = f"OpenAI {what} failed: {type(error).__name__}: {error}"
        log(note)
        if self.stopped.is_set() or self.call.done:
            return
        self.call.log(note, level="error")
        if turn is not None and (turn.cancelled.is_set() or turn.spoken):
            return
        if turn is not None:
            turn.cancelled.set()  # its last sentences, if any, are not worth saying now
        apology = self._new_turn(None, "apology")
        self.speech.put(("say", apology, APOLOGY))
        self.speech.put(("done", apology, None))

    # -- the speaker: text to speech, streamed into play ---------------------

    def _speak(self):
        while True:
            item = self.speech.get()
            if item is None or self.stopped.is_set():
                return
            what, turn, arg = item
            try:
                if what == "say":
                    self._say(turn, arg)
                elif what == "act":
                    self._act(turn, arg)
                else:  # done: nothing more will be said in this turn
                    turn.generating = False
            except Exception as e:
                log(f"error speaking: {type(e).__name__}: {e}")

    def _say(self, turn, text):
        if turn.cancelled.is_set() or self.call.done:
            return
        played, cut = 0, False

        def play(pcm):
            nonlocal played
            if not played:
                self.call.reply(text)
                turn.spoken = True
            self.call.play(pcm, TTS_RATE)
            played += len(pcm)

        try:
            with self.client.audio.speech.with_streaming_response.create(
                model=self.settings.tts_model,
                voice=self.settings.voice,
                input=text,
                response_format="pcm",
            ) as response:
                pending = b""
                for chunk in response.iter_bytes():
                    if turn.cancelled.is_set() or self.call.done:
                        cut = True
                        break
                    pending += chunk
                    if len(pending) >= MIN_PLAY:
                        even = len(pending) & ~1  # whole samples; an odd byte waits for the next chunk
                        play(pending[:even])
                        pending = pending[even:]
                if not cut and len(pending) >= 2:
                    play(pending[: len(pending) & ~1])
        except Exception as e:
            if turn.kind == "apology":
                log(f"OpenAI speech failed for the apology too: {type(e).__name__}: {e}")
                return
            self._failed("speech", e, None if played else turn)
            cut = True
        if not played or self.call.done:
            return
        if cut or turn.cancelled.is_set():
            # Stopped half-way (a barge-in, or the caller spoke again): what we
            # wrote after callstream's own clear would still play: drop it.
            # The caller did not hear this sentence whole.
            self.call.clear()
            with self.lock:
                turn.sentences.append([None, text, "cleared"])
            return
        with self.lock:
            self.n_marks += 1
            name = f"say-{self.n_marks}"
            entry = [name, text, "queued"]
            self.marks[name] = entry
            turn.sentences.append(entry)
        self.call.mark(name)

    def _act(self, turn, action):
        kind, argument = action
        with self.lock:
            waiting = [name for name, _, state in turn.sentences if state == "queued"]
            if kind == "end":
                if any(state == "queued" for _, _, state in turn.sentences):
                    argument = ""  # our voice is saying goodbye: hang up after it
                else:
                    argument = argument or "Goodbye."  # nothing of ours will play: Twilio says it
            self.action = (kind, argument, waiting)
        self._maybe_act()
        if waiting and not self.call.done:
            # (The test reads this line to know the action waits for the marks.)
            self.call.log(f"{kind}: waiting for {len(waiting)} sentence(s) to play first", level="debug")


class OpenAIBot(cs.Bot):
    """The callstream_bot handlers: each hands the event to the call's Conversation."""

    config = {"rate": STT_RATE, "audio": False}
    client = None  # one OpenAI client for every call of this process
    settings = None

    def on_start(self, call):
        cls = type(self)
        if cls.client is None:
            cls.client = make_client()
            cls.settings = Settings()
        self.conversation = Conversation(call, cls.client, cls.settings)
        self.conversation.greet()

    # Before `start` (which callstream always sends first) there is no conversation.
    conversation = None

    def on_utterance(self, call, utterance):
        if self.conversation and len(utterance.pcm) >= 2:
            self.conversation.utterance(utterance.pcm, utterance.rate)

    def on_barge_in(self, call, barge):
        if self.conversation:
            self.conversation.barge_in(barge.cleared)

    def on_mark(self, call, name, played):
        if self.conversation:
            self.conversation.mark(name, played)

    def on_error(self, call, of, reason):
        if self.conversation:
            self.conversation.refused(of, reason)
        else:
            log(f"callstream refused our {of!r}: {reason}")

    def on_stop(self, call, reason):
        log(f"call ended: {reason}")
        if self.conversation:
            self.conversation.stop()


def main():
    if not any(a in ("-h", "--help") for a in sys.argv[1:]):
        if not os.environ.get("OPENAI_API_KEY", "").strip():
            print(
                "bot.py: OPENAI_API_KEY is not set. Set it to your OpenAI API key "
                "(and OPENAI_BASE_URL for another OpenAI-compatible server) in the environment "
                "callstream runs the bot with.",
                file=sys.stderr,
                flush=True,
            )
            return 2
        try:
            import openai  # noqa: F401
        except ImportError:
            print("bot.py: the openai package is missing: sh examples/bots/openai/setup.sh", file=sys.stderr, flush=True)
            return 2
    return cs.run(OpenAIBot)


if __name__ == "__main__":
    sys.exit(main())
