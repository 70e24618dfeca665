"""One call as the bot sees it: the facts from `start`, and one method per
message the bot may write (docs/bridge.md, "From the program to callstream")."""

from __future__ import annotations

import base64
import json
import sys
import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterable, List, Optional

# The protocol version this package speaks (and `start` says).
PROTOCOL_VERSION = 2

# The longest line (or ws text frame) callstream reads, without its newline;
# a longer one ends the call as a failure (bridge/src/exec.rs MAX_LINE).
MAX_LINE = 16 * 1024 * 1024

# The longest mark name callstream takes, in UTF-8 bytes (core/src/call.rs
# MAX_MARK_NAME); a longer one is refused.
MAX_MARK_NAME = 256


class ProtocolError(RuntimeError):
    """A call method used where the protocol does not allow it (a `config`
    after the first line)."""


def encode(msg: Dict[str, Any]) -> str:
    """One message as one line, without the newline (JSON escapes every
    newline inside strings). Raises ValueError past callstream's limit."""
    line = json.dumps(msg, separators=(",", ":"), allow_nan=False)
    if len(line) > MAX_LINE:
        raise ValueError(
            f"a {msg.get('type')!r} line of {len(line)} bytes is over callstream's limit of "
            f"{MAX_LINE} (it would end the call): split long audio into several plays"
        )
    return line


def stderr(text: str, prefix: str = "") -> None:
    """One line for the log (callstream logs a program's stderr with the call SID)."""
    try:
        print(f"callstream_bot: {prefix}{text}", file=sys.stderr, flush=True)
    except (OSError, ValueError):
        pass  # stderr gone: nothing to tell anyone


@dataclass(frozen=True)
class Utterance:
    """One caller turn (`utterance`): 16-bit LE mono PCM at `rate`."""

    pcm: bytes = field(repr=False)
    rate: int
    duration_ms: int
    raw: Dict[str, Any] = field(repr=False)


@dataclass(frozen=True)
class Frame:
    """20 ms of the caller's raw audio (`audio`, after config `"audio": true`)."""

    pcm: bytes = field(repr=False)
    rate: int
    seq: int
    dropped: int
    raw: Dict[str, Any] = field(repr=False)


@dataclass(frozen=True)
class Barge:
    """The caller talked over the bot's audio (`barge_in`)."""

    cleared: List[str]
    heard_ms: int
    raw: Dict[str, Any] = field(repr=False)


class Call:
    """One call. Each method writes one protocol line at once (thread-safe:
    a bot's own threads may use it too).

    `send` takes each message as a dict: the transports encode and write it;
    a test can pass `list.append` and look at what the bot said. `flush`,
    when given, is called after each message, or after the last of say()'s
    three, which go out together.
    """

    def __init__(
        self,
        send: Callable[[Dict[str, Any]], None],
        call_sid: str = "",
        stream_sid: str = "",
        account_sid: str = "",
        log_prefix: str = "",
        flush: Optional[Callable[[], None]] = None,
    ) -> None:
        self._send_msg = send
        self._flush = flush
        self._batch = 0
        self._lock = threading.RLock()
        self._lines = 0
        self._says = 0
        self._done = False
        # The line that ended the call (hangup, transfer, end), and whether
        # callstream's stop came.
        self._ended_by: Optional[str] = None
        self._stop_seen = False
        # mark name -> the text said before it (say(text=...)).
        self._texts: Dict[str, str] = {}
        # mark name -> outcome, once it came back.
        self._outcomes: Dict[str, str] = {}
        self._heard: List[str] = []
        self._log_prefix = log_prefix
        #: The whole `start` message, once it came (None before).
        self.start: Optional[Dict[str, Any]] = None
        #: `CA…` (from the environment or the URL before `start`, then from it).
        self.call_sid = call_sid
        #: `MZ…`
        self.stream_sid = stream_sid
        #: `AC…`
        self.account_sid = account_sid
        #: The custom stream parameters (`from`, `to`, `direction`, …).
        self.parameters: Dict[str, str] = {}
        #: The protocol version callstream speaks (from `start`).
        self.version: Optional[int] = None

    # --- what the bot knows ----------------------------------------------

    @property
    def done(self) -> bool:
        """True once the bot sent hangup, transfer or end, or the call stopped."""
        return self._done

    @property
    def heard(self) -> List[str]:
        """Texts given to say() whose marks came back `played`, in order:
        what the caller actually heard."""
        with self._lock:
            return list(self._heard)

    @property
    def pending(self) -> List[str]:
        """Texts given to say() whose marks have not come back yet."""
        with self._lock:
            return [t for n, t in self._texts.items() if n not in self._outcomes]

    def unheard(self, names: Iterable[str]) -> List[str]:
        """Texts given to say() before these marks that were not played: pass
        a barge-in's `cleared` to learn what the caller did not hear."""
        with self._lock:
            return [
                self._texts[n]
                for n in names
                if n in self._texts and self._outcomes.get(n) != "played"
            ]

    # --- what the bot says -------------------------------------------------

    def _send(self, msg: Dict[str, Any]) -> None:
        with self._lock:
            self._send_msg(msg)
            self._lines += 1
            if self._flush is not None and not self._batch:
                self._flush()

    def config(self, **fields: Any) -> None:
        """`config`: only as the first line the bot writes (raises
        ProtocolError later). Fields as docs/bridge.md: rate, audio, version,
        utterances, barge_in, end_of_turn_ms, min_speech_ms."""
        fields.pop("type", None)
        with self._lock:
            if self._lines:
                raise ProtocolError(
                    f"config must be the first line the bot writes; {self._lines} "
                    "line(s) were written already (set Bot.config instead)"
                )
            self._send({"type": "config", **fields})

    def play(self, pcm: bytes, rate: int) -> None:
        """`play`: queue 16-bit LE mono PCM at `rate` (any rate from 4000 to
        192000 Hz: callstream resamples and paces it)."""
        pcm = _pcm_bytes(pcm)
        self._send({"type": "play", "rate": _int(rate, "rate"), "pcm": base64.b64encode(pcm).decode("ascii")})

    def mark(self, name: str) -> None:
        """`mark`: `name` comes back (on_mark) when the audio queued so far is done."""
        self._send({"type": "mark", "name": _mark_name(name)})

    def say(self, pcm: bytes, rate: int, text: Optional[str] = None, name: Optional[str] = None) -> str:
        """reply(text) when there is text, play(pcm, rate), then a mark:
        `name`, or "reply-N" for the call's Nth say(). Returns the mark's
        name; `text` is remembered for heard/unheard()."""
        pcm = _pcm_bytes(pcm)
        _int(rate, "rate")
        with self._lock:
            self._says += 1
            name = f"reply-{self._says}" if name is None else _mark_name(name)
            if text is not None:
                text = _str(text, "text")
            self._batch += 1
            try:
                if text is not None:
                    self._texts[name] = text
                    self._outcomes.pop(name, None)
                    self.reply(text)
                self.play(pcm, rate)
                self.mark(name)
            finally:
                self._batch -= 1
                if self._flush is not None:
                    self._flush()
            return name

    def clear(self) -> None:
        """`clear`: drop all queued audio now (its marks come back cleared)."""
        self._send({"type": "clear"})

    def send_digits(self, digits: str) -> None:
        """`send_digits`: play keys as DTMF tones in order with the audio
        (0-9 * # A-D, w for half a second; at most 64)."""
        self._send({"type": "send_digits", "digits": _str(digits, "digits")})

    def transcript(self, text: str) -> None:
        """`transcript`: what the bot heard (callstream logs ASR_TEXT)."""
        self._send({"type": "transcript", "text": _str(text, "text")})

    def reply(self, text: str) -> None:
        """`reply`: what the bot says (callstream logs TTS_TEXT)."""
        self._send({"type": "reply", "text": _str(text, "text")})

    def log(self, message: str, level: str = "info") -> None:
        """`log`: a line in callstream's log with the call SID; level debug,
        info, warn or error."""
        self._send({"type": "log", "level": _str(level, "level"), "message": _str(message, "message")})

    def hangup(self) -> None:
        """`hangup`: end the call now (queued audio is not played)."""
        with self._lock:
            self._send({"type": "hangup"})
            self._ended("hangup")

    def transfer(self, to: str, caller_id: Optional[str] = None, timeout: Optional[int] = None) -> None:
        """`transfer`: connect the caller to `to` (E.164 or sip:) and leave
        the call; optional `caller_id` (E.164) and `timeout` (5-600 s)."""
        msg: Dict[str, Any] = {"type": "transfer", "to": _str(to, "to")}
        if caller_id is not None:
            msg["caller_id"] = _str(caller_id, "caller_id")
        if timeout is not None:
            msg["timeout"] = _int(timeout, "timeout")
        with self._lock:
            self._send(msg)
            self._ended("transfer")

    def end(self, say: Optional[str] = None, voice: Optional[str] = None, language: Optional[str] = None) -> None:
        """`end`: Twilio says `say` (in `voice`/`language`), then hangs up."""
        msg: Dict[str, Any] = {"type": "end"}
        for key, value in (("say", say), ("voice", voice), ("language", language)):
            if value is not None:
                msg[key] = _str(value, key)
        with self._lock:
            self._send(msg)
            self._ended("end")

    # --- for the dispatcher ------------------------------------------------

    def _warn(self, text: str) -> None:
        stderr(text, self._log_prefix)

    def _started(self, msg: Dict[str, Any]) -> None:
        self.start = msg
        for key in ("call_sid", "stream_sid", "account_sid"):
            value = msg.get(key)
            if isinstance(value, str) and value:
                setattr(self, key, value)
        params = msg.get("parameters")
        if isinstance(params, dict):
            self.parameters = dict(params)
        version = msg.get("version")
        self.version = version if isinstance(version, int) and not isinstance(version, bool) else None

    def _resolved(self, name: str, outcome: str) -> None:
        with self._lock:
            if name in self._texts and name not in self._outcomes:
                self._outcomes[name] = outcome
                if outcome == "played":
                    self._heard.append(self._texts[name])

    def _ended(self, by: str) -> None:
        self._done = True
        self._ended_by = by

    def _refused(self, of: Any) -> bool:
        """callstream refused the line that ended the call (a transfer to a
        number it cannot dial): the call goes on. Whether it did."""
        with self._lock:
            if self._stop_seen or of is None or of != self._ended_by:
                return False
            self._done = False
            self._ended_by = None
            return True

    def _stopped(self) -> None:
        self._done = True
        self._stop_seen = True


def _str(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{what} must be a str, not {type(value).__name__}")
    return value


def _mark_name(name: Any) -> str:
    name = _str(name, "name")
    if len(name.encode("utf-8", "surrogatepass")) > MAX_MARK_NAME:
        raise ValueError(f"a mark name is at most {MAX_MARK_NAME} bytes (UTF-8): callstream refuses longer ones")
    return name


def _int(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{what} must be an int, not {type(value).__name__}")
    return value


def _pcm_bytes(pcm: Any) -> bytes:
    if not isinstance(pcm, (bytes, bytearray, memoryview)):
        raise TypeError(f"pcm must be bytes of 16-bit LE mono samples, not {type(pcm).__name__}")
    pcm = bytes(pcm)
    if len(pcm) % 2:
        raise ValueError(
            f"pcm has an odd number of bytes ({len(pcm)}): samples are 2 bytes each "
            "(streaming in chunks? keep the odd byte for the next chunk)"
        )
    return pcm
