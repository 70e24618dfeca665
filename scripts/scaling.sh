#!/usr/bin/env bash
# Capacity against cores (a benchmark, not part of CI): how many calls a
# server carries on 1, 2, 4... reactors, each pinned to a core of its own,
# with the load generator on cores of its own.
#
#   scripts/scaling.sh
#   REACTORS="1 2 4" DRIVER_CPUS=6,7 SERVER=callstream-epoll scripts/scaling.sh
#
# For each reactor count k in REACTORS (default: 1, 2, 4... up to the CPUs
# the driver leaves), the server (SERVER: `callstream-epoll`, the default,
# `callstream-uring` or `callstream`, all built from this repository; echo
# handler, CALLSTREAM_THREADS=k) runs pinned to CPUs 0..k-1 (`taskset`), and
# `callstream sim` (adapters/tools: Twilio-shaped media streams, a 160-byte
# frame every 20 ms on absolute deadlines, `--tick-ms SIM_TICK_MS`, default
# 1) runs pinned to DRIVER_CPUS (default: the upper half of the CPUs) with
# one sim thread per driver CPU. Calls climb from STEP x k by STEP x k
# (STEP default 250), SECONDS_EACH (default 15) a run, until a run fails:
# - fewer than 99.9 % of the frames sent echoed, or a call not clean;
# - echo p99 above P99_MS (default 20 ms: a call still sounds right);
# - or the driver itself behind its deadlines (its lateness p99 above
#   LATE_MS, default 10 ms). Then the limit is the driver's, not the
#   server's: the row says "driver", and the figure is only a lower bound
#   (give the driver more CPUs).
# MAX_CALLS (default: no limit) ends the climb there, passed or not.
# BISECT (default 2) more runs then halve the gap between the last pass and
# the first failure. The capacity is the most calls that passed. The table
# gives it for each k, as a multiple of one reactor's, and the server's CPU
# per frame (utime+stime from /proc over frames echoed) at that load.
#
# A machine needs 2k CPUs or so to show k reactors at capacity (the driver
# spends about what the server does per frame, most of it the kernel's TCP
# path). On two CPUs only k = 1 can run, with the driver on the other CPU,
# and the driver reaches its limit first.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v taskset >/dev/null || { echo "needs taskset (util-linux)" >&2; exit 2; }
cores=$(nproc)
((cores >= 2)) || { echo "needs at least two CPUs (one for the driver)" >&2; exit 2; }
server=${SERVER:-callstream-epoll}
case $server in
    callstream-epoll) pkg=callstream-epoll ;;
    callstream-uring) pkg=callstream-uring ;;
    callstream) pkg=callstream-smol ;;
    *) echo "SERVER=$server: callstream-epoll, callstream-uring or callstream" >&2; exit 2 ;;
esac
num() { [[ $2 =~ ^[0-9]+$ ]] || { echo "$1=$2: a whole number" >&2; exit 2; }; }
secs=${SECONDS_EACH:-15} step=${STEP:-250} p99_ms=${P99_MS:-20} late_ms=${LATE_MS:-10}
bisect=${BISECT:-2} tick=${SIM_TICK_MS:-1} max_calls=${MAX_CALLS:-0}
for v in secs step p99_ms late_ms bisect tick max_calls; do num "$v" "${!v}"; done
((step > 0 && secs > 0)) || { echo "STEP and SECONDS_EACH must be above 0" >&2; exit 2; }
((tick <= 20)) || { echo "SIM_TICK_MS=$tick: 0 to 20 (ms)" >&2; exit 2; }
driver_cpus=${DRIVER_CPUS:-$((cores / 2))-$((cores - 1))}
# How many CPUs the driver list names (taskset's syntax: 3,5-7).
driver_n=$(python3 -c "
import sys
n = 0
for part in sys.argv[1].split(','):
    a, _, b = part.partition('-')
    n += int(b or a) - int(a) + 1
print(n)" "$driver_cpus") || { echo "DRIVER_CPUS=$driver_cpus: a CPU list such as 2-3 or 6,7" >&2; exit 2; }
lowest_driver=$(python3 -c "import sys; print(min(int(p.partition('-')[0]) for p in sys.argv[1].split(',')))" "$driver_cpus")
if [[ -z ${REACTORS:-} ]]; then
    REACTORS=
    for ((k = 1; k <= lowest_driver; k *= 2)); do REACTORS+="$k "; done
fi
for k in $REACTORS; do
    num REACTORS "$k"
    ((k >= 1 && k <= lowest_driver)) ||
        { echo "REACTORS: $k reactors need CPUs 0-$((k - 1)), below the driver's ($driver_cpus)" >&2; exit 2; }
done
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target}
cargo build --release -q -p "$pkg" -p callstream-smol
bin=$CARGO_TARGET_DIR/release
clk=$(getconf CLK_TCK)
port=${PORT_BASE:-18600}
results=$(mktemp)
trap 'rm -f "$results"' EXIT

one() { # k calls: one JSON line for a run of k reactors at that many calls
    local k=$1 calls=$2 url pid u0 s0 u1 s1 load out
    port=$((port + 1))
    url="ws://127.0.0.1:$port/ws/twilio-media"
    taskset -c "0-$((k - 1))" env CALLSTREAM_INSECURE_NO_SIGNATURES=1 PUBLIC_BASE_URL=https://callstream.test \
        CALLSTREAM_HANDLER=echo HOST=127.0.0.1 PORT=$port RUST_LOG=warn CALLSTREAM_THREADS=$k \
        MAX_CONNECTIONS=$((calls + 100)) "$bin/$server" >/dev/null 2>&1 &
    pid=$!
    for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
    load=$(cut -d' ' -f1 /proc/loadavg)
    read -r u0 s0 < <(awk '{print $14, $15}' "/proc/$pid/stat")
    # sim exits non-zero when a call was not clean; the numbers say how.
    out=$({ taskset -c "$driver_cpus" "$bin/callstream" sim "$url" --calls "$calls" --ramp 1 \
        --duration "$secs" --json --threads "$driver_n" --tick-ms "$tick" || true; })
    read -r u1 s1 < <(awk '{print $14, $15}' "/proc/$pid/stat")
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    echo "$out" | python3 -c "
import json, sys
d = json.load(sys.stdin)
sent, echoed = d['frames_sent'], d['frames_echoed']
p99, late = d['echo_ms']['p99'], d['sim_late_ms']['p99']
cpu = (($u1 - $u0) + ($s1 - $s0)) / $clk
verdict = ('driver' if late is not None and late > $late_ms else
           'pass' if echoed >= 0.999 * max(1, sent) and not d['failed'] and p99 is not None and p99 <= $p99_ms else
           'fail')
print(json.dumps({'reactors': $k, 'calls': $calls, 'load': $load, 'verdict': verdict,
  'echo_ratio': round(echoed / max(1, sent), 4), 'echo_p99_ms': p99, 'late_p99_ms': late,
  'failed': d['failed'], 'cpu_us_per_frame': round(cpu * 1e6 / max(1, echoed), 2)}))" | tee -a "$results"
}

verdict() { tail -n 1 "$results" | python3 -c "import json,sys; print(json.load(sys.stdin)['verdict'])"; }

for k in $REACTORS; do
    calls=$((step * k)) pass=0
    while :; do
        one "$k" "$calls"
        [[ $(verdict) == pass ]] || break
        pass=$calls calls=$((calls + step * k))
        ((max_calls == 0 || calls <= max_calls)) || break
    done
    fail=$calls
    if [[ $(verdict) == fail ]]; then
        for ((b = 0; b < bisect; b++)); do
            mid=$(((pass + fail) / 2))
            ((mid > pass && mid < fail)) || break
            one "$k" "$mid"
            case $(verdict) in
                pass) pass=$mid ;;
                fail) fail=$mid ;;
                *) break ;;
            esac
        done
    fi
done

echo
echo "Server \`$server\` on CPUs 0..k-1, \`callstream sim --tick-ms $tick\` on CPUs $driver_cpus ($driver_n threads), ${secs} s a run, pass = echo ratio >= 0.999 and p99 <= ${p99_ms} ms with the driver on time (lateness p99 <= ${late_ms} ms); $(nproc) CPUs, $(lscpu 2>/dev/null | sed -n 's/^Model name: *//p' | head -n 1)."
echo
python3 - "$results" <<'EOF'
import json, sys
runs = [json.loads(l) for l in open(sys.argv[1])]
print('| reactors | capacity (calls) | × one reactor | the climb stopped at | CPU µs/frame at capacity | echo p99 at capacity | runs |')
print('|---|---|---|---|---|---|---|')
one = None
for k in sorted({r['reactors'] for r in runs}):
    rs = [r for r in runs if r['reactors'] == k]
    passed = [r for r in rs if r['verdict'] == 'pass']
    best = max(passed, key=lambda r: r['calls']) if passed else None
    cap = best['calls'] if best else 0
    stops = [r for r in rs if r['verdict'] != 'pass']
    driver = any(r['verdict'] == 'driver' for r in rs)
    if stops:
        s = min(stops, key=lambda r: r['calls'])
        stop = (f"{s['calls']} calls, the driver behind (lateness p99 {s['late_p99_ms']} ms)" if s['verdict'] == 'driver'
                else f"{s['calls']} calls (echo ratio {s['echo_ratio']}, p99 {s['echo_p99_ms']} ms, {s['failed']} calls not clean)")
    else:
        stop = 'MAX_CALLS'
    if k == 1:
        one = None if driver else cap
    # A driver-bound figure is a lower bound, and no ratio is taken to one.
    shown = f'≥ {cap}' if driver else f'{cap}'
    times = f'{cap / one:.2f}' if one and k != 1 and not driver else '-'
    cpu = best['cpu_us_per_frame'] if best else '-'
    p99 = f"{best['echo_p99_ms']} ms" if best else '-'
    print(f'| {k} | {shown} | {times} | {stop} | {cpu} | {p99} | {len(rs)} |')
EOF
