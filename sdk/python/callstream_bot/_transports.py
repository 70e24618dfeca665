"""The two transports of docs/bridge.md: exec (this process is the call,
JSON lines on stdin/stdout) and ws (a service, one WebSocket per call)."""

from __future__ import annotations

import argparse
import asyncio
import os
import queue
import signal
import sys
import threading
import time
import traceback
from typing import Any, Callable, Dict, Optional, Union
from urllib.parse import parse_qs, urlsplit

from ._bot import Bot, dispatch, parse_line
from ._call import MAX_LINE, Call, encode, stderr

BotFactory = Union[type, Callable[[], Bot]]

# How long threads the bot left running may hold up the exit once the call
# is over (callstream sends SIGTERM 1 s after stop).
_LINGER = 0.5
# How long a ws service waits for its calls' sockets to close when it stops.
_CLOSE_WAIT = 3.0


def begin(factory: BotFactory, call: Call) -> Bot:
    """Write the bot's config line, then make the bot: a Bot class's
    `config` goes out before the (perhaps slow) constructor runs, as
    docs/bridge.md asks; a factory's bot is asked after it is made."""
    if isinstance(factory, type):
        _config(call, getattr(factory, "config", None))
        return factory()
    bot = factory()
    _config(call, getattr(bot, "config", None))
    return bot


def _config(call: Call, config: Any) -> None:
    if config is None:
        return
    if not isinstance(config, dict):
        raise TypeError(f"Bot.config must be a dict or None, not {type(config).__name__}")
    call.config(**config)


def _report(call: Call, what: str, e: BaseException) -> None:
    call._warn(f"{what}: {type(e).__name__}: {e}")
    for line in "".join(traceback.format_exception(type(e), e, e.__traceback__)).rstrip("\n").split("\n"):
        call._warn("  " + line)


# --- exec ------------------------------------------------------------------


def run_exec(factory: BotFactory) -> int:
    """The exec transport: messages on stdin, the bot's on stdout, one JSON
    object a line. Returns 0 on stop, end of input, after the bot's hangup,
    transfer or end, and (raising SystemExit(0)) on SIGTERM."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _exit_0)
    out = _own_stdout()
    lock = threading.Lock()

    def send(msg: Dict[str, Any]) -> None:
        line = encode(msg).encode("ascii") + b"\n"  # json.dumps escapes non-ASCII
        with lock:
            if not gone:
                write(out.write, line)

    def flush() -> None:
        with lock:
            if not gone:
                write(out.flush)

    def write(op, *args) -> None:
        try:
            op(*args)
        except (OSError, ValueError) as e:  # callstream closed our stdout: it is gone
            gone.append(e)
            call._warn(f"stdout closed ({type(e).__name__}): the call is over")
            call._stopped()

    gone: list = []
    env = os.environ
    call = Call(
        send,
        call_sid=env.get("CALLSTREAM_CALL_SID", ""),
        stream_sid=env.get("CALLSTREAM_STREAM_SID", ""),
        account_sid=env.get("CALLSTREAM_ACCOUNT_SID", ""),
        flush=flush,
    )
    try:
        bot = begin(factory, call)
    except Exception as e:
        _report(call, "the bot could not start", e)
        return 1
    for line in sys.stdin.buffer:
        msg = parse_line(line, call)
        if msg is None:
            continue
        dispatch(bot, call, msg)
        # After the bot's own hangup, transfer or end, read on: callstream
        # may refuse it (an error), else its stop comes.
        if call._stop_seen:
            break
    return 0


def _exit_0(signum, frame):
    raise SystemExit(0)


def _own_stdout():
    """The protocol's own copy of stdout. File descriptor 1 (and so
    print(), sys.stdout and child processes) then goes to stderr, the log:
    a stray print cannot corrupt the protocol."""
    try:
        sys.stdout.flush()
    except (OSError, ValueError):
        pass
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return out


# --- ws --------------------------------------------------------------------


class _Worker:
    """One thread per call that runs its handlers in order, off the event
    loop (which keeps answering pings and other calls). A daemon: a handler
    stuck in a request never holds up the service's exit."""

    def __init__(self, name: str) -> None:
        self._jobs: "queue.SimpleQueue" = queue.SimpleQueue()
        threading.Thread(target=self._run, name=name, daemon=True).start()

    def _run(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            loop, fut, fn, args = job
            try:
                result, error = fn(*args), None
            except BaseException as e:  # noqa: B036 (SystemExit in a handler must not kill the thread silently)
                result, error = None, e if isinstance(e, Exception) else RuntimeError(repr(e))
            try:
                loop.call_soon_threadsafe(_settle, fut, result, error)
            except RuntimeError:
                pass  # the loop is closed: nobody waits any more

    async def run(self, fn: Callable, *args: Any) -> Any:
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        self._jobs.put((loop, fut, fn, args))
        return await fut

    def stop(self) -> None:
        self._jobs.put(None)


def _settle(fut: "asyncio.Future", result: Any, error: Optional[BaseException]) -> None:
    if fut.done():
        return
    if error is not None:
        fut.set_exception(error)
    else:
        fut.set_result(result)


async def _serve_call(factory: BotFactory, ws: Any) -> None:
    """One WebSocket: one call, one Bot."""
    from websockets.exceptions import ConnectionClosed

    loop = asyncio.get_running_loop()
    loop_thread = threading.get_ident()
    query = parse_qs(urlsplit(ws.request.path).query)
    call_sid = query.get("call_sid", [""])[0]
    gone = threading.Event()

    def send(msg: Dict[str, Any]) -> None:
        text = encode(msg)
        if gone.is_set():
            return
        if threading.get_ident() == loop_thread:
            raise RuntimeError("Call methods block until sent: call them from a handler or a thread, not the event loop")
        try:
            asyncio.run_coroutine_threadsafe(ws.send(text), loop).result()
        except (ConnectionClosed, RuntimeError, asyncio.CancelledError) as e:
            if not gone.is_set():
                gone.set()
                call._warn(f"the connection is closed ({type(e).__name__}): the call is over")
            call._stopped()

    call = Call(
        send,
        call_sid=call_sid,
        stream_sid=query.get("stream_sid", [""])[0],
        account_sid=query.get("account_sid", [""])[0],
        log_prefix=f"{call_sid}: " if call_sid else "",
    )
    worker = _Worker(f"callstream-bot {call_sid}")
    try:
        try:
            bot = await worker.run(begin, factory, call)
        except Exception as e:
            _report(call, "the bot could not start", e)
            await ws.close(1011, "the bot could not start")
            return
        # A handler still running when the socket closes (callstream went
        # away, or the service is shutting down) is left to its thread: the
        # call is over, and what it sends is dropped.
        closing = asyncio.ensure_future(ws.wait_closed())
        try:
            async for frame in ws:
                if not isinstance(frame, str):
                    call._warn("ignoring a binary frame: the bridge sends text frames")
                    continue
                msg = parse_line(frame, call)
                if msg is None:
                    continue
                handled = asyncio.ensure_future(worker.run(dispatch, bot, call, msg))
                await asyncio.wait([handled, closing], return_when=asyncio.FIRST_COMPLETED)
                if not handled.done():
                    handled.cancel()
                    call._warn("the connection closed while a handler ran: the call is over")
                    break
                handled.result()
                if call._stop_seen:
                    break
        except ConnectionClosed:
            pass  # callstream went away: the call is over
        finally:
            closing.cancel()
        await ws.close()
    finally:
        worker.stop()


async def serve_ws(
    factory: BotFactory,
    host: str,
    port: int,
    ready: Optional[Callable[[Any], None]] = None,
) -> None:
    """Serve the ws transport on host:port until cancelled: one Bot per
    WebSocket, its handlers in a thread of their own, text frames only, up
    to 16 MiB. `ready(server)` is called once listening (port 0: the port is
    server.sockets[0].getsockname()[1]). Needs `pip install
    'callstream-bot[ws]'`."""
    try:
        from websockets.asyncio.server import serve
    except ImportError as e:
        raise ImportError(
            "the ws transport needs the websockets package: pip install 'callstream-bot[ws]'"
        ) from e

    async def handler(ws: Any) -> None:
        await _serve_call(factory, ws)

    server = await serve(handler, host, port, max_size=MAX_LINE)
    try:
        if ready is not None:
            ready(server)
        name = server.sockets[0].getsockname()
        shown = f"[{name[0]}]" if ":" in name[0] else name[0]
        stderr(f"listening on ws://{shown}:{name[1]}/")
        await server.wait_closed()
    finally:
        # Calls are closed (1001, going away); their handlers return once
        # their sockets are closed. Bounded: a peer that never answers the
        # close does not hold the exit.
        server.close()
        try:
            await asyncio.wait_for(server.wait_closed(), _CLOSE_WAIT)
        except (asyncio.TimeoutError, asyncio.CancelledError):
            pass


def _run_ws(factory: BotFactory, host: str, port: int) -> int:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        stop = loop.create_future()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, lambda: stop.done() or stop.set_result(None))
        serving = asyncio.ensure_future(serve_ws(factory, host, port))
        await asyncio.wait([serving, stop], return_when=asyncio.FIRST_COMPLETED)
        if serving.done():
            serving.result()  # it failed to start (the port is taken, …)
            return
        serving.cancel()
        await asyncio.wait([serving])

    try:
        asyncio.run(main())
    except OSError as e:
        stderr(f"cannot serve on {host}:{port}: {e}")
        return 1
    return 0


# --- the command line ---------------------------------------------------------


def run(bot: BotFactory, argv: Optional[list] = None, description: Optional[str] = None) -> int:
    """The bot's command line. No arguments: the exec transport (stdin and
    stdout are the call). `--serve-ws HOST:PORT`: serve the ws transport.
    Returns the exit status (0 on stop, end of input and SIGTERM):
    `sys.exit(cs.run(MyBot))`."""
    doc = description or ((getattr(bot, "__doc__", None) or "").strip().split("\n\n")[0]) or None
    parser = argparse.ArgumentParser(description=doc)
    parser.add_argument(
        "--serve-ws",
        metavar="HOST:PORT",
        help="serve the ws bridge (one WebSocket per call) instead of one call on stdin/stdout",
    )
    args = parser.parse_args(argv)
    if args.serve_ws:
        host, sep, port = args.serve_ws.rpartition(":")
        if not sep or not port.isdigit():
            parser.error(f"--serve-ws wants HOST:PORT, not {args.serve_ws!r}")
        code = _run_ws(bot, host.strip("[]") or "127.0.0.1", int(port))
    else:
        try:
            code = run_exec(bot)
        except SystemExit as e:  # SIGTERM, or a handler's sys.exit()
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    _linger(code)
    return code


def _linger(code: int) -> None:
    """The call is over: threads the bot left running (non-daemon) get a
    moment, then the process exits without waiting for them."""
    deadline = time.monotonic() + _LINGER
    for t in threading.enumerate():
        if t is threading.current_thread() or t.daemon:
            continue
        t.join(max(0.0, deadline - time.monotonic()))
        if t.is_alive():
            for stream in (sys.stderr, sys.__stdout__):
                try:
                    stream.flush()
                except (OSError, ValueError, AttributeError):
                    pass
            os._exit(code)
