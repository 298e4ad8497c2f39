"""`etl ingest`: builds Settings from flags/env, runs the composition root, sets the exit code.

Heavy imports (aiohttp, asyncpg, the pipeline) happen inside the command, so other
commands (`etl status`, `etl --help`) start fast.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from dataclasses import fields
from pathlib import Path
from typing import Annotated, Any

import typer

from etl.cli.options import ApiKey, ApiUrl, DatabaseUrl, DataDir, LogFormat, Quiet
from etl.cli.push import DataboxKey, DataboxUrl, PushDatasets, PushRate, push_settings
from etl.cli.root import app
from etl.errors import ConfigError, EtlError, ExitCode, task_exit_code
from etl.settings import PushSettings, Settings

# one source of truth for the defaults: the Settings dataclass
_D: dict[str, Any] = {f.name: f.default for f in fields(Settings)}
_P: dict[str, Any] = {f.name: f.default for f in fields(PushSettings)}


@app.command()
def ingest(
    data_dir: DataDir,
    api_url: ApiUrl = None,
    api_key: ApiKey = "",
    database_url: DatabaseUrl = None,
    strategy: Annotated[
        str, typer.Option(envvar="ETL_STRATEGY", help="auto (feed + /events), events or feed.")
    ] = _D["strategy"],
    page_size: Annotated[
        int, typer.Option(envvar="ETL_PAGE_SIZE", help="Events per request.")
    ] = _D["page_size"],
    shards: Annotated[
        int, typer.Option(envvar="ETL_SHARDS", help="Time slices fetched in parallel.")
    ] = _D["shards"],
    events_concurrency: Annotated[
        int,
        typer.Option(
            envvar="ETL_EVENTS_CONCURRENCY",
            help="Requests in flight on /events to start with (0: off); then found by the run.",
        ),
    ] = _D["events_concurrency"],
    feed_concurrency: Annotated[
        int,
        typer.Option(
            envvar="ETL_FEED_CONCURRENCY",
            help="Requests in flight on the feed to start with (0: off); then found by the run.",
        ),
    ] = _D["feed_concurrency"],
    max_in_flight: Annotated[
        int,
        typer.Option(
            envvar="ETL_MAX_IN_FLIGHT", help="Most requests in flight per lane (the search's cap)."
        ),
    ] = _D["max_in_flight"],
    feed_window: Annotated[
        float | None,
        typer.Option(
            envvar="ETL_FEED_WINDOW",
            help="Seconds of the feed's hidden sliding-window throttle (default: the spec's "
            "300, divided by --sandbox-time-scale for the bundled sandbox).",
            show_default=False,
        ),
    ] = _D["feed_window_s"],
    loaders: Annotated[
        int, typer.Option(envvar="ETL_LOADERS", help="Database connections loading in parallel.")
    ] = _D["loaders"],
    batch_size: Annotated[
        int,
        typer.Option(
            envvar="ETL_BATCH_SIZE",
            help="Max events per transaction: pages of one shard already waiting in a "
            "loader's queue are merged up to it (a page is never split).",
        ),
    ] = _D["batch_size"],
    queue_batches: Annotated[
        int,
        typer.Option(
            envvar="ETL_QUEUE_BATCHES",
            help="Pages queued per loader: more smooths loading, costs ~4 MB each.",
        ),
    ] = _D["queue_batches"],
    max_runtime: Annotated[
        float | None,
        typer.Option(envvar="ETL_MAX_RUNTIME", help="Seconds; then stop gracefully (resumable)."),
    ] = _D["max_runtime_s"],
    request_timeout: Annotated[
        float, typer.Option(envvar="ETL_REQUEST_TIMEOUT", help="Seconds per HTTP request.")
    ] = _D["request_timeout_s"],
    db_outage: Annotated[
        float,
        typer.Option(
            envvar="ETL_DB_OUTAGE",
            help="Seconds a database outage is ridden through (reconnect, retake the lock).",
        ),
    ] = _D["db_outage_s"],
    db_wait: Annotated[
        float,
        typer.Option(
            envvar="ETL_DB_WAIT",
            help="Seconds to wait for a DATABASE_URL server that refuses connections or is "
            "starting up (a container's first boot) before giving up (exit 6).",
        ),
    ] = _D["db_wait_s"],
    max_response_mb: Annotated[
        float,
        typer.Option(
            envvar="ETL_MAX_RESPONSE_MB",
            help="A response larger than this is refused (its range is re-asked in smaller pages).",
        ),
    ] = _D["max_response_mb"],
    max_event_kb: Annotated[
        float,
        typer.Option(
            envvar="ETL_MAX_EVENT_KB",
            help="An event whose text is larger than this is quarantined, not loaded.",
        ),
    ] = _D["max_event_kb"],
    max_attempts: Annotated[
        int, typer.Option(envvar="ETL_MAX_ATTEMPTS", help="Tries per page on transient faults.")
    ] = _D["max_attempts"],
    sandbox_events: Annotated[
        int,
        typer.Option(envvar="SANDBOX_EVENTS", help="Dataset size of the bundled sandbox."),
    ] = _D["sandbox_events"],
    metrics_file: Annotated[
        Path | None,
        typer.Option(
            envvar="ETL_METRICS_FILE", help="Prometheus textfile to write (node_exporter)."
        ),
    ] = _D["metrics_file"],
    sandbox_time_scale: Annotated[
        float,
        typer.Option(
            envvar="SANDBOX_TIME_SCALE",
            help="Time scale of the bundled sandbox (10: the real limits, 10x faster).",
        ),
    ] = _D["sandbox_time_scale"],
    quiet: Quiet = _D["quiet"],
    log_format: LogFormat = _D["log_format"],
    progress_interval: Annotated[
        float, typer.Option(envvar="ETL_PROGRESS_INTERVAL", help="Seconds between log lines.")
    ] = _D["progress_interval_s"],
    full_refresh: Annotated[
        bool,
        typer.Option(
            "--full-refresh",
            help="Forget the sync state (shards, checkpoints, the source's identity) and "
            "re-read the whole source, e.g. after it changed. Loaded rows are kept.",
        ),
    ] = _D["full_refresh"],
    shard_index: Annotated[
        int | None,
        typer.Option(
            envvar="ETL_SHARD_INDEX",
            help="Task mode: this task's share of the plan, 0..N-1 (default: Kubernetes' "
            "JOB_COMPLETION_INDEX when set).",
            show_default=False,
        ),
    ] = None,
    shard_count: Annotated[
        int | None,
        typer.Option(
            envvar="ETL_SHARD_COUNT",
            help="Task mode: the number of tasks N; this one loads only its share of the "
            "shards (all tasks share one DATABASE_URL; retryable failures exit 75).",
            show_default=False,
        ),
    ] = None,
    fleet: Annotated[
        Path | None,
        typer.Option(
            envvar="ETL_FLEET",
            help="A fleet file (YAML or TOML) of many sources: load this task's share of all "
            "their shards, each source into its own database on DATABASE_URL's server.",
            show_default=False,
        ),
    ] = None,
    shared_budget_mode: Annotated[
        str,
        typer.Option(
            "--shared-budget",
            envvar="ETL_SHARED_BUDGET",
            help="on/off: share the API key's rate budget, through PostgreSQL, with every "
            "etl ingest on the same key and database (auto: on in task mode).",
        ),
    ] = "auto",
    push: Annotated[
        bool,
        typer.Option(
            "--push", envvar="ETL_PUSH", help="Also push to Databox as batches load (etl push)."
        ),
    ] = False,
    databox_url: DataboxUrl = None,
    databox_key: DataboxKey = "",
    push_dataset: PushDatasets = None,
    push_rate: PushRate = _P["rate_per_s"],
) -> None:
    """Load every event from the DataSync API into PostgreSQL: exactly once, resumable."""
    from etl.cli.compose import StoppedAtStartup, ingest_main, summary, summary_fields
    from etl.cli.db import check_data_dir
    from etl.cli.out import error_line
    from etl.display import make_reporter
    from etl.fmt import log_line
    from etl.logs import route_logs

    is_tty = sys.stderr.isatty()
    fmt = log_format if log_format in ("text", "json") else "text"

    def say(text: str, *, error: bool = False, fields: dict[str, object] | None = None) -> None:
        """A line of ours in the log's format: errors on stderr, the summary on stdout."""
        if error:
            line = error_line(text, fmt=fmt, stamp=not is_tty)
        else:
            line = log_line(text, fmt=fmt, now_s=time.time(), stamp=not is_tty, fields=fields)
        typer.echo(line, err=error)

    shard_index, shard_count = _fleet_default(fleet, shard_index, shard_count)
    task = shard_count is not None

    def leave(code: int) -> int:
        """The exit code for ``code``: in task mode, a failure a retry can cure is 75."""
        return task_exit_code(code) if task else code

    try:
        settings = Settings(
            api_url=api_url,
            api_key=api_key,
            database_url=database_url,
            data_dir=data_dir,
            strategy=strategy,  # type: ignore[arg-type]
            page_size=page_size,
            shards=shards,
            events_concurrency=events_concurrency,
            feed_concurrency=feed_concurrency,
            max_in_flight=max_in_flight,
            feed_window_s=feed_window,
            loaders=loaders,
            batch_size=batch_size,
            queue_batches=queue_batches,
            max_runtime_s=max_runtime,
            request_timeout_s=request_timeout,
            db_wait_s=db_wait,
            max_attempts=max_attempts,
            db_outage_s=db_outage,
            max_response_mb=max_response_mb,
            max_event_kb=max_event_kb,
            sandbox_events=sandbox_events,
            sandbox_time_scale=sandbox_time_scale,
            quiet=quiet,
            log_format=log_format,
            progress_interval_s=progress_interval,
            metrics_file=metrics_file,
            full_refresh=full_refresh,
            shard_index=_task_index(shard_index, shard_count),
            shard_count=shard_count,
            shared_budget=_on_off(shared_budget_mode, "--shared-budget"),
        )
        check_data_dir(settings.data_dir, embedded=settings.database_url is None)
        if fleet is not None:
            from etl.cli.fleet import run_fleet

            code = run_fleet(fleet, settings, api_url, push, say=say, fmt=fmt, stamp=not is_tty)
            raise typer.Exit(code)
        pushing = push_settings(databox_url, databox_key, push_dataset, push_rate) if push else None
    except EtlError as exc:
        say(str(exc), error=True)
        raise typer.Exit(exc.exit_code) from None
    reporter = make_reporter(
        quiet=quiet,
        log_format=log_format,
        interval_s=settings.progress_interval_s,
        stream=sys.stderr,
        is_tty=is_tty,
    )
    try:
        with reporter, route_logs(reporter):  # the sink's and delivery log's records too
            outcome, elapsed = asyncio.run(ingest_main(settings, reporter, pushing))
    except EtlError as exc:
        say(str(exc), error=True)
        raise typer.Exit(leave(exc.exit_code)) from None
    except StoppedAtStartup as stop:
        say(
            f"stopped by {stop.signal_name} during start-up; nothing was loaded; rerun to start",
            fields={"event": "summary", "status": "partial"},
        )
        raise typer.Exit(leave(ExitCode.PARTIAL)) from None
    except (KeyboardInterrupt, asyncio.CancelledError):
        say(
            "stopped at once by a second signal; what was committed stays, rerun to resume",
            fields={"event": "summary", "status": "partial"},
        )
        raise typer.Exit(leave(ExitCode.PARTIAL)) from None
    say(summary(outcome, elapsed), fields={"event": "summary", **summary_fields(outcome, elapsed)})
    if outcome.status == "succeeded":
        return
    if outcome.status == "partial":
        raise typer.Exit(leave(ExitCode.PARTIAL))
    if outcome.status == "incomplete":
        raise typer.Exit(ExitCode.INCOMPLETE)
    raise typer.Exit(leave(outcome.error.exit_code if outcome.error else ExitCode.INTERNAL))


def _fleet_default(
    fleet: Path | None, index: int | None, count: int | None
) -> tuple[int | None, int | None]:
    """A fleet with no task numbers is the whole fleet in this process: task 0 of 1."""
    if fleet is not None and count is None:
        return (0 if index is None else index), 1
    return index, count


def _on_off(value: str, name: str) -> bool | None:
    """``auto`` is None; on/off (true/false, yes/no, 1/0) a bool; else ``ConfigError``."""
    word = value.strip().lower()
    if word == "auto":
        return None
    if word in ("on", "true", "yes", "1"):
        return True
    if word in ("off", "false", "no", "0"):
        return False
    raise ConfigError(f"{name} must be auto, on or off, got {value!r}")


def _task_index(given: int | None, count: int | None) -> int | None:
    """The task's index: as given (flag or ETL_SHARD_INDEX), else a Kubernetes Indexed Job's
    JOB_COMPLETION_INDEX when running as a task. Raises ``ConfigError`` on a non-number."""
    if given is not None or count is None:
        return given
    raw = os.environ.get("JOB_COMPLETION_INDEX")
    if raw is None:
        return None
    try:
        return int(raw)
    except ValueError as exc:
        raise ConfigError(f"JOB_COMPLETION_INDEX must be a number, got {raw!r}") from exc
