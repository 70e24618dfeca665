"""callstream_bot: a callstream voice bot as a few handlers.

callstream's program bridge (docs/bridge.md, protocol version 2) hands each
call to a program as JSON lines (exec) or WebSocket text frames (ws). This
package speaks it, so a bot is its own logic only::

    import callstream_bot as cs

    class Parrot(cs.Bot):
        config = {"rate": 16000}

        def on_utterance(self, call, utterance):
            call.say(utterance.pcm, utterance.rate, text="(your words)")

    if __name__ == "__main__":
        raise SystemExit(cs.run(Parrot))
"""

from ._bot import Bot, dispatch, parse_line
from ._call import MAX_LINE, MAX_MARK_NAME, PROTOCOL_VERSION, Barge, Call, Frame, ProtocolError, Utterance, encode
from ._transports import run, serve_ws

__version__ = "0.1.0"

# Shown as callstream_bot.X in reprs and tracebacks, not as the private module.
for _name in ("Barge", "Bot", "Call", "Frame", "ProtocolError", "Utterance"):
    globals()[_name].__module__ = __name__
del _name

__all__ = [
    "Barge",
    "Bot",
    "Call",
    "Frame",
    "MAX_LINE",
    "MAX_MARK_NAME",
    "PROTOCOL_VERSION",
    "ProtocolError",
    "Utterance",
    "dispatch",
    "encode",
    "parse_line",
    "run",
    "serve_ws",
    "__version__",
]
