"""The bot's handlers, and the dispatcher that turns each message from
callstream (docs/bridge.md, "From callstream to the program") into one of
them."""

from __future__ import annotations

import base64
import binascii
import json
import traceback
from typing import Any, Dict, Optional, Union

from ._call import PROTOCOL_VERSION, Barge, Call, Frame, Utterance, stderr


class Bot:
    """One call's logic. Subclass it and override the handlers you need;
    each gets the Call to answer on. One instance per call; its handlers run
    one at a time, in the order the messages came.

    `config`: the first line the bot writes ({"type":"config", **config}),
    before the bot is even constructed; None writes none (the server's
    defaults: 16 kHz utterances, no raw audio).
    """

    config: Optional[Dict[str, Any]] = None

    def on_start(self, call: Call) -> None:
        """The call started: `call.start`, `call.call_sid`, `call.parameters` are set."""

    def on_utterance(self, call: Call, utterance: Utterance) -> None:
        """The caller finished a turn."""

    def on_audio(self, call: Call, frame: Frame) -> None:
        """20 ms of raw audio (only after config `"audio": True`)."""

    def on_speech_started(self, call: Call) -> None:
        """The caller started talking."""

    def on_barge_in(self, call: Call, barge: Barge) -> None:
        """The caller talked over the bot: callstream already cleared the
        audio; `call.unheard(barge.cleared)` is what was not heard."""

    def on_dtmf(self, call: Call, digit: str) -> None:
        """A key was pressed: 0-9, *, #, A-D."""

    def on_mark(self, call: Call, name: str, played: bool) -> None:
        """A mark came back: `played` (heard in full) or not (cleared)."""

    def on_error(self, call: Call, of: Optional[str], reason: str) -> None:
        """callstream refused a line of the bot's (`of`: its type, or None)."""
        call._warn(f"callstream refused our {of!r}: {reason}")

    def on_stop(self, call: Call, reason: str) -> None:
        """The call ended; the transport ends the bot after this."""

    def on_message(self, call: Call, msg: Dict[str, Any]) -> None:
        """Any other message (a type newer than this package): ignored."""


def parse_line(line: Union[bytes, str], call: Optional[Call] = None) -> Optional[Dict[str, Any]]:
    """The JSON object on one line, or None (with one stderr line) for
    garbage; None silently for a blank line."""
    warn = call._warn if call is not None else _warn
    if not line.strip():
        return None
    try:
        msg = json.loads(line)
    except ValueError:  # also bad UTF-8
        warn(f"ignoring a line that is not JSON: {_cut(line)}")
        return None
    if not isinstance(msg, dict):
        warn(f"ignoring a line that is not a JSON object: {_cut(line)}")
        return None
    return msg


def dispatch(bot: Bot, call: Call, msg: Dict[str, Any]) -> None:
    """Hand one message to the bot's handler, keeping the call's books
    (facts, marks heard) first. A message with a field of the wrong kind is
    ignored with one stderr line; an exception in a handler is logged to
    stderr and sent as a `log` at level error: the call goes on. Nothing is
    dispatched once the call is done, but an `error` refusing the very
    line that ended it (then the call goes on: `done` is false again)."""
    if call.done and not (msg.get("type") == "error" and call._refused(msg.get("of"))):
        if msg.get("type") == "stop":
            call._stopped()  # the transport's cue to end
        return
    kind = msg.get("type")
    try:
        handler, args = _handler(call, kind, msg)
    except _Bad as bad:
        article = "an" if str(kind)[:1] in ("a", "e", "i", "o", "u") else "a"
        call._warn(f"ignoring {article} {kind} message: {bad}")
        return
    if kind == "start":
        version = call.version
        if version is None or version < PROTOCOL_VERSION:
            note = f"callstream_bot speaks protocol version {PROTOCOL_VERSION}, callstream says {msg.get('version')!r}"
            call._warn(note)
            _safely(call, lambda: call.log(note, level="warn"))
    try:
        getattr(bot, handler)(call, *args)
    except Exception as e:  # one bad handler never ends the call
        note = f"{handler} raised {type(e).__name__}: {e}"
        call._warn(note)
        for line in traceback.format_exc().rstrip("\n").split("\n"):
            call._warn("  " + line)
        _safely(call, lambda: call.log(note, level="error"))
    if kind == "stop":
        call._stopped()


class _Bad(Exception):
    pass


def _handler(call: Call, kind: Any, msg: Dict[str, Any]):
    """(handler name, its arguments after `call`) for a message; raises _Bad."""
    if kind == "start":
        call._started(msg)
        return "on_start", ()
    if kind == "utterance":
        pcm, rate = _audio(msg)
        duration = _int(msg, "duration_ms", len(pcm) * 1000 // (2 * rate))
        return "on_utterance", (Utterance(pcm=pcm, rate=rate, duration_ms=duration, raw=msg),)
    if kind == "audio":
        pcm, rate = _audio(msg)
        frame = Frame(pcm=pcm, rate=rate, seq=_int(msg, "seq", 0), dropped=_int(msg, "dropped", 0), raw=msg)
        return "on_audio", (frame,)
    if kind == "speech_started":
        return "on_speech_started", ()
    if kind == "barge_in":
        cleared = msg.get("cleared", [])
        if not isinstance(cleared, list) or not all(isinstance(n, str) for n in cleared):
            raise _Bad("field 'cleared' is not a list of mark names")
        return "on_barge_in", (Barge(cleared=list(cleared), heard_ms=_int(msg, "heard_ms", 0), raw=msg),)
    if kind == "dtmf":
        return "on_dtmf", (_string(msg, "digit"),)
    if kind == "mark":
        name = _string(msg, "name")
        outcome = _string(msg, "outcome")
        call._resolved(name, outcome)
        return "on_mark", (name, outcome == "played")
    if kind == "error":
        of = msg.get("of")
        if of is not None and not isinstance(of, str):
            raise _Bad("field 'of' is not a string or null")
        return "on_error", (of, _string(msg, "reason", ""))
    if kind == "stop":
        return "on_stop", (_string(msg, "reason", ""),)
    return "on_message", (msg,)


def _string(msg: Dict[str, Any], field: str, default: Optional[str] = None) -> str:
    value = msg.get(field, default)
    if not isinstance(value, str):
        raise _Bad(f"field {field!r} missing or not a string")
    return value


def _int(msg: Dict[str, Any], field: str, default: int) -> int:
    value = msg.get(field, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise _Bad(f"field {field!r} is not a whole number")
    return value


def _audio(msg: Dict[str, Any]):
    rate = msg.get("rate")
    if isinstance(rate, bool) or not isinstance(rate, int) or rate <= 0:
        raise _Bad("field 'rate' missing or not a positive whole number")
    text = msg.get("pcm")
    if not isinstance(text, str):
        raise _Bad("field 'pcm' missing or not a string")
    try:
        pcm = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise _Bad("field 'pcm' is not base64") from None
    if len(pcm) % 2:
        raise _Bad("field 'pcm' is not whole 16-bit samples (an odd number of bytes)")
    return pcm, rate


def _safely(call: Call, send) -> None:
    try:
        send()
    except Exception as e:  # the transport is gone: stderr is all that is left
        call._warn(f"could not send a log line: {type(e).__name__}: {e}")


def _cut(line: Union[bytes, str]) -> str:
    return repr(line[:80]) + ("..." if len(line) > 80 else "")


def _warn(text: str) -> None:
    stderr(text)

