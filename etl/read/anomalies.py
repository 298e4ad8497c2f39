"""`etl anomalies`: z-score volume anomalies and threshold rules over the hourly rollups,
stored with the run that found them.

One call reads ``training_days + detection_days`` of hourly (or daily) counts per type from
``rollup_hourly`` (a few thousand rows), judges them in Python (``etl.anomaly``), and records
the run and every finding in ``anomaly_runs`` / ``anomaly_findings`` in one transaction
(``store=False`` only judges: `etl serve`'s GET /anomalies).
The detection window ends at ``until`` (default: the start of the last bucket with events,
which may still be filling, as Elementary judges only complete buckets).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass

from etl.anomaly import Anomaly, Breach, Rule, Settings, check_rules, detect
from etl.pg import Conn
from etl.read.db import run_query
from etl.read.jsonable import jsonable
from etl.read.series import WIDTH, Bucket, floor, read_series


@dataclass(frozen=True, slots=True)
class AnomalyReport:
    run_id: int | None  # None: judged without storing (`etl serve`'s GET /anomalies)
    window_end: dt.datetime | None
    bucket: str
    settings: Settings
    series_checked: int
    anomalies: tuple[Anomaly, ...]
    breaches: tuple[Breach, ...]

    @property
    def found(self) -> bool:
        return bool(self.anomalies or self.breaches)


async def _run(
    conn: Conn,
    bucket: Bucket,
    types: tuple[str, ...],
    until: dt.datetime | None,
    settings: Settings,
    rules: Sequence[Rule],
    store: bool,
) -> AnomalyReport:
    if until is None:
        last = await conn.fetchval("SELECT max(hour) FROM rollup_hourly")
        # the last bucket with events may still be filling: judge only the ones before it
        until = None if last is None else floor(last, bucket)
    anomalies: list[Anomaly] = []
    breaches: list[Breach] = []
    checked = 0
    if until is not None:
        since = until - dt.timedelta(days=settings.training_days + settings.detection_days)
        data = await read_series(conn, bucket=bucket, types=types, since=since, until=until)
        checked = len(data.series)
        for s in data.series:
            anomalies += detect(s.name, data.buckets, s.values, WIDTH[bucket], settings)
        if rules:
            det_start = until - dt.timedelta(days=settings.detection_days)
            daily = await read_series(conn, bucket="day", since=det_start, until=until)
            days = {
                day: {s.name: s.values[i] for s in daily.series}
                for i, day in enumerate(daily.buckets)
            }
            breaches = check_rules(days, rules)
    run_id = (
        await _store(conn, bucket, until, settings, rules, anomalies, breaches) if store else None
    )
    return AnomalyReport(
        run_id, until, bucket, settings, checked, tuple(anomalies), tuple(breaches)
    )


async def _store(
    conn: Conn,
    bucket: Bucket,
    until: dt.datetime | None,
    settings: Settings,
    rules: Sequence[Rule],
    anomalies: list[Anomaly],
    breaches: list[Breach],
) -> int:
    async with conn.transaction():
        run_id = await conn.fetchval(
            "INSERT INTO anomaly_runs (window_end, settings, anomalies, breaches)"
            " VALUES (coalesce($1, now()), $2::jsonb, $3, $4) RETURNING run_id",
            until,
            json.dumps({**asdict(settings), "bucket": bucket, "rules": jsonable(list(rules))}),
            len(anomalies),
            len(breaches),
        )
        rows = [(run_id, "anomaly", a.series, a.bucket, json.dumps(jsonable(a))) for a in anomalies]
        rows += [(run_id, "breach", b.rule, b.day, json.dumps(jsonable(b))) for b in breaches]
        if rows:
            await conn.executemany(
                "INSERT INTO anomaly_findings (run_id, kind, series, bucket, detail)"
                " VALUES ($1, $2, $3, $4, $5::jsonb)",
                rows,
            )
    return int(run_id)


async def find_anomalies(
    target: Conn | str,
    *,
    bucket: Bucket = "hour",
    types: tuple[str, ...] = (),
    until: dt.datetime | None = None,
    settings: Settings = Settings(),
    rules: Sequence[Rule] = (),
    store: bool = True,
) -> AnomalyReport:
    """Judge the detection window ending at ``until``; store (unless ``store`` is false) and
    return what was found."""
    return await run_query(
        target, "finding anomalies", _run, bucket, types, until, settings, rules, store
    )
