#!/bin/sh
# Installs what bot.py and test_openai_bot.py need: the openai package (and
# websockets, for --serve-ws), pinned in requirements.txt. Idempotent: installs
# only when a pinned version is missing. The callstream_bot package is used
# from the checkout (sdk/python): nothing to install for it.
# Optional, not installed here: espeak-ng, the local fake's voice (without it
# the fake speaks a tone), and pocketsphinx, the fake's hearing of audio no
# test scripted (examples/bots/python/setup.sh installs both).
set -eu
here=$(cd "$(dirname "$0")" && pwd)

python=${PYTHON:-python3}
if ! "$python" - "$here/requirements.txt" <<'PY'
import sys
from importlib.metadata import version, PackageNotFoundError
for line in open(sys.argv[1]):
    line = line.split("#")[0].strip()
    if not line:
        continue
    name, want = line.split("==")
    try:
        if version(name) != want:
            sys.exit(1)
    except PackageNotFoundError:
        sys.exit(1)
PY
then
  echo "setup: installing python packages"
  # A distribution's own python refuses pip installs (PEP 668) unless told.
  "$python" -m pip install --quiet --disable-pip-version-check -r "$here/requirements.txt" ||
    "$python" -m pip install --quiet --disable-pip-version-check --break-system-packages -r "$here/requirements.txt"
fi
echo "setup: ok: $("$python" -m pip freeze 2>/dev/null | grep -iE "^(openai|websockets)==" | tr "\n" " ")"
