"""One exception tree for the whole tool.

    EtlError                      base; carries the process exit code
    ├── ConfigError               bad flags / env / settings                      exit 2
    ├── SourceError               anything on the API side                        exit 5
    │   ├── AuthError             key missing, unknown or expired (401/403)       exit 4
    │   ├── TransientSourceError  worth retrying: 5xx, timeouts, drops, bad JSON
    │   │   ├── Unreachable       no connection at all (refused, unknown host)
    │   │   ├── RateLimited       429; carries retry_after_s (may be None)
    │   │   ├── DecodeError       the body is not a usable page (bad/truncated JSON)
    │   │   └── CursorExpired     400 CURSOR_EXPIRED; re-anchor, never restart
    │   ├── StreamTokenError      feed token missing/expired (403); re-obtain
    │   └── PermanentSourceError  any other 4xx, or retries exhausted
    │       └── BrokenPage        a page that never decodes (or too large): isolated
    │           └── ResponseTooLarge
    ├── SinkError                 PostgreSQL unreachable or failing               exit 6
    │   └── StoppedInOutage       stopped (signal) while waiting out an outage
    ├── LockHeld                  another run holds the single-instance lock      exit 7
    ├── NothingIngested           no ingest has loaded the database asked about   exit 9
    ├── SourceMismatch            the state was built from a different dataset    exit 10
    ├── ThresholdsError           thresholds file/service unavailable or garbage  exit 13
    ├── DestinationError          a push destination kept failing (Databox)       exit 15
    │   ├── DestinationAuthError  the destination refused the key (401/403)       exit 14
    │   ├── DestinationTransient  worth retrying: 429 (retry_after_s), 5xx, timeouts
    │   └── DestinationRejected   4xx for the request: its ``errors`` envelope
    └── TimestampError            a value no known timestamp format can express

Third-party exceptions (aiohttp, asyncpg, ...) are translated into this tree at the
boundary (``raise SourceError(...) from exc``); nothing above source/ and sink/ sees them.
Messages never contain secrets.
"""

from __future__ import annotations


class ExitCode:
    """Process exit codes (documented in README.md and in ``etl --help``; see MEANINGS)."""

    OK = 0
    INTERNAL = 1
    CONFIG = 2
    PARTIAL = 3  # stopped by signal or --max-runtime; progress saved, rerun resumes
    AUTH = 4
    UPSTREAM = 5
    DATABASE = 6
    LOCKED = 7
    DEGRADED = 8  # `etl health` only
    NOTHING_INGESTED = 9  # `etl export-ids` on a database no ingest has loaded
    SOURCE_MISMATCH = 10  # the database holds a sync of a different dataset; nothing fetched
    INCOMPLETE = 11  # every shard done, yet fewer events than the source states
    FINDINGS = 12  # a check found something: rollup differences, anomalies, breaches
    THRESHOLDS = 13  # `etl anomalies`: thresholds (file or benchmark service) unavailable
    DESTINATION_AUTH = 14  # a push destination refused its key (401/403)
    DESTINATION = 15  # a push destination kept failing after retries
    TEMPFAIL = 75  # task mode: a temporary failure, retry the task (sysexits EX_TEMPFAIL)


# In task mode (`etl ingest --shard-count`), the failures a retry can cure exit TEMPFAIL, so
# an orchestrator's retry policy tells them from the ones it cannot (auth, config, a different
# dataset, incomplete data): stopped, the API or the database failing, the share's lock held.
RETRY_IN_TASK = frozenset({ExitCode.PARTIAL, ExitCode.UPSTREAM, ExitCode.DATABASE, ExitCode.LOCKED})


def task_exit_code(code: int) -> int:
    """The exit code of a task for ``code``: TEMPFAIL when a retry can cure it."""
    return ExitCode.TEMPFAIL if code in RETRY_IN_TASK else code


# One line each, for `etl --help` (README.md's table says the same at more length).
EXIT_MEANINGS: dict[int, str] = {
    ExitCode.OK: "success",
    ExitCode.INTERNAL: "internal error (a bug: please report it)",
    ExitCode.CONFIG: "bad flag, env var, .env, URL or unwritable path",
    ExitCode.PARTIAL: "stopped (signal or --max-runtime); progress saved, rerun resumes",
    ExitCode.AUTH: "the API key was rejected",
    ExitCode.UPSTREAM: "the API kept failing or cannot be reached",
    ExitCode.DATABASE: "PostgreSQL unreachable or failing",
    ExitCode.LOCKED: "another etl ingest holds this database's lock",
    ExitCode.DEGRADED: "etl health: degraded",
    ExitCode.NOTHING_INGESTED: "etl export-ids: nothing has been ingested there",
    ExitCode.SOURCE_MISMATCH: "etl ingest: the database holds a different dataset's sync",
    ExitCode.INCOMPLETE: "etl ingest: every shard done, yet fewer events than the source states",
    ExitCode.FINDINGS: "etl rollups --verify / etl anomalies: something was found",
    ExitCode.THRESHOLDS: "etl anomalies: the thresholds file or service failed",
    ExitCode.DESTINATION_AUTH: "etl push: the destination (Databox) refused its API key",
    ExitCode.DESTINATION: "etl push: the destination kept failing; rerun resumes",
    ExitCode.TEMPFAIL: "etl ingest as a task: a temporary failure (3, 5, 6 or 7), retry it",
}


class EtlError(Exception):
    exit_code: int = ExitCode.INTERNAL


class ConfigError(EtlError):
    exit_code = ExitCode.CONFIG


class SourceError(EtlError):
    exit_code = ExitCode.UPSTREAM


class AuthError(SourceError):
    exit_code = ExitCode.AUTH


class TransientSourceError(SourceError):
    pass


class Unreachable(TransientSourceError):
    """No connection could be made: at start-up a few tries, mid-run full patience."""


class RateLimited(TransientSourceError):
    def __init__(self, message: str, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class CursorExpired(TransientSourceError):
    pass


class DecodeError(TransientSourceError):
    """The body is not a usable page: invalid or truncated JSON, or no ``data`` array."""


class StreamTokenError(SourceError):
    pass


class PermanentSourceError(SourceError):
    pass


class BrokenPage(PermanentSourceError):
    """A response that arrives but cannot be used, however often it is asked (invalid JSON,
    or larger than ``--max-response-mb``). The run re-asks that range with smaller pages, down
    to the single record, whose raw bytes go to quarantine; ``body`` is what arrived."""

    def __init__(
        self,
        message: str,
        body: bytes = b"",
        *,
        after: tuple[int, str] | None = None,
        cursor: str | None = None,
    ) -> None:
        super().__init__(message)
        self.body = body
        # where the page's last record stands (ts_ms, id) and a cursor just past it, when the
        # broken bytes still tell: a one-record page can then be stepped over
        self.after = after
        self.cursor = cursor


class ResponseTooLarge(BrokenPage):
    """A response over the size cap: refused after reading at most the cap."""


class SinkError(EtlError):
    exit_code = ExitCode.DATABASE


class StoppedInOutage(SinkError):
    """The run was stopped while the database was unreachable (nothing more written)."""


class LockHeld(EtlError):
    exit_code = ExitCode.LOCKED


class NothingIngested(EtlError):
    exit_code = ExitCode.NOTHING_INGESTED


class SourceMismatch(EtlError):
    exit_code = ExitCode.SOURCE_MISMATCH


class ThresholdsError(EtlError):
    exit_code = ExitCode.THRESHOLDS


class TimestampError(EtlError, ValueError):
    pass


class DestinationError(EtlError):
    """``http_status`` and ``request_id`` of the answer, when there was one."""

    exit_code = ExitCode.DESTINATION

    def __init__(
        self, message: str, *, http_status: int | None = None, request_id: str | None = None
    ) -> None:
        super().__init__(message)
        self.http_status = http_status
        self.request_id = request_id


class DestinationAuthError(DestinationError):
    exit_code = ExitCode.DESTINATION_AUTH


class DestinationTransient(DestinationError):
    def __init__(
        self,
        message: str,
        *,
        retry_after_s: float | None = None,
        http_status: int | None = None,
        request_id: str | None = None,
    ) -> None:
        super().__init__(message, http_status=http_status, request_id=request_id)
        self.retry_after_s = retry_after_s


class DestinationRejected(DestinationError):
    """The destination refused the request (4xx): ``errors`` holds its envelope's items."""

    def __init__(
        self,
        message: str,
        *,
        errors: list[dict[str, object]] | None = None,
        http_status: int | None = None,
        request_id: str | None = None,
    ) -> None:
        super().__init__(message, http_status=http_status, request_id=request_id)
        self.errors = errors or []
