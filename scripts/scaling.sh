#!/usr/bin/env bash
# Capacity against cores (a benchmark; CI runs only a brief smoke of it):
# how many calls a server carries on 1, 2, 4... reactors, each pinned to a
# core of its own, with the load generator on cores of its own.
#
#   scripts/scaling.sh
#   REACTORS="1 2 4" DRIVER_CPUS=6,7 RUNTIME=epoll scripts/scaling.sh
#
# For each reactor count k in REACTORS (default: 1, 2, 4... up to the CPUs
# the driver leaves), the server (`callstream` built from this repository on
# RUNTIME: `epoll`, the default, `uring`, `smol` or `blocking`; echo
# handler, CALLSTREAM_THREADS=k) runs pinned to CPUs 0..k-1 (`taskset`), and
# `callstream sim` (tools/: Twilio-shaped media streams, a 160-byte
# frame every 20 ms on absolute deadlines, `--tick-ms SIM_TICK_MS`, default
# 1) runs pinned to DRIVER_CPUS (default: the upper half of the CPUs) with
# one sim thread per driver CPU. Calls climb from STEP x k by STEP x k
# (STEP default 250), SECONDS_EACH (default 15) a run, until a run fails:
# - fewer than 99.9 % of the frames sent echoed, or a call not clean;
# - echo p99 above P99_MS (default 20 ms: a call still sounds right);
# - or the driver itself behind its deadlines (its lateness p99 above
#   LATE_MS, default 10 ms). Then the limit is the driver's, not the
#   server's: the figure is only a lower bound (give the driver more CPUs),
#   and no ratio to one reactor is taken from it.
# MAX_CALLS (default: no limit) ends the climb there; its figure is a lower
# bound too. BISECT (default 2) more runs then halve the gap between the
# last pass and the first failure. The capacity is the most calls that
# passed. The table gives it for each k, as a multiple of one reactor's,
# and the server's CPU per frame (utime+stime from /proc over frames
# echoed) at that load. A run that breaks (the server does not start or
# dies, the driver prints nothing) ends that k's climb with an error row;
# the server's log is kept and named.
#
# A machine needs 2k CPUs or so to show k reactors at capacity (the driver
# spends about what the server does per frame, most of it the kernel's TCP
# path). On two CPUs only k = 1 can run, with the driver on the other CPU,
# and the driver reaches its limit first.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v taskset >/dev/null || { echo "needs taskset (util-linux)" >&2; exit 2; }
runtime=${RUNTIME:-epoll}
case $runtime in
    epoll | uring | smol | blocking) ;;
    *) echo "RUNTIME=$runtime: epoll, uring, smol or blocking" >&2; exit 2 ;;
esac
server="callstream --runtime $runtime"
num() { [[ $2 =~ ^(0|[1-9][0-9]*)$ ]] || { echo "$1=$2: a whole number" >&2; exit 2; }; }
secs=${SECONDS_EACH:-15} step=${STEP:-250} p99_ms=${P99_MS:-20} late_ms=${LATE_MS:-10}
bisect=${BISECT:-2} tick=${SIM_TICK_MS:-1} max_calls=${MAX_CALLS:-0}
for v in secs step p99_ms late_ms bisect tick max_calls; do num "$v" "${!v}"; done
((step > 0 && secs > 0)) || { echo "STEP and SECONDS_EACH must be above 0" >&2; exit 2; }
((tick <= 20)) || { echo "SIM_TICK_MS=$tick: 0 to 20 (ms)" >&2; exit 2; }
# The CPUs this process may run on (a container's cpuset may leave some out).
allowed=$(taskset -pc $$ | sed 's/.*: *//')
cores=$(nproc)
driver_cpus=${DRIVER_CPUS:-$((cores / 2))-$((cores - 1))}
# Checks the driver's CPU list (taskset's syntax: 3,5-7) against the allowed
# ones, and prints how many CPUs it names, the lowest of them, and how many
# reactors fit below it (CPUs 0, 1, 2... all allowed).
read -r driver_n lowest_driver reactor_cpus < <(python3 - "$driver_cpus" "$allowed" <<'EOF' || echo "0 0 0"
import re, sys
def cpus(spec):
    out = set()
    for part in spec.split(','):
        m = re.fullmatch(r'(0|[1-9][0-9]*)(?:-(0|[1-9][0-9]*))?', part.strip())
        if not m:
            raise SystemExit(f'not a CPU list: {spec}')
        a = int(m.group(1)); b = int(m.group(2) or a)
        if b < a:
            raise SystemExit(f'a backwards range in {spec}')
        out |= set(range(a, b + 1))
    return out
driver, allowed = cpus(sys.argv[1]), cpus(sys.argv[2])
if not driver <= allowed:
    raise SystemExit(f'CPUs {sorted(driver - allowed)} are not allowed here ({sys.argv[2]})')
low = min(driver)
fit = next((k for k in range(low) if k not in allowed), low)
print(len(driver), low, fit)
EOF
)
((driver_n >= 1)) || { echo "DRIVER_CPUS=$driver_cpus: a list of CPUs allowed here ($allowed), such as 1 or 2-3" >&2; exit 2; }
((lowest_driver >= 1)) || { echo "DRIVER_CPUS=$driver_cpus: the reactors take CPUs 0..k-1, so the driver's must start at 1 or above" >&2; exit 2; }
((reactor_cpus >= 1)) || { echo "the reactors take CPUs 0..k-1, and CPU 0 is not allowed here ($allowed)" >&2; exit 2; }
if [[ -z ${REACTORS:-} ]]; then
    REACTORS=
    for ((k = 1; k <= reactor_cpus; k *= 2)); do REACTORS+="$k "; done
fi
for k in $REACTORS; do
    num REACTORS "$k"
    ((k >= 1 && k <= reactor_cpus)) ||
        { echo "REACTORS: $k reactors need CPUs 0-$((k - 1)), allowed here ($allowed) and below the driver's ($driver_cpus)" >&2; exit 2; }
done
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target}
cargo build --release -q -p callstream
bin=$CARGO_TARGET_DIR/release
clk=$(getconf CLK_TCK)
port=${PORT_BASE:-18600}
results=$(mktemp)
logs=$(mktemp -d)
trap 'rm -f "$results"' EXIT

one() { # k calls: one JSON line for a run of k reactors at that many calls
    local k=$1 calls=$2 url pid u0 s0 u1 s1 load out log
    port=$((port + 1))
    url="ws://127.0.0.1:$port/ws/twilio-media"
    log=$logs/server-$k-$calls.log
    taskset -c "0-$((k - 1))" env CALLSTREAM_INSECURE_NO_SIGNATURES=1 PUBLIC_BASE_URL=https://callstream.test \
        CALLSTREAM_HANDLER=echo HOST=127.0.0.1 PORT=$port RUST_LOG=warn CALLSTREAM_THREADS=$k \
        MAX_CONNECTIONS=$((calls + 100)) CALLSTREAM_RUNTIME=$runtime "$bin/callstream" >"$log" 2>&1 &
    pid=$!
    for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
    broken() { # why: an error row, the server stopped, its log named
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
        echo "{\"reactors\": $k, \"calls\": $calls, \"verdict\": \"error\", \"why\": \"$1\", \"log\": \"$log\"}" |
            tee -a "$results"
    }
    # Running (an exited server stays a zombie until waited for).
    alive() { [[ $(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null) =~ ^[RSDI]$ ]]; }
    if ! alive; then
        broken "the server did not start"
        return
    fi
    read -r u0 s0 < <(awk '{print $14, $15}' "/proc/$pid/stat")
    load=$(cut -d' ' -f1 /proc/loadavg)
    # sim exits non-zero when a call was not clean; the numbers say how.
    out=$({ taskset -c "$driver_cpus" "$bin/callstream" sim "$url" --calls "$calls" --ramp 1 \
        --duration "$secs" --json --threads "$driver_n" --tick-ms "$tick" 2>>"$log" || true; })
    if ! alive; then
        broken "the server died during the run"
        return
    fi
    read -r u1 s1 < <(awk '{print $14, $15}' "/proc/$pid/stat")
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    echo "$out" | python3 -c "
import json, sys
try:
    d = json.loads(sys.stdin.read())
except ValueError:
    print(json.dumps({'reactors': $k, 'calls': $calls, 'verdict': 'error',
      'why': 'the driver printed no result', 'log': '$log'}))
    sys.exit()
sent, echoed = d['frames_sent'], d['frames_echoed']
p99, late = d['echo_ms']['p99'], d['sim_late_ms']['p99']
cpu = (($u1 - $u0) + ($s1 - $s0)) / $clk
server_ok = echoed >= 0.999 * max(1, sent) and not d['failed'] and p99 is not None and p99 <= $p99_ms
driver_late = late is not None and late > $late_ms
print(json.dumps({'reactors': $k, 'calls': $calls, 'load': $load,
  'verdict': 'driver' if driver_late else 'pass' if server_ok else 'fail', 'server_ok': server_ok,
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
        if ((max_calls > 0 && calls > max_calls)); then
            echo "{\"reactors\": $k, \"calls\": $calls, \"verdict\": \"max_calls\"}" >>"$results"
            break
        fi
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
echo "Server \`$server\` on CPUs 0..k-1, \`callstream sim --tick-ms $tick\` on CPUs $driver_cpus ($driver_n threads), ${secs} s a run, pass = echo ratio >= 0.999 and p99 <= ${p99_ms} ms with the driver on time (lateness p99 <= ${late_ms} ms); $(nproc) CPUs, $(lscpu 2>/dev/null | sed -n 's/^Model name: *//p' | head -n 1). Server logs: $logs"
echo
python3 - "$results" <<'EOF'
import json, sys
runs = [json.loads(l) for l in open(sys.argv[1])]
print('| reactors | capacity (calls) | × one reactor | the climb stopped at | CPU µs/frame at capacity | echo p99 at capacity | runs |')
print('|---|---|---|---|---|---|---|')
one = None
for k in sorted({r['reactors'] for r in runs}):
    rs = [r for r in runs if r['reactors'] == k]
    measured = [r for r in rs if r['verdict'] != 'max_calls']
    passed = [r for r in rs if r['verdict'] == 'pass']
    best = max(passed, key=lambda r: r['calls']) if passed else None
    cap = best['calls'] if best else 0
    stops = [r for r in rs if r['verdict'] != 'pass']
    stop = min(stops, key=lambda r: r['calls']) if stops else None
    # Not the server's limit: the driver's, MAX_CALLS, or a broken run.
    bound = stop is not None and stop['verdict'] != 'fail'
    if stop is None:
        said = '-'
    elif stop['verdict'] == 'driver':
        said = f"{stop['calls']} calls, the driver behind (lateness p99 {stop['late_p99_ms']} ms)"
        if not stop['server_ok']:
            said += f", and past the server's bounds too (echo ratio {stop['echo_ratio']}, p99 {stop['echo_p99_ms']} ms)"
    elif stop['verdict'] == 'max_calls':
        said = f"MAX_CALLS, below {stop['calls']} calls"
    elif stop['verdict'] == 'error':
        said = f"{stop['calls']} calls, an error: {stop['why']} ({stop['log']})"
    else:
        said = f"{stop['calls']} calls (echo ratio {stop['echo_ratio']}, p99 {stop['echo_p99_ms']} ms, {stop['failed']} calls not clean)"
    if best is None:
        shown = 'no result' if bound else f"< {stop['calls']}"
    else:
        shown = f'≥ {cap}' if bound else f'{cap}'
    if k == 1:
        one = None if bound or best is None else cap
    times = f'{cap / one:.2f}' if one and k != 1 and not bound and best else '-'
    cpu = best['cpu_us_per_frame'] if best else '-'
    p99 = f"{best['echo_p99_ms']} ms" if best else '-'
    print(f'| {k} | {shown} | {times} | {said} | {cpu} | {p99} | {len(measured)} |')
EOF
