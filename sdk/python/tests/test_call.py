"""The Call's messages and the dispatcher, in process (the transports have
their own tests)."""

import contextlib
import io
import threading
import unittest

import support  # noqa: F401  (puts the package on sys.path)

import callstream_bot as cs

PCM = b"\x01\x00\xff\xff"  # samples 1, -1
PCM64 = "AQD//w=="


def recording():
    sent = []
    return cs.Call(sent.append, call_sid="CAx"), sent


def lines(sent):
    return [cs.encode(m) for m in sent]


class Recorder(cs.Bot):
    """Every handler call, with its arguments."""

    def __init__(self):
        self.calls = []

    def on_start(self, call):
        self.calls.append(("start",))

    def on_utterance(self, call, utterance):
        self.calls.append(("utterance", utterance.pcm, utterance.rate, utterance.duration_ms, utterance.raw))

    def on_audio(self, call, frame):
        self.calls.append(("audio", frame.pcm, frame.rate, frame.seq, frame.dropped, frame.raw))

    def on_speech_started(self, call):
        self.calls.append(("speech_started",))

    def on_barge_in(self, call, barge):
        self.calls.append(("barge_in", barge.cleared, barge.heard_ms, barge.raw))

    def on_dtmf(self, call, digit):
        self.calls.append(("dtmf", digit))

    def on_mark(self, call, name, played):
        self.calls.append(("mark", name, played))

    def on_error(self, call, of, reason):
        self.calls.append(("error", of, reason))

    def on_stop(self, call, reason):
        self.calls.append(("stop", reason))

    def on_message(self, call, msg):
        self.calls.append(("message", msg))


def quietly(fn, *args):
    """Run fn; return what it wrote to stderr, as lines."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        fn(*args)
    return err.getvalue().splitlines()


class CallMessages(unittest.TestCase):
    def test_every_method_writes_its_documented_line(self):
        call, sent = recording()
        call.config(rate=8000, audio=True, version=2, utterances=False, barge_in=False, end_of_turn_ms=700, min_speech_ms=120)
        call.play(PCM, 22050)
        call.play(bytearray(PCM), 8000)
        call.mark("m-1")
        call.clear()
        call.send_digits("12w#")
        call.transcript("what time is it")
        call.reply("The time is 3:42 PM.")
        call.log("hello")
        call.log("careful", level="warn")
        self.assertEqual(
            lines(sent),
            [
                '{"type":"config","rate":8000,"audio":true,"version":2,"utterances":false,"barge_in":false,"end_of_turn_ms":700,"min_speech_ms":120}',
                '{"type":"play","rate":22050,"pcm":"AQD//w=="}',
                '{"type":"play","rate":8000,"pcm":"AQD//w=="}',
                '{"type":"mark","name":"m-1"}',
                '{"type":"clear"}',
                '{"type":"send_digits","digits":"12w#"}',
                '{"type":"transcript","text":"what time is it"}',
                '{"type":"reply","text":"The time is 3:42 PM."}',
                '{"type":"log","level":"info","message":"hello"}',
                '{"type":"log","level":"warn","message":"careful"}',
            ],
        )
        self.assertFalse(call.done)

    def test_the_call_enders(self):
        for do, line in [
            (lambda c: c.hangup(), '{"type":"hangup"}'),
            (lambda c: c.transfer("+14155550100"), '{"type":"transfer","to":"+14155550100"}'),
            (
                lambda c: c.transfer("sip:agent@pbx.example.com", caller_id="+14155550199", timeout=20),
                '{"type":"transfer","to":"sip:agent@pbx.example.com","caller_id":"+14155550199","timeout":20}',
            ),
            (lambda c: c.transfer("+1415", timeout=5), '{"type":"transfer","to":"+1415","timeout":5}'),
            (lambda c: c.end(), '{"type":"end"}'),
            (lambda c: c.end(say="Goodbye!"), '{"type":"end","say":"Goodbye!"}'),
            (
                lambda c: c.end(say="Goodbye!", voice="Polly.Joanna-Neural", language="en-US"),
                '{"type":"end","say":"Goodbye!","voice":"Polly.Joanna-Neural","language":"en-US"}',
            ),
        ]:
            call, sent = recording()
            self.assertFalse(call.done)
            do(call)
            self.assertEqual(lines(sent), [line])
            self.assertTrue(call.done, line)

    def test_say_is_reply_play_mark_with_numbered_names(self):
        call, sent = recording()
        self.assertEqual(call.say(PCM, 16000, text="Hello"), "reply-1")
        self.assertEqual(call.say(PCM, 24000), "reply-2")
        self.assertEqual(call.say(PCM, 8000, text="Named", name="greeting"), "greeting")
        self.assertEqual(call.say(PCM, 8000, text="Next"), "reply-4")
        self.assertEqual(
            lines(sent),
            [
                '{"type":"reply","text":"Hello"}',
                '{"type":"play","rate":16000,"pcm":"AQD//w=="}',
                '{"type":"mark","name":"reply-1"}',
                '{"type":"play","rate":24000,"pcm":"AQD//w=="}',
                '{"type":"mark","name":"reply-2"}',
                '{"type":"reply","text":"Named"}',
                '{"type":"play","rate":8000,"pcm":"AQD//w=="}',
                '{"type":"mark","name":"greeting"}',
                '{"type":"reply","text":"Next"}',
                '{"type":"play","rate":8000,"pcm":"AQD//w=="}',
                '{"type":"mark","name":"reply-4"}',
            ],
        )
        self.assertEqual(call.pending, ["Hello", "Named", "Next"])

    def test_flush_after_each_message_and_after_a_whole_say(self):
        events = []
        call = cs.Call(lambda m: events.append(m["type"]), flush=lambda: events.append("flush"))
        call.log("x")
        call.say(PCM, 16000, text="t")
        call.say(PCM, 16000)
        call.hangup()
        self.assertEqual(events, ["log", "flush", "reply", "play", "mark", "flush", "play", "mark", "flush", "hangup", "flush"])

    def test_config_only_as_the_first_line(self):
        call, sent = recording()
        call.config(rate=24000, type="ignored")
        self.assertEqual(lines(sent), ['{"type":"config","rate":24000}'])
        with self.assertRaises(cs.ProtocolError) as e:
            call.config(rate=16000)
        self.assertIn("first line", str(e.exception))
        call, sent = recording()
        call.log("x")
        with self.assertRaises(cs.ProtocolError):
            call.config()
        self.assertEqual(len(sent), 1)
        call, sent = recording()
        call.config()
        self.assertEqual(lines(sent), ['{"type":"config"}'])

    def test_wrong_arguments_raise_before_anything_is_sent(self):
        call, sent = recording()
        for bad, error in [
            (lambda: call.play("AQD//w==", 16000), TypeError),
            (lambda: call.play(PCM, "16000"), TypeError),
            (lambda: call.play(PCM, 16000.0), TypeError),
            (lambda: call.play(PCM, True), TypeError),
            (lambda: call.play(b"\x01\x00\x02", 16000), ValueError),
            (lambda: call.say(b"\x01", 16000, text="odd"), ValueError),
            (lambda: call.say(PCM, None, text="no rate"), TypeError),
            (lambda: call.say(PCM, 16000, text=5), TypeError),
            (lambda: call.mark(3), TypeError),
            (lambda: call.mark("m" * 257), ValueError),
            (lambda: call.mark("é" * 129), ValueError),
            (lambda: call.say(PCM, 16000, name="n" * 257), ValueError),
            (lambda: call.transfer(14155550100), TypeError),
            (lambda: call.transfer("+14155550100", timeout="20"), TypeError),
            (lambda: call.end(say=1), TypeError),
            (lambda: call.reply(None), TypeError),
            (lambda: call.log(b"x"), TypeError),
        ]:
            with self.assertRaises(error):
                bad()
        self.assertEqual(sent, [])
        self.assertFalse(call.done)
        call.mark("m" * 256)
        call.mark("é" * 128)
        self.assertEqual(len(sent), 2)

    def test_lines_are_bounded_and_ascii(self):
        overhead = len('{"type":"reply","text":""}')
        self.assertEqual(len(cs.encode({"type": "reply", "text": "a" * (cs.MAX_LINE - overhead)})), cs.MAX_LINE)
        with self.assertRaises(ValueError):
            cs.encode({"type": "reply", "text": "a" * (cs.MAX_LINE - overhead + 1)})
        call, sent = recording()
        self.assertEqual(cs.MAX_LINE, 16 * 1024 * 1024)
        # 12 MiB of PCM is 16 MiB of base64: over the limit with the fields.
        with self.assertRaises(ValueError) as e:
            cs.encode({"type": "play", "rate": 16000, "pcm": "A" * cs.MAX_LINE})
        self.assertIn("split", str(e.exception))
        self.assertEqual(cs.encode({"type": "reply", "text": "café\n\u2028"}), '{"type":"reply","text":"caf\\u00e9\\n\\u2028"}')

    def test_threads_may_talk_at_once(self):
        call, sent = recording()
        names = []

        def talk():
            for _ in range(50):
                names.append(call.say(PCM, 16000, text="t"))

        threads = [threading.Thread(target=talk) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertEqual(sorted(names), sorted(f"reply-{n}" for n in range(1, 201)))
        # Each say's three lines stay together, in order.
        for i in range(0, len(sent), 3):
            self.assertEqual([m["type"] for m in sent[i : i + 3]], ["reply", "play", "mark"])


class Dispatch(unittest.TestCase):
    def run_bot(self, *msgs, bot=None):
        bot = bot or Recorder()
        call, sent = recording()
        err = []
        for msg in msgs:
            err += quietly(cs.dispatch, bot, call, msg)
        return bot, call, sent, err

    def test_every_message_reaches_its_handler(self):
        utt = {"type": "utterance", "rate": 16000, "pcm": PCM64, "duration_ms": 1840}
        audio = {"type": "audio", "rate": 8000, "pcm": PCM64, "seq": 7, "dropped": 2}
        barge = {"type": "barge_in", "heard_ms": 640, "cleared": ["reply-2"]}
        later = {"type": "from_the_future", "x": 1}
        typeless = {"no": "type"}
        bot, call, sent, err = self.run_bot(
            {"type": "start", "version": 2, "call_sid": "CA1", "stream_sid": "MZ1", "account_sid": "AC1", "parameters": {"from": "+1", "to": "+2"}},
            {"type": "speech_started"},
            utt,
            audio,
            barge,
            {"type": "dtmf", "digit": "5"},
            {"type": "mark", "name": "reply-1", "outcome": "played"},
            {"type": "mark", "name": "reply-2", "outcome": "cleared"},
            {"type": "error", "of": "transfer", "reason": "not E.164"},
            {"type": "error", "of": None, "reason": "not JSON"},
            later,
            typeless,
            {"type": "stop", "reason": "caller hung up"},
        )
        self.assertEqual(
            bot.calls,
            [
                ("start",),
                ("speech_started",),
                ("utterance", PCM, 16000, 1840, utt),
                ("audio", PCM, 8000, 7, 2, audio),
                ("barge_in", ["reply-2"], 640, barge),
                ("dtmf", "5"),
                ("mark", "reply-1", True),
                ("mark", "reply-2", False),
                ("error", "transfer", "not E.164"),
                ("error", None, "not JSON"),
                ("message", later),
                ("message", typeless),
                ("stop", "caller hung up"),
            ],
        )
        self.assertEqual((call.call_sid, call.stream_sid, call.account_sid, call.version), ("CA1", "MZ1", "AC1", 2))
        self.assertEqual(call.parameters, {"from": "+1", "to": "+2"})
        self.assertEqual(call.start["type"], "start")
        self.assertTrue(call.done)
        self.assertEqual((sent, err), ([], []))

    def test_defaults_and_omitted_fields(self):
        bot, call, sent, err = self.run_bot(
            {"type": "utterance", "rate": 8000, "pcm": "AAAAAAAA"},  # 6 bytes at 8 kHz
            {"type": "audio", "rate": 16000, "pcm": ""},
            {"type": "barge_in"},
            {"type": "error", "reason": "x"},
            {"type": "stop"},
        )
        self.assertEqual(bot.calls[0][3], 0)  # 3 samples at 8 kHz: 0 ms
        self.assertEqual(bot.calls[1][1:5], (b"", 16000, 0, 0))
        self.assertEqual(bot.calls[2][1:3], ([], 0))
        self.assertEqual(bot.calls[3], ("error", None, "x"))
        self.assertEqual(bot.calls[4], ("stop", ""))
        bot, *_ = self.run_bot({"type": "utterance", "rate": 16000, "pcm": base64_of(b"\0\0" * 16000)})
        self.assertEqual(bot.calls[0][3], 1000)

    def test_the_base_bot_ignores_everything_but_errors(self):
        class Plain(cs.Bot):
            pass

        _, _, sent, err = self.run_bot(
            {"type": "start", "version": 2},
            {"type": "utterance", "rate": 16000, "pcm": PCM64},
            {"type": "audio", "rate": 16000, "pcm": PCM64, "seq": 0, "dropped": 0},
            {"type": "speech_started"},
            {"type": "barge_in", "heard_ms": 1, "cleared": []},
            {"type": "dtmf", "digit": "1"},
            {"type": "mark", "name": "m", "outcome": "played"},
            {"type": "later"},
            {"type": "error", "of": "hang_up", "reason": "unknown message type"},
            {"type": "stop", "reason": "r"},
            bot=Plain(),
        )
        self.assertEqual(sent, [])
        self.assertEqual(err, ["callstream_bot: callstream refused our 'hang_up': unknown message type"])
        self.assertIsNone(cs.Bot.config)

    def test_fields_of_the_wrong_kind_are_ignored_with_one_line_each(self):
        bad = [
            {"type": "utterance", "rate": 16000, "pcm": "!!not base64!!"},
            {"type": "utterance", "rate": 16000, "pcm": "AQA"},  # bad padding
            {"type": "utterance", "rate": 16000, "pcm": "AQD/"},  # 3 bytes
            {"type": "utterance", "rate": 16000, "pcm": 12},
            {"type": "utterance", "rate": 16000},
            {"type": "utterance", "rate": "fast", "pcm": PCM64},
            {"type": "utterance", "rate": True, "pcm": PCM64},
            {"type": "utterance", "rate": 0, "pcm": PCM64},
            {"type": "utterance", "rate": 16000, "pcm": PCM64, "duration_ms": "long"},
            {"type": "audio", "rate": 16000, "pcm": "AAAA"},
            {"type": "audio", "rate": 16000, "pcm": PCM64, "seq": "1"},
            {"type": "audio", "rate": 16000, "pcm": PCM64, "dropped": -1},
            {"type": "barge_in", "heard_ms": "x", "cleared": []},
            {"type": "barge_in", "heard_ms": 1, "cleared": "nope"},
            {"type": "barge_in", "heard_ms": 1, "cleared": [1]},
            {"type": "dtmf", "digit": 5},
            {"type": "dtmf"},
            {"type": "mark", "outcome": "played"},
            {"type": "mark", "name": "m"},
            {"type": "error", "of": 3, "reason": "x"},
            {"type": "error", "of": "x", "reason": None},
            {"type": "stop", "reason": 1},
        ]
        bot, call, sent, err = self.run_bot(*bad)
        self.assertEqual(bot.calls, [])
        self.assertEqual(sent, [])
        self.assertEqual(len(err), len(bad), err)
        for line, msg in zip(err, bad):
            article = "an" if msg["type"] in ("utterance", "audio", "error") else "a"
            self.assertTrue(line.startswith(f"callstream_bot: ignoring {article} {msg['type']} message: field "), line)
        self.assertFalse(call.done)

    def test_a_handler_that_raises_is_logged_and_the_call_goes_on(self):
        class Fragile(Recorder):
            def on_dtmf(self, call, digit):
                call.reply("before")
                raise KeyError(digit)

        bot, call, sent, err = self.run_bot(
            {"type": "dtmf", "digit": "9"},
            {"type": "dtmf", "digit": "8"},
            {"type": "speech_started"},
            bot=Fragile(),
        )
        self.assertEqual(
            lines(sent),
            [
                '{"type":"reply","text":"before"}',
                '{"type":"log","level":"error","message":"on_dtmf raised KeyError: \'9\'"}',
                '{"type":"reply","text":"before"}',
                '{"type":"log","level":"error","message":"on_dtmf raised KeyError: \'8\'"}',
            ],
        )
        self.assertEqual(bot.calls, [("speech_started",)])
        self.assertEqual(err[0], "callstream_bot: on_dtmf raised KeyError: '9'")
        self.assertIn("Traceback (most recent call last):", err[1])
        self.assertTrue(any("raise KeyError(digit)" in line for line in err), err)

    def test_nothing_is_dispatched_once_the_call_is_done(self):
        class Transferring(Recorder):
            def on_dtmf(self, call, digit):
                super().on_dtmf(call, digit)
                call.transfer("+14155550100")

        bot, call, sent, _ = self.run_bot(
            {"type": "dtmf", "digit": "0"},
            {"type": "dtmf", "digit": "1"},
            {"type": "stop", "reason": "transfer"},
            bot=Transferring(),
        )
        self.assertEqual(bot.calls, [("dtmf", "0")])
        self.assertEqual(lines(sent), ['{"type":"transfer","to":"+14155550100"}'])
        bot, call, sent, _ = self.run_bot({"type": "stop", "reason": "r"}, {"type": "dtmf", "digit": "1"})
        self.assertEqual(bot.calls, [("stop", "r")])

    def test_an_older_server_is_warned_about(self):
        for version, warned in [(2, False), (3, False), (1, True), (None, True), ("2", True)]:
            start = {"type": "start", "call_sid": "CA1"}
            if version is not None:
                start["version"] = version
            bot, call, sent, err = self.run_bot(start)
            self.assertEqual(bot.calls, [("start",)])
            if warned:
                note = f"callstream_bot speaks protocol version 2, callstream says {version!r}"
                self.assertEqual(sent, [{"type": "log", "level": "warn", "message": note}])
                self.assertEqual(err, ["callstream_bot: " + note])
            else:
                self.assertEqual((sent, err), ([], []))

    def test_heard_and_unheard(self):
        class Talker(cs.Bot):
            def on_start(self, call):
                call.say(PCM, 16000, text="Hello")  # reply-1
                call.say(PCM, 16000)  # reply-2: no text
                call.say(PCM, 16000, text="Time")  # reply-3
                call.say(PCM, 16000, text="Weather")  # reply-4

            def on_barge_in(self, call, barge):
                self.unheard = call.unheard(barge.cleared)

        bot = Talker()
        call, sent = recording()
        cs.dispatch(bot, call, {"type": "start", "version": 2})
        self.assertEqual((call.heard, call.pending), ([], ["Hello", "Time", "Weather"]))
        cs.dispatch(bot, call, {"type": "mark", "name": "reply-1", "outcome": "played"})
        cs.dispatch(bot, call, {"type": "mark", "name": "reply-2", "outcome": "played"})
        self.assertEqual((call.heard, call.pending), (["Hello"], ["Time", "Weather"]))
        cs.dispatch(bot, call, {"type": "barge_in", "heard_ms": 300, "cleared": ["reply-3", "reply-4", "reply-2", "unknown"]})
        self.assertEqual(bot.unheard, ["Time", "Weather"])
        cs.dispatch(bot, call, {"type": "mark", "name": "reply-3", "outcome": "cleared"})
        cs.dispatch(bot, call, {"type": "mark", "name": "reply-4", "outcome": "cleared"})
        self.assertEqual(call.heard, ["Hello"])
        self.assertEqual(call.pending, [])
        self.assertEqual(call.unheard(["reply-1", "reply-3", "reply-4"]), ["Time", "Weather"])
        # A mark that comes back twice counts once.
        cs.dispatch(bot, call, {"type": "mark", "name": "reply-1", "outcome": "played"})
        self.assertEqual(call.heard, ["Hello"])
        # heard is a copy.
        call.heard.append("x")
        self.assertEqual(call.heard, ["Hello"])

    def test_parse_line(self):
        err = quietly(lambda: self.assertIsNone(cs.parse_line(b"\n")))
        self.assertEqual(err, [])
        for garbage, why in [
            (b"not json\n", "not JSON"),
            (b"\xff\xfe binary\n", "not JSON"),
            (b"[1,2]\n", "not a JSON object"),
            (b'"a string"\n', "not a JSON object"),
            ("null", "not a JSON object"),
        ]:
            err = quietly(lambda: self.assertIsNone(cs.parse_line(garbage)))
            self.assertEqual(len(err), 1, err)
            self.assertIn(f"ignoring a line that is {why}: ", err[0])
        self.assertEqual(cs.parse_line(b' {"type":"dtmf","digit":"1"} \n'), {"type": "dtmf", "digit": "1"})
        self.assertEqual(cs.parse_line('{"type":"x"}'), {"type": "x"})


def base64_of(data):
    import base64

    return base64.b64encode(data).decode()


if __name__ == "__main__":
    unittest.main()
