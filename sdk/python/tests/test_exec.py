"""The exec transport, as callstream's exec bridge drives it: the probe bot
(tests/bots/probe.py) as a process, JSON lines in and out."""

import json
import os
import signal
import tempfile
import time
import unittest

from support import CONFIG_LINE, SDK, START, ExecBot, note_of

PCM64 = "AQD//w=="


class ExecTransport(unittest.TestCase):
    def setUp(self):
        self.bots = []

    def tearDown(self):
        for b in self.bots:
            b.close()

    def bot(self, *args, **kwargs):
        b = ExecBot(*args, **kwargs)
        self.bots.append(b)
        return b

    def do(self, b, method, *args, **kwargs):
        b.send({"type": "do", "method": method, "args": list(args), "kwargs": kwargs})

    def test_config_first_then_the_facts_of_start(self):
        b = self.bot()
        note = b.started()
        self.assertEqual(
            note,
            {
                "h": "start",
                "instance": 1,
                "call_sid": START["call_sid"],
                "stream_sid": START["stream_sid"],
                "account_sid": START["account_sid"],
                "parameters": START["parameters"],
                "version": 2,
                "start": START,
                "thread": True,
            },
        )

    def test_the_facts_come_from_the_environment_before_start(self):
        b = self.bot()
        self.assertEqual(b.line(), CONFIG_LINE)
        b.send({"type": "state"})
        self.assertEqual(b.note()["sids"], ["CAenv", "MZenv", "ACenv"])
        # A start without them keeps them.
        b.send({"type": "start", "version": 2})
        note = b.note()
        self.assertEqual((note["call_sid"], note["stream_sid"], note["account_sid"]), ("CAenv", "MZenv", "ACenv"))
        self.assertEqual((note["parameters"], note["start"]), ({}, {"type": "start", "version": 2}))
        b.send(START)
        self.assertEqual(b.note()["call_sid"], START["call_sid"])
        b.send({"type": "state"})
        self.assertEqual(b.note()["sids"], [START["call_sid"], START["stream_sid"], START["account_sid"]])

    def test_no_config_line_when_config_is_none(self):
        b = self.bot(env={"PROBE_CONFIG": "none"})
        b.send(START)
        self.assertEqual(b.note()["h"], "start")
        b = self.bot(env={"PROBE_CONFIG": '{"rate":24000,"audio":true,"version":2,"end_of_turn_ms":500}'})
        self.assertEqual(b.line(), b'{"type":"config","rate":24000,"audio":true,"version":2,"end_of_turn_ms":500}\n')

    def test_every_call_method_writes_its_exact_line(self):
        b = self.bot()
        b.started()
        self.do(b, "play", "hex:0100ffff", 22050)
        self.do(b, "mark", "m-1")
        self.do(b, "say", "hex:0100ffff", 16000)
        self.do(b, "say", "hex:0100ffff", 16000, text="Hello there")
        self.do(b, "say", "hex:", 8000, text="named", name="greeting")
        self.do(b, "clear")
        self.do(b, "send_digits", "1234#")
        self.do(b, "reply", "The time is 3:42 PM.")
        self.do(b, "transcript", "what time is it")
        self.do(b, "log", "hello")
        self.do(b, "log", "oops", level="error")
        expected = [
            b'{"type":"play","rate":22050,"pcm":"AQD//w=="}',
            b'{"type":"mark","name":"m-1"}',
            b'{"type":"play","rate":16000,"pcm":"AQD//w=="}',
            b'{"type":"mark","name":"reply-1"}',
            b'{"type":"log","level":"debug","message":"{\\"h\\": \\"result\\", \\"value\\": \\"reply-1\\"}"}',
            b'{"type":"reply","text":"Hello there"}',
            b'{"type":"play","rate":16000,"pcm":"AQD//w=="}',
            b'{"type":"mark","name":"reply-2"}',
            b'{"type":"log","level":"debug","message":"{\\"h\\": \\"result\\", \\"value\\": \\"reply-2\\"}"}',
            b'{"type":"reply","text":"named"}',
            b'{"type":"play","rate":8000,"pcm":""}',
            b'{"type":"mark","name":"greeting"}',
            b'{"type":"log","level":"debug","message":"{\\"h\\": \\"result\\", \\"value\\": \\"greeting\\"}"}',
            b'{"type":"clear"}',
            b'{"type":"send_digits","digits":"1234#"}',
            b'{"type":"reply","text":"The time is 3:42 PM."}',
            b'{"type":"transcript","text":"what time is it"}',
            b'{"type":"log","level":"info","message":"hello"}',
            b'{"type":"log","level":"error","message":"oops"}',
        ]
        self.assertEqual([b.line() for _ in expected], [e + b"\n" for e in expected])

    def test_each_call_ender_is_written_and_the_stop_after_it_ends_the_process(self):
        for method, args, kwargs, line in [
            ("hangup", [], {}, b'{"type":"hangup"}\n'),
            ("transfer", ["+14155550100"], {}, b'{"type":"transfer","to":"+14155550100"}\n'),
            (
                "transfer",
                ["sip:agent@pbx.example.com"],
                {"caller_id": "+14155550199", "timeout": 20},
                b'{"type":"transfer","to":"sip:agent@pbx.example.com","caller_id":"+14155550199","timeout":20}\n',
            ),
            ("end", [], {"say": "Goodbye!"}, b'{"type":"end","say":"Goodbye!"}\n'),
            (
                "end",
                [],
                {"say": "Bye", "voice": "Polly.Amy", "language": "en-GB"},
                b'{"type":"end","say":"Bye","voice":"Polly.Amy","language":"en-GB"}\n',
            ),
        ]:
            with self.subTest(method=method, kwargs=kwargs):
                b = self.bot()
                b.started()
                self.do(b, method, *args, **kwargs)
                self.assertEqual(b.line(), line)
                # callstream answers an ender with stop (or refuses it: below).
                b.send({"type": "stop", "reason": "the program ended the call"})
                self.assertEqual(b.wait(), 0)
                self.assertEqual(b.rest(), [])

    def test_a_refused_transfer_reaches_on_error_and_the_call_goes_on(self):
        b = self.bot()
        b.started()
        self.do(b, "transfer", "12")
        self.assertEqual(b.next(), {"type": "transfer", "to": "12"})
        b.send({"type": "error", "of": "transfer", "reason": "bad transfer: not E.164"})
        self.assertEqual(b.note(), {"h": "error", "of": "transfer", "reason": "bad transfer: not E.164", "done": False})
        self.do(b, "log", "still here")
        self.assertEqual(b.next(), {"type": "log", "level": "info", "message": "still here"})
        b.send({"type": "stop", "reason": "the caller hung up"})
        self.assertEqual(b.wait(), 0)

    def test_every_message_reaches_its_handler(self):
        b = self.bot()
        b.started()
        utt = {"type": "utterance", "rate": 16000, "pcm": PCM64, "duration_ms": 1840}
        audio = {"type": "audio", "rate": 16000, "pcm": PCM64, "seq": 3, "dropped": 1}
        barge = {"type": "barge_in", "heard_ms": 640, "cleared": ["reply-2"]}
        for msg in [
            {"type": "speech_started"},
            utt,
            audio,
            barge,
            {"type": "dtmf", "digit": "#"},
            {"type": "mark", "name": "reply-1", "outcome": "played"},
            {"type": "mark", "name": "reply-2", "outcome": "cleared"},
            {"type": "from_the_future", "x": [1]},
        ]:
            b.send(msg)
        self.assertEqual(
            [b.note() for _ in range(8)],
            [
                {"h": "speech_started"},
                {"h": "utterance", "pcm": "0100ffff", "rate": 16000, "duration_ms": 1840, "raw": utt},
                {"h": "audio", "pcm": "0100ffff", "rate": 16000, "seq": 3, "dropped": 1, "raw": audio},
                {"h": "barge_in", "cleared": ["reply-2"], "heard_ms": 640, "raw": barge, "unheard": []},
                {"h": "dtmf", "digit": "#"},
                {"h": "mark", "name": "reply-1", "played": True},
                {"h": "mark", "name": "reply-2", "played": False},
                {"h": "message", "msg": {"type": "from_the_future", "x": [1]}},
            ],
        )
        b.send({"type": "stop", "reason": "caller hung up"})
        self.assertEqual(b.note(), {"h": "stop", "reason": "caller hung up"})
        self.assertEqual(b.wait(), 0)
        self.assertEqual(b.rest(), [])

    def test_on_error_by_default_logs_to_stderr(self):
        b = self.bot("quiet")
        b.send(START)
        b.send({"type": "error", "of": "transfer", "reason": 'bad transfer: "12" is not an E.164 number'})
        b.send({"type": "error", "of": None, "reason": "not JSON"})
        b.send({"type": "stop", "reason": "done"})
        self.assertEqual(b.wait(), 0)
        self.assertEqual(b.rest(), [])  # Quiet has no config and writes nothing
        self.assertEqual(
            b.stderr,
            [
                "callstream_bot: callstream refused our 'transfer': bad transfer: \"12\" is not an E.164 number",
                "callstream_bot: callstream refused our None: not JSON",
            ],
        )

    def test_garbage_lines_are_ignored_with_one_stderr_line_each(self):
        b = self.bot()
        b.started()
        garbage = [
            b"not json\n",
            b"[1,2,3]\n",
            b'"a string"\n',
            b"\xff\xfe\x00 binary\n",
            b'{"type":"utterance","rate":16000,"pcm":"!!not base64!!","duration_ms":5}\n',
            b'{"type":"utterance","rate":16000,"pcm":"AQD/"}\n',
            b'{"type":"audio","rate":16000,"pcm":"AAAA","seq":0,"dropped":0}\n',
            b'{"type":"utterance","rate":"fast","pcm":"AQD//w=="}\n',
            b'{"type":"barge_in","heard_ms":"x","cleared":"nope"}\n',
            b'{"type":"mark","name":7,"outcome":"played"}\n',
        ]
        for raw in garbage:
            b.send_raw(raw)
        b.send_raw(b"\n   \n")  # blank lines: nothing to say about them
        b.send({"type": "dtmf", "digit": "1"})
        self.assertEqual(b.note(), {"h": "dtmf", "digit": "1"})
        b.send({"type": "stop", "reason": "r"})
        self.assertEqual(b.note()["h"], "stop")
        self.assertEqual(b.wait(), 0)
        ignored = [line for line in b.stderr if line.startswith("callstream_bot: ignoring")]
        self.assertEqual(len(ignored), len(garbage), b.stderr)
        self.assertEqual(len(b.stderr), len(garbage), b.stderr)
        self.assertEqual(ignored[0], "callstream_bot: ignoring a line that is not JSON: b'not json\\n'")
        self.assertEqual(ignored[4], "callstream_bot: ignoring an utterance message: field 'pcm' is not base64")

    def test_an_exception_in_a_handler_is_logged_and_the_call_goes_on(self):
        b = self.bot()
        b.started()
        b.send({"type": "raise", "what": "boom"})
        self.assertEqual(b.next(), {"type": "log", "level": "error", "message": "on_message raised ValueError: boom"})
        b.send({"type": "dtmf", "digit": "2"})
        self.assertEqual(b.note(), {"h": "dtmf", "digit": "2"})
        b.send({"type": "stop", "reason": "r"})
        b.note()
        self.assertEqual(b.wait(), 0)
        self.assertEqual(b.stderr[0], "callstream_bot: on_message raised ValueError: boom")
        self.assertIn('raise ValueError(msg.get("what"))', "\n".join(b.stderr))

    def test_config_too_late_is_an_error(self):
        b = self.bot()
        b.started()
        self.do(b, "config", rate=8000)
        msg = b.next()
        self.assertEqual(msg["type"], "log")
        self.assertEqual(msg["level"], "error")
        self.assertTrue(msg["message"].startswith("on_message raised ProtocolError: config must be the first line"), msg)
        # Without a config of the class, a config as the first line is fine,
        # even from on_start's time.
        b = self.bot(env={"PROBE_CONFIG": "none"})
        self.do(b, "config", rate=8000, audio=True)
        self.assertEqual(b.line(), b'{"type":"config","rate":8000,"audio":true}\n')

    def test_bad_arguments_from_a_handler_are_logged(self):
        b = self.bot()
        b.started()
        self.do(b, "play", "hex:010203", 16000)
        msg = b.next()
        self.assertEqual((msg["type"], msg["level"]), ("log", "error"))
        self.assertIn("ValueError: pcm has an odd number of bytes (3)", msg["message"])

    def test_heard_and_unheard(self):
        b = self.bot()
        b.started()
        for text in ("Hello", "Time", "Weather"):
            self.do(b, "say", "hex:0000", 16000, text=text)
        for _ in range(3):
            for kind in ("reply", "play", "mark"):
                self.assertEqual(b.next()["type"], kind)
            self.assertEqual(b.note()["h"], "result")
        b.send({"type": "mark", "name": "reply-1", "outcome": "played"})
        self.assertEqual(b.note(), {"h": "mark", "name": "reply-1", "played": True})
        b.send({"type": "speech_started"})
        self.assertEqual(b.note(), {"h": "speech_started"})
        barge = {"type": "barge_in", "heard_ms": 1180, "cleared": ["reply-2", "reply-3"]}
        b.send(barge)
        self.assertEqual(b.note(), {"h": "barge_in", "cleared": ["reply-2", "reply-3"], "heard_ms": 1180, "raw": barge, "unheard": ["Time", "Weather"]})
        b.send({"type": "mark", "name": "reply-2", "outcome": "cleared"})
        b.send({"type": "mark", "name": "reply-3", "outcome": "cleared"})
        b.note(), b.note()
        b.send({"type": "state", "names": ["reply-1", "reply-2", "reply-3"]})
        note = b.note()
        del note["sids"]
        self.assertEqual(note, {"h": "state", "heard": ["Hello"], "pending": [], "unheard": ["Time", "Weather"], "done": False})

    def test_a_print_goes_to_stderr_not_to_the_protocol(self):
        b = self.bot()
        b.started()
        b.send({"type": "print", "text": "stray words"})
        b.send({"type": "dtmf", "digit": "3"})
        self.assertEqual(b.note(), {"h": "dtmf", "digit": "3"})
        b.send({"type": "stop", "reason": "r"})
        b.note()
        self.assertEqual(b.wait(), 0)
        self.assertIn("stray words", b.stderr)
        self.assertIn("child stray words", b.stderr)

    def test_a_thread_of_the_bot_may_send_and_its_lines_are_flushed(self):
        b = self.bot()
        b.started()
        b.send({"type": "thread", "method": "say", "args": ["hex:0000", 16000], "kwargs": {"text": "from a thread"}})
        self.assertEqual(b.next(), {"type": "reply", "text": "from a thread"})
        self.assertEqual(b.next(), {"type": "play", "rate": 16000, "pcm": "AAA="})
        self.assertEqual(b.next(), {"type": "mark", "name": "reply-1"})

    def test_the_end_of_the_call_done_and_exit_0(self):
        # stop
        b = self.bot()
        b.started()
        b.send({"type": "stop", "reason": "caller hung up"})
        self.assertEqual(b.note(), {"h": "stop", "reason": "caller hung up"})
        self.assertEqual(b.wait(), 0)
        # end of input, with no stop
        b = self.bot()
        b.started()
        b.proc.stdin.close()
        self.assertEqual(b.wait(), 0)
        self.assertEqual(b.rest(), [])
        # end of input before anything
        b = self.bot()
        b.proc.stdin.close()
        self.assertEqual(b.wait(), 0)
        self.assertEqual(b.rest(), [CONFIG_LINE])
        # SIGTERM while waiting for a line
        b = self.bot()
        b.started()
        b.proc.send_signal(signal.SIGTERM)
        self.assertEqual(b.wait(), 0)
        # SIGTERM in the middle of a slow handler
        b = self.bot()
        b.started()
        b.send({"type": "sleep", "seconds": 30})
        time.sleep(0.3)
        t0 = time.monotonic()
        b.proc.send_signal(signal.SIGTERM)
        self.assertEqual(b.wait(), 0)
        self.assertLess(time.monotonic() - t0, 5)
        self.assertEqual(b.rest(), [])

    def test_a_bot_thread_still_running_does_not_hold_the_exit(self):
        b = self.bot()
        b.started()
        b.send({"type": "linger", "seconds": 30})  # a thread of the bot's own, not a daemon
        self.assertEqual(b.note(), {"h": "lingering"})
        t0 = time.monotonic()
        b.send({"type": "stop", "reason": "r"})
        self.assertEqual(b.note()["h"], "stop")
        self.assertEqual(b.wait(), 0)
        self.assertLess(time.monotonic() - t0, 5)

    def test_a_bot_that_cannot_start_exits_1_after_its_config(self):
        b = self.bot("broken")
        self.assertEqual(b.wait(), 1)
        self.assertEqual(b.rest(), [b'{"type":"config","rate":8000}\n'])
        self.assertEqual(b.stderr[0], "callstream_bot: the bot could not start: RuntimeError: no model")

    def test_sequence_of_a_whole_call(self):
        """The docs' call, line by line, with the probe in the bot's place."""
        b = self.bot()
        b.started()
        self.do(b, "say", "hex:0000", 22050, text="Hello!")
        self.assertEqual([b.next()["type"] for _ in range(4)], ["reply", "play", "mark", "log"])
        b.send({"type": "mark", "name": "reply-1", "outcome": "played"})
        self.assertEqual(b.note()["played"], True)
        self.do(b, "transfer", "+14155550100")
        self.assertEqual(b.next(), {"type": "transfer", "to": "+14155550100"})
        b.send({"type": "stop", "reason": "the program ended the call"})
        self.assertEqual(b.wait(), 0)
        self.assertEqual([json.loads(x) for x in b.rest()], [])
        self.assertEqual(note_of({"type": "log", "level": "info", "message": "x"}), None)


class ReadmeExample(unittest.TestCase):
    """The README's whole bot, run as callstream runs it."""

    def setUp(self):
        text = open(os.path.join(SDK, "README.md"), encoding="utf-8").read()
        code = text.split("## A whole bot", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
        self.tmp = tempfile.TemporaryDirectory()
        self.script = os.path.join(self.tmp.name, "parrot.py")
        with open(self.script, "w") as f:
            f.write(code)

    def tearDown(self):
        self.tmp.cleanup()

    def test_the_parrot(self):
        b = ExecBot(env={"PYTHONPATH": SDK}, script=self.script)
        try:
            self.assertEqual(b.line(), b'{"type":"config","rate":16000}\n')
            b.send(START)
            self.assertEqual(b.next(), {"type": "log", "level": "info", "message": "a call from +15551230000"})
            b.send({"type": "utterance", "rate": 16000, "pcm": PCM64, "duration_ms": 1840})
            self.assertEqual(
                [b.next() for _ in range(4)],
                [
                    {"type": "transcript", "text": "(1840 ms of speech)"},
                    {"type": "reply", "text": "(your own words)"},
                    {"type": "play", "rate": 16000, "pcm": PCM64},
                    {"type": "mark", "name": "reply-1"},
                ],
            )
            b.send({"type": "barge_in", "heard_ms": 20, "cleared": ["reply-1"]})
            self.assertEqual(b.next(), {"type": "log", "level": "info", "message": "not heard: ['(your own words)']"})
            b.send({"type": "dtmf", "digit": "#"})
            self.assertEqual(b.next(), {"type": "end", "say": "Goodbye!"})
            b.send({"type": "stop", "reason": "the program ended the call"})
            self.assertEqual(b.wait(), 0)
        finally:
            b.close()

    def test_the_offline_test_snippet(self):
        text = open(os.path.join(SDK, "README.md"), encoding="utf-8").read()
        snippet = text.split("### Testing a bot without callstream", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
        scope = {}
        exec(compile(open(self.script).read().replace('if __name__ == "__main__":', "if False:"), self.script, "exec"), scope)
        exec(snippet, scope)
        self.assertTrue(scope["call"].done)


if __name__ == "__main__":
    unittest.main()
