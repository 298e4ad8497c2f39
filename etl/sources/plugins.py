"""Third-party Python sources: the ``Source`` Protocol DataSync implements, through an entry
point.

An entry point of the ``etl.sources`` group names a callable taking no arguments. It may
return a spec (``SourceSpec`` or a spec file's path: a declarative source, no Python), or
an object implementing ``etl.models.Source``, the same Protocol as the built-in DataSync
source (``etl/source/datasync.py``):

    stream          an ``etl.models.Stream``: name, columns and types, primary key, split
                    kind, and ``transform`` (one page's raw records -> rows, rejects, and
                    the (timestamp, id) position the page ends at)
    start()         get ready (sign in, choose lanes); a one-line description
    strategy_used   how it fetches, recorded with the run
    head()          the newest record's (ts_ms, id) position and the total, if known
    contains(pos)   whether the record at ``pos`` is still there (dataset checks)
    lanes()         ``Lane``s: ``acquire()`` the budget, ``budget_ready()``,
                    ``fetch(shard, limit, ...)`` -> ``Page`` of the shard's records after
                    its position, newest first

Such a stream runs on the same pipeline as DataSync (``etl sync NAME``): time-range
shards split when busy, the adaptive in-flight limit, page credits, exactly-once commits
of rows and checkpoint together (``etl.sink.stream_sink``), resume at every page,
quarantine. ``tests/plugins/ticks.py`` is a complete example.
"""

from __future__ import annotations

from typing import Any, TypeGuard

from etl.models import Source, Stream
from etl.rest.spec import Column, SourceSpec, StreamSpec

_SOURCE_PARTS = ("stream", "start", "head", "contains", "lanes", "strategy_used")


def is_python_source(made: Any) -> TypeGuard[Source]:
    """Whether an entry point returned a ``Source`` (rather than a spec)."""
    return all(hasattr(made, part) for part in _SOURCE_PARTS) and isinstance(
        getattr(made, "stream", None), Stream
    )


def as_spec(name: str, origin: str, source: Source) -> SourceSpec:
    """A Python source described in spec terms, for `etl discover` and `etl sources`."""
    stream = source.stream
    return SourceSpec(
        name=name,
        file=origin,
        base_url="",
        description=(source.__doc__ or "").strip().splitlines()[0] if source.__doc__ else "",
        streams=(
            StreamSpec(
                name=stream.name,
                path="",
                primary_key=stream.primary_key,
                table=stream.table_name,
                columns=tuple(
                    Column(c.name, c.type, (c.name,), nullable=c.nullable) for c in stream.columns
                ),
            ),
        ),
    )
