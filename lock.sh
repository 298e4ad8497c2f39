#!/bin/sh
# Refresh the lock files from pyproject.toml (needs network access to PyPI):
#   sh lock.sh            keep the versions already locked where they still fit
#   sh lock.sh --upgrade  move every package to its newest version that fits
# requirements.lock: runtime + dev tools (tests, CI, run-tests.sh).
# requirements-runtime.lock: runtime only (run-ingestion.sh, Dockerfile), the same versions.
set -eu
cd "$(dirname "$0")"
UV=${UV:-uv}
if ! command -v "$UV" >/dev/null 2>&1; then
  python3 -m venv .lock-venv && .lock-venv/bin/pip install -q uv && UV=.lock-venv/bin/uv
fi
common="--universal --python-version 3.11 --generate-hashes --quiet"
"$UV" pip compile pyproject.toml --extra dev $common "$@" \
  --custom-compile-command "sh lock.sh" -o requirements.lock
"$UV" pip compile pyproject.toml $common "$@" -c requirements.lock \
  --custom-compile-command "sh lock.sh" -o requirements-runtime.lock
