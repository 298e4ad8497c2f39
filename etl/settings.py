"""One frozen, validated Settings object, built from plain values (never reads the env)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit

from etl.errors import ConfigError
from etl.tasks import TaskShare

if TYPE_CHECKING:  # etl.models pulls in msgspec: keep `etl --help`/`etl status` light
    from etl.models import Strategy

STRATEGIES = ("auto", "events", "feed")
LOG_FORMATS = ("text", "json")
MAX_PAGE_SIZE = 5000  # the API's largest page (spec)
FEED_WINDOW_S = 300.0  # the feed's hidden sliding-window throttle (spec: about 5 minutes)
DATA_DIR_HINT = "~/.local/share/etl"  # $XDG_DATA_HOME/etl when that is set


def default_data_dir(env: Mapping[str, str]) -> Path:
    """Where the embedded PostgreSQL and the delivery log live unless told: XDG's data home.

    ``env`` is passed in (the CLI passes ``os.environ``): this module never reads it.
    """
    base = env.get("XDG_DATA_HOME")
    return Path(base) / "etl" if base else Path(DATA_DIR_HINT).expanduser()


def redact_url(url: str) -> str:
    """The URL with any password replaced by ``***`` (for logs, errors and status)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable url>"
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


@dataclass(frozen=True, slots=True)
class Settings:
    """Every knob of `etl ingest`, its default and its range: the one place they are written.

    The CLI's option defaults, ``PipelineOptions``, ``SourceOptions`` and the sink read them
    (through ``DEFAULTS`` or ``etl.wiring``); ``__post_init__`` checks every range.
    """

    api_url: str | None  # None: start the bundled sandbox
    api_key: str = field(repr=False)
    database_url: str | None = field(default=None, repr=False)  # None: embedded PostgreSQL
    data_dir: Path = field(default_factory=lambda: default_data_dir({}))
    strategy: Strategy = "auto"
    page_size: int = MAX_PAGE_SIZE  # the largest page the API serves: the fewest requests
    shards: int = 16
    span_days: float = 31.0
    events_concurrency: int = 2
    feed_concurrency: int = 4
    max_in_flight: int = 96  # per lane; in flight is found by the run (etl.inflight)
    feed_rate_per_s: float | None = None
    feed_window_s: float | None = None  # None: the spec's 300 s (scaled for the sandbox)
    loaders: int = 3
    batch_size: int = 10_000
    queue_batches: int = 1
    max_attempts: int = 10
    incomplete_rereads: int = 2  # re-reads of a page with events lacking required fields
    startup_attempts: int = 3  # tries to connect at all before the API has ever answered
    request_timeout_s: float = 60.0
    db_outage_s: float = 120.0  # a database outage this long is ridden through (then exit 6)
    db_wait_s: float = 10.0  # a DATABASE_URL server still booting (refused) is waited for
    # a response (a 5000-event page is ~2 MB) or one event's text over these is refused
    max_response_mb: float = 64.0
    max_event_kb: float = 1024.0
    max_runtime_s: float | None = None
    overlap_ms: int = 1_000
    sandbox_events: int = 3_000_000
    sandbox_time_scale: float = 1.0
    quiet: bool = False
    log_format: str = "text"
    progress_interval_s: float = 10.0
    metrics_file: Path | None = None
    full_refresh: bool = False  # retire the sync state first and re-read the whole source
    # task mode (etl.tasks): load only share shard_index of shard_count of the plan
    shard_index: int | None = None
    shard_count: int | None = None
    shard_offset: int = 0  # a fleet's source: its shards' first position (etl.fleet)
    # the key's rate budget shared through PostgreSQL with every task on the key
    # (etl.sharedrate); None: on in task mode only
    shared_budget: bool | None = None

    def __post_init__(self) -> None:
        if self.api_url is not None:
            parts = urlsplit(self.api_url)
            if (
                parts.scheme not in ("http", "https")
                or not parts.netloc
                or any(c.isspace() for c in self.api_url)
            ):
                raise ConfigError(
                    f"--api-url must look like http://host:port/api/v1, got {self.api_url!r}"
                )
            if not self.api_key:
                raise ConfigError("an API key is required with --api-url (DATASYNC_API_KEY)")
        if self.database_url is not None and not self.database_url.startswith(
            ("postgresql://", "postgres://")
        ):
            raise ConfigError(
                "--database-url must start with postgresql:// "
                f"(got {redact_url(self.database_url)!r})"
            )
        if self.strategy not in STRATEGIES:
            raise ConfigError(f"--strategy must be one of {', '.join(STRATEGIES)}")
        if self.log_format not in LOG_FORMATS:
            raise ConfigError(f"--log-format must be one of {', '.join(LOG_FORMATS)}")
        checks: list[tuple[str, float, float, float]] = [
            ("--page-size", self.page_size, 1, MAX_PAGE_SIZE),
            ("--shards", self.shards, 1, 256),
            ("--span-days", self.span_days, 0.001, 3650),
            ("--events-concurrency", self.events_concurrency, 0, 64),
            ("--feed-concurrency", self.feed_concurrency, 0, 64),
            ("--max-in-flight", self.max_in_flight, 1, 512),
            ("--feed-window", self.effective_feed_window_s, 0.01, 86_400),
            ("--sandbox-time-scale", self.sandbox_time_scale, 0.01, 10_000),
            ("--loaders", self.loaders, 1, 16),
            ("--batch-size", self.batch_size, 1, 1_000_000),
            ("--queue-batches", self.queue_batches, 1, 1000),
            ("--max-attempts", self.max_attempts, 1, 1000),
            ("incomplete_rereads", self.incomplete_rereads, 0, 100),
            ("startup_attempts", self.startup_attempts, 1, 1000),
            ("--request-timeout", self.request_timeout_s, 0.1, 3600),
            ("--db-outage", self.db_outage_s, 0, 86_400),
            ("--db-wait", self.db_wait_s, 0, 3600),
            ("--max-response-mb", self.max_response_mb, 0.01, 4096),
            ("--max-event-kb", self.max_event_kb, 0.1, 1_048_576),
            ("--overlap-ms", self.overlap_ms, 0, 86_400_000),
            ("--sandbox-events", self.sandbox_events, 0, 100_000_000),
            ("--progress-interval", self.progress_interval_s, 0.1, 86_400),
        ]
        for name, value, low, high in checks:
            if not low <= value <= high:
                raise ConfigError(f"{name} must be between {low:g} and {high:g}, got {value:g}")
        if self.feed_rate_per_s is not None and not 0.001 <= self.feed_rate_per_s <= 1000:
            raise ConfigError("--feed-rate must be between 0.001 and 1000 requests/s")
        if self.max_runtime_s is not None and self.max_runtime_s <= 0:
            raise ConfigError("--max-runtime must be a positive number of seconds")
        self._check_task()
        if self.events_concurrency == 0 and self.feed_concurrency == 0:
            raise ConfigError(
                "at least one of --events-concurrency / --feed-concurrency must be > 0"
            )

    def _check_task(self) -> None:
        """Task mode needs both numbers, a shared database, and no --full-refresh (each task
        would retire the others' progress: `etl reset` once, before the tasks, does it)."""
        index, count = self.shard_index, self.shard_count
        if self.shard_offset < 0:
            raise ConfigError(f"shard_offset must be >= 0, got {self.shard_offset}")
        if index is None and count is None:
            return
        if count is None:
            raise ConfigError("--shard-index needs --shard-count (ETL_SHARD_COUNT)")
        if not 1 <= count <= 10_000:
            raise ConfigError(f"--shard-count must be between 1 and 10000, got {count}")
        if index is None or not 0 <= index < count:
            raise ConfigError(
                f"--shard-index must be between 0 and {count - 1} with --shard-count {count}, "
                f"got {index}"
            )
        if self.database_url is None:
            raise ConfigError(
                "--shard-count needs --database-url (DATABASE_URL): every task must share "
                "one PostgreSQL"
            )
        if self.full_refresh:
            raise ConfigError(
                "--full-refresh cannot run as a task (each would retire the others' progress); "
                "run `etl reset --yes` once before the tasks instead"
            )

    @property
    def share(self) -> TaskShare | None:
        """Task mode's share of the plan, or None for a single-instance run."""
        if self.shard_count is None or self.shard_index is None:
            return None
        return TaskShare(self.shard_index, self.shard_count, self.shard_offset)

    @property
    def uses_shared_budget(self) -> bool:
        """Whether the key's limiters live in PostgreSQL (``--shared-budget``), by default
        in task mode: single runs keep their limiters in memory (no round trips)."""
        return self.share is not None if self.shared_budget is None else self.shared_budget

    @property
    def effective_feed_window_s(self) -> float:
        """The feed throttle's window: as given, else 300 s (divided by the bundled
        sandbox's time scale when the tool runs its own sandbox)."""
        if self.feed_window_s is not None:
            return self.feed_window_s
        return FEED_WINDOW_S / (self.sandbox_time_scale if self.api_url is None else 1.0)


#: The defaults as one value, for code that takes a knob without going through the CLI
#: (``PipelineOptions()``, ``PostgresSink(dsn, stream=…)``, tests): they read it, never restate it.
DEFAULTS = Settings(api_url=None, api_key="")


DATABOX_URL = "https://api.databox.com"


@dataclass(frozen=True, slots=True)
class PushSettings:
    """Every knob of `etl push` (and `etl ingest --push`), its default and its range.

    ``databox_url`` None means Databox itself (``DATABOX_URL``), except under an `etl ingest`
    that runs the bundled sandbox: then its Databox surface, with its demo key
    (``bundled``)."""

    databox_url: str | None = None
    databox_key: str = field(default="", repr=False)
    datasets: tuple[str, ...] = ()  # to declare (with a backfill) before draining
    rate_per_s: float = 10.0  # requests/s (the legacy push API documented 10/s)
    max_attempts: int = 10
    request_timeout_s: float = 30.0
    verify_every: int = 50
    verify_wait_s: float = 60.0

    def __post_init__(self) -> None:
        if self.databox_url is not None:
            parts = urlsplit(self.databox_url)
            if parts.scheme not in ("http", "https") or not parts.netloc:
                raise ConfigError(
                    f"--databox-url must look like {DATABOX_URL}, got {self.databox_url!r}"
                )
        checks: list[tuple[str, float, float, float]] = [
            ("--push-rate", self.rate_per_s, 0.01, 1000),
            ("--push-attempts", self.max_attempts, 1, 1000),
            ("--push-timeout", self.request_timeout_s, 0.1, 3600),
            ("--verify-every", self.verify_every, 1, 100_000),
            ("--verify-wait", self.verify_wait_s, 0, 86_400),
        ]
        for name, value, low, high in checks:
            if not low <= value <= high:
                raise ConfigError(f"{name} must be between {low:g} and {high:g}, got {value:g}")

    @property
    def url(self) -> str:
        return self.databox_url or DATABOX_URL

    def require_key(self) -> None:
        if not self.databox_key:
            raise ConfigError("a Databox API key is required (--databox-key / DATABOX_API_KEY)")

    def bundled(self, databox_root: str, demo_key: str) -> PushSettings:
        """These settings aimed at the bundled sandbox's Databox surface when no URL was
        given (its demo key unless one was)."""
        if self.databox_url is not None:
            return self
        return replace(self, databox_url=databox_root, databox_key=self.databox_key or demo_key)


@dataclass(frozen=True, slots=True)
class AnomalySettings:
    """`etl anomalies`' detection knobs, Elementary's defaults (``etl.anomaly`` uses them)."""

    training_days: int = 14
    detection_days: int = 2
    sensitivity: float = 3.0
    min_training_points: int = 7
