"""``GET /api/v1/events`` and ``GET /api/v1/events/{id}``: pages by cursor, filters, chaos."""

from __future__ import annotations

import asyncio
import functools

from aiohttp import web

from etl.sandbox import cursors, paging, responses
from etl.sandbox.dataset import EVENT_TYPES
from etl.sandbox.faults import Plan
from etl.sandbox.state import State
from etl.sandbox.tsformat import Stamp, stamp_for

OFF_LOOP_EVENTS = 1000  # pages this large are rendered off the event loop (real time only)


async def list_events(state: State, request: web.Request, plan: Plan, rid: str) -> web.Response:
    c = state.config
    q = request.query
    type_code: int | None = None
    session: int | None = None
    if "type" in q:
        type_code = EVENT_TYPES.index(q["type"]) if q["type"] in EVENT_TYPES else -1
    if "sessionId" in q:
        found = state.dataset.session_by_id(q["sessionId"])
        session = -1 if found is None else found
    return await serve_page(
        state,
        request,
        plan,
        rid,
        stamp=stamp_for(c),
        by_page=c.timestamp_rule == "page",
        type_code=type_code,
        session=session,
        bounds=None,
    )


async def serve_page(
    state: State,
    request: web.Request,
    plan: Plan,
    rid: str,
    *,
    stamp: Stamp,
    by_page: bool,
    type_code: int | None,
    session: int | None,
    bounds: tuple[int | None, int | None] | None,
    invalid: bool = True,
) -> web.Response:
    """One page of events: shared by ``/events`` and the feed."""
    c, ds = state.config, state.dataset
    now_ms = state.now_ms()
    live = ds.live_count(now_ms)
    limit = paging.parse_limit(request.query.get("limit"), c)
    cursor = None
    if "cursor" in request.query and request.query["cursor"] != "":
        try:
            cursor = cursors.decode(request.query["cursor"], now_ms)
        except cursors.CursorError as exc:
            return responses.error(400, exc.code, exc.message)
    start = paging.start_position(ds, live, cursor)
    end = ds.total(live)
    if bounds is not None:
        since, until = bounds
        inclusive = c.feed_bounds_inclusive
        if until is not None:
            start = max(start, ds.first_at_or_below(until if inclusive else until - 1, live))
        if since is not None:
            end = min(end, ds.first_at_or_below(since - 1 if inclusive else since, live))
    positions: list[int] = []
    has_more = False
    if type_code == -1 or session == -1:
        pass
    else:
        positions, has_more = paging.select(
            ds, live, start, end, limit, type_code=type_code, session=session
        )
    share = c.invalid_events if invalid and not c.unlimited else 0.0
    render = functools.partial(
        state.renderer.events, positions, live, stamp, by_page=by_page, invalid_share=share
    )
    if state.render_off_loop and len(positions) >= OFF_LOOP_EVENTS:
        events = await asyncio.to_thread(render)
    else:
        events = render()
    headers = _chaos(state, plan, events, positions, live, stamp, by_page)
    next_cursor = None
    ttl = c.scaled(c.cursor_ttl)
    if positions and has_more:
        last = positions[-1]
        next_cursor = cursors.encode(
            ds.event_id(ds.j_at(last, live)), ds.ts_at(last, live), now_ms + round(ttl * 1000)
        )
    body = paging.page_body(
        events,
        limit=limit,
        has_more=has_more,
        next_cursor=next_cursor,
        expires=paging.expires_in(ttl),
        total=ds.total(live),
        rid=rid,
    )
    state.stats.events_served += len(events)
    if c.latency_per_page > 0 and not c.unlimited and positions:
        await state.capacity.hold(len(positions), state.sleep)
    return responses.json_response(body, rid=rid, headers=headers)


async def get_event(state: State, event_id: str, rid: str) -> web.Response:
    ds = state.dataset
    live = state.live()
    p = ds.lookup(event_id, live)
    if p is None:
        return responses.error(404, "EVENT_NOT_FOUND", f"Event with id '{event_id}' not found")
    return responses.json_response({"data": ds.event(p, live), "meta": {"requestId": rid}}, rid=rid)


def _chaos(
    state: State,
    plan: Plan,
    events: list[str],
    positions: list[int],
    live: int,
    stamp: Stamp,
    by_page: bool,
) -> dict[str, str]:
    """Poisoned events and missing fields, applied to the rendered page in place; the
    headers that announce them."""
    c, ds = state.config, state.dataset
    headers: dict[str, str] = {}
    if c.poison_events and not c.unlimited:
        for i, p in enumerate(positions):
            if ds.poisoned(ds.j_at(p, live), c.poison_events):
                # a missing comma: no JSON parser reads this page, now or on a retry
                events[i] = events[i].replace('","type"', '" "type"', 1)
    if plan.missing_fields:
        dropped: set[str] = set()
        for i, fields in state.faults.victims(len(positions)):
            p = positions[i]
            ts_text = stamp(i if by_page else ds.j_at(p, live), ds.ts_at(p, live))
            events[i] = state.renderer.generic(p, live, ts_text, drop=fields)
            dropped.update(fields)
        headers["X-Chaos-Applied"] = "missingFields"
        headers["X-Chaos-Description"] = "Missing fields: " + (
            ", ".join(sorted(dropped)) or "none applicable"
        )
    return headers
