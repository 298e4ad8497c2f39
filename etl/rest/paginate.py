"""Paginators as small state machines: from the request just made and its response, the
next request or None (dlt's ``update_state``/``update_request``; singer-sdk's guard).

A ``Request`` is plain data (a URL and its query), so the next one is checkpointed with
the page and a resumed run continues from it. A paginator that hands back the request it
was just given is a loop in the API and an error, not an endless run.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from etl.errors import PermanentSourceError
from etl.rest.spec import Paginator

_LINK = re.compile(r'<([^>]*)>\s*;\s*rel="?([^";,]+)"?')


@dataclass(frozen=True, slots=True)
class Request:
    url: str
    params: tuple[tuple[str, str], ...] = field(default=())

    def to_json(self) -> dict[str, Any]:
        return {"url": self.url, "params": [list(p) for p in self.params]}

    @classmethod
    def from_json(cls, data: Any) -> Request | None:
        if not isinstance(data, dict) or not isinstance(data.get("url"), str):
            return None
        params = data.get("params") or []
        return cls(data["url"], tuple((str(k), str(v)) for k, v in params))

    def with_params(self, **changes: str) -> Request:
        kept = tuple((k, v) for k, v in self.params if k not in changes)
        return Request(self.url, kept + tuple(changes.items()))


def links(header: str | None) -> dict[str, str]:
    return {rel.strip(): url for url, rel in _LINK.findall(header or "")}


def _dig(body: Any, path: str) -> Any:
    node = body
    for part in path.split("."):
        if not isinstance(node, dict):
            return None
        node = node.get(part)
    return node


def first(p: Paginator, request: Request) -> Request:
    if p.type == "offset":
        return request.with_params(**{p.offset_param: "0", p.limit_param: str(p.limit)})
    if p.type == "page_number":
        changes = {p.param: str(p.start)}
        if p.size_param:
            changes[p.size_param] = str(p.limit)
        return request.with_params(**changes)
    return request


def next_request(
    p: Paginator, request: Request, headers: dict[str, str], body: Any, count: int
) -> Request | None:
    """The request after ``request`` (whose response had ``count`` records), or None."""
    following = _next(p, request, headers, body, count)
    if following is not None and following == request:
        raise PermanentSourceError(f"the {p.type} paginator returned the same page again")
    return following


def _next(
    p: Paginator, request: Request, headers: dict[str, str], body: Any, count: int
) -> Request | None:
    if p.type == "link_header":
        url = links(headers.get("link")).get(p.rel)
        return Request(url) if url else None
    if p.type == "cursor":
        cursor = _dig(body, p.cursor_path)
        if cursor in (None, "") or count == 0:
            return None
        return request.with_params(**{p.param: str(cursor)})
    if p.type == "offset":
        if count < p.limit:
            return None
        offset = int(dict(request.params).get(p.offset_param, "0"))
        return request.with_params(**{p.offset_param: str(offset + p.limit)})
    if p.type == "page_number":
        if count == 0 or (p.size_param is not None and count < p.limit):
            return None
        page = int(dict(request.params).get(p.param, str(p.start)))
        return request.with_params(**{p.param: str(page + 1)})
    return None
