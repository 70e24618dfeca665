#!/bin/sh
# Runs the example bots' tests: installs what they need (idempotent), then the
# echo bots' test, the Python bot's test and the OpenAI bot's (offline,
# against a local fake of the API). Each prints "N passed, M failed";
# the exit status is non-zero when any test failed.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
sh "$here/python/setup.sh"
status=0
sh "$here/echo/test_echo.sh" || status=1
"${PYTHON:-python3}" "$here/python/test_bot.py" || status=1
sh "$here/openai/setup.sh"
"${PYTHON:-python3}" "$here/openai/test_openai_bot.py" || status=1
exit "$status"
