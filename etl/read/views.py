"""What the read side returns: plain values (no asyncpg) and their documented JSON forms.

JSON schema of ``snapshot_to_json`` (``"schema": 1``; fields are only ever added)::

    {
      "schema": 1,
      "initialized": bool,            # false: no ingest has run against this database yet
      "taken_at": iso8601,            # the database's clock
      "events": {"loaded": int, "expected": int | null, "percent": float | null,
                 "duplicates": int, "quarantined": int,
                 "posted": int},          # of "loaded": recorded through `etl serve`'s
                                          # POST /events (not from the API, so not in percent)
      "rate": {"now_per_s": float | null, "average_per_s": float | null, "eta_s": float | null},
      "shards": {"total": int, "done": int, "running": int, "pending": int,
                 "items": [{"id": str, "status": str, "events": int,
                            "position": iso8601 | null, "lower": iso8601 | null,
                            "updated_at": iso8601, "heartbeat_at": iso8601 | null}]},
      "run": null | run,               # the running run, else the last one
      "last_load": null | run,         # when "run" ended loading nothing (up to date): the
                                       # newest run that loaded events (its real rate)
      "database": str,                 # where it looked (password redacted), when known
      "streams": [stream],             # declarative sources' streams (`etl sync`), may be []
      "budgets": [budget]              # rate budgets shared by tasks on one key, may be []
    }
    budget = {"key": str,              # the key's fingerprint (HMAC of API and key), never the key
              "lane": "feed|events", "updated_age_s": float,
              "slots_per_s": float,    # starts granted over the last minute, every task
              "holders": [{"holder": "host:pid", "slots": int}],   # the last minute's
              "limits": {...}}         # feed: cap, window_s, window_learnt, pace_per_s,
                                       # throttled; events: limit, window_s, window_learnt
    stream = {"source": str, "stream": str, "table": str, "status": "new|running|succeeded|
              partial|failed", "rows": int, "quarantined": int, "pages": int,
              "cursor": str | null, "started_at": iso8601 | null, "finished_at": iso8601 | null,
              "updated_at": iso8601, "error": str | null}
    run = {"id": int, "status": "running|succeeded|partial|failed|incomplete",
           "strategy": str, "started_at": iso8601, "ended_at": iso8601 | null,
           "heartbeat_at": iso8601, "heartbeat_age_s": float, "received": int,
           "inserted": int, "duplicates": int, "quarantined": int, "out_of_range": int,
           "requests": int, "retries": int, "rate_limited": int, "cursor_resets": int,
           "pages": int, "error": str | null, "host": str | null, "pid": int | null}
    # received = inserted + duplicates + quarantined + out_of_range

``expected`` comes from the run's ``extra.expected_total`` (the total the API reported); it is
null when unknown. ``rate.now_per_s`` is over the last ``RATE_WINDOW_S`` of the running run's
deliveries; ``average_per_s`` is the run's inserted rows over its duration (``last_load``'s
when the last run loaded nothing).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

SCHEMA = 1
NO_INGEST = "no ingest has run against this database yet"


def no_ingest(where: str) -> str:
    """What status and runs say about a database with no ingest yet, naming the database."""
    return f"no ingest has run against {where} yet" if where else NO_INGEST


RATE_WINDOW_S = 30.0


@dataclass(frozen=True, slots=True)
class ShardRow:
    shard_id: str
    status: str
    events: int
    position: dt.datetime | None  # time of the last committed event
    updated_at: dt.datetime
    heartbeat_at: dt.datetime | None
    lower: dt.datetime | None = None  # the slice's older bound (None: down to the oldest)


@dataclass(frozen=True, slots=True)
class RunRow:
    run_id: int
    status: str
    strategy: str
    started_at: dt.datetime
    ended_at: dt.datetime | None
    heartbeat_at: dt.datetime
    received: int
    inserted: int
    duplicates: int
    quarantined: int
    requests: int
    retries: int
    rate_limited: int
    cursor_resets: int
    pages: int
    out_of_range: int
    expected_total: int | None
    error: str | None
    host: str | None
    pid: int | None

    @property
    def duration_s(self) -> float:
        """Start to end (or to the last heartbeat: when the counters were stored)."""
        end = self.ended_at or self.heartbeat_at
        return max(0.0, (end - self.started_at).total_seconds())


@dataclass(frozen=True, slots=True)
class StreamRow:
    """One stream of a declarative source (``stream_state``)."""

    source: str
    stream: str
    table: str
    status: str
    rows: int
    quarantined: int
    pages: int
    cursor: str | None
    started_at: dt.datetime | None
    finished_at: dt.datetime | None
    updated_at: dt.datetime
    error: str | None


@dataclass(frozen=True, slots=True)
class BudgetRow:
    """One lane of a rate budget shared by the tasks on one API key (``etl.sharedrate``)."""

    key_fp: str  # the budget's name: a fingerprint of API and key, never the key
    lane: str  # "feed" or "events"
    age_s: float  # since a task last changed it
    holders: tuple[tuple[str, int], ...]  # (host:pid, slots) in the last minute, most first
    slots_per_s: float  # granted over the last minute
    limits: dict[str, Any]  # what its limiter has learnt (etl.read.budget.limits)


@dataclass(frozen=True, slots=True)
class StatusSnapshot:
    taken_at: dt.datetime
    initialized: bool
    loaded: int = 0  # ingested (progress counters) + posted
    duplicates: int = 0
    quarantined: int = 0
    shards: tuple[ShardRow, ...] = ()
    run: RunRow | None = None
    rate_now_per_s: float | None = None
    # when the last run finished without loading anything (up to date): the newest run that
    # did load, whose rate and duration are the real figures of a load
    last_load: RunRow | None = None
    streams: tuple[StreamRow, ...] = ()
    posted: int = 0  # of ``loaded``: recorded through `etl serve`'s POST /events
    budgets: tuple[BudgetRow, ...] = ()  # rate budgets shared by tasks (etl.sharedrate)

    @property
    def ingested(self) -> int:
        """Loaded from the API (what ``expected_total`` is compared with)."""
        return self.loaded - self.posted

    @property
    def expected_total(self) -> int | None:
        return self.run.expected_total if self.run else None

    @property
    def percent(self) -> float | None:
        total = self.expected_total
        return min(100.0, 100.0 * self.ingested / total) if total else None

    @property
    def rate_avg_per_s(self) -> float | None:
        load = self.load
        if load is None or load.duration_s <= 0:
            return None
        return load.inserted / load.duration_s

    @property
    def eta_s(self) -> float | None:
        total = self.expected_total
        if self.run is None or self.run.status != "running" or not total:
            return None
        rate = self.rate_now_per_s or self.rate_avg_per_s
        return max(0, total - self.ingested) / rate if rate else None

    @property
    def load(self) -> RunRow | None:
        """The run whose rate and duration to show: the last one, or when it loaded nothing
        (an up-to-date incremental run), the newest that did."""
        return self.last_load or self.run

    @property
    def heartbeat_age_s(self) -> float | None:
        return (self.taken_at - self.run.heartbeat_at).total_seconds() if self.run else None

    def shard_count(self, status: str) -> int:
        return sum(1 for s in self.shards if s.status == status)


def _iso(value: dt.datetime | None) -> str | None:
    return value.astimezone(dt.UTC).isoformat() if value is not None else None


def _round(value: float | None, digits: int = 1) -> float | None:
    return None if value is None else round(value, digits)


def run_to_json(run: RunRow, *, taken_at: dt.datetime | None = None) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "id": run.run_id,
        "status": run.status,
        "strategy": run.strategy,
        "started_at": _iso(run.started_at),
        "ended_at": _iso(run.ended_at),
        "heartbeat_at": _iso(run.heartbeat_at),
        "duration_s": round(run.duration_s, 1),
    }
    if taken_at is not None:
        doc["heartbeat_age_s"] = round((taken_at - run.heartbeat_at).total_seconds(), 1)
    from etl.models import RUN_COUNTERS  # here: etl.models pulls msgspec, `etl --help` need not

    doc.update({k: getattr(run, k) for k in RUN_COUNTERS})
    doc.update(error=run.error, host=run.host, pid=run.pid)
    return doc


def snapshot_to_json(snapshot: StatusSnapshot) -> dict[str, Any]:
    """The documented, versioned JSON form (see the module docstring)."""
    s = snapshot
    return {
        "schema": SCHEMA,
        "initialized": s.initialized,
        "taken_at": _iso(s.taken_at),
        "events": {
            "loaded": s.loaded,
            "expected": s.expected_total,
            "percent": _round(s.percent, 2),
            "duplicates": s.duplicates,
            "quarantined": s.quarantined,
            "posted": s.posted,
        },
        "rate": {
            "now_per_s": _round(s.rate_now_per_s),
            "average_per_s": _round(s.rate_avg_per_s),
            "eta_s": _round(s.eta_s),
        },
        "shards": {
            "total": len(s.shards),
            **{status: s.shard_count(status) for status in ("done", "running", "pending")},
            "items": [
                {
                    "id": r.shard_id,
                    "status": r.status,
                    "events": r.events,
                    "position": _iso(r.position),
                    "lower": _iso(r.lower),
                    "updated_at": _iso(r.updated_at),
                    "heartbeat_at": _iso(r.heartbeat_at),
                }
                for r in s.shards
            ],
        },
        "run": run_to_json(s.run, taken_at=s.taken_at) if s.run else None,
        "last_load": run_to_json(s.last_load) if s.last_load else None,
        "streams": [stream_to_json(r) for r in s.streams],
        "budgets": [budget_to_json(b) for b in s.budgets],
    }


def budget_to_json(b: BudgetRow) -> dict[str, Any]:
    return {
        "key": b.key_fp,
        "lane": b.lane,
        "updated_age_s": round(b.age_s, 1),
        "slots_per_s": round(b.slots_per_s, 3),
        "holders": [{"holder": h, "slots": n} for h, n in b.holders],
        "limits": b.limits,
    }


def stream_to_json(r: StreamRow) -> dict[str, Any]:
    return {
        "source": r.source,
        "stream": r.stream,
        "table": r.table,
        "status": r.status,
        "rows": r.rows,
        "quarantined": r.quarantined,
        "pages": r.pages,
        "cursor": r.cursor,
        "started_at": _iso(r.started_at),
        "finished_at": _iso(r.finished_at),
        "updated_at": _iso(r.updated_at),
        "error": r.error,
    }
