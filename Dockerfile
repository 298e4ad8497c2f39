# syntax=docker/dockerfile:1
# Multi-stage: dependencies in their own cached layer, the app on top, a slim non-root runtime.
# The base is pinned to an exact release (3.11.7: the version the tests run on); move it on
# purpose, with the lock files.
FROM python:3.11.7-slim-bookworm AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
# 1) dependencies only, exactly as locked: rebuilt only when the lock changes. pgserver (an
#    embedded PostgreSQL, ~34 MB of binaries) is locked for run-ingestion.sh's no-Docker
#    path; the image always has DATABASE_URL, so it is removed with its own dependencies.
COPY requirements-runtime.lock ./
RUN pip install --require-hashes -r requirements-runtime.lock \
 && pip uninstall -y pgserver fasteners platformdirs psutil
# 2) the application (pyproject.toml names README.md as the package's long description, so
#    it is needed to build the wheel: it is copied here, after the dependencies, so an edit
#    of the README rebuilds only this small layer)
COPY pyproject.toml README.md ./
COPY etl ./etl
RUN pip install --no-deps .

FROM python:3.11.7-slim-bookworm
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1 ETL_DATA_DIR=/data XDG_CONFIG_HOME=/data/config
# /data holds delivery.jsonl and, without ETL_SECRET_KEY, the key that seals OAuth2 tokens
# (config/etl/secret.key); mount a named volume there (docker-compose.yml does), or
# `docker run --rm` drops them with the container.
RUN useradd --create-home --uid 10001 etl && mkdir -p /data && chown etl /data
COPY --from=build /opt/venv /opt/venv
USER etl
WORKDIR /home/etl
# Run with an init (compose: `init: true`; `docker run --init`): signals reach etl at once,
# so `docker stop` is a graceful stop (exit 3, progress saved), never a 10 s wait and a kill.
ENTRYPOINT ["etl"]
CMD ["ingest"]
