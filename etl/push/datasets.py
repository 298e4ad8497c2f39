"""What can be pushed: one ``DatasetSpec`` per dataset, its columns, key and SQL.

A *raw* dataset (``kind="events"``) sends loaded events, one record per event, keyed by
``id``; its outbox rows list the new events of each batch. An *aggregate* recomputes whole
buckets (an hour or a day) from ``events`` for every bucket a batch touched and sends them
again: keyed by the bucket (and the event type), a re-sent row overwrites the stored one.
Values are JSON strings, numbers and booleans only (Databox columns are flat); times are
ISO-8601 UTC strings, ratios are rounded to 4 decimals and 0 when the denominator is 0.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from etl.errors import ConfigError

Kind = Literal["events", "aggregate"]
Bucket = Literal["hour", "day"]


@dataclass(frozen=True, slots=True)
class Column:
    name: str
    type: Literal["string", "number", "datetime", "date"]
    meaning: str


@dataclass(frozen=True, slots=True)
class DatasetSpec:
    name: str
    title: str  # the destination's dataset title
    kind: Kind
    primary_keys: tuple[str, ...]
    columns: tuple[Column, ...]
    # raw: $1 = uuid[] of events; aggregate: $1, $2 = [lo, hi) in whole buckets.
    # Every query returns the columns in ``columns`` order.
    sql: str
    bucket: Bucket | None = None

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)


_HOUR = "to_char(occurred_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:00:00\"Z\"')"
_DAY = "to_char(occurred_at AT TIME ZONE 'UTC', 'YYYY-MM-DD')"
_RANGE = "occurred_at >= $1 AND occurred_at < $2"


def _ratio(num: str, den: str) -> str:
    return f"CASE WHEN {den} = 0 THEN 0 ELSE round({num}::numeric / {den}, 4)::float8 END"


EVENTS = DatasetSpec(
    name="events",
    title="etl events",
    kind="events",
    primary_keys=("id",),
    columns=(
        Column("id", "string", "the event's id (uuid): the key"),
        Column("occurred_at", "datetime", "when it happened, UTC, ISO-8601"),
        Column("type", "string", "event type: page_view, click, purchase, error, …"),
        Column("name", "string", "event name as sent by the source ('' when none)"),
        Column("user_id", "string", "the user (uuid; '' when unknown)"),
        Column("session_id", "string", "the session (uuid; '' when unknown)"),
        Column("page", "string", "properties.page ('' when absent)"),
        Column("device_type", "string", "session.deviceType: mobile, tablet, desktop ('')"),
        Column("browser", "string", "session.browser ('' when absent)"),
    ),
    sql="""
SELECT id::text, to_char(occurred_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'),
       type, coalesce(name, ''), coalesce(user_id::text, ''), coalesce(session_id::text, ''),
       coalesce(properties->>'page', ''), coalesce(session->>'deviceType', ''),
       coalesce(session->>'browser', '')
FROM events WHERE id = ANY($1::uuid[])
""",
)

HOURLY_EVENT_COUNTS = DatasetSpec(
    name="hourly_event_counts",
    title="etl hourly event counts",
    kind="aggregate",
    bucket="hour",
    primary_keys=("hour", "event_type"),
    columns=(
        Column("hour", "datetime", "start of the UTC hour: a key"),
        Column("event_type", "string", "event type: a key"),
        Column("events", "number", "events of that type in that hour"),
        Column("users", "number", "distinct users with such an event in that hour"),
    ),
    sql=f"""
SELECT {_HOUR} AS hour, type, count(*)::int, count(DISTINCT user_id)::int
FROM events WHERE {_RANGE} GROUP BY 1, 2
""",
)

DAILY_ACTIVE_USERS = DatasetSpec(
    name="daily_active_users",
    title="etl daily active users",
    kind="aggregate",
    bucket="day",
    primary_keys=("day",),
    columns=(
        Column("day", "date", "the UTC day: the key"),
        Column("active_users", "number", "distinct users with at least one event"),
        Column("sessions", "number", "distinct sessions"),
        Column("events", "number", "events that day"),
    ),
    sql=f"""
SELECT {_DAY}, count(DISTINCT user_id)::int, count(DISTINCT session_id)::int, count(*)::int
FROM events WHERE {_RANGE} GROUP BY 1
""",
)

PURCHASES_HOURLY = DatasetSpec(
    name="purchases_hourly",
    title="etl purchases per hour",
    kind="aggregate",
    bucket="hour",
    primary_keys=("hour",),
    columns=(
        Column("hour", "datetime", "start of the UTC hour: the key"),
        Column("purchases", "number", "purchase events in that hour"),
        Column("buyers", "number", "distinct users who purchased in that hour"),
    ),
    sql=f"""
SELECT {_HOUR}, count(*) FILTER (WHERE type = 'purchase')::int,
       count(DISTINCT user_id) FILTER (WHERE type = 'purchase')::int
FROM events WHERE {_RANGE} GROUP BY 1
""",
)

CONVERSION_DAILY = DatasetSpec(
    name="conversion_daily",
    title="etl click to purchase conversion per day",
    kind="aggregate",
    bucket="day",
    primary_keys=("day",),
    columns=(
        Column("day", "date", "the UTC day: the key"),
        Column("clicks", "number", "click events"),
        Column("purchases", "number", "purchase events"),
        Column("conversion_rate", "number", "purchases / clicks (4 decimals; 0 without clicks)"),
    ),
    sql=f"""
SELECT day, clicks, purchases, {_ratio("purchases", "clicks")}
FROM (SELECT {_DAY} AS day, count(*) FILTER (WHERE type = 'click')::int AS clicks,
             count(*) FILTER (WHERE type = 'purchase')::int AS purchases
      FROM events WHERE {_RANGE} GROUP BY 1) AS d
""",
)

ERROR_SHARE_DAILY = DatasetSpec(
    name="error_share_daily",
    title="etl error share per day",
    kind="aggregate",
    bucket="day",
    primary_keys=("day",),
    columns=(
        Column("day", "date", "the UTC day: the key"),
        Column("errors", "number", "error events"),
        Column("events", "number", "all events"),
        Column("error_share", "number", "errors / events (4 decimals)"),
    ),
    sql=f"""
SELECT day, errors, n, {_ratio("errors", "n")}
FROM (SELECT {_DAY} AS day, count(*) FILTER (WHERE type = 'error')::int AS errors,
             count(*)::int AS n
      FROM events WHERE {_RANGE} GROUP BY 1) AS d
""",
)

CATALOGUE: dict[str, DatasetSpec] = {
    s.name: s
    for s in (
        EVENTS,
        HOURLY_EVENT_COUNTS,
        DAILY_ACTIVE_USERS,
        PURCHASES_HOURLY,
        CONVERSION_DAILY,
        ERROR_SHARE_DAILY,
    )
}


def spec(name: str) -> DatasetSpec:
    """The dataset called ``name``; an unknown name lists the valid ones (exit 2)."""
    found = CATALOGUE.get(name)
    if found is None:
        raise ConfigError(f"unknown dataset {name!r}: one of {', '.join(CATALOGUE)}")
    return found


def specs(names: list[str] | tuple[str, ...]) -> list[DatasetSpec]:
    """``names`` resolved (``all`` means the whole catalogue), without repeats."""
    if "all" in names:
        return list(CATALOGUE.values())
    return [spec(n) for n in dict.fromkeys(names)]
