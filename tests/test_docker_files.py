"""The Docker path, read statically (no engine runs here): what a user of `docker compose`
and `sh run-ingestion.sh` would otherwise find out the hard way."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parent.parent


def compose() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    return doc


def dockerfile() -> str:
    return (REPO / "Dockerfile").read_text()


def script() -> str:
    return (REPO / "run-ingestion.sh").read_text()


def test_one_image_built_once_and_the_ingest_runs_the_fresh_one() -> None:
    """Only `etl` builds; the sandbox runs the same tagged image and is never pulled; the
    script builds before it starts anything, so a code change is always in the run."""
    services = compose()["services"]
    assert [name for name, s in services.items() if "build" in s] == ["etl"]
    assert services["sandbox"]["image"] == services["etl"]["image"]
    assert services["sandbox"]["pull_policy"] == "never"
    build = script().index("docker compose build etl")
    assert build < script().index("docker compose up") < script().index("docker compose run")


def test_delivery_log_survives_run_rm() -> None:
    """/data (delivery.jsonl) is a named volume, not the anonymous one `run --rm` deletes."""
    etl = compose()["services"]["etl"]
    assert "etldata:/data" in etl["volumes"] and "etldata" in compose()["volumes"]
    assert "VOLUME" not in dockerfile()


def test_ports_on_loopback_only_and_the_sandbox_unpublished() -> None:
    """PostgreSQL (password `etl` by default) is published on 127.0.0.1 only; the sandbox is
    not published unless compose.sandbox-port.yml is added, and then on loopback too."""
    services = compose()["services"]
    for name, service in services.items():
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), (name, port)
    assert "ports" not in services["sandbox"]
    extra = yaml.safe_load((REPO / "compose.sandbox-port.yml").read_text())
    assert all(p.startswith("127.0.0.1:") for p in extra["services"]["sandbox"]["ports"])


def test_postgres_is_ready_only_over_tcp_and_etl_waits_for_its_first_boot() -> None:
    """The healthcheck asks over TCP (-h 127.0.0.1), which the image's socket-only first-boot
    server does not answer; etl still waits a little for a server that refuses at first."""
    services = compose()["services"]
    test = " ".join(services["postgres"]["healthcheck"]["test"])
    assert "pg_isready -h 127.0.0.1 -U etl -d etl" in test
    assert services["etl"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert float(services["etl"]["environment"]["ETL_DB_WAIT"].strip("${}").split("-")[-1]) > 0


def test_the_feed_window_is_not_the_sandbox_one_against_a_real_api() -> None:
    """Compose leaves ETL_FEED_WINDOW empty (the spec's 300 s) unless told; the script sets
    300 / time scale only for the sandbox."""
    window = compose()["services"]["etl"]["environment"]["ETL_FEED_WINDOW"]
    assert window == "${ETL_FEED_WINDOW:-}"
    assert 'ETL_FEED_WINDOW="${ETL_FEED_WINDOW:-300}"' in script()


def test_signals_reach_etl_and_the_script_says_what_keeps_running() -> None:
    """Both services run under an init; the script stops the sandbox and tells how to stop
    PostgreSQL (which keeps the data)."""
    services = compose()["services"]
    assert services["etl"]["init"] is True and services["sandbox"]["init"] is True
    assert "docker compose stop sandbox" in script()
    assert "docker compose down" in script()


def test_the_image_is_pinned_locked_and_slim() -> None:
    """An exact base image tag; dependencies from the hash lock in their own layer, before
    the README and the code; pgserver's PostgreSQL binaries left out."""
    text = dockerfile()
    bases = re.findall(r"^FROM (\S+)", text, re.M)
    assert bases and all(re.fullmatch(r"python:3\.11\.\d+-slim-bookworm", b) for b in bases)
    lock = text.index("pip install --require-hashes -r requirements-runtime.lock")
    assert lock < text.index("COPY pyproject.toml README.md") < text.index("COPY etl")
    assert "pip uninstall -y pgserver" in text


def test_without_pgserver_a_missing_database_url_is_a_configuration_error(tmp_path: Path) -> None:
    """In the image (no pgserver), `etl ingest` without DATABASE_URL says to set it, exit 2."""
    code = (
        "import sys; sys.modules['pgserver'] = None; from etl.cli import main; "
        "sys.argv = ['etl', 'ingest', '--data-dir', sys.argv[1]]; main()"
    )
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    done = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path)],
        capture_output=True, text=True, env=env, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert "set DATABASE_URL" in done.stderr and "Traceback" not in done.stderr
