"""A newcomer's first hour: what `etl` prints and exits with when used wrongly or stopped.

Every case runs the real CLI in a child process (``python -m etl``): exit codes, stdout and
stderr are what a user sees. The table of bad invocations is the contract README.md's
exit-code table documents.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from etl.errors import EXIT_MEANINGS, ExitCode
from tests.test_retry_reporting import closed_port

REPO = Path(__file__).resolve().parent.parent
KEY = "ds_s3cret_key_for_edges_000000000000"
STAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ ")


def clean_env(**extra: str) -> dict[str, str]:
    """The caller's environment without any etl setting, plus ``extra``."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DATASYNC_", "ETL_", "SANDBOX_")) and k != "DATABASE_URL"
    }
    env.update(extra)
    return env


def run(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "etl", *args],
        env=env if env is not None else clean_env(),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        check=False,
    )


# -- help, version, exit codes ---------------------------------------------------------


def test_version() -> None:
    """`etl --version` prints the version and exits 0."""
    done = run("--version")
    assert (done.returncode, done.stdout.strip()) == (0, "etl 0.1.0")


def test_help_lists_every_exit_code_and_readme_documents_the_same() -> None:
    """`etl --help` names each exit code; README.md's table has exactly the same codes."""
    done = run("--help", env=clean_env(COLUMNS="100"))
    assert done.returncode == 0
    for code, meaning in EXIT_MEANINGS.items():
        assert re.search(rf"^\W*{code}\s+{re.escape(meaning)}", done.stdout, re.M), meaning
    readme = (REPO / "README.md").read_text()
    table = readme.split("### Exit codes", 1)[1].split("\n\n", 2)[1]
    codes = {int(m) for m in re.findall(r"^\| (\d+) \|", table, re.M)}
    assert codes == set(EXIT_MEANINGS)


@pytest.mark.parametrize("command", ["status", "runs", "submit", "health", "export-ids"])
def test_only_ingest_promises_to_start_the_sandbox(command: str) -> None:
    """Only `etl ingest` starts the bundled sandbox without --api-url; no other command's
    help says it does."""
    assert "start the bundled sandbox" in " ".join(run("ingest", "--help").stdout.split())
    text = " ".join(run(command, "--help").stdout.split())
    assert "bundled sandbox" not in text


def test_sandbox_help_is_readable_at_80_columns() -> None:
    """At 80 columns no line is wider and every option name is printed whole."""
    from typer.main import get_command

    from etl.cli import app
    from etl.cli.root import load_all

    load_all()  # commands register when their module is imported
    done = run("sandbox", "--help", env=clean_env(COLUMNS="80"))
    assert done.returncode == 0
    assert max(len(line) for line in done.stdout.splitlines()) <= 80
    sandbox_command: Any = get_command(app).commands["sandbox"]  # type: ignore[attr-defined]
    names = [n for p in sandbox_command.params for n in (*p.opts, *p.secondary_opts)]
    assert len(names) > 40
    for name in names:
        assert re.search(rf"(^|\s){re.escape(name)}(\s|$|,)", done.stdout, re.M), name


# -- bad invocations: one line, the documented code, before any work ----------------------


def bad_invocations(tmp: Path) -> list[tuple[list[str], dict[str, str], int, str]]:
    blocker = tmp / "a-file"
    blocker.write_text("x")
    nowhere = f"http://127.0.0.1:{closed_port()}/api/v1"  # any request would fail
    ids = tmp / "ids.txt"
    ids.write_text("0b6c8a1e-9a3b-4c55-8a0d-3f1c2b7e9d01\nnot-a-uuid\n")
    db = "postgresql://nobody@127.0.0.1:1/none"
    return [
        (["submit", str(ids), "--api-url", nowhere, "--api-key", KEY], {}, 2, "--github-repo"),
        (
            ["submit", str(ids), "--github-repo", "me/etl", "--api-url", nowhere, "--api-key", KEY],
            {},
            2,
            "--github-repo must be a URL",
        ),
        (
            ["submit", str(ids), "--github-repo", "https://github.com/me/etl"],
            {},
            2,
            "--api-url and --api-key",
        ),
        (
            ["submit", str(tmp / "none.txt"), "--github-repo", "https://github.com/me/etl"],
            {"DATASYNC_API_URL": nowhere, "DATASYNC_API_KEY": KEY},
            2,
            "cannot read",
        ),
        (["export-ids", str(tmp / "out.txt"), "--data-dir", str(tmp / "fresh")], {}, 9, "nothing"),
        (["export-ids", str(blocker / "out.txt"), "--database-url", db], {}, 2, "cannot write"),
        (["export-ids", str(tmp)], {"DATABASE_URL": db}, 2, "is a directory"),
        (["ingest", "--data-dir", str(blocker / "d")], {}, 2, "not writable"),
        (["ingest", "--data-dir", str(blocker / "d"), "--database-url", db], {}, 2, "not writable"),
        (["ingest", "--log-format", "xml", "--database-url", db], {}, 2, "--log-format"),
    ]


def test_bad_invocations_exit_with_their_documented_code(tmp_path: Path) -> None:
    """Each bad invocation prints one `error:` line (no traceback) and exits with the code
    README.md documents, having done nothing: no database started, no request sent."""
    for args, extra, code, fragment in bad_invocations(tmp_path):
        done = run(*args, env=clean_env(**extra))
        where = f"etl {' '.join(args)}"
        assert done.returncode == code, (where, done.stdout, done.stderr)
        errors = [line for line in done.stderr.splitlines() if "error:" in line]
        assert len(errors) == 1 and fragment in errors[0], (where, done.stderr)
        assert "Traceback" not in done.stderr and KEY not in done.stderr + done.stdout
        assert not (tmp_path / "fresh").exists()  # export-ids started no database there


def test_submit_dry_run_sends_nothing(tmp_path: Path) -> None:
    """--dry-run checks the file and options and says what it would send; no server is
    even listening at --api-url, and the exit code is 0."""
    ids = tmp_path / "ids.txt"
    ids.write_text(
        "0b6c8a1e-9a3b-4c55-8a0d-3f1c2b7e9d01\n0b6c8a1e-9a3b-4c55-8a0d-3f1c2b7e9d01\nx\n"
    )
    nowhere = f"http://127.0.0.1:{closed_port()}/api/v1"
    done = run(
        "submit", str(ids), "--dry-run", "--github-repo", "https://github.com/me/etl",
        env=clean_env(DATASYNC_API_URL=nowhere, DATASYNC_API_KEY=KEY),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "would POST 3 ids (2 distinct, 1 not a UUID)" in done.stdout
    assert "nothing was sent" in done.stdout and KEY not in done.stdout


# -- .env -------------------------------------------------------------------------------


def test_dotenv_follows_python_dotenv_rules_and_the_environment_wins(tmp_path: Path) -> None:
    """`KEY="v w" # comment` means `v w`; a variable already set is not overridden."""
    (tmp_path / ".env").write_text(
        f'export ETL_DATA_DIR="{tmp_path}/from env file"   # where etl keeps its data\n'
    )
    done = run("export-ids", str(tmp_path / "o.txt"), cwd=tmp_path)
    assert done.returncode == ExitCode.NOTHING_INGESTED, done.stderr
    assert f"no database in {tmp_path}/from env file/pg " in done.stderr
    done = run("export-ids", "o.txt", cwd=tmp_path, env=clean_env(ETL_DATA_DIR="/tmp/set-here"))
    assert "no database in /tmp/set-here/pg " in done.stderr


@pytest.mark.parametrize(
    ("content", "fragment"),
    [(b"ETL_QUIET=1\nETL_DATA_DIR=/tmp/caf\xe9\n", "line 2 is not valid UTF-8"),
     (b"ETL_DATA_DIR=/tmp/x\x00y\n", "line 1 holds a NUL byte")],
)  # fmt: skip
def test_a_broken_dotenv_is_a_configuration_error(
    tmp_path: Path, content: bytes, fragment: str
) -> None:
    """A .env that is not UTF-8 text stops every command with one line and exit 2."""
    (tmp_path / ".env").write_bytes(content)
    done = run("status", cwd=tmp_path)
    assert done.returncode == ExitCode.CONFIG
    assert done.stderr.strip() == f"error: .env: {fragment}" + (
        " (save it as UTF-8)" if "UTF-8" in fragment else "; is it a text file?"
    )


# -- log lines ---------------------------------------------------------------------------


def test_json_logs_are_json_to_the_last_line_even_on_failure(db_url: str) -> None:
    """With --log-format json every line on stdout and stderr is a JSON object with a time,
    the error included (an API nobody listens at)."""
    nowhere = f"http://127.0.0.1:{closed_port()}/api/v1"
    done = run(
        "ingest", "--api-url", nowhere, "--log-format", "json",
        env=clean_env(DATABASE_URL=db_url, DATASYNC_API_KEY=KEY),
    )  # fmt: skip
    assert done.returncode == ExitCode.UPSTREAM
    docs = [json.loads(line) for line in (done.stdout + done.stderr).splitlines()]
    assert docs and all(re.match(r"\d{4}-\d\d-\d\dT", d["time"]) for d in docs)
    assert docs[-1]["level"] == "error" and "cannot reach the API" in docs[-1]["msg"]
    assert any(d["msg"].startswith("retrying events in") for d in docs)


async def test_every_log_line_has_a_time_and_the_json_summary_has_the_figures(
    sandbox: Any, db_url: str
) -> None:
    """Off a terminal, text log lines start with an ISO time; in JSON the summary is an
    object with the run's figures."""
    import asyncio

    sb = await sandbox(events=2_000, rate_limit=10_000, feed_throttle=10_000)
    env = clean_env(DATABASE_URL=db_url, DATASYNC_API_URL=sb.base_url, DATASYNC_API_KEY=sb.api_key)
    done = await asyncio.to_thread(run, "ingest", "--page-size", "500", env=env)
    assert done.returncode == 0, done.stderr
    lines = (done.stderr + done.stdout).splitlines()
    assert lines and all(STAMP.match(line) for line in lines), lines
    done = await asyncio.to_thread(run, "ingest", "--log-format", "json", env=env)
    summary = json.loads(done.stdout)
    assert summary["event"] == "summary" and summary["status"] == "succeeded"
    assert summary["loaded"] == summary["expected"] == 2_000


# -- signals -------------------------------------------------------------------------------


def test_ctrl_c_during_start_up_stops_cleanly(tmp_path: Path) -> None:
    """One SIGINT while the embedded PostgreSQL is starting: one line, exit 3, no traceback,
    and the embedded server is stopped again."""
    env = clean_env(SANDBOX_EVENTS="1000")
    proc = subprocess.Popen(
        [sys.executable, "-m", "etl", "ingest", "--data-dir", str(tmp_path)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stderr is not None
    first = proc.stderr.readline()
    assert "using embedded PostgreSQL" in first, first
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == ExitCode.PARTIAL, err
    assert "Traceback" not in err and "second signal" not in out + err
    assert "stopped by SIGINT during start-up; nothing was loaded" in out
    assert not (tmp_path / "pg" / "postmaster.pid").exists()


# -- a database still booting ---------------------------------------------------------------


async def test_the_first_database_connection_waits_for_a_server_still_booting(
    sandbox: Any, db_url: str, tmp_path: Path
) -> None:
    """DATABASE_URL's server refuses connections at first (a container's first boot): the
    ingest says it is waiting, and once the server listens it carries on and completes."""
    import asyncio
    from urllib.parse import parse_qsl, urlsplit

    from etl.sandbox import SystemClock

    sb = await sandbox(events=1_000, clock=SystemClock(), rate_limit=10_000, feed_throttle=10_000)
    real = urlsplit(db_url)
    port = closed_port()
    # the ingest gets a TCP address where nothing listens yet; the forwarder started below
    # relays it to the test server, over TCP or its unix socket (the embedded server's)
    late_url = f"postgresql://{real.username}@127.0.0.1:{port}{real.path}"
    socket_dir = dict(parse_qsl(real.query)).get("host")

    async def upstream() -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if socket_dir:
            return await asyncio.open_unix_connection(f"{socket_dir}/.s.PGSQL.{real.port or 5432}")
        return await asyncio.open_connection(real.hostname, real.port)

    env = clean_env(
        DATABASE_URL=late_url, DATASYNC_API_URL=sb.base_url, DATASYNC_API_KEY=sb.api_key
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "etl", "ingest", "--db-wait", "60", "--data-dir", str(tmp_path),
        env=env, stdin=subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert proc.stderr is not None
    try:
        line = await asyncio.wait_for(proc.stderr.readline(), 60)
        assert b"waiting for PostgreSQL at" in line and b"connection refused" in line, line

        async def forward(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            up_reader, up_writer = await upstream()

            async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
                dst.close()

            await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

        server = await asyncio.start_server(forward, "127.0.0.1", port)  # the server is up now
        async with server:
            out, err = await asyncio.wait_for(proc.communicate(), 120)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.communicate()
    assert proc.returncode == 0, err.decode()
    assert "ingest complete" in out.decode()
