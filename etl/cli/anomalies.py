"""`etl anomalies`: volume anomalies and threshold breaches; exit 12 when any is found."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from etl.cli.db import fail
from etl.cli.options import AsJson, DatabaseUrl, DataDir
from etl.cli.read import Types, Until, echo_json, no_ingest, run_read
from etl.cli.root import app
from etl.errors import ConfigError, EtlError, ExitCode
from etl.settings import AnomalySettings

_DEFAULTS = AnomalySettings()  # the detection's defaults (etl.settings)


@app.command()
def anomalies(
    data_dir: DataDir,
    database_url: DatabaseUrl = None,
    types: Types = None,
    bucket: Annotated[str, typer.Option("--bucket", "-b", help="hour or day (UTC).")] = "hour",
    until: Until = None,
    training_days: Annotated[
        int, typer.Option("--training-days", min=1, max=365)
    ] = _DEFAULTS.training_days,
    detection_days: Annotated[
        int, typer.Option("--detection-days", min=1, max=60)
    ] = _DEFAULTS.detection_days,
    sensitivity: Annotated[
        float, typer.Option("--sensitivity", min=0.1, max=100)
    ] = _DEFAULTS.sensitivity,
    min_points: Annotated[
        int, typer.Option("--min-training-points", min=2, max=10_000)
    ] = _DEFAULTS.min_training_points,
    thresholds: Annotated[
        Path | None, typer.Option("--thresholds", help="JSON file of threshold rules.")
    ] = None,
    thresholds_url: Annotated[
        str | None,
        typer.Option(
            "--thresholds-url",
            envvar="ETL_THRESHOLDS_URL",
            help="Benchmark service answering the rules as JSON.",
        ),
    ] = None,
    as_json: AsJson = False,
) -> None:
    """Volume anomalies per type (z-score of each bucket of the detection window against
    the training window before it) and threshold rules per day. Stored with the run.

    Exit 0: nothing found; 12: anomalies or breaches found; 13: the thresholds could not be
    read (file or service down or garbage); 6: database failure; 2: bad options.
    """
    from etl.anomaly import Settings
    from etl.read import params

    try:
        if bucket not in ("hour", "day"):
            raise ConfigError(f"--bucket must be hour or day, got {bucket!r}")
        if thresholds is not None and thresholds_url:
            raise ConfigError("--thresholds and --thresholds-url exclude each other")
        hi = params.parse_time(until, "--until") if until else None
        settings = Settings(training_days, detection_days, sensitivity, min_points)
    except EtlError as exc:
        raise fail(exc) from None

    async def go(dsn: str) -> object:
        from etl import thresholds as th
        from etl.read.anomalies import find_anomalies

        rules = []
        if thresholds is not None:
            rules = th.from_file(thresholds)
        elif thresholds_url:
            rules = await th.from_url(thresholds_url)
        return await find_anomalies(
            dsn,
            bucket="day" if bucket == "day" else "hour",
            types=tuple(types or ()),
            until=hi,
            settings=settings,
            rules=rules,
        )

    report = run_read(database_url, data_dir, go)
    if report is None:
        typer.echo(no_ingest())
        return
    from etl.read.anomalies import AnomalyReport

    assert isinstance(report, AnomalyReport)
    if as_json:
        echo_json({**_doc(report), "found": report.found})
    else:
        from etl.plain import anomalies_text

        typer.echo(anomalies_text(report))
    if report.found:
        raise typer.Exit(ExitCode.FINDINGS)


def _doc(report: object) -> dict[str, object]:
    from etl.read.jsonable import jsonable

    doc = jsonable(report)
    assert isinstance(doc, dict)
    return doc
