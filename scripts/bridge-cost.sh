#!/usr/bin/env bash
# What the program bridge costs the server per call (a benchmark, not CI).
#
#   scripts/bridge-cost.sh [CALLS] [SECONDS]
#
# Builds the release `callstream`, then for each handler — `silent` (the
# baseline), `exec:cat >/dev/null` (a program that takes every turn and
# answers nothing) and `exec:sh examples/bots/echo/echo.sh` (a program that
# plays every turn back) — serves CALLS calls for SECONDS each, driven by
# `callstream sim --calls` with the committed speech fixture (one turn per
# call, then silence). Prints, per handler, the server's own CPU (utime +
# stime from /proc) and its programs' (cutime + cstime, the reaped
# children), per call per second of call, and the server's peak RSS.
set -euo pipefail
cd "$(dirname "$0")/.."
calls=${1:-50}
secs=${2:-20}
port=${BRIDGE_COST_PORT:-18777}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target}
cargo build --release -q -p callstream
cs=$CARGO_TARGET_DIR/release/callstream
tick=$(getconf CLK_TCK)
speech=tests/fixtures/speech/test_call.ulaw
echo "calls=$calls seconds=$secs load=$(cut -d' ' -f1 /proc/loadavg)"
for handler in silent "exec:cat >/dev/null" "exec:sh examples/bots/echo/echo.sh"; do
    env CALLSTREAM_INSECURE_NO_SIGNATURES=1 PUBLIC_BASE_URL=https://callstream.test \
        CALLSTREAM_HANDLER="$handler" HOST=127.0.0.1 PORT=$port RUST_LOG=warn \
        "$cs" 2>/dev/null &
    pid=$!
    for _ in $(seq 1 100); do
        (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && break
        sleep 0.1
    done
    read -r u0 s0 cu0 cs0 < <(awk '{print $14, $15, $16, $17}' /proc/$pid/stat)
    peak=0
    ( while kill -0 $pid 2>/dev/null; do
          awk '/VmRSS/ {print $2}' /proc/$pid/status 2>/dev/null
          sleep 1
      done ) >/tmp/bridge-cost-rss.$$ &
    sampler=$!
    "$cs" sim "ws://127.0.0.1:$port/ws/twilio-media" --calls "$calls" --ramp 25 \
        --audio "$speech" --duration "$secs" --json >/tmp/bridge-cost-sim.$$ || true
    sleep 2 # programs see `stop`, exit and are reaped
    read -r u1 s1 cu1 cs1 < <(awk '{print $14, $15, $16, $17}' /proc/$pid/stat)
    kill -TERM $pid; wait $pid 2>/dev/null || true
    kill $sampler 2>/dev/null || true; wait $sampler 2>/dev/null || true
    peak=$(sort -n /tmp/bridge-cost-rss.$$ | tail -1)
    python3 - "$handler" "$calls" "$secs" "$tick" "$u0" "$s0" "$cu0" "$cs0" "$u1" "$s1" "$cu1" "$cs1" "$peak" /tmp/bridge-cost-sim.$$ <<'PY'
import json, sys
h, calls, secs, tick = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
u0, s0, cu0, cs0, u1, s1, cu1, cs1 = map(int, sys.argv[5:13])
peak = int(sys.argv[13] or 0)
sim = {}
try:
    sim = json.loads(open(sys.argv[14]).read().strip().splitlines()[-1])
except Exception:
    pass
own = (u1 + s1 - u0 - s0) / tick * 1000 / calls / secs
kids = (cu1 + cs1 - cu0 - cs0) / tick * 1000 / calls / secs
print(json.dumps({"handler": h, "server_ms_cpu_per_call_second": round(own, 3),
                  "programs_ms_cpu_per_call_second": round(kids, 3),
                  "server_peak_rss_kib": peak, "calls_connected": sim.get("connected", sim.get("calls")),
                  "failed": sim.get("failed")}))
PY
done
rm -f /tmp/bridge-cost-rss.$$ /tmp/bridge-cost-sim.$$
