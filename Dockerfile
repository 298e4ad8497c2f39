# syntax=docker/dockerfile:1
# Multi-stage: dependencies in their own cached layer, the app on top, a slim non-root runtime.
FROM python:3.11-slim AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
# 1) dependencies only, exactly as locked: this layer is rebuilt only when the lock changes
COPY requirements-runtime.lock ./
RUN pip install --require-hashes -r requirements-runtime.lock
# 2) the application
COPY pyproject.toml README.md ./
COPY etl ./etl
RUN pip install --no-deps .

FROM python:3.11-slim
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1 ETL_DATA_DIR=/data
RUN useradd --create-home --uid 10001 etl && mkdir -p /data && chown etl /data
COPY --from=build /opt/venv /opt/venv
USER etl
WORKDIR /home/etl
VOLUME ["/data"]
ENTRYPOINT ["etl"]
CMD ["ingest"]
