"""`etl sandbox`: serve a faithful DataSync API sandbox.

Every knob is a flag and a ``SANDBOX_*`` environment variable."""

from __future__ import annotations

import asyncio
import time
from enum import StrEnum
from typing import Annotated, Any

import typer
from typer.core import TyperCommand

from etl.cli.root import app
from etl.errors import ConfigError, ExitCode
from etl.sandbox.config import DEMO_API_KEY, REAL_NEWEST_TS_MS, SandboxConfig
from etl.sandbox.databox.config import DATABOX_DEMO_KEY, DATABOX_PREFIX, DataboxConfig

_D = SandboxConfig()
_B = DataboxConfig()


class TsFormats(StrEnum):
    recorded = "recorded"
    mixed = "mixed"
    ms = "ms"


class TsRule(StrEnum):
    page = "page"
    event = "event"


class Pool(StrEnum):
    shared = "shared"
    separate = "separate"


class PlainHelp(TyperCommand):
    """Help in click's plain layout: rich's table squeezes 40-odd long option names (and
    their ``--no-…`` twins) into a column that truncates them at 80 columns; the plain
    layout wraps the text instead and keeps every name whole."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.rich_markup_mode = None


def _o(env: str, help: str, **kw: Any) -> Any:
    return typer.Option(envvar=f"SANDBOX_{env}", help=help, **kw)


@app.command(cls=PlainHelp)
def sandbox(
    host: Annotated[str, _o("HOST", "Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, _o("PORT", "TCP port (0 = any free port).", min=0, max=65535)] = 8080,
    events: Annotated[int, _o("EVENTS", "Events in the dataset.", min=1)] = _D.events,
    seed: Annotated[int, _o("SEED", "Dataset seed (same seed, same dataset).")] = _D.seed,
    api_key: Annotated[
        list[str] | None,
        _o(
            "API_KEYS",
            f"Accepted API key (repeatable; env: space/comma separated). Default: {DEMO_API_KEY}.",
        ),
    ] = None,
    newest_ts: Annotated[
        int, _o("NEWEST_TS", "Newest event timestamp (epoch ms).")
    ] = REAL_NEWEST_TS_MS,
    span_days: Annotated[float, _o("SPAN_DAYS", "Days covered by the dataset.")] = _D.span_days,
    tie_fraction: Annotated[
        float, _o("TIE_FRACTION", "Share of neighbours with equal timestamps.")
    ] = _D.tie_fraction,
    live_rate: Annotated[
        float, _o("LIVE_RATE", "New events per second appearing at the head (ts = now).")
    ] = _D.live_rate,
    latency_per_page: Annotated[
        float,
        _o(
            "LATENCY_PER_PAGE",
            "Seconds per 5000-event page, scaled by page size (real: about 3.5).",
        ),
    ] = _D.latency_per_page,
    capacity: Annotated[
        float,
        _o(
            "CAPACITY",
            "Events/s the pages in flight share (real: ~5-6k); 0: a constant latency.",
            min=0,
        ),
    ] = _D.capacity,
    capacity_exponent: Annotated[
        float,
        _o("CAPACITY_EXPONENT", "Throughput grows as in-flight ** this (spec: ~0.35)."),
    ] = _D.capacity_exponent,
    time_scale: Annotated[
        float, _o("TIME_SCALE", "Divides every window, TTL and latency.")
    ] = _D.time_scale,
    rate_limit: Annotated[
        int, _o("RATE_LIMIT", "/events requests per window (header auth).")
    ] = _D.rate_limit,
    query_auth_limit: Annotated[
        int, _o("QUERY_AUTH_LIMIT", "/events requests per window with ?api_key=.")
    ] = _D.query_auth_limit,
    query_auth_pool: Annotated[
        Pool, _o("QUERY_AUTH_POOL", "Query-param auth shares the header bucket or has its own.")
    ] = Pool.shared,
    sessions_limit: Annotated[
        int, _o("SESSIONS_LIMIT", "/sessions requests per window.")
    ] = _D.sessions_limit,
    metrics_limit: Annotated[
        int, _o("METRICS_LIMIT", "/metrics requests per window.")
    ] = _D.metrics_limit,
    window: Annotated[float, _o("WINDOW", "Fixed rate-limit window, seconds.")] = _D.window,
    cache_ttl: Annotated[
        float, _o("CACHE_TTL", "Response cache TTL, seconds (X-Cache).")
    ] = _D.cache_ttl,
    cache_hit_consumes: Annotated[
        bool,
        _o(
            "CACHE_HIT_CONSUMES",
            "Whether a cache HIT spends a rate-limit token.",
            show_default=True,
        ),
    ] = _D.cache_hit_consumes,
    cursor_ttl: Annotated[
        float, _o("CURSOR_TTL", "Cursor lifetime, seconds (cursorExpiresIn = ttl - 1).")
    ] = _D.cursor_ttl,
    sessions_cursor_ttl: Annotated[
        float, _o("SESSIONS_CURSOR_TTL", "Sessions cursor lifetime, seconds.")
    ] = _D.sessions_cursor_ttl,
    token_ttl: Annotated[float, _o("TOKEN_TTL", "Stream token lifetime, seconds.")] = _D.token_ttl,
    feed_throttle: Annotated[
        int, _o("FEED_THROTTLE", "Hidden feed throttle: requests per feed window, per key.")
    ] = _D.feed_throttle,
    feed_window: Annotated[
        float, _o("FEED_WINDOW", "Feed throttle sliding window, seconds.")
    ] = _D.feed_window,
    feed_retry_after: Annotated[
        bool, _o("FEED_RETRY_AFTER", "Send Retry-After on the feed's 429.")
    ] = _D.feed_retry_after,
    feed_bounds_inclusive: Annotated[
        bool, _o("FEED_BOUNDS_INCLUSIVE", "Feed since/until are inclusive.")
    ] = _D.feed_bounds_inclusive,
    feed_teapot: Annotated[
        bool, _o("FEED_TEAPOT", "Answer 418 to a feed since/until outside the data range.")
    ] = _D.feed_teapot,
    feed_down_after: Annotated[
        int,
        _o("FEED_DOWN_AFTER", "The feed answers 503 for good after this many requests (0: never)."),
    ] = _D.feed_down_after,
    timestamp_formats: Annotated[
        TsFormats, _o("TIMESTAMP_FORMATS", "recorded (ms + ISO Z), mixed (every format) or ms.")
    ] = TsFormats.recorded,
    timestamp_rule: Annotated[
        TsRule, _o("TIMESTAMP_RULE", "Format chosen by page position or per event.")
    ] = TsRule.page,
    fault_seed: Annotated[int, _o("FAULT_SEED", "Seed of the fault draws.")] = _D.fault_seed,
    thresholds_fault: Annotated[
        str,
        _o(
            "THRESHOLDS_FAULT",
            "/benchmarks/thresholds misbehaves: none, down, garbage, bad_rules or slow.",
        ),
    ] = _D.thresholds_fault,
    p_500: Annotated[float, _o("P_500", "Probability of an ALB 500 per data request.")] = 0.0,
    p_502: Annotated[float, _o("P_502", "Probability of an ALB 502.")] = 0.0,
    p_503: Annotated[float, _o("P_503", "Probability of an ALB 503.")] = 0.0,
    p_504: Annotated[float, _o("P_504", "Probability of an ALB 504.")] = 0.0,
    p_truncate: Annotated[float, _o("P_TRUNCATE", "Probability of a truncated JSON body.")] = 0.0,
    p_drop: Annotated[float, _o("P_DROP", "Probability of a connection dropped mid-body.")] = 0.0,
    p_slow: Annotated[float, _o("P_SLOW", "Probability of a slow response.")] = 0.0,
    slow_seconds: Annotated[
        float, _o("SLOW_SECONDS", "Delay of a slow response, seconds.")
    ] = _D.slow_seconds,
    p_missing_fields: Annotated[
        float, _o("P_MISSING_FIELDS", "Probability a page has events with a field removed.")
    ] = 0.0,
    invalid_events: Annotated[
        float, _o("INVALID_EVENTS", "Share of events served invalid (bad timestamp or no id).")
    ] = 0.0,
    poison_events: Annotated[
        float, _o("POISON_EVENTS", "Share of events always served as broken JSON.")
    ] = 0.0,
    max_submissions: Annotated[
        int, _o("MAX_SUBMISSIONS", "Submissions allowed per key.")
    ] = _D.max_submissions,
    unlimited: Annotated[
        bool, _o("UNLIMITED", "Turn every limit, cache, latency and fault off.")
    ] = False,
    databox_api_key: Annotated[
        list[str] | None,
        _o(
            "DATABOX_API_KEYS",
            f"Databox surface: accepted x-api-key (repeatable). Default: {DATABOX_DEMO_KEY}.",
        ),
    ] = None,
    databox_rate_limit: Annotated[
        float, _o("DATABOX_RATE_LIMIT", "Databox surface: requests/s per key (429 beyond).")
    ] = _B.rate_limit,
    databox_p_5xx: Annotated[
        float, _o("DATABOX_P_5XX", "Databox surface: share of requests answered 503.")
    ] = _B.p_5xx,
    databox_p_lost: Annotated[
        float,
        _o("DATABOX_P_LOST", "Databox surface: share of data requests stored, then answered 504."),
    ] = _B.p_lost,
    databox_processing: Annotated[
        float, _o("DATABOX_PROCESSING", "Databox surface: seconds an ingestion is 'processing'.")
    ] = _B.processing_s,
) -> None:
    """Serve the sandbox: DataSync API, GitHub and Databox surfaces."""
    keys = tuple(k for item in api_key or () for k in item.replace(",", " ").split())
    dbx_keys = tuple(k for item in databox_api_key or () for k in item.replace(",", " ").split())
    try:
        databox = DataboxConfig(
            api_keys=dbx_keys,
            rate_limit=databox_rate_limit,
            p_5xx=databox_p_5xx,
            p_lost=databox_p_lost,
            fault_seed=fault_seed,
            processing_s=databox_processing,
        )
        config = SandboxConfig(
            events=events,
            seed=seed,
            newest_ts_ms=newest_ts,
            span_days=span_days,
            tie_fraction=tie_fraction,
            live_rate=live_rate,
            api_keys=keys,
            rate_limit=rate_limit,
            query_auth_limit=query_auth_limit,
            query_auth_pool=query_auth_pool.value,
            sessions_limit=sessions_limit,
            metrics_limit=metrics_limit,
            window=window,
            cache_ttl=cache_ttl,
            cache_hit_consumes=cache_hit_consumes,
            cursor_ttl=cursor_ttl,
            sessions_cursor_ttl=sessions_cursor_ttl,
            token_ttl=token_ttl,
            feed_throttle=feed_throttle,
            feed_window=feed_window,
            feed_retry_after=feed_retry_after,
            feed_bounds_inclusive=feed_bounds_inclusive,
            feed_teapot=feed_teapot,
            feed_down_after=feed_down_after,
            latency_per_page=latency_per_page,
            capacity=capacity,
            capacity_exponent=capacity_exponent,
            time_scale=time_scale,
            timestamp_formats=timestamp_formats.value,
            timestamp_rule=timestamp_rule.value,
            fault_seed=fault_seed,
            thresholds_fault=thresholds_fault,
            p_500=p_500,
            p_502=p_502,
            p_503=p_503,
            p_504=p_504,
            p_truncate=p_truncate,
            p_drop=p_drop,
            p_slow=p_slow,
            slow_seconds=slow_seconds,
            p_missing_fields=p_missing_fields,
            invalid_events=invalid_events,
            poison_events=poison_events,
            max_submissions=max_submissions,
            unlimited=unlimited,
            databox=databox,
        )
    except ConfigError as exc:
        raise typer.BadParameter(str(exc)) from exc
    started = time.monotonic()

    def ready(url: str) -> None:
        typer.echo(
            f"DataSync sandbox: {config.events:,} events (seed {config.seed}) ready in "
            f"{time.monotonic() - started:.1f} s",
            err=True,
        )
        typer.echo(url)
        if not keys:
            typer.echo(f"API key (demo): {DEMO_API_KEY}")
        from etl.sandbox.github import DEMO_CLIENT_ID, DEMO_REPO, DEMO_TOKEN

        typer.echo(
            f"GitHub surface: {url.removesuffix('/api/v1')}/github (repo {DEMO_REPO}, "
            f"token {DEMO_TOKEN}, OAuth client id {DEMO_CLIENT_ID})",
            err=True,
        )
        root = url.removesuffix("/api/v1")
        typer.echo(f"Databox Ingestion API: {root}{DATABOX_PREFIX}", err=True)
        if not dbx_keys:
            typer.echo(f"Databox key (demo): {DATABOX_DEMO_KEY}", err=True)
        if config.unlimited:
            typer.echo("unlimited: no rate limits, throttles, cache, latency or faults", err=True)

    from etl.sandbox.server import serve

    try:
        asyncio.run(serve(config, host, port, on_ready=ready))
    except OSError as exc:
        typer.echo(f"error: cannot listen on {host}:{port}: {exc.strerror or exc}", err=True)
        raise typer.Exit(ExitCode.CONFIG) from exc
    except KeyboardInterrupt:
        pass
