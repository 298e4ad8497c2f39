"""The PostgreSQL side: schema, the ``PostgresSink``, the ingest lock and an embedded server.

Names load on first use (asyncpg is heavy), so commands that never touch the sink start fast.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from etl.sink.dsn import redact_dsn
    from etl.sink.embedded import EmbeddedPostgres
    from etl.sink.lock import IngestLock
    from etl.sink.postgres import PostgresSink
    from etl.sink.schema import SCHEMA_VERSION, migrate

_WHERE = {
    "redact_dsn": "etl.sink.dsn",
    "EmbeddedPostgres": "etl.sink.embedded",
    "IngestLock": "etl.sink.lock",
    "PostgresSink": "etl.sink.postgres",
    "SCHEMA_VERSION": "etl.sink.schema",
    "migrate": "etl.sink.schema",
}

__all__ = [
    "SCHEMA_VERSION",
    "EmbeddedPostgres",
    "IngestLock",
    "PostgresSink",
    "migrate",
    "redact_dsn",
]


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(name)
    return getattr(importlib.import_module(module), name)
