"""How the offline bot hears: pocketsphinx against a small grammar, and the
intent of what it heard. Kept apart from bot.py so that the recogniser can be
measured (measure_recognition.py) and improved without touching the call logic.
"""

import array
import os
import sys

# pocketsphinx's bundled en-us acoustic model is trained on 16 kHz speech.
RECOGNISER_RATE = 16000

# The grammar maps every utterance onto either an intent phrase or a run of
# common filler words: without the filler path, anything the caller says would
# be forced onto the nearest intent ("tell me a joke" -> "tell me the time").
GRAMMAR = """#JSGF V1.0;
grammar bot;
public <utterance> = <time> | <weather> | <agent> | <bye> | <other>;
<time> = [what] time [is it] | what's the time | tell me the time;
<weather> = [what is | what's | how is] the weather [like] [today] | weather | forecast;
<agent> = [i want to talk to | i'd like to speak to | let me talk to] [an | a] (agent | operator | human | person | representative);
<bye> = goodbye | bye | bye bye;
<other> = <w> | <w> <w> | <w> <w> <w> | <w> <w> <w> <w> | <w> <w> <w> <w> <w>;
<w> = hello | hi | yes | no | thanks | joke | cats | me | tell | about | do | can | you | help | please | okay | open | up | and | there;
"""


AGENT_WORDS = {"agent", "operator", "human", "person", "representative"}
WEATHER_WORDS = {"weather", "forecast"}
BYE_WORDS = {"bye", "goodbye"}

def resample(pcm, rate_in, rate_out):
    """Linear-interpolation resampling of 16-bit little-endian mono PCM.

    callstream already sends utterances at the rate asked for in `config`;
    this only guards against a server that did not honour it.
    """
    if rate_in == rate_out or not pcm:
        return pcm
    src = array.array("h")
    src.frombytes(pcm[: len(pcm) - len(pcm) % 2])
    if sys.byteorder != "little":
        src.byteswap()
    n_out = len(src) * rate_out // rate_in
    out = array.array("h", bytes(2 * n_out))
    last = len(src) - 1
    for i in range(n_out):
        pos = i * rate_in / rate_out
        j = int(pos)
        frac = pos - j
        a = src[min(j, last)]
        b = src[min(j + 1, last)]
        out[i] = int(a + (b - a) * frac)
    if sys.byteorder != "little":
        out.byteswap()
    return out.tobytes()


class Recogniser:
    """pocketsphinx with the bot's grammar, one whole utterance at a time."""

    def __init__(self):
        from pocketsphinx import Decoder  # imported here so --help works without it

        self.decoder = Decoder(samprate=RECOGNISER_RATE, logfn=os.devnull)
        self.decoder.add_jsgf_string("bot", GRAMMAR)
        self.decoder.activate_search("bot")

    def recognise(self, pcm, rate):
        """Return the words heard in `pcm` (16-bit LE mono at `rate`), or ""."""
        pcm = resample(pcm, rate, RECOGNISER_RATE)
        self.decoder.start_utt()
        self.decoder.process_raw(pcm, full_utt=True)
        self.decoder.end_utt()
        hyp = self.decoder.hyp()
        return hyp.hypstr if hyp is not None else ""


def intent_of(words):
    """Map recognised words to one of: time, weather, agent, bye, other."""
    tokens = set(words.lower().replace("'s", "").split())
    if tokens & AGENT_WORDS:
        return "agent"
    if tokens & WEATHER_WORDS:
        return "weather"
    if "time" in tokens:
        return "time"
    if tokens & BYE_WORDS:
        return "bye"
    return "other"
