"""POST a file of ids to /api/v1/submissions and return the verdict."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import msgspec

from etl.errors import ConfigError, PermanentSourceError
from etl.source.http import Http
from etl.source.responses import raise_for_status


async def submit_ids(http: Http, ids_file: Path, github_repo: str | None) -> dict[str, Any]:
    try:
        body = await asyncio.to_thread(ids_file.read_bytes)
    except OSError as exc:
        raise ConfigError(f"cannot read {ids_file}: {exc.strerror}") from exc
    params = {"github_repo": github_repo} if github_repo else None
    resp = await http.request(
        "POST",
        http.api_url("/submissions"),
        params=params,
        headers={"Content-Type": "text/plain"},
        data=body,
    )
    raise_for_status(resp, "submission")
    try:
        doc = msgspec.json.decode(resp.body)
    except msgspec.DecodeError as exc:
        raise PermanentSourceError("submission: unreadable response") from exc
    if not isinstance(doc, dict):
        raise PermanentSourceError("submission: unexpected response")
    return doc
