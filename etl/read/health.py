"""What makes a sync unhealthy, judged from a status snapshot (`etl health`, `etl serve`'s
``/health``): the last run failed or ended incomplete, or a running run stopped beating."""

from __future__ import annotations

from dataclasses import dataclass

from etl.fmt import human_duration
from etl.read.views import StatusSnapshot


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    ok: bool
    detail: str  # when not ok: the text named in "degraded: ..."


def run_checks(snapshot: StatusSnapshot | None, *, stale_after_s: float) -> list[Check]:
    """The last run's state and the freshness of a running run's heartbeat."""
    run = snapshot.run if snapshot is not None else None
    if snapshot is None or run is None:
        return [Check("last_run", True, "no ingest has run yet")]
    if run.status in ("failed", "incomplete"):  # incomplete: short of the stated total
        why = run.error or "no error recorded"
        return [Check("last_run", False, f"run {run.run_id} {run.status}: {why}")]
    checks = [Check("last_run", True, f"run {run.run_id} {run.status}")]
    age = snapshot.heartbeat_age_s
    if run.status == "running" and age is not None:
        if age > stale_after_s:
            detail = f"run {run.run_id} stalled (no heartbeat for {human_duration(age)})"
            checks.append(Check("heartbeat", False, detail))
        else:
            checks.append(Check("heartbeat", True, f"{human_duration(age)} ago"))
    return checks
