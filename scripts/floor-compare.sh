#!/usr/bin/env bash
# The adapters against the syscall floor (a benchmark, not part of CI).
#
#   scripts/floor-compare.sh [CALLS...]
#   FLOOR=/path/to/floor LOADGEN=/path/to/loadgen scripts/floor-compare.sh [CALLS...]
#
# Everything it needs is built from this repository:
# - the floor, `callstream-floor` (bench/floor): a one-thread, edge-triggered
#   epoll server, started as `callstream-floor PORT`, that answers the
#   WebSocket upgrade and echoes each `media` message as the outbound one by
#   slicing strings, with no JSON parser, base64, audio or timers: whatever a
#   server spends per media frame above it is its own work;
# - the load, `callstream sim WS_URL --calls N --ramp 1 --duration S --json
#   --threads SIM_THREADS` (tools/): N Twilio-shaped media streams, a
#   160-byte frame every 20 ms on absolute deadlines, printing one JSON line
#   with `frames_sent`, `frames_echoed`, `echo_ms.p99` and its own lateness
#   `sim_late_ms.p99` (how far behind its deadlines it sent: if that grows
#   past a few ms the driver, not the server, is the bottleneck; raise
#   SIM_THREADS, default 1). SIM_TICK_MS=1 sends on a 1 ms grid, as a
#   timer wheel does (`--tick-ms`: frames due in the same millisecond leave
#   together, as from a load generator on tokio); the default, 0, sends
#   each frame exactly on time, which spreads frames out and costs every
#   server, the floor included, more wake-ups per frame. (LOADGEN keeps
#   its own timing: SIM_TICK_MS does not apply to it.)
# Optional overrides: FLOOR, another floor binary taking the same `PORT`
# argument; LOADGEN, another load generator taking `--url WS_URL --calls N
# --seconds S --ramp MS` and printing one JSON line with `recv_media`,
# `echo_ratio` and `echo.p99_ms`.
#
# BASE=<git revision> adds `callstream --runtime epoll` and `--runtime
# uring` (one thread) built from that revision (in a temporary worktree; a
# revision with the one `callstream` binary) after each one-thread run of
# the same runtime (and after its PGO run, with PGO): a before-and-after in
# one sitting.
#
# SMOL=0 leaves smol out, MULTI=0 the runs with one thread per core: a
# shorter sitting for the one-thread figures.
#
# PGO=<directory> adds, after each one-thread smol and epoll run, the same
# runtime of the `callstream` built with profile-guided optimization in that
# directory (what `scripts/pgo-build.sh epoll smol` leaves in target/pgo).
#
# ROUNDS=N (default 1) runs the whole sequence N times per CALLS, so that
# each server is measured several times, alternated with the others, in one
# sitting; a second table then gives each server's medians over the rounds.
#
# PIN=1 gives the driver the last CPU to itself and the server every other
# (`taskset`, at least two CPUs): on a two-core machine the default thread
# count otherwise puts a server thread on the driver's core.
#
# For each CALLS (default: 200 500), in one sitting, SECONDS_EACH (default
# 20) each: the floor, `callstream --runtime smol` with one thread and with
# the default (one per core), `--runtime epoll` likewise, and `--runtime
# uring` with one thread (URING=0 leaves it out), all with the echo
# handler. Prints one JSON line per run and a Markdown table: server CPU
# (utime+stime from /proc, every thread) per frame echoed, its ratio to the
# floor at the same call count, the user-space part of it (the server's own
# work; the rest is the kernel's), echo p99, the driver's lateness p99, and
# the server threads' voluntary context switches per frame (how often it
# slept and was woken: fewer frames per wake-up cost the kernel more), and
# the 1-minute load average before the run (the machine may be shared: note
# it with each number).
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${SECONDS_EACH:-20}
sim_threads=${SIM_THREADS:-1}
sim_tick=${SIM_TICK_MS:-0}
[[ $sim_tick =~ ^([0-9]|1[0-9]|20)$ ]] || { echo "SIM_TICK_MS=$sim_tick: 0 to 20 (ms)" >&2; exit 2; }
[[ $# -gt 0 ]] || set -- 200 500
calls_list=("$@")
port=${PORT_BASE:-18200}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target}
cargo build --release -q -p callstream -p callstream-floor
bin=$CARGO_TARGET_DIR/release
base_bin=
if [[ -n ${BASE:-} ]]; then
    base_wt=$(mktemp -d)
    git worktree add -q --detach "$base_wt" "$BASE"
    (cd "$base_wt" && CARGO_TARGET_DIR="$base_wt/target" cargo build --release -q -p callstream)
    base_bin=$base_wt/target/release/callstream
fi
pgo=${PGO:-}
if [[ -n $pgo ]]; then
    [[ -x $pgo/callstream ]] || { echo "PGO=$pgo has no callstream: run scripts/pgo-build.sh epoll smol first" >&2; exit 2; }
fi
rounds=${ROUNDS:-1}
[[ $rounds =~ ^[1-9][0-9]*$ ]] || { echo "ROUNDS=$rounds: a number of rounds, at least 1" >&2; exit 2; }
FLOOR=${FLOOR:-$bin/callstream-floor}
LOADGEN=${LOADGEN:-}
cores=$(nproc)
tick=$(getconf CLK_TCK)
srv_pin=() drv_pin=()
if [[ ${PIN:-0} == 1 ]]; then
    command -v taskset >/dev/null || { echo "PIN=1 needs taskset (util-linux)" >&2; exit 2; }
    ((cores >= 2)) || { echo "PIN=1 needs at least two CPUs" >&2; exit 2; }
    srv_pin=(taskset -c "0-$((cores - 2))") drv_pin=(taskset -c "$((cores - 1))")
fi
results=$(mktemp)
trap 'rm -f "$results"; [[ -z ${base_wt:-} ]] || git worktree remove --force "$base_wt"' EXIT

drive() { # calls port: one JSON line {frames, sent, echo_p99_ms, late_p99_ms, failed}
    local calls=$1 url="ws://127.0.0.1:$2/ws/twilio-media"
    if [[ -n $LOADGEN ]]; then
        ${drv_pin[@]+"${drv_pin[@]}"} "$LOADGEN" --url "$url" --calls "$calls" --seconds "$secs" --ramp 1000 | python3 -c "
import json,sys
d=json.load(sys.stdin)
print(json.dumps({'frames':d['recv_media'],'echo_ratio':round(d['echo_ratio'],4),
  'echo_p99_ms':d['echo'] and d['echo']['p99_ms'],'late_p99_ms':None,'failed':None}))"
    else
        # sim exits non-zero when a call was not clean; the numbers say how.
        { ${drv_pin[@]+"${drv_pin[@]}"} "$bin/callstream" sim "$url" --calls "$calls" --ramp 1 --duration "$secs" --json \
            --threads "$sim_threads" --tick-ms "$sim_tick" || true; } | python3 -c "
import json,sys
d=json.load(sys.stdin)
print(json.dumps({'frames':d['frames_echoed'],
  'echo_ratio':round(d['frames_echoed']/max(1,d['frames_sent']),4),
  'echo_p99_ms':d['echo_ms']['p99'],'late_p99_ms':d['sim_late_ms']['p99'],'failed':d['failed']}))"
    fi
}

switches() { # pid: voluntary context switches of all its threads
    # A thread may end between the glob and the read: count what is there.
    { cat "/proc/$1"/task/*/status 2>/dev/null || true; } |
        awk '/^voluntary_ctxt_switches/ {s += $2} END {print s + 0}'
}

run() { # label calls threads [NAME=VALUE...] command... (an argument @PORT becomes the port)
    local label=$1 calls=$2 threads=$3
    shift 3
    port=$((port + 1))
    local cmd=("${@/#@PORT/$port}")
    ${srv_pin[@]+"${srv_pin[@]}"} env CALLSTREAM_INSECURE_NO_SIGNATURES=1 PUBLIC_BASE_URL=https://callstream.test \
        CALLSTREAM_HANDLER=echo HOST=127.0.0.1 PORT=$port RUST_LOG=warn \
        ${threads:+CALLSTREAM_THREADS=$threads} "${cmd[@]}" >/dev/null 2>&1 &
    local pid=$!
    for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
    local load u0 s0 u1 s1 w0 w1 out
    load=$(cut -d' ' -f1 /proc/loadavg)
    read -r u0 s0 < <(awk '{print $14, $15}' "/proc/$pid/stat")
    w0=$(switches "$pid")
    out=$(drive "$calls" "$port")
    read -r u1 s1 < <(awk '{print $14, $15}' "/proc/$pid/stat")
    w1=$(switches "$pid")
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    echo "$out" | python3 -c "
import json,sys
d=json.load(sys.stdin); u=($u1-$u0)/$tick; s=u+($s1-$s0)/$tick
d.update({'server':'$label','threads':'${threads:-$cores}','calls':$calls,'load':$load,
  'server_cpu_s':s,'cpu_us_per_frame':round(s*1e6/max(1,d['frames']),2),
  'user_us_per_frame':round(u*1e6/max(1,d['frames']),2),
  'wakes_per_frame':round(($w1-$w0)/max(1,d['frames']),3)})
print(json.dumps(d))" | tee -a "$results"
}

for calls in "${calls_list[@]}"; do
    for _ in $(seq "$rounds"); do
        run floor "$calls" 1 "$FLOOR" @PORT
        if [[ ${SMOL:-1} == 1 ]]; then
            run "callstream (smol)" "$calls" 1 CALLSTREAM_RUNTIME=smol "$bin/callstream"
            [[ -z $pgo ]] || run "callstream (smol, PGO)" "$calls" 1 CALLSTREAM_RUNTIME=smol "$pgo/callstream"
            [[ ${MULTI:-1} == 0 ]] || run "callstream (smol)" "$calls" "" CALLSTREAM_RUNTIME=smol "$bin/callstream"
        fi
        run "callstream (epoll)" "$calls" 1 CALLSTREAM_RUNTIME=epoll "$bin/callstream"
        [[ -z $pgo ]] || run "callstream (epoll, PGO)" "$calls" 1 CALLSTREAM_RUNTIME=epoll "$pgo/callstream"
        [[ -z $base_bin ]] || run "callstream (epoll, $BASE)" "$calls" 1 CALLSTREAM_RUNTIME=epoll "$base_bin"
        [[ ${MULTI:-1} == 0 ]] || run "callstream (epoll)" "$calls" "" CALLSTREAM_RUNTIME=epoll "$bin/callstream"
        if [[ ${URING:-1} == 1 ]]; then
            run "callstream (uring)" "$calls" 1 CALLSTREAM_RUNTIME=uring "$bin/callstream"
            [[ -z $base_bin ]] || run "callstream (uring, $BASE)" "$calls" 1 CALLSTREAM_RUNTIME=uring "$base_bin"
        fi
    done
done

python3 - "$results" <<'EOF_PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
# Each row against the run of the floor (or of the same server on one
# thread) that came last before it, in the same round.
floor, one, last_floor, last_one = {}, {}, {}, {}
for i, r in enumerate(rows):
    if r['server'] == 'floor':
        last_floor[r['calls']] = r['cpu_us_per_frame']
    if r['threads'] == '1':
        last_one[(r['calls'], r['server'])] = r['cpu_us_per_frame']
    floor[i] = last_floor.get(r['calls'])
    one[i] = last_one.get((r['calls'], r['server']))
ms = lambda v: '-' if v is None else f'{v:g} ms'
print('| calls | server | threads | load avg | frames echoed | echo ratio | CPU µs/frame | × floor | × one thread | of it user | wake-ups/frame | echo p99 | driver late p99 |')
print('|---|---|---|---|---|---|---|---|---|---|---|---|---|')
for i, r in enumerate(rows):
    f = floor[i]
    ratio = f'{r["cpu_us_per_frame"] / f:.2f}' if f else '-'
    o = one[i]
    vs_one = f'{r["cpu_us_per_frame"] / o:.2f}' if o and r['threads'] != '1' else '-'
    print(f"| {r['calls']} | {r['server']} | {r['threads']} | {r['load']} | {r['frames']:,} "
          f"| {r['echo_ratio']} | {r['cpu_us_per_frame']} | {ratio} | {vs_one} | {r['user_us_per_frame']} "
          f"| {r['wakes_per_frame']} | {ms(r['echo_p99_ms'])} | {ms(r['late_p99_ms'])} |")

# Over rounds: one run of a server says little on a shared machine (the
# same binary swings by a fifth between runs), the median of several says
# more. Per server, calls and threads: the median CPU per frame, the median
# of its rounds' ratios to the floor (and, for the default thread count, to
# one thread), how many rounds were within 1.2x the floor, and the worst
# echo p99.
groups = {}
for i, r in enumerate(rows):
    g = groups.setdefault((r['calls'], r['server'], r['threads']), [])
    g.append((r, floor[i], one[i]))
if any(len(g) > 1 for g in groups.values()):
    def median(xs):
        xs = sorted(xs)
        n = len(xs)
        return xs[n // 2] if n % 2 else (xs[n // 2 - 1] + xs[n // 2]) / 2
    print()
    print('| calls | server | threads | runs | median CPU µs/frame | median × floor | rounds ≤ 1.2× floor | median × one thread | worst echo p99 |')
    print('|---|---|---|---|---|---|---|---|---|')
    for (calls, server, threads), g in groups.items():
        cpu = median([r['cpu_us_per_frame'] for r, _, _ in g])
        ratios = [r['cpu_us_per_frame'] / f for r, f, _ in g if f]
        vs_floor = f'{median(ratios):.2f}' if ratios and server != 'floor' else '-'
        within = f'{sum(x <= 1.2 for x in ratios)} of {len(ratios)}' if ratios and server != 'floor' else '-'
        ones = [r['cpu_us_per_frame'] / o for r, _, o in g if o and threads != '1']
        vs_one = f'{median(ones):.2f}' if ones else '-'
        p99s = [r['echo_p99_ms'] for r, _, _ in g if r['echo_p99_ms'] is not None]
        worst = ms(max(p99s)) if p99s else '-'
        print(f'| {calls} | {server} | {threads} | {len(g)} | {cpu:.2f} | {vs_floor} | {within} | {vs_one} | {worst} |')
EOF_PY
