#!/bin/sh
# Tests echo.sh (always) and echo.js (when node is installed) by playing the
# server's part on their stdin. Needs sh, coreutils and sed only.
# Prints "N passed, M failed"; exit status 0 when nothing failed.
set -u
here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
passed=0
failed=0

small=$(printf 'hello caller' | base64 | tr -d '\n')
# Ten seconds at 16 kHz: a long turn, to be sure long lines get through whole.
big=$(head -c 320000 /dev/urandom | base64 | tr -d '\n')

# One call: start, a turn, noise the bot must ignore, a long turn, then '#'.
{
  printf '{"type":"start","version":1,"call_sid":"CA%s","stream_sid":"MZ%s","account_sid":"AC%s","parameters":{}}\n' \
    00000000000000000000000000000000 11111111111111111111111111111111 22222222222222222222222222222222
  printf '{"type":"speech_started"}\n'
  printf '{"type":"utterance","rate":16000,"pcm":"%s","duration_ms":375}\n' "$small"
  printf 'not json at all\n'
  printf '{"type":"from_the_future","x":[1,2]}\n'
  printf '{"type":"mark","name":"echo-1","outcome":"played"}\n'
  printf '{"type":"dtmf","digit":"5"}\n'
  printf '{"type":"utterance","rate":8000,"pcm":"%s","duration_ms":10000,"later_field":true}\n' "$big"
  printf '{"type":"dtmf","digit":"#"}\n'
  printf '{"type":"utterance","rate":16000,"pcm":"%s","duration_ms":375}\n' "$small"
} >"$tmp/call.in"
{
  printf '{"type":"play","rate":16000,"pcm":"%s"}\n{"type":"mark","name":"echo-1"}\n' "$small"
  printf '{"type":"play","rate":8000,"pcm":"%s"}\n{"type":"mark","name":"echo-2"}\n' "$big"
  printf '{"type":"hangup"}\n'
} >"$tmp/call.want"

printf '{"type":"stop","reason":"caller hung up"}\n{"type":"utterance","rate":16000,"pcm":"%s","duration_ms":375}\n' "$small" >"$tmp/stop.in"
printf '{"type":"utterance","rate":16000,"pcm":"%s","duration_ms":375}\n' "$small" >"$tmp/eof.in"
printf '{"type":"play","rate":16000,"pcm":"%s"}\n{"type":"mark","name":"echo-1"}\n' "$small" >"$tmp/eof.want"
: >"$tmp/stop.want"

check() { # name command case
  name=$1 cmd=$2 case=$3
  timeout 60 sh -c "$cmd" <"$tmp/$case.in" >"$tmp/$case.out" 2>"$tmp/$case.err"
  rc=$?
  if [ "$rc" -eq 0 ] && cmp -s "$tmp/$case.want" "$tmp/$case.out"; then
    passed=$((passed + 1))
    echo "ok   $name $case"
  else
    failed=$((failed + 1))
    echo "FAIL $name $case (exit $rc)"
    head -c 300 "$tmp/$case.out"
    head -c 300 "$tmp/$case.err"
  fi
}

for case in call stop eof; do
  check echo.sh "exec sh '$here/echo.sh'" "$case"
  if command -v node >/dev/null 2>&1; then
    check echo.js "exec node '$here/echo.js'" "$case"
  fi
done
command -v node >/dev/null 2>&1 || echo "skip echo.js: node is not installed"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
