#!/bin/sh
# The test command: creates .venv if needed, installs the locked dependencies
# (requirements.lock) and the project, then lint, types, tests.
# Uses ETL_TEST_DATABASE_URL when set; otherwise tests start an embedded PostgreSQL.
set -eu
cd "$(dirname "$0")"
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check --require-hashes -r requirements.lock
.venv/bin/python -m pip install -q --disable-pip-version-check --no-deps -e .
.venv/bin/ruff check etl tests bench
.venv/bin/ruff format --check etl tests bench
# the in-memory fakes are checked against the Protocols they stand in for
.venv/bin/mypy etl tests/fakes.py tests/test_pipeline_fakes.py
exec .venv/bin/pytest "$@"
