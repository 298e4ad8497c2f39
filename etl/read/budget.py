"""The shared rate budgets (``etl.sharedrate``) as `etl status` shows them: per key
fingerprint and lane, the tasks that took slots lately, the slots per second, and what the
key's limiter has learnt. Two small tables (``rate_budget``, the recent end of
``rate_budget_log`` through its (key_fp, at) index); the key itself is never stored, only its
fingerprint."""

from __future__ import annotations

import json
from typing import Any

from etl.pg import Conn
from etl.read.views import BudgetRow

BUDGET_WINDOW_S = 60.0  # the slots per second and the holders shown: over this much

_BUDGETS_SQL = """
SELECT b.key_fp, b.lane, b.state, extract(epoch FROM clock_timestamp())::float8 - b.updated_at
       AS age_s, l.holder, l.slots
FROM rate_budget b
LEFT JOIN LATERAL (
    SELECT g.holder, sum(g.slots)::bigint AS slots FROM rate_budget_log g
    WHERE g.key_fp = b.key_fp AND g.lane = b.lane
      AND g.at >= extract(epoch FROM clock_timestamp())::float8 - $1
    GROUP BY g.holder
) l ON true
ORDER BY b.key_fp, b.lane, l.slots DESC NULLS LAST, l.holder
"""


def limits(lane: str, state: dict[str, Any]) -> dict[str, Any]:
    """What a lane's limiter has learnt, from its stored state (``etl.sharedrate.dump``)."""
    if lane == "feed":
        cap, window = state.get("cap"), state.get("window_s")
        return {
            "cap": cap,  # starts the hidden throttle accepts per window (None: not met yet)
            "window_s": None if window is None else round(float(window), 2),
            "window_learnt": bool(state.get("window_learned")),
            "pace_per_s": _num(state.get("rate_per_s")),
            "throttled": int(state.get("throttled") or 0),
        }
    window = state.get("learned_window_s") or state.get("window_s")
    return {
        "limit": state.get("limit"),  # requests per window, as the server's headers say
        "window_s": None if window is None else round(float(window), 2),
        "window_learnt": state.get("learned_window_s") is not None,
    }


def _num(value: Any) -> float | None:
    return None if value is None else round(float(value), 3)


async def read_budgets(conn: Conn) -> tuple[BudgetRow, ...]:
    """Every shared budget in this database (empty when none was ever used)."""
    if not await conn.fetchval("SELECT to_regclass('rate_budget') IS NOT NULL"):
        return ()
    heads: dict[tuple[str, str], tuple[float, dict[str, Any]]] = {}
    holders: dict[tuple[str, str], list[tuple[str, int]]] = {}
    for r in await conn.fetch(_BUDGETS_SQL, BUDGET_WINDOW_S):
        key = (r["key_fp"], r["lane"])
        if key not in heads:
            heads[key] = (max(0.0, float(r["age_s"])), _state(r["state"]))
            holders[key] = []
        if r["holder"] is not None:
            holders[key].append((r["holder"], int(r["slots"])))
    return tuple(
        BudgetRow(
            key_fp=fp,
            lane=lane,
            age_s=age,
            holders=tuple(holders[fp, lane]),
            slots_per_s=sum(n for _, n in holders[fp, lane]) / BUDGET_WINDOW_S,
            limits=limits(lane, state),
        )
        for (fp, lane), (age, state) in heads.items()
    )


def _state(text: str) -> dict[str, Any]:
    try:
        state = json.loads(text)
    except ValueError:
        return {}
    return state if isinstance(state, dict) else {}
