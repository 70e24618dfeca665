#!/usr/bin/env bash
# The program bridge's own latency under load (a benchmark, not CI; CI
# runs it briefly as a smoke test).
#
#   scripts/bridge-latency.sh [CALLS] [SECONDS]
#
# Builds the release `callstream` and serves CALLS concurrent calls for
# SECONDS, driven by `callstream sim --calls` with the committed speech
# fixture (the detector's: 9 s, five turns; AUDIO= another), each call bridged to a program (grep and sed) that answers every turn at
# once with 200 ms of audio. Then reads the server's two bridge
# histograms from /metrics:
#
#   callstream_bridge_utterance_seconds  the caller's turn ended (the
#       detector decided) → its utterance written to the program, whole;
#   callstream_bridge_play_seconds       a play read from the program → its
#       first audio handed to the call (which sends it in that same turn of
#       its loop: nothing of ours was queued).
#
# Prints one JSON line: for each, the count and the bucket bound that holds
# 50%, 90% and 99% of the observations (the bounds are 0.5, 1, 2, 5, 10,
# 20, 50 … ms: "p99_le_ms": 5 means 99% took at most 5 ms), and the share
# within 20 ms. MAX_P99_MS (optional) makes the exit status 1 when either
# p99 bound is above it.
set -euo pipefail
cd "$(dirname "$0")/.."
calls=${1:-100}
secs=${2:-30}
port=${BRIDGE_LATENCY_PORT:-18778}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target}
cargo build --release -q -p callstream
cs=$CARGO_TARGET_DIR/release/callstream
work=$(mktemp -d)
trap 'kill $pid 2>/dev/null || true; rm -rf "$work"' EXIT
# 200 ms of a 440 Hz tone at 8 kHz, as one play line.
python3 - >"$work/play.json" <<'PY'
import base64, json, math, struct
pcm = b"".join(struct.pack("<h", int(8000 * math.sin(2 * math.pi * 440 * i / 8000))) for i in range(1600))
print(json.dumps({"type": "play", "rate": 8000, "pcm": base64.b64encode(pcm).decode()}))
PY
# Answers each turn with the play line, at once. grep reads the pipe in
# large blocks as a real bot's line reader does, and prints each turn's
# type at once (--line-buffered); sed -u swaps that short line for the play
# (base64 has no `|`). Not awk: mawk waits for its input buffer to fill;
# not sh's `read`, which takes a byte at a time: either would time the
# program, not the bridge.
cat >"$work/answer.sh" <<'SH'
#!/bin/sh
grep --line-buffered -o '"type":"utterance"' |
  sed -u "s|.*|$(cat "$(dirname "$0")/play.json")|"
SH
env CALLSTREAM_INSECURE_NO_SIGNATURES=1 PUBLIC_BASE_URL=https://callstream.test \
    CALLSTREAM_HANDLER="exec:sh $work/answer.sh" HOST=127.0.0.1 PORT=$port RUST_LOG=warn \
    "$cs" 2>"$work/server.log" &
pid=$!
for _ in $(seq 1 100); do
    (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && break
    sleep 0.1
done
"$cs" sim "ws://127.0.0.1:$port/ws/twilio-media" --calls "$calls" --ramp 5 \
    --audio "${AUDIO:-core/tests/fixtures/vad/clean.ulaw}" --duration "$secs" --json >"$work/sim.json" || true
exec 3<>/dev/tcp/127.0.0.1/$port
printf 'GET /metrics HTTP/1.1\r\nHost: callstream.test\r\nConnection: close\r\n\r\n' >&3
cat <&3 >"$work/metrics.txt"
python3 - "$calls" "$secs" "$work/metrics.txt" "$work/sim.json" "${MAX_P99_MS:-}" <<'PY'
import json, sys
calls, secs, metrics, sim, limit = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5]
text = open(metrics).read()
out = {"calls": int(calls), "seconds": float(secs)}
try:
    s = json.loads(open(sim).read().strip().splitlines()[-1])
    out["sim"] = {k: s.get(k) for k in ("calls", "failed", "turn_ms", "sim_late_ms")}
except Exception as e:
    out["sim"] = f"no summary: {e}"
bad = False
for family in ("callstream_bridge_utterance_seconds", "callstream_bridge_play_seconds"):
    buckets = []
    for line in text.splitlines():
        if line.startswith(family + "_bucket{le=\""):
            le = line.split('le="', 1)[1].split('"', 1)[0]
            buckets.append((float("inf") if le == "+Inf" else float(le), int(line.rsplit(" ", 1)[1])))
    count = buckets[-1][1] if buckets else 0
    def bound(q):
        for le, n in buckets:
            if count and n >= q * count:
                return None if le == float("inf") else round(le * 1000, 1)
        return None
    within = next((n for le, n in buckets if abs(le - 0.02) < 1e-9), 0)
    name = family.replace("callstream_bridge_", "").replace("_seconds", "")
    out[name] = {"count": count, "p50_le_ms": bound(0.5), "p90_le_ms": bound(0.9),
                 "p99_le_ms": bound(0.99), "within_20ms": round(within / count, 4) if count else None}
    p99 = out[name]["p99_le_ms"]
    if limit and (count == 0 or p99 is None or p99 > float(limit)):
        bad = True
print(json.dumps(out))
sys.exit(1 if bad else 0)
PY
