"""Our own chaos suite: `etl ingest` as a user runs it, against faults it must survive.

Starts the sandbox (``python -m etl sandbox``) and a private PostgreSQL it may restart
(``tests/pg_restartable.py``: pgserver's binaries, a temp data dir, 127.0.0.1), runs
``python -m etl ingest`` as separate processes, prints one table and writes
bench/results/chaos.json (``--quick``: chaos-quick.json).

    R1  kill -9 at random moments (x --kills), then a run to the end: missing / duplicated
        ids and a content checksum against a clean load of the same dataset
    R2  a fault storm (5xx with HTML bodies, truncated and invalid JSON, dropped connections,
        missing fields, expiring cursors and stream tokens, mixed timestamp formats, shard
        overlaps re-read): exact, no stripped row, every missing-field event accounted for
    R3  PostgreSQL restarted (fast and immediate, x --restarts) under a live run, a second
        `etl ingest` probing the lock after each: exact, the probe exits 7 every time
    R4  bad invocations (URLs, keys, DSNs, numbers, files, .env with invalid UTF-8 or a NUL,
        unwritable paths): each its documented exit code, one line, no traceback, < 5 s
    R5  overlapping runs: a second run while one holds the lock exits 7 at once; the first
        ends exact
    R6  every output, log, status document, delivery log and the tables' error texts
        scanned for the API key, the stream tokens and the database password

    .venv/bin/python bench/chaos.py                # the full suite (R1 50 kills, R3 10)
    .venv/bin/python bench/chaos.py --quick        # a smaller one (a few minutes)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from etl.sandbox.config import SandboxConfig  # noqa: E402
from etl.sandbox.dataset import Dataset  # noqa: E402
from tests.pg_restartable import RestartablePostgres  # noqa: E402

KEY = "ds_chaosKEY_5ecret5ecret5ecret5ecr"
PASSWORD = "pw_Chaos_5ecret_77"  # in every DSN (the server trusts; the tool must not leak it)
SEED = 7
# no rate limits (a run takes seconds, not minutes), but pages take time, so that a kill, a
# restart or a second run lands in the middle of a run
RELAXED = ("--rate-limit", "1000000", "--feed-throttle", "1000000")
OUTPUT: list[str] = []  # everything any etl process printed (scanned by R6)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def env(**extra: str) -> dict[str, str]:
    out = {k: v for k, v in os.environ.items() if not k.startswith(("DATASYNC_", "ETL_"))}
    out.pop("DATABASE_URL", None)
    out.update(extra)
    return out


@dataclass
class Sandbox:
    events: int
    knobs: tuple[str, ...] = ()
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/v1"

    def __enter__(self) -> Sandbox:
        argv = [sys.executable, "-m", "etl", "sandbox", "--port", str(self.port)]
        argv += ["--events", str(self.events), "--seed", str(SEED), "--api-key", KEY]
        self.proc = subprocess.Popen(
            [*argv, *self.knobs],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=env(),
            cwd=ROOT,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=1).read()
                return self
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("the sandbox did not start")

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)


class Lab:
    """The private PostgreSQL, databases on it, and `etl ingest` processes."""

    def __init__(self, work: Path) -> None:
        self.work = work
        self.pg = RestartablePostgres()
        self.pg.start()
        self.n = 0

    def dsn(self, db: str) -> str:
        return f"postgresql://postgres:{PASSWORD}@127.0.0.1:{self.pg.port}/{db}"

    def database(self) -> tuple[str, Path]:
        self.n += 1
        name = f"chaos_{self.n}"
        asyncio.run(_execute(self.dsn("postgres"), f"CREATE DATABASE {name}"))
        data = self.work / name
        data.mkdir()
        return self.dsn(name), data

    def ingest(self, sb: Sandbox, dsn: str, data: Path, *extra: str) -> subprocess.Popen[bytes]:
        argv = [sys.executable, "-m", "etl", "ingest", "--api-url", sb.url, "--api-key", KEY]
        argv += ["--database-url", dsn, "--data-dir", str(data), "--log-format", "json"]
        argv += ["--progress-interval", "1", *extra]
        return subprocess.Popen(
            argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            env=env(),
            cwd=data,
        )

    def finish(self, proc: subprocess.Popen[bytes], timeout: float = 600) -> tuple[int, str]:
        out, err = proc.communicate(timeout=timeout)
        text = out.decode("utf-8", "replace") + err.decode("utf-8", "replace")
        OUTPUT.append(text)
        return proc.returncode, text

    def close(self) -> None:
        self.pg.stop("immediate")
        shutil.rmtree(self.pg.root, ignore_errors=True)


async def _execute(dsn: str, sql: str) -> None:
    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def _fetch(dsn: str, sql: str) -> list[Any]:
    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        return list(await conn.fetch(sql))
    finally:
        await conn.close()


# the content of every row; not timestamp_raw (the format as received: the API picks it by
# the event's place in its page, so it differs between runs cut into different pages) nor
# ingested_at
CHECKSUM = """
SELECT count(*) AS rows, count(DISTINCT id) AS ids,
       md5(string_agg(concat_ws('|', id, session_id, user_id, type, name,
           occurred_at, properties::text, session::text), ',' ORDER BY id)) AS sum
FROM events
"""
STRIPPED = (
    "SELECT count(*) AS n FROM events WHERE session_id IS NULL OR user_id IS NULL"
    " OR name IS NULL OR session IS NULL OR properties = '{}'::jsonb"
)


def verdict(dsn: str, expected: set[str]) -> dict[str, Any]:
    rows = asyncio.run(_fetch(dsn, "SELECT id::text AS id FROM events"))
    ids = [r["id"] for r in rows]
    check = asyncio.run(_fetch(dsn, CHECKSUM))[0]
    stripped = asyncio.run(_fetch(dsn, STRIPPED))[0]["n"]
    return {
        "rows": len(ids),
        "missing": len(expected - set(ids)),
        "extra": len(set(ids) - expected),
        "duplicated": len(ids) - len(set(ids)),
        "stripped": stripped,
        "checksum": check["sum"],
    }


# -- R1 ----------------------------------------------------------------------------------


def r1_kills(lab: Lab, events: int, kills: int, per_db: int = 5) -> dict[str, Any]:
    """Databases in turn: in each, ``per_db`` runs killed at random moments of the run (a
    uniform draw over the first half of a clean run's duration), then a run to the end,
    checked against the clean load."""
    ids = set(Dataset(SandboxConfig(events=events, seed=SEED)).ids())
    rng = random.Random(1)
    with Sandbox(events, (*RELAXED, "--latency-per-page", "2")) as sb:
        clean_dsn, clean_data = lab.database()
        t0 = time.monotonic()
        code, _ = lab.finish(lab.ingest(sb, clean_dsn, clean_data, "--page-size", "1000"))
        clean_s = time.monotonic() - t0
        clean = verdict(clean_dsn, ids)
        killed = early = 0
        checks: list[dict[str, Any]] = []
        finals: list[int] = []
        while killed < kills:
            dsn, data = lab.database()
            for _ in range(min(per_db, kills - killed)):
                proc = lab.ingest(sb, dsn, data, "--page-size", "1000")
                time.sleep(rng.uniform(0.3, max(0.6, clean_s / 2)))
                if proc.poll() is not None:  # it ended before the kill
                    lab.finish(proc)
                    early += 1
                    break
                proc.send_signal(signal.SIGKILL)
                lab.finish(proc)
                killed += 1
            final, _ = lab.finish(lab.ingest(sb, dsn, data, "--page-size", "1000"))
            finals.append(final)
            checks.append(verdict(dsn, ids))
    summed = {k: sum(c[k] for c in checks) for k in ("missing", "duplicated", "extra")}
    equal = all(c["checksum"] == clean["checksum"] for c in checks)
    return {
        "kills": killed,
        "databases": len(checks),
        "ended_before_the_kill": early,
        "clean_run_s": round(clean_s, 1),
        "final_exits": sorted(set(finals)),
        **summed,
        "checksum_equal": equal,
        "ok": code == 0 and set(finals) == {0} and not any(summed.values()) and equal,
    }


# -- R2 ----------------------------------------------------------------------------------

STORM = (
    *("--p-500", "0.03", "--p-502", "0.03", "--p-503", "0.03", "--p-504", "0.03"),
    *("--p-truncate", "0.04", "--p-drop", "0.04", "--p-missing-fields", "0.3"),
    *("--cursor-ttl", "3", "--token-ttl", "4", "--timestamp-formats", "mixed"),
    *("--rate-limit", "100000", "--feed-throttle", "100000", "--fault-seed", "11"),
    *("--tie-fraction", "0.01", "--latency-per-page", "0.5"),
)


def r2_storm(lab: Lab, events: int) -> dict[str, Any]:
    ids = set(Dataset(SandboxConfig(events=events, seed=SEED)).ids())
    with Sandbox(events, STORM) as sb:
        dsn, data = lab.database()
        code, _ = lab.finish(lab.ingest(sb, dsn, data, "--page-size", "2000"))
    v = verdict(dsn, ids)
    runs = asyncio.run(_fetch(dsn, "SELECT extra, retries, cursor_resets FROM ingest_runs"))
    extra = json.loads(runs[-1]["extra"]) if runs else {}
    held = asyncio.run(
        _fetch(dsn, "SELECT count(*) AS n FROM quarantine WHERE missing IS NOT NULL")
    )[0]["n"]
    unresolved = asyncio.run(
        _fetch(
            dsn,
            "SELECT count(*) AS n FROM quarantine WHERE missing IS NOT NULL"
            " AND resolved_at IS NULL",
        )
    )[0]["n"]
    return {
        "exit": code,
        **{k: v[k] for k in ("rows", "missing", "duplicated", "extra", "stripped")},
        "retries": runs[-1]["retries"] if runs else None,
        "cursor_resets": runs[-1]["cursor_resets"] if runs else None,
        "incomplete_reread_complete": extra.get("incomplete_reread", 0),
        "incomplete_quarantined": held,
        "incomplete_unresolved": unresolved,
        "ok": code == 0 and v["missing"] == v["extra"] == v["stripped"] == 0 and unresolved == 0,
    }


# -- R3 ----------------------------------------------------------------------------------


def r3_restarts(lab: Lab, events: int, restarts: int) -> dict[str, Any]:
    ids = set(Dataset(SandboxConfig(events=events, seed=SEED)).ids())
    probes: list[int] = []
    downs: list[float] = []
    with Sandbox(events, (*RELAXED, "--latency-per-page", "10")) as sb:
        dsn, data = lab.database()
        proc = lab.ingest(sb, dsn, data, "--page-size", "1000")
        time.sleep(2.0)
        for k in range(restarts):
            if proc.poll() is not None:
                break
            downs.append(lab.pg.restart("fast" if k % 2 == 0 else "immediate"))
            time.sleep(1.5)  # the run reconnects and takes the lock again
            probe_data = lab.work / f"probe_{k}"
            probe_data.mkdir(exist_ok=True)
            probe = lab.ingest(sb, dsn, probe_data)
            code, _ = lab.finish(probe, timeout=60)
            probes.append(code)
        code, text = lab.finish(proc)
    v = verdict(dsn, ids)
    return {
        "tail": text[-1500:] if code else "",
        "restarts": len(downs),
        "down_s_max": round(max(downs), 2) if downs else None,
        "probe_exits": probes,
        "exit": code,
        **{k: v[k] for k in ("rows", "missing", "duplicated", "extra")},
        "ok": code == 0
        and len(downs) == restarts
        and all(p == 7 for p in probes)
        and v["missing"] == v["duplicated"] == v["extra"] == 0,
    }


# -- R4 ----------------------------------------------------------------------------------


def bad_invocations(lab: Lab, work: Path) -> list[tuple[str, list[str], dict[str, str], int]]:
    """(label, argv after `etl`, extra env, documented exit code)."""
    pg = f"postgresql://postgres:{PASSWORD}@127.0.0.1:{lab.pg.port}/postgres"
    dead_db = f"postgresql://postgres:{PASSWORD}@127.0.0.1:9/postgres"
    api = "http://127.0.0.1:9/api/v1"
    ro = Path("/proc/self/etl-nope")  # unwritable even for root
    bad_utf8 = work / "badutf8"
    bad_utf8.mkdir(exist_ok=True)
    (bad_utf8 / ".env").write_bytes(b"DATASYNC_API_KEY=\xff\xfe\n")
    nul = work / "nul"
    nul.mkdir(exist_ok=True)
    (nul / ".env").write_bytes(b"DATASYNC_API_KEY=a\x00b\n")
    ing = ["ingest", "--database-url", pg]
    cases: list[tuple[str, list[str], dict[str, str], int]] = [
        ("api url without scheme", [*ing, "--api-url", "127.0.0.1:9", "--api-key", KEY], {}, 2),
        ("api url ftp", [*ing, "--api-url", "ftp://x/api/v1", "--api-key", KEY], {}, 2),
        ("api url empty host", [*ing, "--api-url", "http:///api/v1", "--api-key", KEY], {}, 2),
        ("api url garbage", [*ing, "--api-url", "::::", "--api-key", KEY], {}, 2),
        ("api url with spaces", [*ing, "--api-url", "http://a b/api", "--api-key", KEY], {}, 2),
        ("api url no key", [*ing, "--api-url", api], {}, 2),
        ("api url unreachable", [*ing, "--api-url", api, "--api-key", KEY], {}, 5),
        (
            "api host unresolvable",
            [*ing, "--api-url", "http://no-such-host.invalid/api/v1", "--api-key", KEY],
            {},
            5,
        ),
        (
            "dsn scheme",
            ["ingest", "--database-url", "mysql://x/y", "--api-url", api, "--api-key", KEY],
            {},
            2,
        ),
        (
            "dsn garbage",
            ["ingest", "--database-url", "postgresql://:::/", "--api-url", api, "--api-key", KEY],
            {},
            2,
        ),
        (
            "dsn bad port",
            [
                "ingest",
                "--database-url",
                "postgresql://h:notaport/db",
                "--api-url",
                api,
                "--api-key",
                KEY,
            ],
            {},
            2,
        ),
        (
            "dsn unreachable",
            [
                "ingest",
                "--database-url",
                dead_db,
                "--api-url",
                api,
                "--api-key",
                KEY,
                "--db-wait",
                "0",
            ],
            {},
            6,
        ),
        (
            "dsn unknown database",
            [
                "ingest",
                "--database-url",
                pg.rsplit("/", 1)[0] + "/nope_db",
                "--api-url",
                api,
                "--api-key",
                KEY,
            ],
            {},
            6,
        ),
        (
            "dsn env scheme",
            ["ingest", "--api-url", api, "--api-key", KEY],
            {"DATABASE_URL": "sqlite:///x"},
            2,
        ),
    ]
    numbers = [
        ("--page-size", "0"),
        ("--page-size", "5001"),
        ("--page-size", "abc"),
        ("--page-size", "-1"),
        ("--shards", "0"),
        ("--shards", "100000"),
        ("--loaders", "0"),
        ("--loaders", "99"),
        ("--batch-size", "0"),
        ("--queue-batches", "0"),
        ("--max-attempts", "0"),
        ("--request-timeout", "0"),
        ("--request-timeout", "nan"),
        ("--max-runtime", "-5"),
        ("--max-runtime", "x"),
        ("--db-outage", "-1"),
        ("--max-response-mb", "0"),
        ("--max-event-kb", "0"),
        ("--events-concurrency", "-1"),
        ("--feed-concurrency", "65"),
        ("--progress-interval", "0"),
        ("--overlap-ms", "-1"),
        ("--sandbox-events", "-3"),
        ("--feed-window", "0"),
        ("--strategy", "fastest"),
        ("--log-format", "xml"),
    ]
    for flag, value in numbers:
        cases.append(
            (f"{flag} {value}", [*ing, "--api-url", api, "--api-key", KEY, flag, value], {}, 2)
        )
    cases += [
        (
            "both concurrencies 0",
            [
                *ing,
                "--api-url",
                api,
                "--api-key",
                KEY,
                "--events-concurrency",
                "0",
                "--feed-concurrency",
                "0",
            ],
            {},
            2,
        ),
        ("unknown flag", ["ingest", "--no-such-flag"], {}, 2),
        ("unknown command", ["ingestt"], {}, 2),
        ("env page size", [*ing, "--api-url", api, "--api-key", KEY], {"ETL_PAGE_SIZE": "lots"}, 2),
        (
            "data dir is a file",
            [*ing, "--api-url", api, "--api-key", KEY, "--data-dir", str(bad_utf8 / ".env")],
            {},
            2,
        ),
        (
            "data dir unwritable",
            [*ing, "--api-url", api, "--api-key", KEY, "--data-dir", str(ro / "data")],
            {},
            2,
        ),
        (
            "metrics file unwritable (a warning; the API is down: 5)",
            [*ing, "--api-url", api, "--api-key", KEY, "--metrics-file", "/proc/nope/etl.prom"],
            {},
            5,
        ),
        (
            "export to unwritable path",
            ["export-ids", str(ro / "ids.txt"), "--database-url", pg],
            {},
            2,
        ),
        ("export to a directory", ["export-ids", str(work), "--database-url", pg], {}, 2),
        (
            "submit without repo",
            ["submit", str(bad_utf8 / ".env"), "--api-url", api, "--api-key", KEY],
            {},
            2,
        ),
        (
            "submit missing file",
            [
                "submit",
                str(work / "no-such-file"),
                "--api-url",
                api,
                "--api-key",
                KEY,
                "--github-repo",
                "https://github.com/a/b",
            ],
            {},
            2,
        ),
        (".env invalid utf-8", [*ing, "--api-url", api], {"__cwd": str(bad_utf8)}, 2),
        (".env with a NUL byte", [*ing, "--api-url", api], {"__cwd": str(nul)}, 2),
        ("status bad dsn", ["status", "--database-url", "mysql://x"], {}, 2),
        ("status unreachable db", ["status", "--database-url", dead_db], {}, 6),
        ("runs bad dsn", ["runs", "--database-url", "nope://"], {}, 2),
        ("sandbox bad port", ["sandbox", "--port", "70000"], {}, 2),
        ("sandbox bad probability", ["sandbox", "--p-500", "2"], {}, 2),
        ("sandbox bad events", ["sandbox", "--events", "-1"], {}, 2),
    ]
    return cases


def r4_bad_inputs(lab: Lab, work: Path) -> dict[str, Any]:
    rows = []
    for label, argv, extra, expected in bad_invocations(lab, work):
        cwd = extra.pop("__cwd", str(work))
        t0 = time.monotonic()
        try:
            done = subprocess.run(
                [sys.executable, "-m", "etl", *argv],
                capture_output=True,
                text=True,
                timeout=30,
                env=env(**extra),
                cwd=cwd,
                stdin=subprocess.DEVNULL,
            )
            code, out = done.returncode, done.stdout + done.stderr
        except subprocess.TimeoutExpired:
            code, out = -1, "timed out"
        elapsed = time.monotonic() - t0
        OUTPUT.append(out)
        lines = [ln for ln in out.strip().splitlines() if ln.strip()]
        # one clear line: the one error line (a run that got going may have logged what it
        # tried first, e.g. "feed unavailable ...; fetching through events")
        errors = [ln for ln in lines if "error" in ln.lower()]
        clean = (
            code == expected
            and "Traceback" not in out
            and elapsed < 5
            and (len(errors) == 1 or (expected == 2 and _usage_error(lines)))
        )
        rows.append(
            {
                "case": label,
                "exit": code,
                "expected": expected,
                "lines": len(lines),
                "s": round(elapsed, 2),
                "clean": clean,
                "first_line": lines[0][:160] if lines else "",
            }
        )
    good = sum(r["clean"] for r in rows)
    return {"cases": len(rows), "clean": good, "ok": good == len(rows), "rows": rows}


def _usage_error(lines: list[str]) -> bool:
    """click's usage errors are a framed block naming the one problem: accepted as one
    message (its 'Usage:' and 'Try --help' lines aside) when exactly one error line is in it."""
    return sum("Error" in ln or "error" in ln for ln in lines) == 1


# -- R5 ----------------------------------------------------------------------------------


def r5_overlap(lab: Lab, events: int, rounds: int = 3) -> dict[str, Any]:
    ids = set(Dataset(SandboxConfig(events=events, seed=SEED)).ids())
    seconds: list[float] = []
    codes: list[int] = []
    with Sandbox(events, (*RELAXED, "--latency-per-page", "10")) as sb:
        dsn, data = lab.database()
        first = lab.ingest(sb, dsn, data, "--page-size", "1000")
        time.sleep(2.0)
        for k in range(rounds):
            other = lab.work / f"overlap_{k}"
            other.mkdir(exist_ok=True)
            t0 = time.monotonic()
            code, _ = lab.finish(lab.ingest(sb, dsn, other), timeout=60)
            seconds.append(round(time.monotonic() - t0, 2))
            codes.append(code)
        code, _ = lab.finish(first)
        again, _ = lab.finish(lab.ingest(sb, dsn, data))  # after it: an incremental run
    v = verdict(dsn, ids)
    return {
        "second_run_exits": codes,
        "second_run_s": seconds,
        "first_exit": code,
        "after_exit": again,
        **{k: v[k] for k in ("missing", "duplicated", "extra")},
        "ok": all(c == 7 for c in codes)
        and code == 0
        and again == 0
        and v["missing"] == v["duplicated"] == v["extra"] == 0,
    }


# -- R6 ----------------------------------------------------------------------------------

TOKEN = re.compile(r"(?<![0-9a-f])[0-9a-f]{64}(?![0-9a-f])")  # the sandbox's stream tokens


def r6_secrets(lab: Lab) -> dict[str, Any]:
    texts = list(OUTPUT)
    sources = {"process output": len(OUTPUT)}
    files = [p for p in lab.work.rglob("*") if p.is_file()]
    for path in files:
        texts.append(path.read_bytes().decode("utf-8", "replace"))
    sources["files (delivery logs, metrics)"] = len(files)
    for n in range(1, lab.n + 1):
        dsn = lab.dsn(f"chaos_{n}")
        for sql in (
            "SELECT coalesce(string_agg(coalesce(error, ''), ' '), '') AS t FROM ingest_runs",
            "SELECT coalesce(string_agg(coalesce(error, ''), ' '), '') AS t FROM delivery_log",
        ):
            with contextlib.suppress(OSError, asyncpg.PostgresError):
                texts.append(asyncio.run(_fetch(dsn, sql))[0]["t"])
        status = subprocess.run(
            [sys.executable, "-m", "etl", "status", "--json", "--database-url", dsn],
            capture_output=True,
            text=True,
            env=env(),
            timeout=30,
        )
        texts.append(status.stdout + status.stderr)
    sources["databases (errors, status --json)"] = lab.n
    blob = "\n".join(texts)
    found = {
        "api key": blob.count(KEY),
        "db password": blob.count(PASSWORD),
        "stream tokens": len(TOKEN.findall(blob)),
    }
    return {"scanned": sources, "found": found, "ok": not any(found.values())}


# -- main --------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smaller suite")
    parser.add_argument("--only", nargs="*", default=["R1", "R2", "R3", "R4", "R5", "R6"])
    args = parser.parse_args()
    quick = args.quick
    kills, restarts = (8, 4) if quick else (50, 10)
    events = 60_000 if quick else 200_000
    work = Path(tempfile.mkdtemp(prefix="etl-chaos-"))
    os.chmod(work, 0o755)
    lab = Lab(work)
    results: dict[str, Any] = {}
    started = time.time()
    steps = {
        "R1": lambda: r1_kills(lab, events, kills),
        "R2": lambda: r2_storm(lab, events),
        "R3": lambda: r3_restarts(lab, events, restarts),
        "R4": lambda: r4_bad_inputs(lab, work),
        "R5": lambda: r5_overlap(lab, events),
        "R6": lambda: r6_secrets(lab),
    }
    try:
        for name, step in steps.items():
            if name not in args.only:
                continue
            t0 = time.monotonic()
            try:
                results[name] = step()
            except Exception as exc:  # a step that breaks is a failed row, not a lost table
                results[name] = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
            results[name]["seconds"] = round(time.monotonic() - t0, 1)
            print(f"{name}: {'ok' if results[name]['ok'] else 'FAILED'}", flush=True)
    finally:
        lab.close()
        os.chmod(work, 0o755)
        for p in work.rglob("*"):
            if p.is_dir():
                os.chmod(p, 0o755)
        shutil.rmtree(work, ignore_errors=True)
    print_table(results)
    out = ROOT / "bench" / "results" / ("chaos-quick.json" if quick else "chaos.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    doc = {
        "started": started,
        "quick": quick,
        "events": events,
        "results": results,
        "load_average": os.getloadavg(),
    }
    out.write_text(json.dumps(doc, indent=2, default=str) + "\n")
    print(f"\nwrote {out.relative_to(ROOT)}")
    sys.exit(0 if all(r.get("ok") for r in results.values()) else 1)


def print_table(results: dict[str, Any]) -> None:
    def line(name: str, what: str, r: dict[str, Any]) -> str:
        return f"| {name} | {what} | {'✓' if r.get('ok') else '✗'} | {r.get('seconds', '')} s |"

    rows = ["| check | result | ok | time |", "|---|---|---|---|"]
    r = results.get("R1")
    if r:
        what = r.get("error") or (
            f"{r['kills']} × kill -9 over {r['databases']} databases, each then run to the end "
            f"(exits {r['final_exits']}): "
            f"{r['missing']} missing, {r['duplicated']} duplicated, {r['extra']} extra, "
            f"checksum {'equal' if r['checksum_equal'] else 'DIFFERENT'} to a clean load"
        )
        rows.append(line("R1 kill -9", what, r))
    r = results.get("R2")
    if r:
        what = r.get("error") or (
            f"exit {r['exit']}; {r['rows']:,} rows: {r['missing']} missing, "
            f"{r['duplicated']} duplicated, {r['stripped']} stripped; {r['retries']} retries, "
            f"{r['cursor_resets']} cursor resets; missing-field events: "
            f"{r['incomplete_reread_complete']} re-read complete, "
            f"{r['incomplete_quarantined']} quarantined ({r['incomplete_unresolved']} unresolved)"
        )
        rows.append(line("R2 fault storm", what, r))
    r = results.get("R3")
    if r:
        what = r.get("error") or (
            f"{r['restarts']} restarts (fast/immediate, down ≤ {r['down_s_max']} s), probes "
            f"exit {sorted(set(r['probe_exits']))}; exit {r['exit']}: {r['missing']} missing, "
            f"{r['duplicated']} duplicated"
        )
        rows.append(line("R3 PostgreSQL restarts", what, r))
    r = results.get("R4")
    if r:
        what = r.get("error") or (
            f"{r['clean']}/{r['cases']} bad invocations: documented exit, one line, "
            "no traceback, < 5 s"
        )
        rows.append(line("R4 bad inputs", what, r))
    r = results.get("R5")
    if r:
        what = r.get("error") or (
            f"second runs exit {r['second_run_exits']} in {r['second_run_s']} s; first exit "
            f"{r['first_exit']}, then {r['after_exit']}: {r['missing']} missing, "
            f"{r['duplicated']} duplicated"
        )
        rows.append(line("R5 overlapping runs", what, r))
    r = results.get("R6")
    if r:
        what = r.get("error") or (
            "found "
            + ", ".join(f"{v} × {k}" for k, v in r["found"].items())
            + f" in {sum(r['scanned'].values())} outputs/files/databases"
        )
        rows.append(line("R6 secrets", what, r))
    print("\n".join(rows))
    bad = [x for x in results.get("R4", {}).get("rows", []) if not x["clean"]]
    for x in bad:
        print(
            f"  R4 not clean: {x['case']}: exit {x['exit']} (want {x['expected']}), "
            f"{x['lines']} lines, {x['s']} s: {x['first_line']}"
        )


if __name__ == "__main__":
    main()
