#!/bin/sh
# One command, fresh clone: load every DataSync event into PostgreSQL.
#   With a working `docker compose`: PostgreSQL (127.0.0.1:5434) + sandbox + ingest in containers;
#   PostgreSQL keeps running afterwards (`docker compose down` stops it), the sandbox is stopped.
#   Without Docker: a local .venv, an embedded PostgreSQL and the bundled sandbox.
# SANDBOX_EVENTS=N  smaller sandbox dataset for a quick check (default 3,000,000).
# DATASYNC_API_URL / DATASYNC_API_KEY  ingest from that API instead of the sandbox.
# ETL_PUSH=1  also push to Databox as the load commits (the sandbox's Databox surface unless
#   DATABOX_API_URL/DATABOX_API_KEY say otherwise): the aggregates by default,
#   ETL_PUSH_DATASETS=all for the raw events too; then show the last push requests.
# Extra arguments go to `etl ingest`.
set -eu
cd "$(dirname "$0")"
export SANDBOX_EVENTS="${SANDBOX_EVENTS:-3000000}"
export SANDBOX_TIME_SCALE="${SANDBOX_TIME_SCALE:-10}"
if [ -n "${DATASYNC_API_URL:-}" ]; then
  export ETL_FEED_WINDOW="${ETL_FEED_WINDOW:-300}"   # the real API's throttle window (spec)
else
  export ETL_FEED_WINDOW="${ETL_FEED_WINDOW:-$(awk "BEGIN { print 300 / $SANDBOX_TIME_SCALE }")}"
fi
if [ -n "${ETL_PUSH:-}" ]; then
  export ETL_PUSH
  export ETL_PUSH_DATASETS="${ETL_PUSH_DATASETS:-hourly_event_counts daily_active_users purchases_hourly conversion_daily error_share_daily}"
fi

if [ -z "${ETL_NO_DOCKER:-}" ] && command -v docker >/dev/null 2>&1 \
   && docker compose version >/dev/null 2>&1 && docker info >/dev/null 2>&1; then
  echo "== docker compose: postgres (127.0.0.1:${POSTGRES_PORT:-5434}), sandbox, ingest =="
  docker compose build etl            # one image for etl and the sandbox, built once, now
  code=0
  if [ -n "${DATASYNC_API_URL:-}" ]; then
    docker compose up -d postgres
    docker compose run --rm --no-deps etl ingest "$@" || code=$?
  else
    docker compose up -d postgres sandbox
    docker compose run --rm etl ingest "$@" || code=$?
    docker compose stop sandbox       # it only served this run
  fi
  echo "PostgreSQL keeps running with the data (127.0.0.1:${POSTGRES_PORT:-5434}, user etl);" \
       "stop it with: docker compose down   (add -v to delete the data)"
  exit "$code"
fi

echo "== no Docker engine: local virtualenv + embedded PostgreSQL =="
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check --require-hashes -r requirements-runtime.lock
.venv/bin/python -m pip install -q --disable-pip-version-check --no-deps -e .
export ETL_DATA_DIR="${ETL_DATA_DIR:-$PWD/.etl-data}"
echo "progress from another terminal: ETL_DATA_DIR=$ETL_DATA_DIR $PWD/.venv/bin/etl status --watch"
if [ -z "${ETL_PUSH:-}" ]; then
  exec .venv/bin/etl ingest "$@"
fi
echo "pushing to Databox as well: $ETL_PUSH_DATASETS"
status=0
.venv/bin/etl ingest "$@" || status=$?
echo "== the last push requests (etl deliveries --destination databox) =="
.venv/bin/etl deliveries --destination databox -n 10 || true
exit $status
