"""What the tests share: the probe bot run as the exec bridge runs a
program, and the messages it reports."""

import json
import os
import queue
import subprocess
import sys
import threading

TESTS = os.path.dirname(os.path.abspath(__file__))
SDK = os.path.dirname(TESTS)
PROBE = os.path.join(TESTS, "bots", "probe.py")
if SDK not in sys.path:
    sys.path.insert(0, SDK)

# Long enough for a slow machine; a test only waits this long when it fails.
WAIT = 20

START = {
    "type": "start",
    "version": 2,
    "call_sid": "CA" + "5" * 32,
    "stream_sid": "MZ" + "6" * 32,
    "account_sid": "AC" + "7" * 32,
    "parameters": {"call_sid": "CA" + "5" * 32, "from": "+15551230000", "to": "+15559870000", "direction": "inbound"},
}

CONFIG_LINE = b'{"type":"config","rate":16000,"audio":false}\n'


def note_of(msg):
    """The probe's report in a log line, or None for any other message."""
    if msg.get("type") == "log" and msg.get("level") == "debug":
        return json.loads(msg["message"])
    return None


class ExecBot:
    """A bot run as callstream's exec bridge runs it: sh -c, the CALLSTREAM_*
    environment, JSON lines on pipes."""

    def __init__(self, bot="probe", env=None, script=PROBE):
        full = dict(os.environ)
        full.update(
            CALLSTREAM_CALL_SID="CAenv",
            CALLSTREAM_STREAM_SID="MZenv",
            CALLSTREAM_ACCOUNT_SID="ACenv",
            PROBE_BOT=bot,
        )
        full.update(env or {})
        self.proc = subprocess.Popen(
            ["sh", "-c", f'exec "{sys.executable}" "{script}"'],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=full,
        )
        self.lines = queue.Queue()
        self._stderr = []
        self._threads = [
            threading.Thread(target=self._read, daemon=True),
            threading.Thread(target=self._read_err, daemon=True),
        ]
        for t in self._threads:
            t.start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def _read_err(self):
        for line in self.proc.stderr:
            self._stderr.append(line.decode("utf-8", "replace").rstrip("\n"))

    def send_raw(self, data):
        self.proc.stdin.write(data)
        self.proc.stdin.flush()

    def send(self, msg):
        self.send_raw((json.dumps(msg) + "\n").encode())

    def line(self):
        """The next line the bot wrote, as bytes with its newline; None at EOF."""
        try:
            return self.lines.get(timeout=WAIT)
        except queue.Empty:
            raise AssertionError("the bot wrote nothing; stderr:\n" + "\n".join(self._stderr)) from None

    def next(self):
        line = self.line()
        assert line is not None, "the bot closed stdout; stderr:\n" + "\n".join(self._stderr)
        return json.loads(line)

    def note(self):
        """The next probe report (every other line is a failure here)."""
        msg = self.next()
        note = note_of(msg)
        assert note is not None, f"not a report: {msg}"
        return note

    def started(self, start=START):
        assert self.line() == CONFIG_LINE
        self.send(start)
        note = self.note()
        assert note["h"] == "start", note
        return note

    def wait(self):
        """The exit status, after the bot ended by itself."""
        code = self.proc.wait(timeout=WAIT)
        for t in self._threads:
            t.join(WAIT)
        return code

    def rest(self):
        """Every line left until EOF (after the bot exited)."""
        out = []
        while True:
            line = self.line()
            if line is None:
                return out
            out.append(line)

    @property
    def stderr(self):
        return list(self._stderr)

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        for f in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            try:
                f.close()
            except OSError:
                pass
