#!/usr/bin/env bash
# The adapters against the syscall floor (a benchmark, not part of CI).
#
#   FLOOR=/path/to/floor LOADGEN=/path/to/loadgen scripts/floor-compare.sh [CALLS...]
#   scripts/floor-compare.sh /path/to/floor /path/to/loadgen [CALLS...]
#
# FLOOR is the syscall floor: a one-thread epoll echo server, started as
# `floor PORT`, that answers the WebSocket upgrade and echoes each client text
# frame unmasked, with no JSON, base64, audio or timers: whatever a server
# spends per media frame above it is its own work. LOADGEN is the load
# generator (`loadgen --url WS_URL --calls N --seconds S --ramp R`, printing
# one JSON line with `connected`, `recv_media`, `echo_ratio` and `echo.p99_ms`):
# N Twilio-shaped media streams, a 160-byte frame every 20 ms on absolute
# deadlines. Neither is part of this repository.
#
# For each CALLS (default: 200 500), in one sitting, SECONDS (default 20)
# each: the floor, `callstream` (smol) with one thread and with the default
# (one per core), `callstream-epoll` likewise, all with the echo handler.
# Prints one JSON line per run and a Markdown table: server CPU (utime+stime
# from /proc, every thread) per frame echoed, its ratio to the floor at the
# same call count, echo p99, and the 1-minute load average before the run
# (the machine may be shared: note it with each number).
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ $# -ge 2 && -x "$1" && -x "$2" ]]; then
    FLOOR=$1 LOADGEN=$2
    shift 2
fi
: "${FLOOR:?set FLOOR (or pass it first): the floor server binary}"
: "${LOADGEN:?set LOADGEN (or pass it second): the load generator binary}"
secs=${SECONDS_EACH:-20}
[[ $# -gt 0 ]] || set -- 200 500
calls_list=("$@")
port=${PORT_BASE:-18200}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target}
cargo build --release -q -p callstream-smol -p callstream-epoll
bin=$CARGO_TARGET_DIR/release
tick=$(getconf CLK_TCK)
results=$(mktemp)
trap 'rm -f "$results"' EXIT

run() { # label calls threads command... (an argument @PORT becomes the port)
    local label=$1 calls=$2 threads=$3
    shift 3
    port=$((port + 1))
    local cmd=("${@/#@PORT/$port}")
    env CALLSTREAM_INSECURE_NO_SIGNATURES=1 PUBLIC_BASE_URL=https://callstream.test \
        CALLSTREAM_HANDLER=echo HOST=127.0.0.1 PORT=$port RUST_LOG=warn \
        ${threads:+CALLSTREAM_THREADS=$threads} "${cmd[@]}" >/dev/null 2>&1 &
    local pid=$!
    for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
    local load c0 c1 out
    load=$(cut -d' ' -f1 /proc/loadavg)
    c0=$(awk '{print $14+$15}' "/proc/$pid/stat")
    out=$("$LOADGEN" --url "ws://127.0.0.1:$port/ws/twilio-media" --calls "$calls" --seconds "$secs" --ramp 1000)
    c1=$(awk '{print $14+$15}' "/proc/$pid/stat")
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    echo "$out" | python3 -c "
import json,sys
d=json.load(sys.stdin); s=($c1-$c0)/$tick
print(json.dumps({'server':'$label','calls':$calls,'load':$load,'frames':d['recv_media'],
  'echo_ratio':round(d['echo_ratio'],4),'echo_p99_ms':d['echo'] and d['echo']['p99_ms'],
  'server_cpu_s':s,'cpu_us_per_frame':round(s*1e6/max(1,d['recv_media']),2)}))" | tee -a "$results"
}

for calls in "${calls_list[@]}"; do
    run floor "$calls" "" "$FLOOR" @PORT
    run "callstream (smol), 1 thread" "$calls" 1 "$bin/callstream"
    run "callstream (smol), default threads" "$calls" "" "$bin/callstream"
    run "callstream-epoll, 1 thread" "$calls" 1 "$bin/callstream-epoll"
    run "callstream-epoll, default threads" "$calls" "" "$bin/callstream-epoll"
done

python3 - "$results" <<'EOF'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
floor = {r['calls']: r['cpu_us_per_frame'] for r in rows if r['server'] == 'floor'}
print('| calls | server | load avg | frames echoed | echo ratio | CPU µs/frame | × floor | echo p99 |')
print('|---|---|---|---|---|---|---|---|')
for r in rows:
    f = floor.get(r['calls'])
    ratio = f'{r["cpu_us_per_frame"] / f:.2f}' if f else '-'
    print(f"| {r['calls']} | {r['server']} | {r['load']} | {r['frames']:,} | {r['echo_ratio']} "
          f"| {r['cpu_us_per_frame']} | {ratio} | {r['echo_p99_ms']} ms |")
EOF
