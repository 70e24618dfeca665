#!/usr/bin/env bash
# Builds the `callstream` binary with profile-guided optimization (PGO): an
# opt-in build, like `-C target-cpu`, but portable (the profile changes how
# the code is laid out and inlined, not which instructions it may use, so
# the binary runs on any x86-64 the plain build runs on).
#
#   scripts/pgo-build.sh [RUNTIME...]   # default: epoll
#
# RUNTIME is any of epoll, uring (Linux 6.0+), smol and blocking: the
# runtimes the profile is trained on (`callstream --runtime`); the binary
# holds them all, and the code of those not trained is laid out as by a
# plain build. The optimized `callstream` lands in $OUT (default
# target/pgo); the builds and profiles in $PGO_WORK (default
# target/pgo-work). Relative paths are taken from the repository's root.
#
# Steps, each printed as it starts:
# 1. `llvm-profdata` from the toolchain's `llvm-tools` component (added with
#    rustup when missing: needs network once);
# 2. the plain release `callstream` binary, whose `sim` and `check`
#    subcommands play Twilio during the training;
# 3. the binary built with `-C profile-generate`;
# 4. the training, per runtime, signatures on (a throwaway token), as in
#    production: the echo handler under `callstream sim` load (PGO_CALLS
#    calls, default 200, for PGO_SECONDS, default 10), then the default
#    handler (parrot) with `callstream check` (every webhook, the TwiML, the
#    upgrade, signed and unsigned) PGO_CHECKS times (default 10) and one
#    spoken call (`tests/fixtures/speech/repeat_after_me.ulaw`) it answers;
#    each server is stopped with SIGTERM, which writes its profile;
# 5. the profiles merged, and the binary built again with
#    `-C profile-use`;
# 6. a check of the optimized binary on each runtime: a short echo load
#    (20 calls, 3 s) whose frames must all come back.
# Any step that fails stops the script with what it printed (a server's log
# when the server failed); no server is left running.
#
# RUSTFLAGS from the environment are kept (e.g. add `-C target-cpu=x86-64-v3`,
# which ties the binary to CPUs that have it); CARGO_ENCODED_RUSTFLAGS is
# refused, since cargo would then ignore the profile flags.
# The profile matches this tree; build again after changing the code (a stale
# profile is not wrong, only less useful: functions that changed lose theirs).
# BENCHMARKS.md ("Profile-guided builds") has what it gained on the
# development machine.
set -euo pipefail
cd "$(dirname "$0")/.."
[[ $# -gt 0 ]] || set -- epoll
runtimes=("$@")
out=$(realpath -m -- "${OUT:-target/pgo}")
work=$(realpath -m -- "${PGO_WORK:-target/pgo-work}")
case $work in
    *[[:space:]]*) echo "PGO_WORK=$work: a path with spaces cannot go into RUSTFLAGS" >&2; exit 2 ;;
esac
[[ -z ${CARGO_ENCODED_RUSTFLAGS:-} ]] || { echo "unset CARGO_ENCODED_RUSTFLAGS (use RUSTFLAGS)" >&2; exit 2; }
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target}
calls=${PGO_CALLS:-200} seconds=${PGO_SECONDS:-10} checks=${PGO_CHECKS:-10}
token=pgo-training-token public=https://callstream.test
flags=${RUSTFLAGS:-}

step() { echo "== $*" >&2; }

for r in "${runtimes[@]}"; do
    case $r in
        epoll | uring | smol | blocking) ;;
        *) echo "unknown runtime $r (epoll, uring, smol, blocking)" >&2; exit 2 ;;
    esac
done

step "llvm-profdata"
host=$(rustc -vV | sed -n 's/^host: //p')
profdata=$(rustc --print sysroot)/lib/rustlib/$host/bin/llvm-profdata
if [[ ! -x $profdata ]]; then
    rustup component add llvm-tools >&2
fi
[[ -x $profdata ]] || { echo "no llvm-profdata at $profdata" >&2; exit 1; }

step "the plain callstream binary (sim and check)"
cargo build --release -q -p callstream
driver=$(realpath -- "$CARGO_TARGET_DIR/release/callstream")

step "instrumented build"
rm -rf "$work"
mkdir -p "$work/profiles"
# Build scripts run instrumented too and write their profiles under here;
# the training's own go to $work/profiles.
RUSTFLAGS="$flags -Cprofile-generate=$work/build-scripts" CARGO_TARGET_DIR=$work/gen \
    cargo build --release -q -p callstream

pid=
# Whatever happens, no server outlives the script.
trap '[[ -z $pid ]] || kill "$pid" 2>/dev/null || true' EXIT
port=$((18400 + RANDOM % 400))
answers() { # port: something answers /healthz there
    (exec 3<>"/dev/tcp/127.0.0.1/$1" &&
        printf 'GET /healthz HTTP/1.1\r\nHost: pgo\r\nConnection: close\r\n\r\n' >&3 &&
        grep -q '^HTTP/1.1 200' <&3) 2>/dev/null
}
server_failed() { # what: prints the server's log and stops the script
    echo "$1; the server's log:" >&2
    cat "$work/server.log" >&2
    exit 1
}
serve() { # binary handler runtime: starts it on a free port ($port), sets $pid
    while (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do port=$((port + 1)); done
    env -i PATH="$PATH" LLVM_PROFILE_FILE="$work/profiles/%m-%p.profraw" \
        TWILIO_AUTH_TOKEN=$token PUBLIC_BASE_URL=$public HOST=127.0.0.1 PORT=$port \
        CALLSTREAM_HANDLER="$2" CALLSTREAM_RUNTIME="$3" CALLSTREAM_THREADS=1 RUST_LOG=warn \
        "$1" >"$work/server.log" 2>&1 &
    pid=$!
    for _ in $(seq 100); do
        kill -0 "$pid" 2>/dev/null || server_failed "$1 exited at start"
        answers "$port" && return 0
        sleep 0.1
    done
    server_failed "$1 did not answer /healthz on port $port within 10 s"
}
stop() { # SIGTERM, and a clean exit: the profile is written then
    kill -TERM "$pid" 2>/dev/null || true
    local rc=0
    wait "$pid" || rc=$?
    pid=
    ((rc == 0)) || server_failed "the server exited with status $rc"
    port=$((port + 1))
}
run() { # output-file command...: runs a sim or check, showing its output when it fails
    local file=$1 rc=0
    shift
    "$@" >"$file" 2>&1 || rc=$?
    ((rc == 0)) || { echo "failed ($rc): $*" >&2; cat "$file" >&2; exit 1; }
}
simulate() { # sim arguments...: Twilio on the running server's stream, signed
    "$driver" sim "ws://127.0.0.1:$port/ws/twilio-media" --token $token \
        --public-url "$public/ws/twilio-media" "$@"
}
field() { # name file: a top-level number in sim's JSON line
    grep -o "\"$1\":[0-9]*" "$2" | head -1 | cut -d: -f2
}

b=$work/gen/release/callstream
for r in "${runtimes[@]}"; do
    step "training on $r: echo under $calls calls for ${seconds}s"
    serve "$b" echo "$r"
    # An instrumented server on a busy machine may drop a frame; the load
    # still trains it. What matters is that the load ran.
    simulate --calls "$calls" --ramp 1 --duration "$seconds" --json >"$work/load.json" 2>&1 || true
    grep -q '"frames_echoed":[1-9]' "$work/load.json" || { echo "the training load did not run:" >&2; cat "$work/load.json" >&2; exit 1; }
    stop
    step "training on $r: parrot, $checks acceptance checks and a spoken call"
    serve "$b" parrot "$r"
    for _ in $(seq "$checks"); do
        run "$work/check-run.json" "$driver" check "http://127.0.0.1:$port" --token $token --public-url "$public" --json
    done
    run "$work/spoken.json" simulate --audio tests/fixtures/speech/repeat_after_me.ulaw --json
    stop
done

step "merging $(ls "$work/profiles" | wc -l) profiles"
"$profdata" merge -o "$work/merged.profdata" "$work"/profiles/*.profraw

step "optimized build"
RUSTFLAGS="$flags -Cprofile-use=$work/merged.profdata" CARGO_TARGET_DIR=$work/use \
    cargo build --release -q -p callstream
mkdir -p "$out"
# Into place in one step: a benchmark may be running the old one.
cp "$work/use/release/callstream" "$out/.callstream.new"
mv -f "$out/.callstream.new" "$out/callstream"

b=$out/callstream
for r in "${runtimes[@]}"; do
    step "checking $b on $r: 20 calls, 3 s of echo"
    serve "$b" echo "$r"
    run "$work/check.json" simulate --calls 20 --ramp 1 --duration 3 --json
    stop
    sent=$(field frames_sent "$work/check.json") echoed=$(field frames_echoed "$work/check.json")
    failed=$(field failed "$work/check.json")
    echo "  frames sent $sent, echoed $echoed, failed calls $failed" >&2
    [[ $failed == 0 && $sent -gt 0 && $echoed == "$sent" ]] || { echo "the optimized $b failed its check on $r" >&2; exit 1; }
done
step "done: $b (trained on ${runtimes[*]})"
