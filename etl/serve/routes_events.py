"""``POST /events`` (record events the API never had) and ``GET /events/{user_id}``.

``POST /events`` takes one event object, a JSON array of them, or ``{"events": [...]}``, in
the API's own event shape, and runs them through the ingest's decode, validation and
timestamp normalization. A request is all or nothing: if any event is invalid, nothing of it
is inserted, the invalid events are quarantined with their reason (as an ingest would) and
the answer is 400 naming each one's index, field and reason. Otherwise every event is
inserted exactly once by id: 201 when at least one is new, 200 when all were already present
(a retried request is harmless). An event a blocking purge removed (`etl purge` or
``DELETE /series/{type}`` without ``allow_reload``) is not recorded again: it is reported as
``purged``, and a request whose every event is purged answers 409 ``purged``. Concurrent
requests are inserted together, one transaction at a time (``etl.serve.postgroup``).
"""

from __future__ import annotations

import re
from typing import Any

import msgspec
from aiohttp import web

from etl.errors import TransientSourceError
from etl.serve.app import CTX
from etl.serve.envelope import ApiError, bad_request
from etl.sink.single import InsertResult, insert_events
from etl.source.decode import decode_page
from etl.sources.events import RawEvent
from etl.transform import transform_page

_FIELDS = re.compile(r"\b(id|timestamp|type|name|sessionId|userId|properties|session)\b")


def _field_of(reason: str) -> str:
    m = _FIELDS.search(reason)
    return m.group(1) if m else "event"


def _items(doc: object) -> list[Any]:
    if isinstance(doc, dict) and isinstance(doc.get("events"), list):
        return list(doc["events"])
    if isinstance(doc, dict):
        return [doc]
    if isinstance(doc, list):
        return doc
    raise bad_request('body must be an event object, an array of events or {"events": [...]}')


def _decode(body: bytes, cap: int) -> list[RawEvent]:
    try:
        items = _items(msgspec.json.decode(body))
    except msgspec.DecodeError as exc:
        raise bad_request(f"body is not valid JSON: {exc}") from exc
    if not items:
        raise bad_request("no events in the body")
    if len(items) > cap:
        raise ApiError(413, "payload_too_large", f"at most {cap} events per request")
    envelope = msgspec.json.encode({"data": items, "hasMore": False})
    try:
        return decode_page(envelope).events
    except TransientSourceError as exc:  # cannot happen for a list we built; say so plainly
        raise bad_request(f"events could not be decoded: {exc}") from exc


def _problems(events: list[RawEvent]) -> list[dict[str, Any]]:
    problems = []
    for index, ev in enumerate(events):
        for q in transform_page([ev]).quarantined:
            problems.append(
                {"index": index, "id": q.event_id, "field": _field_of(q.reason), "reason": q.reason}
            )
    return problems


async def post_events(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    if request.content_type != "application/json":
        raise ApiError(415, "unsupported_media_type", "send the events as application/json")
    events = _decode(await request.read(), ctx.max_events_per_request)
    result = transform_page(events)
    if result.quarantined:
        problems = _problems(events)
        async with ctx.db.connection() as conn:
            await insert_events(conn, [], result.quarantined)
        first = problems[0] if problems else {"field": "event", "reason": "invalid"}
        raise ApiError(
            400,
            "invalid_event",
            f"{len(result.quarantined)} invalid event(s); nothing was recorded "
            f"(first: {first['field']}: {first['reason']})",
            {"field": first["field"], "reason": first["reason"], "events": problems},
        )
    done = await ctx.posts.insert(ctx.db, result.records)
    ids = [r[0] for r in result.records]
    if done.purged and not done.created and not done.present:
        raise ApiError(
            409,
            "purged",
            f"{len(done.purged)} event(s) removed by a purge that blocks reloading; "
            "nothing was recorded",
            {"events": [{"index": k, "id": i} for k, i in enumerate(ids)]},
        )
    doc = {
        "created": len(done.created),
        "present": len(done.present) + result.duplicates,
        "purged": len(done.purged),
        "results": [{"id": i, "status": _status(i, done)} for i in ids],
    }
    if done.created:
        request.app[CTX].data_changed()
    return web.json_response(doc, status=201 if done.created else 200)


def _status(event_id: str, done: InsertResult) -> str:
    if event_id in done.created:
        return "created"
    return "purged" if event_id in done.purged else "present"


def register(app: web.Application) -> None:
    app.router.add_post("/events", post_events)
