#!/usr/bin/env bash
# Soak run for the callstream server (a benchmark, not part of CI).
#
#   scripts/soak.sh [CALLS] [SECONDS] [CALL_SECONDS]
#
# Builds and starts the release server (echo handler, signatures on), then
# runs the repository's own load client (tests/tests/soak.rs, `#[ignore]`d):
# CALLS concurrent callers placing calls of CALL_SECONDS back to back for
# SECONDS, each call a signed webhook, a signed upgrade, 20 ms frames, stop,
# close and a status webhook. The server's RSS (VmRSS) is sampled every 10 s
# into target/soak/rss.tsv; the summary (start, peak, end RSS and the load
# client's counts) is printed at the end. Defaults: 100 calls, 600 s, 30 s.
set -euo pipefail
cd "$(dirname "$0")/.."
calls=${1:-100}
secs=${2:-600}
call_secs=${3:-30}
port=${SOAK_PORT:-18091}
out=${SOAK_OUT:-target/soak}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target}
mkdir -p "$out"
cargo build --release -q -p callstream
# Build the load client first, so that building does not eat into the run.
# The client runs as its test binary, not through cargo, so that no cargo
# lock is held for the length of the run.
client=$(cargo test --release -q -p callstream-tests --test soak --no-run --message-format=json \
    | grep -o '"executable":"[^"]*"' | tail -1 | cut -d'"' -f4)

env TWILIO_AUTH_TOKEN=test-auth-token-0123456789 PUBLIC_BASE_URL=https://callstream.test \
    CALLSTREAM_HANDLER=echo HOST=127.0.0.1 PORT="$port" RUST_LOG=warn LOG_FORMAT=json \
    "$CARGO_TARGET_DIR/release/callstream" 2>"$out/server.log" &
pid=$!
trap 'kill $pid 2>/dev/null || true' EXIT
for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
    sleep 0.1
done

rss() { awk '/^VmRSS:/ {print $2}' "/proc/$pid/status"; }
printf 'elapsed_s\trss_kib\n' >"$out/rss.tsv"
t0=$(date +%s)
(
    while kill -0 "$pid" 2>/dev/null; do
        printf '%s\t%s\n' "$(( $(date +%s) - t0 ))" "$(rss)" >>"$out/rss.tsv"
        sleep 10
    done
) &
sampler=$!

SOAK_ADDR=127.0.0.1:$port SOAK_CALLS=$calls SOAK_SECONDS=$secs SOAK_CALL_SECONDS=$call_secs \
    "$client" --ignored --nocapture --exact soak \
    | tee "$out/client.txt"
# Let the last calls' connections close, then one more sample.
sleep 5
printf '%s\t%s\n' "$(( $(date +%s) - t0 ))" "$(rss)" >>"$out/rss.tsv"
kill "$sampler" 2>/dev/null || true
awk -F'\t' 'NR==2 {start=$2} NR>1 {if ($2>peak) peak=$2; end=$2; n++}
    END {printf "rss_kib start=%d peak=%d end=%d samples=%d\n", start, peak, end, n}' "$out/rss.tsv"
echo "server warnings/errors: $(grep -c '"severity":"\(WARNING\|ERROR\)"' "$out/server.log" || true)"
