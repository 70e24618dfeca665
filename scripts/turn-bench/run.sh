#!/usr/bin/env bash
# Turn-taking benchmark on real recorded speech: callstream's detector against
# WebRTC VAD, Silero VAD v6.2 and TEN VAD on the same mu-law audio.
# See scripts/turn-bench/README.md.
#
#   scripts/turn-bench/run.sh            # full run (30 conversations, 6 conditions)
#   scripts/turn-bench/run.sh --quick    # CI smoke (3 conversations, 3 conditions)
#
# Installs what it needs (Debian packages with apt-get, PyPI wheels into a venv
# under target/turn-bench/venv), builds the detector runner once, prints a
# Markdown table and writes target/turn-bench/results.json and results.md.
# Any further arguments go to bench.py (--seed, --jobs, --conversations, --turns,
# --conditions).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
OUT=target/turn-bench
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
started=$(date +%s)

# --- Debian packages: the speech, the music, sox (resampling), libc++ (TEN VAD's library needs it)
DEBS=(
  asterisk-core-sounds-en-wav  # test speech: English prompts, one speaker (8 kHz)
  asterisk-core-sounds-fr-wav  # babble voices: French, Italian, Russian prompts (other speakers)
  asterisk-core-sounds-it-wav
  asterisk-core-sounds-ru-wav
  asterisk-moh-opsound-wav     # hold music (8 kHz)
  pocketsphinx-testdata        # test speech: read speech with transcripts (16 kHz)
  sox
  libc++1
)
missing=()
for p in "${DEBS[@]}"; do
  dpkg-query -W -f '${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  SUDO=()
  [ "$(id -u)" = 0 ] || SUDO=(sudo)
  echo "turn-bench: installing ${missing[*]}" >&2
  "${SUDO[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${SUDO[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# --- PyPI wheels, pinned, in a venv of our own (no PEP 668 trouble). silero-vad
# is installed without its dependencies: it requires torch, but the benchmark only
# runs the ONNX model the wheel ships (silero_vad/data/silero_vad.onnx) with
# onnxruntime, the way the package's own OnnxWrapper does.
PY=${PYTHON:-python3}
VENV=$OUT/venv
PINS=(
  numpy==2.4.6
  onnxruntime==1.32.0
  flatbuffers==25.12.19
  protobuf==7.36.2
  packaging==26.4
  webrtcvad-wheels==2.0.14.post1
  ten-vad==1.0.6.9
)
SILERO=silero-vad==6.2.3
stamp="${PINS[*]} $SILERO"
mkdir -p "$OUT"
if [ ! -x "$VENV/bin/python" ]; then
  if ! "$PY" -m venv "$VENV" 2>/dev/null; then
    rm -rf "$VENV"
    SUDO=()
    [ "$(id -u)" = 0 ] || SUDO=(sudo)
    "${SUDO[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${SUDO[@]}" apt-get install -y -qq python3-venv >/dev/null
    "$PY" -m venv "$VENV"
  fi
fi
if [ "$(cat "$VENV/.pins" 2>/dev/null)" != "$stamp" ]; then
  echo "turn-bench: installing ${PINS[*]} $SILERO into $VENV" >&2
  "$VENV/bin/pip" install -q --disable-pip-version-check "${PINS[@]}"
  "$VENV/bin/pip" install -q --disable-pip-version-check --no-deps "$SILERO"
  echo "$stamp" >"$VENV/.pins"
fi

# --- callstream's detector over a recording (core/examples/vad_frames.rs)
cargo build --release -q -p callstream-core --example vad_frames
VAD_FRAMES=$TARGET_DIR/release/examples/vad_frames

# --- the benchmark (two processes at most; each detector single-threaded)
export OMP_NUM_THREADS=1
"$VENV/bin/python" scripts/turn-bench/bench.py --out "$OUT" --vad-frames "$VAD_FRAMES" "$@"
echo >&2
echo "turn-bench: $(($(date +%s) - started)) s in all; $OUT/results.json, $OUT/results.md" >&2
