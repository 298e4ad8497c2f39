"""Verifying accepted ingestions: their counts and rejected records, at little request cost.

A 200 only means *accepted*; processing is asynchronous. A round lists the dataset's
ingestions (newest first, 100 a page: one request covers many chunks) and asks one by one
only for those the list did not show complete. Counts go to ``push_ingestions`` and the
delivery rows; each rejected record is stored with the API's reason (``records[i]`` in an
error's ``field`` names it; a count without reasons is stored as such). The final round
waits (up to ``verify_wait_s``) for ingestions still processing.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

from etl.errors import DestinationAuthError, DestinationError
from etl.push import store
from etl.push.datasets import DatasetSpec
from etl.push.log import PushDelivery

if TYPE_CHECKING:
    from etl.push.pusher import Pusher

PAGE = 100
MAX_SINGLE_LOOKUPS = 20  # per round: the rest waits for the next one


def counts_of(body: dict[str, Any]) -> tuple[int, int, int, int] | None:
    """(received, appended, rejected, overwritten) of a completed ingestion, else None."""
    metrics = body.get("metrics")
    m = metrics.get("ingestionMetrics") if isinstance(metrics, dict) else None
    if not isinstance(m, dict):
        return None
    try:
        return (
            int(m.get("receivedRecordsCount", 0)),
            int(m.get("appendedRecordsCount", 0)),
            int(m.get("rejectedRecordsCount", 0)),
            int(m.get("overwrittenRecordsCount", 0)),
        )
    except (TypeError, ValueError):
        return None


def rejects_of(body: dict[str, Any], keys: list[str], rejected: int) -> list[store.Reject]:
    out: list[store.Reject] = []
    errors = body.get("errors")
    for item in errors if isinstance(errors, list) else []:
        if not isinstance(item, dict):
            continue
        field = item.get("field")
        key = None
        if isinstance(field, str) and field.startswith("records["):
            try:
                i = int(field[len("records[") : field.index("]")])
                key = keys[i] if 0 <= i < len(keys) else None
            except ValueError:
                key = None
        out.append(
            store.Reject(
                key,
                None if item.get("code") is None else str(item.get("code")),
                str(item.get("message") or "rejected"),
                None if field is None else str(field),
            )
        )
    if rejected > len(out):
        missing = rejected - len(out)
        out.append(
            store.Reject(None, None, f"{missing} record(s) rejected without a reason given", None)
        )
    return out


class Verifier:
    def __init__(self, pusher: Pusher) -> None:
        self.p = pusher

    async def verify(self, spec: DatasetSpec, remote: str, *, final: bool) -> None:
        p = self.p
        p.since_verify = 0
        open_ = await store.open_ingestions(p.conn, spec.name)
        deadline = p.clock.now() + p.options.verify_wait_s
        while open_:
            try:
                found = await self._lookup(remote, open_)
            except DestinationAuthError:
                raise
            except DestinationError as exc:  # verification is retried at the next round
                p.message(f"{spec.name}: verifying ingestions failed for now: {exc}")
                found = {}
            if found:  # one transaction per round
                async with p.conn.transaction():
                    for iid, body in found.items():
                        await self._record(spec, iid, body, open_.pop(iid))
            if not final or not open_:
                break
            if p.clock.now() >= deadline:
                p.counters.unverified += len(open_)
                p.message(
                    f"{spec.name}: {len(open_)} ingestion(s) still unverified; the next "
                    "`etl push` checks them again"
                )
                break
            await p.clock.sleep(1.0)

    async def _lookup(self, remote: str, open_: dict[str, list[str]]) -> dict[str, dict[str, Any]]:
        p = self.p
        found: dict[str, dict[str, Any]] = {}
        pages = len(open_) // PAGE + 1
        for page in range(1, pages + 1):
            items = await p.call(p.client.ingestions, remote, page, PAGE)
            for item in items:
                iid = item.get("ingestionId")
                if iid in open_ and counts_of(item) is not None:
                    found[str(iid)] = item
            if len(items) < PAGE:
                break
        singles = [i for i in open_ if i not in found][:MAX_SINGLE_LOOKUPS]
        for iid in singles:
            body = await p.call(p.client.ingestion, remote, iid)
            if counts_of(body) is not None:
                found[iid] = body
        return found

    async def _record(
        self, spec: DatasetSpec, iid: str, body: dict[str, Any], keys: list[str]
    ) -> None:
        p = self.p
        counts = counts_of(body)
        assert counts is not None
        received, appended, rejected, overwritten = counts
        items = rejects_of(body, keys, rejected) if rejected else []
        await store.verified(p.conn, spec.name, iid, counts, items)
        c = p.counters
        c.verified += 1
        c.appended += appended
        c.overwritten += overwritten
        c.rejected += rejected
        if rejected:
            p.message(f"{spec.name}: ingestion {iid}: {rejected} record(s) rejected")
        p.emit(
            PushDelivery(
                destination=p.destination,
                dataset=spec.name,
                sent_at=dt.datetime.now(dt.UTC),
                duration_ms=0.0,
                rows=received,
                columns=spec.column_names,
                attempt=0,
                http_status=200,
                request_id=None,
                ingestion_id=iid,
                accepted=appended + overwritten,
                rejected=rejected,
                success=rejected == 0,
                error=None if not rejected else f"{rejected} record(s) rejected",
                event="verified",
            )
        )
