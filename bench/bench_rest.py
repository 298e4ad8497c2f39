"""The declarative engine's throughput: the GitHub spec against the sandbox, unthrottled.

    .venv/bin/python bench/bench_rest.py --dsn postgresql://postgres@127.0.0.1:5432/postgres
    .venv/bin/python bench/bench_rest.py                    # embedded PostgreSQL in a temp dir

Runs `etl sync`'s wiring (``etl.cli.sync.sync_source``) in-process against the sandbox's
GitHub surface (``--issues`` issues, 100 per page, no limits or faults, real clock) on a
fresh database, twice: the first run loads everything, the second is incremental (one page).
Prints a table and writes ``bench/results/rest.json``. Not a test: the figures depend on
the machine (and on its other users).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
from aiohttp import web

from etl.auth.tokens import TokenSet
from etl.cli.sync import sync_source
from etl.rest.load import load, resolve
from etl.sandbox import SandboxConfig, SystemClock, build_app
from etl.sandbox.app import github_state_of
from etl.sandbox.github import GithubConfig
from etl.sink import EmbeddedPostgres
from etl.sink.tokens import PgTokenStore

SPEC = Path(__file__).parent.parent / "etl/sources/specs/github.yaml"
RESULTS = Path(__file__).parent / "results" / "rest.json"


def _with_db(url: str, name: str) -> str:
    p = urlsplit(url)
    return urlunsplit((p.scheme, p.netloc, "/" + name, p.query, p.fragment))


async def bench(dsn: str, issues: int) -> dict[str, object]:
    name = f"bench_rest_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(dsn)
    await admin.execute(f'CREATE DATABASE "{name}"')
    db = _with_db(dsn, name)
    clock = SystemClock()
    app = build_app(
        SandboxConfig(events=1000), clock=clock, github=GithubConfig(issues=issues, unlimited=True)
    )
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    root = f"http://127.0.0.1:{runner.addresses[0][1]}/github"
    gh = github_state_of(app)
    now = clock.time()
    tokens = gh.oauth.issue(now, from_device=True)
    await PgTokenStore(db).save("github", TokenSet.from_response(tokens, now, "bench"))
    spec = resolve(load(SPEC), {"GITHUB_API_URL": root, "GITHUB_OAUTH_URL": root + "/login"})
    out: dict[str, object] = {"issues": issues}
    try:
        for label in ("full", "incremental"):
            started = time.perf_counter()
            (result,) = await sync_source(spec, db, ["issues"])
            took = time.perf_counter() - started
            out[label] = {
                "seconds": round(took, 3),
                "rows": result.rows,
                "pages": result.pages,
                "rows_per_s": round(result.rows / took) if took > 0 else None,
            }
    finally:
        await runner.cleanup()
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dsn", help="a server whose role may CREATE DATABASE")
    parser.add_argument("--issues", type=int, default=20_000)
    args = parser.parse_args()
    if args.dsn:
        result = asyncio.run(bench(args.dsn, args.issues))
    else:
        with (
            tempfile.TemporaryDirectory() as tmp,
            EmbeddedPostgres(Path(tmp) / "pg", database="postgres") as dsn,
        ):
            result = asyncio.run(bench(dsn, args.issues))
    print(f"{'run':<12} {'rows':>8} {'pages':>6} {'seconds':>8} {'rows/s':>8}")
    for label in ("full", "incremental"):
        r = result[label]
        assert isinstance(r, dict)
        print(f"{label:<12} {r['rows']:>8} {r['pages']:>6} {r['seconds']:>8} {r['rows_per_s']:>8}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
