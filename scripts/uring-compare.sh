#!/usr/bin/env bash
# The io_uring server against the syscall floor (a benchmark, not part of CI).
#
#   FLOOR=/path/to/floor LOADGEN=/path/to/loadgen [EPOLL=1] \
#       scripts/uring-compare.sh [CALLS...]
#   scripts/uring-compare.sh /path/to/floor /path/to/loadgen [CALLS...]
#
# FLOOR is the syscall floor: a one-thread epoll echo server, started as
# `floor PORT`, that answers the WebSocket upgrade and echoes each client
# text frame unmasked, with no JSON, base64, audio or timers: whatever a
# server spends per media frame above it is its own work. LOADGEN is the load
# generator (`loadgen --url WS_URL --calls N --seconds S --ramp R`, printing
# one JSON line with `recv_media`, `echo_ratio` and `echo.p99_ms`): N
# Twilio-shaped media streams, a 160-byte frame every 20 ms on absolute
# deadlines. Neither is part of this repository. EPOLL=1 adds
# `callstream --runtime epoll` with one thread.
#
# For each CALLS (default: 200 500), in one sitting, SECONDS_EACH (default
# 20) each, one thread: the floor, `callstream --runtime uring` with a tick of 0, 1 and
# 2 ms (TICKS; with each count of receive buffers in BUFFERS, default: the
# server's), and EPOLL. FLOOR=skip leaves the floor out. Each run reports the server's CPU (utime+stime
# from /proc, every thread) per frame echoed, its ratio to the floor at the
# same call count, echo p99, and wake-ups per frame (voluntary context
# switches, every thread, from /proc). Then a second pass (SYSCALL_SECONDS,
# default 10; 0 skips it) counts system calls per frame with
# `perf stat -e raw_syscalls:sys_enter` attached for the whole run: a
# separate run, so that tracing costs the first pass nothing. Prints JSON
# lines and a Markdown table; the 1-minute load average before each run says
# how shared the machine was.
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ $# -ge 2 && ( -x "$1" || $1 == skip ) && -x "$2" ]]; then
    FLOOR=$1 LOADGEN=$2
    shift 2
fi
: "${FLOOR:?set FLOOR (or pass it first): the floor server binary}"
: "${LOADGEN:?set LOADGEN (or pass it second): the load generator binary}"
secs=${SECONDS_EACH:-20}
syscall_secs=${SYSCALL_SECONDS:-10}
ticks=${TICKS:-0 1 2}
buffers=${BUFFERS:-default}
[[ $# -gt 0 ]] || set -- 200 500
calls_list=("$@")
port=${PORT_BASE:-18300}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target}
cargo build --release -q -p callstream
CALLSTREAM=$CARGO_TARGET_DIR/release/callstream
clk=$(getconf CLK_TCK)
results=$(mktemp)
trap 'rm -f "$results"' EXIT

start() { # command... (an argument @PORT becomes the port); sets pid
    port=$((port + 1))
    local cmd=("${@/#@PORT/$port}")
    env CALLSTREAM_INSECURE_NO_SIGNATURES=1 PUBLIC_BASE_URL=https://callstream.test \
        CALLSTREAM_HANDLER=echo HOST=127.0.0.1 PORT=$port RUST_LOG=warn \
        CALLSTREAM_THREADS=1 "${cmd[@]}" >/dev/null 2>&1 &
    pid=$!
    for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
}
stop() { kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; }
cpu() { awk '{print $14+$15}' "/proc/$pid/stat"; }
wakeups() { cat /proc/"$pid"/task/*/status | awk '/^voluntary_ctxt_switches/ {n += $2} END {print n}'; }
load() { cut -d' ' -f1 /proc/loadavg; }
loadgen() { "$LOADGEN" --url "ws://127.0.0.1:$port/ws/twilio-media" --calls "$1" --seconds "$2" --ramp 1000; }

run() { # label calls env... -- command...
    local label=$1 calls=$2
    shift 2
    local envs=()
    while [[ $1 != -- ]]; do envs+=("$1"); shift; done
    shift
    start env "${envs[@]}" "$@"
    local l c0 w0 c1 w1 out
    l=$(load) c0=$(cpu) w0=$(wakeups)
    out=$(loadgen "$calls" "$secs")
    c1=$(cpu) w1=$(wakeups)
    stop
    local sc=None
    if [[ $syscall_secs != 0 ]]; then
        start env "${envs[@]}" "$@"
        local trace
        trace=$(mktemp)
        perf stat -x, -e raw_syscalls:sys_enter -p "$pid" -o "$trace" &
        local perf=$!
        sleep 0.5
        local traced
        traced=$(loadgen "$calls" "$syscall_secs")
        kill -INT "$perf"
        wait "$perf" 2>/dev/null || true
        stop
        sc=$(python3 -c "
import json,sys
n=[int(l.split(',')[0]) for l in open('$trace') if 'raw_syscalls' in l]
d=json.loads('''$traced''')
print(round(n[0]/max(1,d['recv_media']),3) if n else None)")
        rm -f "$trace"
    fi
    echo "$out" | python3 -c "
import json,sys
d=json.load(sys.stdin); s=($c1-$c0)/$clk; f=max(1,d['recv_media'])
print(json.dumps({'server':'$label','calls':$calls,'load':$l,'frames':d['recv_media'],
  'echo_ratio':round(d['echo_ratio'],4),'echo_p99_ms':d['echo'] and d['echo']['p99_ms'],
  'server_cpu_s':s,'cpu_us_per_frame':round(s*1e6/f,2),
  'wakeups_per_frame':round(($w1-$w0)/f,3),'syscalls_per_frame':$sc}))" | tee -a "$results"
}

for calls in "${calls_list[@]}"; do
    [[ $FLOOR == skip ]] || run floor "$calls" -- "$FLOOR" @PORT
    for b in $buffers; do
        for t in $ticks; do
            if [[ $b == default ]]; then
                run "callstream (uring), tick $t ms" "$calls" CALLSTREAM_RUNTIME=uring \
                    CALLSTREAM_URING_TICK_MS="$t" -- "$CALLSTREAM"
            else
                run "callstream (uring), tick $t ms, $b buffers" "$calls" CALLSTREAM_RUNTIME=uring \
                    CALLSTREAM_URING_TICK_MS="$t" CALLSTREAM_URING_BUFFERS="$b" -- "$CALLSTREAM"
            fi
        done
    done
    if [[ -n ${EPOLL:-} ]]; then
        run "callstream (epoll)" "$calls" CALLSTREAM_RUNTIME=epoll -- "$CALLSTREAM"
    fi
done

python3 - "$results" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
floor = {r['calls']: r['cpu_us_per_frame'] for r in rows if r['server'] == 'floor'}
print('| calls | server (1 thread) | load avg | frames echoed | echo ratio | CPU µs/frame | × floor | echo p99 | wake-ups/frame | syscalls/frame |')
print('|---|---|---|---|---|---|---|---|---|---|')
for r in rows:
    f = floor.get(r['calls'])
    ratio = f'{r["cpu_us_per_frame"] / f:.2f}' if f else '-'
    print(f"| {r['calls']} | {r['server']} | {r['load']} | {r['frames']:,} | {r['echo_ratio']} "
          f"| {r['cpu_us_per_frame']} | {ratio} | {r['echo_p99_ms']} ms "
          f"| {r['wakeups_per_frame']} | {r['syscalls_per_frame']} |")
PY
