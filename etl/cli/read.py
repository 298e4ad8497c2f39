"""Read commands over the loaded data: `etl rollups`, `etl events`, `etl series`, `etl top`.

Each parses its arguments, runs one ``etl.read`` function under ``asyncio.run`` and prints a
plain table (``etl.plain``) or ``--json``. Bad input exits 2, a database failure 6.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, TypeVar

import typer

from etl.cli.db import fail, open_database
from etl.cli.options import AsJson, DatabaseUrl, DataDir
from etl.cli.root import app
from etl.errors import ConfigError, EtlError, ExitCode

T = TypeVar("T")


def no_ingest() -> str:
    """The line printed when no database exists yet (imported late: etl.read.views pulls in
    msgspec, ~40 ms a read command does not otherwise need)."""
    from etl.read.views import NO_INGEST

    return NO_INGEST


def run_read(
    database_url: str | None, data_dir: Path, query: Callable[[str], Awaitable[T]]
) -> T | None:
    """``query(dsn)`` on the chosen database; None when no database exists yet."""

    async def main() -> T | None:
        async with open_database(database_url, data_dir) as dsn:
            return None if dsn is None else await query(dsn)

    try:
        return asyncio.run(main())
    except EtlError as exc:
        raise fail(exc) from None


def echo_json(value: object) -> None:
    from etl.read.jsonable import jsonable

    typer.echo(json.dumps(jsonable(value)))


@app.command()
def rollups(
    data_dir: DataDir,
    database_url: DatabaseUrl = None,
    verify: Annotated[
        bool,
        typer.Option("--verify", help="Recompute from events; exit 12 on any difference."),
    ] = False,
    as_json: AsJson = False,
) -> None:
    """The hourly rollups kept in the load transaction: rows and events per table.

    --verify recomputes every rollup from the events table (seconds on millions of rows)
    and lists the differences; exit 0 when there are none, 12 when there are.
    """
    from etl.plain import cell, table
    from etl.read import rollups as r

    if not verify:
        summary = run_read(database_url, data_dir, r.read_summary)
        if summary is None:
            typer.echo(no_ingest())
        elif as_json:
            echo_json(summary)
        else:
            rows: list[tuple[object, ...]] = [(t.table, t.rows, t.events) for t in summary.tables]
            typer.echo(table(("table", "rows", "events"), rows))
            typer.echo(
                f"{summary.series} series, hours {cell(summary.first_hour)} … "
                f"{cell(summary.last_hour)} (UTC)"
            )
        return
    report = run_read(database_url, data_dir, r.verify)
    if report is None:
        typer.echo(no_ingest())
        return
    if as_json:
        echo_json(report)
    elif report.ok:
        typer.echo(f"rollups match the {report.events:,} events")
    else:
        typer.echo(f"{report.differences:,} rollup rows differ from the {report.events:,} events")
        diffs: list[tuple[object, ...]] = [
            (
                d.table,
                " ".join(f"{k}={v}" for k, v in d.key.items()),
                d.expected_events,
                d.stored_events,
            )
            for d in report.examples
        ]
        typer.echo(table(("table", "key", "events (recomputed)", "rollup"), diffs))
    if not report.ok:
        raise typer.Exit(ExitCode.FINDINGS)


Since = Annotated[
    str | None, typer.Option("--since", help="From this time (ISO 8601, UTC if no offset).")
]
Until = Annotated[str | None, typer.Option("--until", help="Before this time (exclusive).")]
Types = Annotated[
    list[str] | None, typer.Option("--type", "-t", help="Only this event type (repeatable).")
]


@app.command()
def events(
    data_dir: DataDir,
    user: Annotated[str, typer.Option("--user", "-u", help="The user's id (a UUID).")],
    database_url: DatabaseUrl = None,
    types: Types = None,
    since: Since = None,
    until: Until = None,
    before: Annotated[
        str | None,
        typer.Option("--before", help="Older than this time, or the TIME/ID a page printed."),
    ] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, max=10_000)] = 50,
    as_json: AsJson = False,
) -> None:
    """A user's events, newest first, with their JSON details; page with --before."""
    from etl.read import params
    from etl.read.events import user_events

    try:
        user_id = params.parse_uuid(user, "--user")
        lo = params.parse_time(since, "--since") if since else None
        hi = params.parse_time(until, "--until") if until else None
        params.check_range(lo, hi)
        pos = params.parse_before(before) if before else None
    except EtlError as exc:
        raise fail(exc) from None
    page = run_read(
        database_url,
        data_dir,
        lambda dsn: user_events(
            dsn, user_id, types=tuple(types or ()), since=lo, until=hi, before=pos, limit=limit
        ),
    )
    if page is None:
        typer.echo(no_ingest())
    elif as_json:
        echo_json(page)
    else:
        from etl.plain import events_table

        typer.echo(events_table(page))


@app.command()
def series(
    data_dir: DataDir,
    database_url: DatabaseUrl = None,
    types: Types = None,
    bucket: Annotated[str, typer.Option("--bucket", "-b", help="hour or day (UTC).")] = "hour",
    since: Since = None,
    until: Until = None,
    total: Annotated[bool, typer.Option("--total", help="One series: all types summed.")] = False,
    users: Annotated[
        bool, typer.Option("--users", help="Add distinct users per bucket (exact).")
    ] = False,
    with_stats: Annotated[
        bool, typer.Option("--stats", help="count, min, max, mean, p50, p95, trend per series.")
    ] = False,
    horizon: Annotated[
        int,
        typer.Option("--forecast", min=0, max=24 * 14, help="Buckets to forecast (Holt-Winters)."),
    ] = 0,
    as_json: AsJson = False,
    as_csv: Annotated[
        bool, typer.Option("--csv", help="CSV: bucket,series,kind,value,low,high.")
    ] = False,
) -> None:
    """Event counts per hour or day, per type (or --total), from the rollups: milliseconds
    on any table size. Empty buckets count 0."""
    from etl.read import params
    from etl.read.stats import series_report

    try:
        if bucket not in ("hour", "day"):
            raise ConfigError(f"--bucket must be hour or day, got {bucket!r}")
        lo = params.parse_time(since, "--since") if since else None
        hi = params.parse_time(until, "--until") if until else None
        params.check_range(lo, hi)
        if as_json and as_csv:
            raise ConfigError("--json and --csv exclude each other")
    except EtlError as exc:
        raise fail(exc) from None

    async def query(dsn: str) -> object:
        try:
            return await series_report(
                dsn,
                bucket="day" if bucket == "day" else "hour",
                types=tuple(types or ()),
                since=lo,
                until=hi,
                total=total,
                with_stats=with_stats,
                horizon=horizon,
                users=users,
            )
        except ValueError as exc:
            raise ConfigError(str(exc)) from exc

    report = run_read(database_url, data_dir, query)
    if report is None:
        typer.echo(no_ingest())
        return
    from etl import plain as show
    from etl.read.stats import SeriesReport

    assert isinstance(report, SeriesReport)
    if as_json:
        echo_json(report)
    elif as_csv:
        typer.echo(show.series_csv(report), nl=False)
    else:
        typer.echo(show.series_text(report))


@app.command()
def top(
    data_dir: DataDir,
    what: Annotated[str, typer.Argument(help="users, types or pages")],
    database_url: DatabaseUrl = None,
    by: Annotated[str, typer.Option("--by", help="events or purchases")] = "events",
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, max=10_000)] = 10,
    since: Since = None,
    until: Until = None,
    as_json: AsJson = False,
) -> None:
    """The top users, types or pages by events or purchases, from the rollups. Ties: the
    other measure, then the key, so the order never changes between runs."""
    from etl.read import params
    from etl.read.top import read_top

    try:
        if what not in ("users", "types", "pages"):
            raise ConfigError(f"top what? users, types or pages (got {what!r})")
        if by not in ("events", "purchases"):
            raise ConfigError(f"--by must be events or purchases, got {by!r}")
        lo = params.parse_time(since, "--since") if since else None
        hi = params.parse_time(until, "--until") if until else None
        params.check_range(lo, hi)
    except EtlError as exc:
        raise fail(exc) from None
    result = run_read(
        database_url,
        data_dir,
        lambda dsn: read_top(dsn, what, by=by, limit=limit, since=lo, until=hi),  # type: ignore[arg-type]
    )
    if result is None:
        typer.echo(no_ingest())
    elif as_json:
        echo_json(result)
    else:
        from etl.plain import table

        rows = [(r.rank, r.key, r.events, r.purchases) for r in result.rows]
        typer.echo(table(("#", what[:-1], "events", "purchases"), rows))
