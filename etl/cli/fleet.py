"""`etl ingest --fleet FILE`: task I of N of a fleet's work (``etl.fleet``), each source into
its own database on DATABASE_URL's server, ``parallel`` sources at a time.

Every source is an ordinary task-mode ingest (its share's lock, its planning lock, its
progress rows, its identity guard, in its own database), so a retried fleet task resumes
each source where its predecessor stopped. Signals: the first stops every running source
gracefully and starts no other; a second stops at once. The exit code is 75 while any source
has a failure a retry can cure, else the first do-not-retry code (2, 4, 10, 11, …), else 0.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from etl.cli import signals
from etl.cli.compose import Stopper, ingest_one, summary, summary_fields, tune_gc
from etl.display import LogReporter
from etl.errors import ConfigError, EtlError, ExitCode
from etl.fleet import Assignment, assignments, fleet_exit_code, load_fleet, missing_keys
from etl.fleet import source_settings as settings_for
from etl.logs import route_logs
from etl.settings import Settings
from etl.sink.databases import ensure_database
from etl.sink.outage import quiet_loop_errors

Say = Callable[..., None]


@dataclass(frozen=True, slots=True)
class SourceResult:
    name: str
    code: int  # the exit code a single task of this source would have
    text: str
    fields: dict[str, object]


class SourceLog(LogReporter):
    """A source's log lines: its name before the text and as a ``source`` field."""

    def __init__(self, name: str, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.name = name

    def _emit(self, text: str, **fields: object) -> None:
        super()._emit(f"{self.name}: {text}", source=self.name, **fields)


class FleetStop:
    """The process's signal listener: the first signal stops every running source (one in
    start-up is cancelled, nothing loaded) and starts no other; a second stops at once."""

    def __init__(self, main: asyncio.Task[object] | None) -> None:
        self.main = main
        self.signal: str | None = None
        self.live: dict[Stopper, asyncio.Task[SourceResult]] = {}

    def __call__(self, name: str) -> None:
        if self.signal is not None:
            if self.main is not None:
                self.main.cancel()
            return
        self.signal = name
        for stopper, task in self.live.items():
            if stopper.run is None:
                task.cancel()
            else:
                stopper(name)


def run_fleet(
    path: Path,
    base: Settings,
    api_url: str | None,
    push: bool,
    *,
    say: Say,
    fmt: str,
    stamp: bool,
) -> int:
    """Load this task's share of the fleet in ``path``; the exit code. ``ConfigError`` on a
    bad file or a key variable not set (nothing is loaded then)."""
    if api_url is not None or push:
        raise ConfigError("--fleet names each source's API: no --api-url, no --push")
    fleet = load_fleet(path)
    missing = missing_keys(fleet, os.environ)
    if missing:
        raise ConfigError("; ".join(missing))
    index, count = base.shard_index or 0, base.shard_count or 1
    work = [
        (a, settings_for(base, a, os.environ[a.source.api_key_env], _own_url(a)))
        for a in assignments(fleet, index, count)
    ]
    head = f"fleet {path.name}, task {index} of {count}"
    say(
        f"{head}: {len(work)} of {len(fleet.sources)} source(s) hold shards of this task, "
        f"{fleet.parallel} at a time"
    )

    def reporter(name: str) -> LogReporter:
        return SourceLog(
            name, interval_s=base.progress_interval_s, fmt=fmt, quiet=base.quiet, stamp=stamp
        )

    assert base.database_url is not None  # task mode requires it
    try:
        with route_logs(reporter("fleet")):  # the sinks' log records
            results = asyncio.run(_fleet_main(work, base.database_url, fleet.parallel, reporter))
    except (KeyboardInterrupt, asyncio.CancelledError):
        say(
            f"{head}: stopped at once by a second signal; what was committed stays, the "
            "retry resumes",
            fields={"event": "fleet", "status": "partial"},
        )
        return ExitCode.TEMPFAIL
    for r in results:
        say(f"{r.name}: {r.text}", fields={"event": "summary", "source": r.name, **r.fields})
    code = fleet_exit_code([r.code for r in results])
    done = sum(1 for r in results if r.code == ExitCode.OK)
    say(
        f"{head}: {done} of {len(results)} source(s) done; exit {code}",
        fields={"event": "fleet", "sources": len(results), "done": done, "exit": code},
    )
    return code


async def _fleet_main(
    work: list[tuple[Assignment, Settings]],
    server: str,
    parallel: int,
    reporter: Callable[[str], LogReporter],
) -> list[SourceResult]:
    tune_gc()
    loop = asyncio.get_running_loop()
    stop = FleetStop(asyncio.current_task())
    signals.listen(loop, stop)
    quiet_loop_errors(loop)
    gate = asyncio.Semaphore(parallel)

    async def one(a: Assignment, settings: Settings) -> SourceResult:
        async with gate:
            name = a.source.name
            if stop.signal is not None:
                return SourceResult(name, ExitCode.PARTIAL, "not started (stopped)", {})
            stopper = Stopper(None)
            task = asyncio.current_task()
            assert task is not None
            stop.live[stopper] = task
            try:
                return await _load(a, settings, server, stopper, reporter(name))
            except asyncio.CancelledError:
                if stop.signal is None or stopper.run is not None:
                    raise
                return SourceResult(name, ExitCode.PARTIAL, "stopped during start-up", {})
            finally:
                del stop.live[stopper]

    try:
        tasks = [asyncio.create_task(one(a, s)) for a, s in work]
        return list(await asyncio.gather(*tasks))
    finally:
        signals.stop_listening()


async def _load(
    a: Assignment, settings: Settings, server: str, stopper: Stopper, reporter: LogReporter
) -> SourceResult:
    """One source's run (its database made first on ``server`` when missing); its error, if
    any, as a result, not an exception."""
    name = a.source.name
    try:
        if a.source.database and await ensure_database(server, a.source.database):
            reporter.message(f"created database {a.source.database}")
        outcome, elapsed = await ingest_one(settings, reporter, stopper, None)
    except EtlError as exc:
        return SourceResult(name, exc.exit_code, str(exc), {"status": "failed"})
    code = {
        "succeeded": ExitCode.OK,
        "partial": ExitCode.PARTIAL,
        "incomplete": ExitCode.INCOMPLETE,
    }.get(outcome.status)
    if code is None:
        code = outcome.error.exit_code if outcome.error else ExitCode.INTERNAL
    return SourceResult(name, code, summary(outcome, elapsed), summary_fields(outcome, elapsed))


def _own_url(a: Assignment) -> str | None:
    """The source's own database URL (``database_url_env``), if it has one."""
    name = a.source.database_url_env
    return os.environ[name] if name else None
