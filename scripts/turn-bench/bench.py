#!/usr/bin/env python3
"""Turn-taking benchmark on real recorded speech (see README.md beside this file).

Builds a seeded corpus of "conversations" (real utterances separated by pauses of
stated lengths), mixes it with real non-speech (hold music, babble of other real
voices, pink noise) at stated SNRs, passes it through G.711 mu-law, runs
callstream's detector and WebRTC VAD, Silero VAD v6.2 and TEN VAD on the same
audio, and scores them against the truth taken from the clean sources.

Run it through run.sh, which installs the data and the packages first.
"""

import argparse
import hashlib
import json
import math
import multiprocessing as mp
import os
import platform
import resource
import subprocess
import sys
import time
import wave
from pathlib import Path

import numpy as np

SR = 8000
FRAME = 160  # 20 ms at 8 kHz: callstream's frame and the scoring grid
FRAME_S = FRAME / SR
TRIM_HOP = 80  # 10 ms analysis frames for the truth
MIN_SPEECH_S = 0.060  # callstream's defaults, applied to every detector
HANGOVER_S = 0.300
LONG_PAUSE_S = 0.500  # the "pause of 500 ms or more"
START_SLACK_S = 0.200  # a detection may start this much before the truth

ASTERISK = Path("/usr/share/asterisk/sounds")
MOH = Path("/usr/share/asterisk/moh")
SPHINX = Path("/usr/share/pocketsphinx/test/data")
TEST_VOICES = ["en_US_f_Allison"]  # plus all of pocketsphinx-testdata
BABBLE_VOICES = ["fr_CA_f_June", "it_IT_m_Carlo", "ru_RU_f_IvrvoiceRU"]
NOT_SPEECH = {"beep", "beeperr", "ascending-2tone", "descending-2tone", "tt-monkeys"}

SHORT_PAUSES_MS = [200, 300, 400]
LONG_PAUSES_MS = [500, 650, 800, 1000, 1500]

CONDITIONS = {
    # name: (noise kind, SNR dB, babble talkers)
    "clean": (None, None, None),
    "moh15": ("music", 15.0, None),
    "moh5": ("music", 5.0, None),
    "babble10": ("babble", 10.0, 12),
    "babble5": ("babble", 5.0, 12),
    "babble10-6": ("babble", 10.0, 6),
    "pink10": ("pink", 10.0, None),
}
FULL_CONDITIONS = list(CONDITIONS)
QUICK_CONDITIONS = ["clean", "moh15", "babble10"]
CONDITION_TEXT = {
    "clean": "clean (no noise added)",
    "moh15": "hold music, 15 dB SNR",
    "moh5": "hold music, 5 dB SNR",
    "babble10": "babble of 12 talkers, 10 dB SNR",
    "babble5": "babble of 12 talkers, 5 dB SNR",
    "babble10-6": "babble of 6 talkers (fewer, so more speech-like), 10 dB SNR",
    "pink10": "pink noise, 10 dB SNR",
}

# Detector variants in the order of the tables.
VARIANTS = [
    "callstream",
    "webrtc-2",
    "webrtc-3",
    "silero-0.5",
    "silero-0.5/0.35",
    "silero-0.3",
    "ten-0.5",
]
VARIANT_TEXT = {
    "callstream": "callstream (energy VAD, server defaults)",
    "webrtc-2": "WebRTC VAD mode 2, 20 ms",
    "webrtc-3": "WebRTC VAD mode 3, 20 ms",
    "silero-0.5": "Silero v6.2, 8 kHz, p ≥ 0.5",
    "silero-0.5/0.35": "Silero v6.2, enter 0.5 / leave 0.35 (upstream's default hysteresis)",
    "silero-0.3": "Silero v6.2, p ≥ 0.3 (lower threshold for v6's lower probabilities)",
    "ten-0.5": "TEN VAD, 16 kHz (upsampled), hop 160, p ≥ 0.5",
}


# --------------------------------------------------------------------------- G.711

def _ulaw_tables():
    """G.711 mu-law giving the same codes as CPython's audioop, which callstream's
    codec mirrors: the 16-bit sample is shifted to 14 bits and biased by 33, and a
    magnitude past the last segment gives the largest code."""
    s = np.arange(-32768, 32768, dtype=np.int32)
    v = s >> 2  # arithmetic shift, as audioop's `val >> 2`
    mask = np.where(v < 0, 0x7F, 0xFF)
    mag = np.minimum(np.abs(v), 8159) + 33
    seg = np.zeros_like(mag)
    for i, end in enumerate([0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF]):
        seg = np.where((mag > end), i + 1, seg)
    u = np.where(seg >= 8, 0x7F, (seg << 4) | ((mag >> (seg + 1)) & 0xF))
    enc = (u ^ mask).astype(np.uint8)  # indexed by sample + 32768
    b = np.arange(256, dtype=np.int32)
    ub = ~b & 0xFF
    t = (((ub & 0x0F) << 3) + 0x84) << ((ub & 0x70) >> 4)
    dec = np.where(ub & 0x80, 0x84 - t, t - 0x84).astype(np.int16)
    return enc, dec


ULAW_ENC, ULAW_DEC = _ulaw_tables()


def ulaw_encode(pcm16):
    return ULAW_ENC[pcm16.astype(np.int32) + 32768]


def ulaw_decode(ulaw):
    return ULAW_DEC[np.frombuffer(ulaw, np.uint8) if isinstance(ulaw, (bytes, bytearray)) else ulaw]


def check_g711():
    """Compare the tables with audioop where this Python still has it (< 3.13)."""
    try:
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import audioop  # noqa: F401
    except ImportError:
        return "audioop not available; tables not cross-checked"
    allpcm = np.arange(-32768, 32768, dtype=np.int16)
    ref = np.frombuffer(audioop.lin2ulaw(allpcm.tobytes(), 2), np.uint8)
    assert np.array_equal(ref, ULAW_ENC), "mu-law encoder differs from audioop"
    refd = np.frombuffer(audioop.ulaw2lin(bytes(range(256)), 2), np.int16)
    assert np.array_equal(refd, ULAW_DEC), "mu-law decoder differs from audioop"
    return "identical to audioop for all 65,536 samples and 256 codes"


# --------------------------------------------------------------------------- sources

def read_8k(path):
    """A source as float64 samples at 8 kHz (16-bit scale)."""
    path = str(path)
    if path.endswith(".wav"):
        with wave.open(path) as w:
            if w.getframerate() == SR and w.getsampwidth() == 2 and w.getnchannels() == 1:
                return np.frombuffer(w.readframes(w.getnframes()), "<i2").astype(np.float64)
        args = ["sox", path]
    else:  # pocketsphinx's .raw files: 16 kHz, 16-bit little-endian, mono
        args = ["sox", "-t", "raw", "-r", "16000", "-e", "signed", "-b", "16", "-c", "1", path]
    # Float output: sox dithers (randomly) whenever it writes 16-bit after an effect.
    out = subprocess.run(
        args + ["-t", "raw", "-r", str(SR), "-e", "floating-point", "-b", "32", "-c", "1", "-", "rate", "-v"],
        check=True,
        capture_output=True,
    ).stdout
    return np.frombuffer(out, "<f4").astype(np.float64) * 32768.0


def frame_db(x, hop=TRIM_HOP):
    n = len(x) // hop
    e = (x[: n * hop].reshape(n, hop) ** 2).mean(axis=1)
    return 10 * np.log10(e / 32768.0**2 + 1e-12)


def trim(x):
    """Truth for one clean utterance: 10 ms frames whose energy is within 35 dB of
    the loudest frame (and at least 10 dB above the recording's own floor, its 10th
    percentile frame) are active; the utterance runs from the first active frame to
    the end of the last. Returns (start, end, longest internal gap) in samples."""
    db = frame_db(x)
    if len(db) < 5 or db.max() < -70:
        return 0, 0, 0  # empty or silent file: never used
    thr = max(db.max() - 35.0, np.percentile(db, 10) + 10.0)
    act = np.nonzero(db >= thr)[0]
    s, e = int(act[0]), int(act[-1]) + 1
    inner = db[s:e] >= thr
    gap = run = 0
    for a in inner:
        run = 0 if a else run + 1
        gap = max(gap, run)
    return s * TRIM_HOP, e * TRIM_HOP, gap * TRIM_HOP


class Utterance:
    def __init__(self, name, x):
        self.name = name
        self.x = x
        self.start, self.end, self.gap = trim(x)

    @property
    def dur(self):
        return (self.end - self.start) / SR

    def active_db(self):
        seg = self.x[self.start : self.end]
        return 10 * np.log10((seg**2).mean() / 32768.0**2 + 1e-12)

    def clip(self, margin_s):
        """The utterance cut at margin_s around its truth, 10 ms raised-cosine fades
        at the cuts; returns (samples, offset of the truth start in them)."""
        m = int(margin_s * SR)
        a, b = max(0, self.start - m), min(len(self.x), self.end + m)
        c = self.x[a:b].copy()
        f = 80
        ramp = 0.5 - 0.5 * np.cos(np.pi * np.arange(f) / f)
        if a > 0:
            c[:f] *= ramp
        if b < len(self.x):
            c[-f:] *= ramp[::-1]
        return c, self.start - a


def voice_files(voice):
    root = ASTERISK / voice
    out = []
    for p in sorted(root.rglob("*.wav")):
        rel = p.relative_to(root)
        if rel.parts[0] == "silence" or p.stem in NOT_SPEECH:
            continue
        out.append(p)
    return out


def sphinx_files():
    files = sorted((SPHINX / "cards").glob("*.wav")) + sorted((SPHINX / "librivox").glob("*.wav"))
    files += [SPHINX / n for n in ("goforward.raw", "numbers.raw", "something.raw")]
    files += [SPHINX / "tidigits" / "dhd.2934z.raw"]
    return files


def load_test_pool():
    allison, sphinx, rejected = [], [], []
    for p in voice_files(TEST_VOICES[0]):
        u = Utterance(f"{TEST_VOICES[0]}/{p.relative_to(ASTERISK / TEST_VOICES[0])}", read_8k(p))
        if 0.35 <= u.dur <= 6.0 and u.gap < int(0.3 * SR):
            allison.append(u)
        else:
            rejected.append(u.name)
    for p in sphinx_files():
        u = Utterance(f"pocketsphinx/{p.relative_to(SPHINX)}", read_8k(p))
        if u.gap < int(0.3 * SR):
            sphinx.append(u)
        else:
            rejected.append(u.name)
    return allison, sphinx, rejected


# --------------------------------------------------------------------------- corpus

def build_conversations(rng, n_conv, n_turns, allison, sphinx):
    """Each conversation: 1.5 s lead, n_turns utterances at a level drawn per
    conversation, separated by pauses (true end to true start) from a balanced
    list, and a 1.5 s tail. Two turns of each are pocketsphinx speakers."""
    n_pauses = n_conv * (n_turns - 1)
    values = SHORT_PAUSES_MS + LONG_PAUSES_MS
    pauses = [values[i % len(values)] for i in range(n_pauses)]
    pauses = list(rng.permutation(pauses))
    order = list(rng.permutation(len(allison)))
    convs = []
    sphinx_i = 0
    for c in range(n_conv):
        picks = []
        n_sphinx = min(2, n_turns // 3)  # two turns of pocketsphinx speakers per conversation
        slots = set(rng.choice(n_turns, size=n_sphinx, replace=False).tolist())
        for t in range(n_turns):
            if t in slots:
                picks.append(sphinx[sphinx_i % len(sphinx)])
                sphinx_i += 1
            else:
                picks.append(allison[order.pop()])
        level = rng.uniform(-30.0, -20.0)
        lead, tail, margin = 1.5, 1.5, 0.1
        placed, cursor = [], lead
        for t, u in enumerate(picks):
            pause = None if t == 0 else pauses.pop() / 1000.0
            if pause is not None:
                cursor += pause
            gain_db = level + rng.uniform(-2.0, 2.0) - u.active_db()
            placed.append((u, cursor, pause, gain_db))
            cursor += u.dur
        total = int(round((cursor + tail) * SR))
        speech = np.zeros(total)
        turns = []
        for u, at, pause, gain_db in placed:
            clip, off = u.clip(margin)
            s0 = int(round(at * SR)) - off
            a = max(0, s0)
            speech[a : s0 + len(clip)] += clip[a - s0 :] * 10 ** (gain_db / 20)
            start = int(round(at * SR))
            turns.append(
                {
                    "start": start / SR,
                    "end": (start + u.end - u.start) / SR,
                    "pause_before": pause,
                    "source": u.name,
                    "conversation_level_dbfs": round(level, 2),
                }
            )
        convs.append({"speech": speech, "turns": turns})
    return convs


def truth_mask(turns, n):
    m = np.zeros(n, bool)
    for t in turns:
        m[int(round(t["start"] * SR)) : int(round(t["end"] * SR))] = True
    return m


def music_noise(rng, n, tracks):
    x = tracks[int(rng.integers(len(tracks)))]
    off = int(rng.integers(0, len(x) - n))
    return x[off : off + n].copy()


def babble_noise(rng, n, pool, talkers):
    out = np.zeros(n)
    for _ in range(talkers):
        stream = []
        length = 0
        while length < n + 5 * SR:
            u = pool[int(rng.integers(len(pool)))]
            clip, _ = u.clip(0.05)
            clip = clip * 10 ** ((-26.0 - u.active_db()) / 20)
            gap = np.zeros(int(rng.uniform(0.05, 0.3) * SR))
            stream += [clip, gap]
            length += len(clip) + len(gap)
        s = np.concatenate(stream)
        off = int(rng.integers(0, len(s) - n))
        out += s[off : off + n]
    return out


def pink_noise(rng, n):
    w = rng.standard_normal(n)
    spec = np.fft.rfft(w)
    f = np.fft.rfftfreq(n, 1 / SR)
    spec[1:] /= np.sqrt(f[1:])
    spec[0] = 0
    return np.fft.irfft(spec, n)


def build_corpus(args, out):
    t0 = time.time()
    allison, sphinx, rejected = load_test_pool()
    babble_pool = []
    for v in BABBLE_VOICES:
        for p in voice_files(v):
            u = Utterance(f"{v}/{p.relative_to(ASTERISK / v)}", read_8k(p))
            if 0.5 <= u.dur <= 8.0:
                babble_pool.append(u)
    tracks = [read_8k(p) for p in sorted(MOH.glob("*.wav"))]
    rng = np.random.default_rng(args.seed)
    convs = build_conversations(rng, args.conversations, args.turns, allison, sphinx)
    kinds = {"music": 1, "babble": 2, "pink": 3}
    digest = hashlib.sha256()
    corpus = {"conditions": {}, "conversations": []}
    for c, conv in enumerate(convs):
        corpus["conversations"].append({"turns": conv["turns"], "seconds": len(conv["speech"]) / SR})
    for cond in args.conditions:
        kind, snr, talkers = CONDITIONS[cond]
        d = out / "corpus" / cond
        d.mkdir(parents=True, exist_ok=True)
        measured, clipped = [], 0
        for c, conv in enumerate(convs):
            s = conv["speech"]
            mix = s.copy()
            if kind is not None:
                nrng = np.random.default_rng([args.seed, kinds[kind], c])
                if kind == "music":
                    noise = music_noise(nrng, len(s), tracks)
                elif kind == "babble":
                    noise = babble_noise(nrng, len(s), babble_pool, talkers)
                else:
                    noise = pink_noise(nrng, len(s))
                ps = (s[truth_mask(conv["turns"], len(s))] ** 2).mean()
                pn = (noise**2).mean()
                noise *= math.sqrt(ps / (pn * 10 ** (snr / 10)))
                mix += noise
                measured.append(10 * math.log10(ps / (noise**2).mean()))
            clipped += int((np.abs(np.round(mix)) > 32767).sum())
            pcm = np.clip(np.round(mix), -32768, 32767).astype(np.int16)
            ulaw = ulaw_encode(pcm).tobytes()
            digest.update(ulaw)
            (d / f"{c:02d}.ulaw").write_bytes(ulaw)
        corpus["conditions"][cond] = {
            "noise": kind,
            "snr_db": snr,
            "babble_talkers": talkers,
            "measured_snr_db": round(float(np.mean(measured)), 2) if measured else None,
            "samples_clipped": clipped,
        }
    n_turns = sum(len(c["turns"]) for c in corpus["conversations"])
    corpus["summary"] = {
        "test_utterances_available": {"asterisk_en": len(allison), "pocketsphinx": len(sphinx)},
        "rejected_as_too_short_long_or_gappy": len(rejected),
        "babble_utterances_available": len(babble_pool),
        "conversations": len(convs),
        "turns": n_turns,
        "seconds_per_condition": round(sum(c["seconds"] for c in corpus["conversations"]), 1),
        "sha256_of_all_audio": digest.hexdigest(),
    }
    (out / "corpus" / "truth.json").write_text(json.dumps(corpus, indent=1))
    corpus["summary"]["build_seconds"] = round(time.time() - t0, 1)
    return corpus


# --------------------------------------------------------------------------- detectors

def turn_logic(labels, hop_s):
    """callstream's rule on a frame-level detector: speech starts once the speech
    frames in a row add up to 60 ms (reported at the end of the frame that
    completes them, dated to the first), ends once the non-speech frames in a row
    add up to 300 ms (reported at the end of the last, dated to the first).
    Returns [(dated_start, dated_end, reported_start, reported_end)] in seconds;
    reported_end is None for a segment still open when the recording ends."""
    need_on = max(1, math.ceil(MIN_SPEECH_S / hop_s - 1e-9))
    need_off = max(1, math.ceil(HANGOVER_S / hop_s - 1e-9))
    segs, speech, run, first, cur = [], False, 0, 0, None
    for k, lab in enumerate(labels):
        if lab != speech:
            if run == 0:
                first = k
            run += 1
            if not speech and run >= need_on:
                speech, run = True, 0
                cur = [first * hop_s, None, (k + 1) * hop_s, None]
            elif speech and run >= need_off:
                speech, run = False, 0
                cur[1], cur[3] = first * hop_s, (k + 1) * hop_s
                segs.append(tuple(cur))
        else:
            run = 0
    if speech:  # still in speech when the recording ends: the end was never reported
        end = len(labels) * hop_s
        segs.append((cur[0], end if run == 0 else first * hop_s, cur[2], None))
    return segs


def upsample_16k(pcm):
    """8 → 16 kHz with sox's very-high-quality resampler (`rate -v`, linear phase),
    written as float and rounded here (sox would dither a 16-bit output at random)."""
    out = subprocess.run(
        ["sox", "-t", "raw", "-r", str(SR), "-e", "signed", "-b", "16", "-c", "1", "-",
         "-t", "raw", "-r", "16000", "-e", "floating-point", "-b", "32", "-c", "1", "-", "rate", "-v"],
        input=pcm.astype("<i2").tobytes(), capture_output=True, check=True,
    ).stdout
    y = np.frombuffer(out, "<f4").astype(np.float64) * 32768.0
    return np.clip(np.round(y), -32768, 32767).astype(np.int16)


def silero_model_path():
    import importlib.util

    spec = importlib.util.find_spec("silero_vad")
    return os.path.join(list(spec.submodule_search_locations)[0], "data", "silero_vad.onnx")


def run_job(job):
    """One detector over one condition's conversations, in a worker process.
    Returns per-variant {segments, raw labels (hop, labels)} per conversation and the
    CPU seconds spent on the detector (the worker's, or the runner's for callstream)."""
    det, cond, corpus_dir, n_conv, vad_frames = job
    files = [Path(corpus_dir) / cond / f"{c:02d}.ulaw" for c in range(n_conv)]
    out = {}

    def cpu_self():
        r = resource.getrusage(resource.RUSAGE_SELF)
        return r.ru_utime + r.ru_stime

    if det == "callstream":
        res = []
        c0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        for f in files:
            p = subprocess.run([vad_frames, str(f)], check=True, capture_output=True, text=True)
            segs, cur = [], None
            for line in p.stdout.splitlines():
                if '"event"' not in line:
                    continue
                ev = json.loads(line)
                if ev["event"] == "start":
                    cur = [ev["at_frame"] * FRAME_S, None, (ev["frame"] + 1) * FRAME_S, None]
                else:
                    cur[1], cur[3] = ev["at_frame"] * FRAME_S, (ev["frame"] + 1) * FRAME_S
                    segs.append(tuple(cur))
                    cur = None
            if cur is not None:
                end = (f.stat().st_size // FRAME) * FRAME_S
                segs.append((cur[0], end, cur[2], None))
            res.append({"segments": segs, "raw": None})
        c1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (c1.ru_utime + c1.ru_stime) - (c0.ru_utime + c0.ru_stime)
        out["callstream"] = (res, cpu)
        return det, cond, out

    pcms = [ulaw_decode(f.read_bytes()) for f in files]
    if det == "webrtc":
        import webrtcvad

        for mode in (2, 3):
            t0 = cpu_self()
            res = []
            for pcm in pcms:
                v = webrtcvad.Vad(mode)
                b = pcm.astype("<i2").tobytes()
                labs = [v.is_speech(b[i * 2 * FRAME : (i + 1) * 2 * FRAME], SR) for i in range(len(pcm) // FRAME)]
                res.append({"segments": turn_logic(labs, FRAME_S), "raw": (FRAME_S, labs)})
            out[f"webrtc-{mode}"] = (res, cpu_self() - t0)
    elif det == "silero":
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads = 1
        so.inter_op_num_threads = 1
        sess = ort.InferenceSession(silero_model_path(), sess_options=so, providers=["CPUExecutionProvider"])
        chunk, ctx_n, hop = 256, 32, 256 / SR
        sr = np.array(SR, dtype=np.int64)
        t0 = cpu_self()
        probs_all = []
        for pcm in pcms:
            x = pcm.astype(np.float32) / 32768.0
            state = np.zeros((2, 1, 128), np.float32)
            ctx = np.zeros((1, ctx_n), np.float32)
            probs = []
            for i in range(len(x) // chunk):
                inp = np.concatenate([ctx, x[None, i * chunk : (i + 1) * chunk]], axis=1)
                p, state = sess.run(None, {"input": inp, "state": state, "sr": sr})
                ctx = inp[:, -ctx_n:]
                probs.append(float(p[0, 0]))
            probs_all.append(probs)
        cpu = cpu_self() - t0
        for name, on, off in (("silero-0.5", 0.5, 0.5), ("silero-0.5/0.35", 0.5, 0.35), ("silero-0.3", 0.3, 0.3)):
            res = []
            for probs in probs_all:
                labs, state_ = [], False
                for p in probs:
                    state_ = p >= (off if state_ else on)
                    labs.append(state_)
                res.append({"segments": turn_logic(labs, hop), "raw": (hop, labs)})
            out[name] = (res, cpu)
    elif det == "ten":
        from ten_vad import TenVad

        hop_n, hop = 160, 160 / 16000
        ups = [upsample_16k(pcm) for pcm in pcms]  # not counted in the detector's CPU
        t0 = cpu_self()
        res = []
        for y in ups:
            v = TenVad(hop_n, 0.5)
            labs = []
            for i in range(len(y) // hop_n):
                p, _flag = v.process(np.ascontiguousarray(y[i * hop_n : (i + 1) * hop_n]))
                labs.append(p >= 0.5)
            del v
            res.append({"segments": turn_logic(labs, hop), "raw": (hop, labs)})
        out["ten-0.5"] = (res, cpu_self() - t0)
    else:
        raise ValueError(det)
    return det, cond, out


# --------------------------------------------------------------------------- scoring

def overlaps(seg, a, b):
    return seg[0] < b and seg[1] > a


def frames_of(intervals, n):
    """20 ms frames whose centre lies in one of the intervals."""
    m = np.zeros(n, bool)
    centres = (np.arange(n) + 0.5) * FRAME_S
    for a, b in intervals:
        m |= (centres >= a) & (centres < b)
    return m


def raw_frames(raw, n):
    hop, labs = raw
    labs = np.asarray(labs, bool)
    idx = np.minimum(((np.arange(n) + 0.5) * FRAME_S / hop).astype(int), len(labs) - 1)
    return labs[idx]


def prf(tp, fp, fn):
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    return p, r, (2 * p * r / (p + r) if p + r else 0.0)


def pct(v, q):
    return float(np.percentile(v, q)) if len(v) else None


def score(corpus, results):
    """results: per conversation {"segments": [...], "raw": ...}."""
    m = {
        "turns": 0, "found": 0, "first_turns": 0, "first_found": 0,
        "long_turns": 0, "long_separated": 0, "long_merged": 0,
        "short_turns": 0, "short_separated": 0, "short_merged": 0,
        "segments": 0, "false_segments": 0,
        "onset_report": [], "start_error": [], "end_error": [], "end_report": [],
        "tp": 0, "fp": 0, "fn": 0, "raw_tp": 0, "raw_fp": 0, "raw_fn": 0,
        "seconds": 0.0, "has_raw": False, "end_never": 0,
        "by_pause": {},
    }
    for conv, res in zip(corpus["conversations"], results):
        turns, segs = conv["turns"], res["segments"]
        m["seconds"] += conv["seconds"]
        m["segments"] += len(segs)
        for s in segs:
            if not any(overlaps(s, t["start"], t["end"]) for t in turns):
                m["false_segments"] += 1
        for i, t in enumerate(turns):
            m["turns"] += 1
            hit = [s for s in segs if overlaps(s, t["start"], t["end"])]
            if hit:
                m["found"] += 1
            prev = turns[i - 1] if i else None
            own = [
                s for s in segs
                if t["start"] - START_SLACK_S <= s[0] <= t["end"]
                and not (prev and overlaps(s, prev["start"], prev["end"]))
            ]
            own = own[0] if own else None
            if prev is None:
                m["first_turns"] += 1
                m["first_found"] += own is not None
            else:
                cls = "long" if t["pause_before"] >= LONG_PAUSE_S - 1e-9 else "short"
                m[f"{cls}_turns"] += 1
                m[f"{cls}_separated"] += own is not None
                merged = any(
                    overlaps(s, prev["start"], prev["end"]) and overlaps(s, t["start"], t["end"]) for s in segs
                )
                m[f"{cls}_merged"] += merged
                bp = m["by_pause"].setdefault(str(round(t["pause_before"] * 1000)), [0, 0, 0])
                bp[0] += 1
                bp[1] += own is not None
                bp[2] += merged
            if own is not None:
                m["onset_report"].append(own[2] - t["start"])
                m["start_error"].append(own[0] - t["start"])
            if hit:
                last = hit[-1]
                nxt = turns[i + 1] if i + 1 < len(turns) else None
                if nxt and overlaps(last, nxt["start"], nxt["end"]):
                    pass  # merged with the next turn: this turn's end is not a segment's end
                elif last[3] is None:
                    m["end_never"] += 1  # still "speaking" when the recording ended (≥ 1.5 s later)
                else:
                    m["end_error"].append(last[1] - t["end"])
                    m["end_report"].append(last[3] - t["end"])
        n = int(round(conv["seconds"] / FRAME_S))
        truth = frames_of([(t["start"], t["end"]) for t in turns], n)
        det = frames_of([(s[0], s[1]) for s in segs], n)
        m["tp"] += int((truth & det).sum())
        m["fp"] += int((~truth & det).sum())
        m["fn"] += int((truth & ~det).sum())
        if res.get("raw") is not None:
            m["has_raw"] = True
            raw = raw_frames(res["raw"], n)
            m["raw_tp"] += int((truth & raw).sum())
            m["raw_fp"] += int((~truth & raw).sum())
            m["raw_fn"] += int((truth & ~raw).sum())
    p, r, f = prf(m["tp"], m["fp"], m["fn"])
    rp, rr, rf = prf(m["raw_tp"], m["raw_fp"], m["raw_fn"])
    ms = lambda v: None if v is None else round(1000 * v)  # noqa: E731
    return {
        "turns": m["turns"],
        "found": m["found"],
        "first_turns": m["first_turns"],
        "first_found": m["first_found"],
        "long_pause_turns": m["long_turns"],
        "long_pause_separated": m["long_separated"],
        "long_pause_merged": m["long_merged"],
        "short_pause_turns": m["short_turns"],
        "short_pause_separated": m["short_separated"],
        "short_pause_merged": m["short_merged"],
        "segments": m["segments"],
        "false_segments": m["false_segments"],
        "false_segments_per_min": round(m["false_segments"] / (m["seconds"] / 60), 2),
        "frame_precision": round(p, 3),
        "frame_recall": round(r, 3),
        "frame_f1": round(f, 3),
        "raw_frame_precision": round(rp, 3) if m["has_raw"] else None,
        "raw_frame_recall": round(rr, 3) if m["has_raw"] else None,
        "raw_frame_f1": round(rf, 3) if m["has_raw"] else None,
        "onset_report_ms_median": ms(pct(m["onset_report"], 50)),
        "onset_report_ms_p90": ms(pct(m["onset_report"], 90)),
        "start_error_ms_median": ms(pct(m["start_error"], 50)),
        "start_error_ms_p90_abs": ms(pct(np.abs(m["start_error"]), 90)),
        "end_error_ms_median": ms(pct(m["end_error"], 50)),
        "end_error_ms_p90_abs": ms(pct(np.abs(m["end_error"]), 90)),
        "end_report_ms_median": ms(pct(m["end_report"], 50)),
        "end_report_ms_p90": ms(pct(m["end_report"], 90)),
        "ends_never_reported": m["end_never"],
        "by_pause_ms": {
            k: {"turns": v[0], "separated": v[1], "merged": v[2]}
            for k, v in sorted(m["by_pause"].items(), key=lambda kv: int(kv[0]))
        },
        "audio_seconds": round(m["seconds"], 1),
    }


# --------------------------------------------------------------------------- report

def fmt(v, suffix=""):
    return "—" if v is None else f"{v}{suffix}"


def markdown(summary, conditions):
    lines = []
    lines.append(
        "| condition | detector | found | separated, pause ≥ 500 ms | merged, pause ≥ 500 ms "
        "| separated, pause < 500 ms | false segments | frame F1 (turn logic) | frame F1 (raw) "
        "| onset report median / p90 (ms) | start error median (ms) | end error median (ms) "
        "| end report median (ms) | CPU ms per s of audio |"
    )
    lines.append("|" + "---|" * 14)
    for cond in conditions:
        for var in VARIANTS:
            r = summary[cond].get(var)
            if r is None:
                continue
            never = f" ({r['ends_never_reported']} never)" if r["ends_never_reported"] else ""
            lines.append(
                f"| {cond} | {var} | {r['found']}/{r['turns']} "
                f"| {r['long_pause_separated']}/{r['long_pause_turns']} "
                f"| {r['long_pause_merged']} "
                f"| {r['short_pause_separated']}/{r['short_pause_turns']} "
                f"| {r['false_segments']} "
                f"| {r['frame_f1']:.3f} | {fmt(r['raw_frame_f1'])} "
                f"| {fmt(r['onset_report_ms_median'])} / {fmt(r['onset_report_ms_p90'])} "
                f"| {fmt(r['start_error_ms_median'], '')} | {fmt(r['end_error_ms_median'])} "
                f"| {fmt(r['end_report_ms_median'])}{never} | {r['cpu_ms_per_s']:.2f} |"
            )
    return "\n".join(lines)


def aims_table(summary, conditions):
    rows = [c for c in ("moh15", "babble10") if c in conditions]
    lines = [
        "| detector | " + " | ".join(
            f"{c}: merged across ≥ 500 ms (aim 0) | {c}: median onset report (aim ≤ 100 ms)" for c in rows
        ) + " |",
        "|" + "---|" * (1 + 2 * len(rows)),
    ]
    for var in VARIANTS:
        cells = []
        for c in rows:
            r = summary[c].get(var)
            if r is None:
                cells += ["—", "—"]
                continue
            ok_m = "✓" if r["long_pause_merged"] == 0 else "✗"
            med = r["onset_report_ms_median"]
            ok_o = "✓" if med is not None and med <= 100 else "✗"
            cells += [
                f"{r['long_pause_merged']} of {r['long_pause_turns']} {ok_m}",
                f"{fmt(med, ' ms')} {ok_o}",
            ]
        lines.append(f"| {var} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def pause_table(summary, conditions):
    rows = [c for c in ("moh15", "babble10") if c in conditions]
    if not rows:
        return ""
    pauses = sorted({int(k) for c in rows for r in summary[c].values() for k in r["by_pause_ms"]})
    lines = [
        "| condition | detector | " + " | ".join(f"{p} ms" for p in pauses) + " |",
        "|" + "---|" * (2 + len(pauses)),
    ]
    for c in rows:
        for var in VARIANTS:
            r = summary[c].get(var)
            if r is None:
                continue
            cells = []
            for p in pauses:
                b = r["by_pause_ms"].get(str(p))
                cells.append("—" if b is None else f"{b['separated']}/{b['turns']} ({b['merged']} merged)")
            lines.append(f"| {c} | {var} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def versions():
    v = {"python": platform.python_version()}
    for mod, name in (("numpy", "numpy"), ("onnxruntime", "onnxruntime"), ("webrtcvad", "webrtcvad-wheels"),
                      ("silero_vad", "silero-vad"), ("ten_vad", "ten-vad")):
        try:
            from importlib.metadata import version

            v[name] = version(name)
        except Exception:  # noqa: BLE001
            v[name] = None
    try:
        q = subprocess.run(
            ["dpkg-query", "-W", "-f", "${Package} ${Version}\n", "asterisk-core-sounds-en-wav",
             "asterisk-core-sounds-fr-wav", "asterisk-core-sounds-it-wav", "asterisk-core-sounds-ru-wav",
             "asterisk-moh-opsound-wav", "pocketsphinx-testdata", "sox"],
            capture_output=True, text=True,
        ).stdout
        v["debian"] = dict(line.split(" ", 1) for line in q.strip().splitlines())
    except FileNotFoundError:
        pass
    return v


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="3 conversations of 7 turns, 3 conditions (CI smoke)")
    ap.add_argument("--out", default="target/turn-bench")
    ap.add_argument("--vad-frames", default="target/release/examples/vad_frames")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--seed", type=int, default=20261208)
    ap.add_argument("--conversations", type=int)
    ap.add_argument("--turns", type=int)
    ap.add_argument("--conditions", help="comma-separated subset of " + ",".join(CONDITIONS))
    args = ap.parse_args()
    if args.conversations is None:
        args.conversations = 3 if args.quick else 30
    if args.turns is None:
        args.turns = 7 if args.quick else 10
    args.conditions = (
        args.conditions.split(",") if args.conditions else (QUICK_CONDITIONS if args.quick else FULL_CONDITIONS)
    )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.time()
    g711 = check_g711()
    print(f"mu-law tables: {g711}", file=sys.stderr)
    corpus = build_corpus(args, out)
    s = corpus["summary"]
    print(
        f"corpus: {s['conversations']} conversations, {s['turns']} turns, "
        f"{s['seconds_per_condition']} s of audio per condition, {len(args.conditions)} conditions "
        f"(built in {s['build_seconds']} s)",
        file=sys.stderr,
    )
    jobs = []
    for det in ("silero", "ten", "webrtc", "callstream"):  # the slowest first
        for cond in args.conditions:
            jobs.append((det, cond, str(out / "corpus"), args.conversations, args.vad_frames))
    summary = {c: {} for c in args.conditions}
    t_det = time.time()
    ctx = mp.get_context("fork")
    with ctx.Pool(args.jobs) as pool:
        for det, cond, res in pool.imap_unordered(run_job, jobs):
            for var, (per_conv, cpu) in res.items():
                r = score(corpus, per_conv)
                r["cpu_ms_per_s"] = round(1000 * cpu / r["audio_seconds"], 3)
                summary[cond][var] = r
            print(f"  {det:10s} {cond:9s} done", file=sys.stderr)
    wall = time.time() - t_start
    results = {
        "date": time.strftime("%Y-%m-%d"),
        "args": {k: v for k, v in vars(args).items()},
        "g711": g711,
        "versions": versions(),
        "machine": {"cpus": os.cpu_count(), "load_average_at_end": os.getloadavg()},
        "corpus": {"conditions": corpus["conditions"], "summary": s},
        "variants": VARIANT_TEXT,
        "results": summary,
        "seconds": {"total": round(wall, 1), "detectors": round(time.time() - t_det, 1)},
    }
    (out / "results.json").write_text(json.dumps(results, indent=1, ensure_ascii=False))
    md = []
    md.append(
        f"Corpus: {s['conversations']} conversations, {s['turns']} turns "
        f"({s['turns'] - s['conversations']} after a pause: "
        f"{summary[args.conditions[0]]['callstream']['long_pause_turns']} of ≥ 500 ms, "
        f"{summary[args.conditions[0]]['callstream']['short_pause_turns']} of 200–400 ms), "
        f"{s['seconds_per_condition']} s of audio per condition; seed {args.seed} "
        f"(audio sha256 {s['sha256_of_all_audio'][:16]}…)."
    )
    md.append("")
    md.append("Conditions (SNR measured on the mix before μ-law): " + "; ".join(
        f"{c} = {CONDITION_TEXT[c]}" for c in args.conditions) + ".")
    md.append("")
    md.append(markdown(summary, args.conditions))
    md.append("")
    if any(c in args.conditions for c in ("moh15", "babble10")):
        md.append("The issue's aims:")
        md.append("")
        md.append(aims_table(summary, args.conditions))
        md.append("")
        md.append("Turns separated from the turn before, by the length of the pause between them:")
        md.append("")
        md.append(pause_table(summary, args.conditions))
        md.append("")
    md.append(f"Wall time {wall:.0f} s ({results['seconds']['detectors']:.0f} s of it running the detectors, "
              f"{args.jobs} processes).")
    text = "\n".join(md)
    (out / "results.md").write_text(text + "\n")
    print(text)
    # A benchmark that measured nothing must not pass as a smoke test: on
    # clean speech every detector finds nearly every turn, with a sane F1.
    broken = [
        f"{det} on clean: {r['found']}/{r['turns']} turns found, frame F1 {r['frame_f1']}"
        for det, r in summary.get("clean", {}).items()
        if r["found"] < 0.9 * r["turns"] or r["frame_f1"] < 0.8
    ]
    if "clean" in summary and not summary["clean"]:
        broken.append("no detector ran on clean speech")
    if broken:
        print("turn-bench: a detector is broken: " + "; ".join(broken), file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
