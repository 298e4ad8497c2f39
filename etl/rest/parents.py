"""Child streams: one request chain per record of a parent stream (GitHub: the comments of
each issue, ``/repos/o/r/issues/{number}/comments``), driven by the parent's table.

The spec says ``parent: issues`` and names the parent's columns in the path as
``{number}``. A run of the child walks the parent's rows whose cursor is at or past the
child's mark (the parent's cursor value the child last reached), in (cursor, key) order,
reading each one's pages; its position (that row, and the next request within it) is
checkpointed with every page, so a stopped run resumes inside the parent it was reading.
The child's own ``since`` is its mark minus the look-back, the same for every parent of a
run. The child is as complete as its parent's table: a parent row must change whenever one
of its children does (GitHub bumps an issue's ``updated_at`` when it gets a comment).

``with_parent`` checks the spec (``etl.rest.load``); ``Parents`` is what the lane reads the
parent's rows through (``etl.read.parents.TableParents`` in PostgreSQL).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Protocol
from urllib.parse import quote

import yaml

from etl.rest.nodes import Ctx
from etl.rest.spec import Parent, StreamSpec

FIELD = re.compile(r"(?<!\$)\{([A-Za-z_][A-Za-z0-9_]*)\}")  # {number}: a parent's column


@dataclass(frozen=True, slots=True)
class ParentRow:
    position: tuple[str, ...]  # the parent's cursor value, then its key, as text
    fields: dict[str, str]  # the columns the child's path names

    def to_json(self) -> dict[str, object]:
        return {"position": list(self.position), "fields": self.fields}

    @classmethod
    def from_json(cls, data: object) -> ParentRow | None:
        """A stored position; None when it is not one (the chain then starts again)."""
        if not isinstance(data, dict):
            return None
        position, fields = data.get("position"), data.get("fields")
        if not isinstance(position, list) or not position or not isinstance(fields, dict):
            return None
        return cls(tuple(str(p) for p in position), {str(k): str(v) for k, v in fields.items()})


class Parents(Protocol):
    """The parent's rows after ``position`` (None: from the start) whose cursor is at least
    ``since`` (None: all), in (cursor, key) order, at most ``limit``."""

    async def after(
        self, position: tuple[str, ...] | None, since: str | None, limit: int
    ) -> list[ParentRow]: ...


def child_path(path: str, row: ParentRow) -> str:
    """The child's path for one parent row (each value URL-quoted)."""
    return FIELD.sub(lambda m: quote(row.fields.get(m.group(1), m.group(0)), safe=""), path)


def with_parent(
    child: StreamSpec, streams: tuple[StreamSpec, ...], nodes_: dict[str, tuple[Ctx, yaml.Node]]
) -> StreamSpec:
    """A child stream checked against its parent: an earlier stream, itself no child,
    incremental; every ``{field}`` of the path one of its columns; the child's own cursor
    (its ``since``) of the parent cursor's type, as both are read on the parent's timeline."""
    fields = tuple(dict.fromkeys(FIELD.findall(child.path)))
    if child.parent is None:
        if fields:
            ctx, node = nodes_[child.name]
            raise ctx.at("path").problem(
                node, f"{{{fields[0]}}} names a parent's column, and the stream has no parent"
            )
        return child
    ctx, node = nodes_[child.name]
    earlier = {s.name: s for s in streams[: streams.index(child)]}
    parent = earlier.get(child.parent.stream)
    if parent is None:
        raise ctx.problem(node, f"{child.parent.stream!r} is not a stream declared before this one")
    if parent.parent is not None or parent.incremental is None:
        raise ctx.problem(node, f"{parent.name!r} must be an incremental stream without a parent")
    names = {c.name for c in parent.columns}
    for f in fields:
        if f not in names:
            raise ctx.problem(node, f"the path's {{{f}}} is not a column of {parent.name!r}")
    kind = parent.column(parent.incremental.cursor_field).type
    inc = child.incremental
    if inc is not None and inc.param is not None and child.column(inc.cursor_field).type != kind:
        raise ctx.problem(node, f"the cursor field must be of type {kind}, as {parent.name}'s is")
    return replace(child, parent=Parent(parent.name, fields, kind))
