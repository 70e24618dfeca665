#!/bin/sh
# Installs what bot.py and test_bot.py need: espeak-ng (the bot's voice),
# sox (the test resamples with it), pocketsphinx and websockets (pinned in
# requirements.txt). Idempotent: installs only what is missing. The protocol
# package, callstream_bot, needs no install: bot.py finds it in the checkout's
# sdk/python.
set -eu
here=$(cd "$(dirname "$0")" && pwd)

need=""
command -v espeak-ng >/dev/null 2>&1 || need="$need espeak-ng"
command -v sox >/dev/null 2>&1 || need="$need sox"
if [ -n "$need" ]; then
  echo "setup: installing$need"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # shellcheck disable=SC2086  # word splitting of the package list is wanted
  apt-get install -y -qq $need >/dev/null
fi

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
echo "setup: ok: espeak-ng, sox, $("$python" -m pip freeze 2>/dev/null | grep -iE "^(pocketsphinx|websockets)==" | tr "\n" " ")"
