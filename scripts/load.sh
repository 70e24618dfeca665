#!/usr/bin/env bash
# Load run for the callstream server (a benchmark, not part of CI).
#
#   scripts/load.sh CALLS SECONDS [THREADS] [SIM_THREADS]
#
# Builds the release binary, starts the server with the echo handler and
# signatures on, and drives CALLS Twilio media streams at it with the same
# binary's `callstream sim --calls` (Twilio's signed upgrade, 20 ms frames on
# absolute deadlines, every message the server sends checked as Twilio checks
# it). Prints sim's JSON line (echo latency p50/p99/max, lost frames) and the
# server's CPU microseconds per media frame (one frame in plus its echo out,
# from /proc utime+stime). THREADS sets the server's executor threads,
# SIM_THREADS the simulator's (default 1).
set -euo pipefail
cd "$(dirname "$0")/.."
calls=${1:-500}
secs=${2:-30}
threads=${3:-}
sim_threads=${4:-1}
port=${LOAD_PORT:-18090}
token=load-test-token
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target}
cargo build --release -q -p callstream
cs=$CARGO_TARGET_DIR/release/callstream

env TWILIO_AUTH_TOKEN=$token PUBLIC_BASE_URL=https://callstream.test CALLSTREAM_HANDLER=echo \
    HOST=127.0.0.1 PORT=$port RUST_LOG=warn MAX_CONNECTIONS=$((calls + 100)) \
    ${threads:+CALLSTREAM_THREADS=$threads} "$cs" 2>/tmp/callstream-load.log &
pid=$!
trap 'kill $pid 2>/dev/null || true' EXIT
for _ in $(seq 50); do curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.1; done
kill -0 $pid 2>/dev/null || { cat /tmp/callstream-load.log; exit 1; }

# Open files: each call is one socket on each side.
ulimit -n $((calls * 2 + 256)) 2>/dev/null || true
tick=$(getconf CLK_TCK)
cpu() { awk '{print $14+$15}' "/proc/$pid/stat"; }
c0=$(cpu)
out=$("$cs" sim "ws://127.0.0.1:$port/ws/twilio-media" --token $token \
      --public-url wss://callstream.test/ws/twilio-media --calls "$calls" --ramp 5 \
      --tone 440 --tone-seconds 1 --duration "$secs" --linger-ms 1000 --threads "$sim_threads" || true)
c1=$(cpu)
echo "$out"
echo "$out" | python3 -c "
import json,sys
d=json.load(sys.stdin); ticks=$c1-$c0
frames=max(1,d['frames_echoed'])
print(json.dumps({'calls':d['calls'],'failed':d['failed'],'lost_frames':d['lost_frames'],
  'echo_p50_ms':d['echo_ms']['p50'],'echo_p99_ms':d['echo_ms']['p99'],'echo_max_ms':d['echo_ms']['max'],
  'server_cpu_s':ticks/$tick,'cpu_us_per_frame':round(ticks/$tick*1e6/frames,2)}))"
