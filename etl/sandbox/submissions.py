"""``POST /api/v1/submissions`` (text/plain ids or JSON ``{ids, githubRepoUrl}``) and ``GET``.

At most ``max_submissions`` per key; every POST counts, even a failing one. The response is
the spec's, plus ``correct`` (distinct dataset ids), ``missing`` (dataset ids not sent),
``unknown`` (ids not in the dataset) and ``duplicates`` (repeats). Ids are checked in O(1)
each (an id maps back to its event), so 3M ids take a few seconds, off the event loop.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid

import msgspec
from aiohttp import web

from etl.sandbox import responses
from etl.sandbox.dataset import Dataset
from etl.sandbox.state import State


def check_ids(ds: Dataset, ids: list[str], live: int) -> dict[str, int]:
    seen = bytearray(ds.total(live))
    correct = unknown = duplicates = 0
    for raw in ids:
        p = ds.lookup(raw.strip().lower(), live)
        if p is None:
            unknown += 1
        elif seen[p]:
            duplicates += 1
        else:
            seen[p] = 1
            correct += 1
    return {
        "correct": correct,
        "missing": ds.total(live) - correct,
        "unknown": unknown,
        "duplicates": duplicates,
    }


def _parse(body: bytes, content_type: str, query_repo: str | None) -> tuple[list[str], str | None]:
    if "json" in content_type:
        obj = msgspec.json.decode(body)
        if not isinstance(obj, dict):
            raise ValueError("body must be a JSON object")
        ids = obj.get("ids")
        repo = obj.get("githubRepoUrl") or query_repo
        if isinstance(ids, str):
            lines = ids.splitlines()
        elif isinstance(ids, list) and all(isinstance(x, str) for x in ids):
            lines = list(ids)
        else:
            raise ValueError(
                'Request body must contain "ids" (a newline-separated string or a list)'
            )
        return [x for x in lines if x.strip()], repo if isinstance(repo, str) else None
    text = body.decode("utf-8", "replace")
    return [x for x in text.splitlines() if x.strip()], query_repo


async def submit(state: State, request: web.Request, api_key: str) -> web.Response:
    c = state.config
    state.submission_attempts[api_key] += 1
    if state.submission_attempts[api_key] > c.max_submissions:
        return responses.error(
            403,
            "SUBMISSION_LIMIT_REACHED",
            f"Maximum of {c.max_submissions} submissions reached for this API key",
        )
    body = await request.read()
    try:
        ids, repo = _parse(body, request.content_type, request.query.get("github_repo"))
    except (ValueError, msgspec.DecodeError) as exc:
        return responses.error(400, "INVALID_BODY", str(exc))
    if not repo:
        return responses.error(
            400, "MISSING_GITHUB_REPO", "githubRepoUrl (or ?github_repo=) is required"
        )
    live = state.live()
    counts = await asyncio.to_thread(check_ids, state.dataset, ids, live)
    now = state.now()
    elapsed_ms = int((now - state.first_seen.get(api_key, now)) * 1000)
    number = len(state.submissions.setdefault(api_key, [])) + 1
    remaining = max(0, c.max_submissions - state.submission_attempts[api_key])
    secs = round(elapsed_ms / 1000)
    data: dict[str, object] = {
        "submissionId": str(uuid.uuid4()),
        "eventCount": len(ids),
        "githubRepoUrl": repo,
        "submittedAt": _iso(now),
        "timeToSubmit": {
            "ms": elapsed_ms,
            "seconds": secs,
            "minutes": round(elapsed_ms / 60_000, 1),
            "formatted": f"{secs // 60}m {secs % 60}s",
        },
        "submissionNumber": number,
        "remainingSubmissions": remaining,
        **counts,
    }
    state.submissions[api_key].append(data)
    return responses.json_response(
        {
            "success": True,
            "data": data,
            "message": f"Submission #{number} received with {len(ids):,} event IDs. "
            f"{remaining} submissions remaining.",
        }
    )


def list_submissions(state: State, api_key: str) -> web.Response:
    items = state.submissions.get(api_key, [])
    return responses.json_response(
        {
            "success": True,
            "data": items,
            "meta": {"total": len(items), "requestId": responses.request_id()},
        }
    )


def _iso(now: float) -> str:
    text = dt.datetime.fromtimestamp(now, dt.UTC).isoformat(timespec="milliseconds")
    return text.replace("+00:00", "Z")
