#!/usr/bin/env bash
# Runs callstream's tools against servers callstream did not write (a peer's
# bugs and ours do not cancel out): tests/peers/node-echo, a Media Streams echo
# server on the Node `ws` library. `callstream check` must pass against it,
# and `callstream sim` must see its echo byte for byte, its marks echoed once
# played, and nothing Twilio would log; then a small load run.
#
# Needs node and npm (CI installs them); builds the callstream binary.
# Usage: tests/peers/run.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target}
cargo build -q -p callstream
cs=$CARGO_TARGET_DIR/debug/callstream

(cd tests/peers/node-echo && npm ci --no-audit --no-fund --silent)
log=$(mktemp)
node tests/peers/node-echo/server.js 0 >"$log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null || true; rm -f "$log"' EXIT
port=
for _ in $(seq 100); do
  port=$(sed -n 's/^listening \([0-9]*\)$/\1/p' "$log")
  [ -n "$port" ] && break
  sleep 0.1
done
[ -n "$port" ] || { echo "node-echo did not start:"; cat "$log"; exit 1; }

passed=0
failed=0
verdict() { # name, python condition over d (the JSON), json
  if python3 -c "import json,sys; d=json.loads(sys.argv[1]); sys.exit(0 if ($2) else 1)" "$3"; then
    echo "ok   $1"; passed=$((passed + 1))
  else
    echo "FAIL $1: $3"; failed=$((failed + 1))
  fi
}

out=$("$cs" check "http://127.0.0.1:$port" --json || true)
verdict "check: every check passes against node-echo" "d['ok'] and all(c['verdict'] != 'fail' for c in d['checks'])" "$out"
verdict "check: the upgrade echoes audio.twilio.com" \
  "any(c['name'].endswith('offering audio.twilio.com') and c['verdict'] == 'pass' for c in d['checks'])" "$out"

out=$("$cs" sim "ws://127.0.0.1:$port/ws/twilio-media" --tone 440 --duration 2 --dtmf 500:7 --json || true)
verdict "sim: a clean call, the echo byte for byte" \
  "d['ok'] and d['echo'] and d['frames_sent'] == 100 and d['echo_ms']['n'] == 100 and not d['warnings']" "$out"
verdict "sim: its marks come back once played" "d['marks'] == 4 and d['marks_echoed'] == 4" "$out"

out=$("$cs" sim "ws://127.0.0.1:$port/ws/twilio-media" --calls 50 --ramp 1 --tone 300 --duration 2 --linger-ms 1000 || true)
verdict "sim --calls 50: no failure, no lost frame" \
  "d['calls'] == 50 and d['failed'] == 0 and d['lost_frames'] == 0 and d['echo_equal'] == 50" "$out"

echo "peers: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
