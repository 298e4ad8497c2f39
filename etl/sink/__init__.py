"""The PostgreSQL side: schema, the ``PostgresSink``, the ingest lock and an embedded server."""

from etl.sink.batch import Delivery
from etl.sink.dsn import redact_dsn
from etl.sink.embedded import EmbeddedPostgres
from etl.sink.lock import IngestLock
from etl.sink.postgres import PostgresSink
from etl.sink.runs import RunStatus
from etl.sink.schema import SCHEMA_VERSION, migrate

__all__ = [
    "SCHEMA_VERSION",
    "Delivery",
    "EmbeddedPostgres",
    "IngestLock",
    "PostgresSink",
    "RunStatus",
    "migrate",
    "redact_dsn",
]
