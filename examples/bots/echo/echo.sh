#!/bin/sh
# Echo bot for callstream's program bridge (docs/bridge.md), in POSIX sh + sed:
# plays each caller turn back at the rate it came in, marks it, hangs up on
# DTMF '#'. It relies on the server's exact one-line JSON, fields in the order
# type, rate, pcm, duration_ms (base64 has no '"', so [^"]* is the whole pcm).
n=0
while IFS= read -r line; do
  case $line in
    '{"type":"utterance",'*)
      play=$(printf '%s\n' "$line" | sed -n 's/^{"type":"utterance","rate":\([0-9][0-9]*\),"pcm":"\([^"]*\)".*$/{"type":"play","rate":\1,"pcm":"\2"}/p')
      if [ -n "$play" ]; then
        n=$((n + 1))
        printf '%s\n{"type":"mark","name":"echo-%d"}\n' "$play" "$n"
      fi ;;
    '{"type":"dtmf",'*'"digit":"#"'*) printf '{"type":"hangup"}\n'; exit 0 ;;
    '{"type":"stop"'*) exit 0 ;;
  esac
done
