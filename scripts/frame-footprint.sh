#!/usr/bin/env bash
# What an echoed media frame costs the engine when many calls take turns (a
# benchmark, not part of CI).
#
#   scripts/frame-footprint.sh                 # this tree
#   BASE=<git revision> scripts/frame-footprint.sh   # and that one, alternated
#
# Runs `core/examples/frame_footprint.rs` (see its header) two ways, for
# CALLS calls (default 200):
# - under cachegrind (valgrind's cache simulator; installed with apt-get when
#   missing), with a 32 KiB L1 and a 512 KiB last level: instructions and
#   cache misses per frame, exact and repeatable. Two runs (ROUNDS_A and
#   ROUNDS_B rounds, default 50 and 150) are subtracted, so opening the
#   calls does not count. A miss here is a line of a call's state that a
#   frame touches after the other calls' frames pushed it out.
# - over loopback TCP, REPEAT times (default 3, ROUNDS_LOOPBACK rounds,
#   default 1000): the engine's user CPU time per frame while the kernel's
#   socket work runs between frames, as on a server; for this tree each time
#   also with `prefetch` (the call's state named by `Connection::hot_memory`
#   asked for before each read, as the server's pumps do).
# With BASE, that revision's example (or, for one older than the example,
# the example as first written, at e1c4671) is built against its core in a
# temporary worktree, and the loopback runs alternate between the two.
set -euo pipefail
cd "$(dirname "$0")/.."
calls=${CALLS:-200}
ra=${ROUNDS_A:-50} rb=${ROUNDS_B:-150}
rl=${ROUNDS_LOOPBACK:-1000} repeat=${REPEAT:-3}
if ! command -v valgrind >/dev/null; then
    echo "installing valgrind (Debian package) for cachegrind" >&2
    apt-get update -qq && apt-get install -y -qq valgrind >/dev/null
fi

build() { # dir target-dir: prints the example's path
    (cd "$1" && CARGO_TARGET_DIR=$2 cargo build --release -q -p callstream-core --example frame_footprint)
    echo "$2/release/examples/frame_footprint"
}

declare -A bins
bins[this]=$(build . "${CARGO_TARGET_DIR:-target}")
if [[ -n ${BASE:-} ]]; then
    wt=$(mktemp -d)
    trap 'git worktree remove --force "$wt" 2>/dev/null || rm -rf "$wt"' EXIT
    git worktree add -q --detach "$wt" "$BASE"
    # The first version of the example uses only what older cores have.
    if [[ ! -f $wt/core/examples/frame_footprint.rs ]]; then
        mkdir -p "$wt/core/examples"
        git show e1c4671:core/examples/frame_footprint.rs >"$wt/core/examples/frame_footprint.rs"
    fi
    bins[base]=$(build "$wt" "$wt/target")
fi

cachegrind() { # bin: one JSON line of per-frame figures
    local bin=$1 out
    out=$(mktemp -d)
    for r in "$ra" "$rb"; do
        valgrind --tool=cachegrind --cache-sim=yes --I1=32768,8,64 --D1=32768,8,64 \
            --LL=524288,8,64 --cachegrind-out-file="$out/$r" "$bin" "$calls" "$r" >/dev/null 2>&1
    done
    python3 - "$out/$ra" "$out/$rb" "$calls" "$((rb - ra))" <<'PY'
import json, sys
def read(path):
    events = summary = None
    for line in open(path):
        if line.startswith('events:'): events = line.split()[1:]
        if line.startswith('summary:'): summary = list(map(int, line.split()[1:]))
    return dict(zip(events, summary))
a, b = read(sys.argv[1]), read(sys.argv[2])
frames = int(sys.argv[3]) * int(sys.argv[4])
per = {k: round((b[k] - a[k]) / frames, 1) for k in ('Ir', 'D1mr', 'D1mw', 'DLmr', 'DLmw')}
print(json.dumps({'instructions': per['Ir'], 'l1_read_misses': per['D1mr'],
  'l1_write_misses': per['D1mw'], 'last_level_misses': round(per['DLmr'] + per['DLmw'], 1)}))
PY
    rm -rf "$out"
}

for name in "${!bins[@]}"; do
    echo "$name cachegrind: $(cachegrind "${bins[$name]}")"
done
for i in $(seq "$repeat"); do
    for name in "${!bins[@]}"; do
        echo "$name loopback $i: $("${bins[$name]}" "$calls" "$rl" loopback)"
        [[ $name != this ]] || echo "$name loopback prefetch $i: $("${bins[$name]}" "$calls" "$rl" loopback prefetch)"
    done
done
