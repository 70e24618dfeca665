#!/usr/bin/env bash
# Load run for the callstream server (a benchmark, not part of CI).
#
#   scripts/load.sh CALLS SECONDS [THREADS]
#
# Builds the release server and the shared load generator, starts the server
# with the echo handler, drives CALLS Twilio-shaped media streams (20 ms frames
# on absolute deadlines) plus a status webhook 100 times a second on the side,
# and prints the load
# generator's JSON line and the server's CPU microseconds per media frame
# (one frame in plus its echo out, from /proc utime+stime).
#
# The load generator's webhooks carry no X-Twilio-Signature, so this run turns
# signature checks off (CALLSTREAM_INSECURE_NO_SIGNATURES); a check costs one
# HMAC per webhook or upgrade (about 1.5 µs, see BENCHMARKS.md), nothing per frame.
set -euo pipefail
cd "$(dirname "$0")/.."
calls=${1:-1000}
secs=${2:-20}
threads=${3:-}
shared=${SHARED:-../shared}
port=${LOAD_PORT:-18090}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target}
cargo build --release -q -p callstream-smol
LOADGEN_TARGET=${LOADGEN_TARGET:-$PWD/target/loadgen}
(cd "$shared/tools/loadgen" && CARGO_TARGET_DIR=$LOADGEN_TARGET cargo build --release -q --locked)
lg=$LOADGEN_TARGET/release/loadgen

env CALLSTREAM_INSECURE_NO_SIGNATURES=1 PUBLIC_BASE_URL=https://callstream.test CALLSTREAM_HANDLER=echo \
    HOST=127.0.0.1 PORT=$port RUST_LOG=warn ${threads:+CALLSTREAM_THREADS=$threads} \
    "$CARGO_TARGET_DIR/release/callstream" 2>/tmp/callstream-load.log &
pid=$!
trap 'kill $pid 2>/dev/null || true' EXIT
for _ in $(seq 50); do curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.1; done

tick=$(getconf CLK_TCK)
cpu() { awk '{print $14+$15}' "/proc/$pid/stat"; }
c0=$(cpu)
out=$("$lg" --url "ws://127.0.0.1:$port/ws/twilio-media" --calls "$calls" --seconds "$secs" --ramp 1000 \
      --webhook "http://127.0.0.1:$port/webhook/call_status" --webhook-rate 100 --threads 1)
c1=$(cpu)
echo "$out"
echo "$out" | python3 -c "
import json,sys
d=json.load(sys.stdin); ticks=$c1-$c0
us=ticks/$tick*1e6
frames=max(1,d['recv_media'])
print(json.dumps({'calls':d['connected'],'frames_echoed':d['recv_media'],'echo_ratio':round(d['echo_ratio'],4),
  'echo_p50_ms':d['echo'] and d['echo']['p50_ms'],'echo_p99_ms':d['echo'] and d['echo']['p99_ms'],
  'webhook_p99_ms':d['webhook'] and d['webhook']['p99_ms'],'webhook_ok_bad':d['webhook_ok_bad'],
  'server_cpu_s':ticks/$tick,'cpu_us_per_frame':round(us/frames,2),'gen_late_p99_ms':d['gen_late']['p99_ms']}))"
