"""Log records of the tool's own modules go to the run's Reporter: one channel, one format.

The sink and the delivery log report through ``logging`` (they know no Reporter). During
`etl ingest` ``route_logs`` hands every record of the ``etl`` logger tree to the Reporter,
so ``--log-format json`` (and the live view, and ``--quiet``) cover them as well.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from etl.models import Reporter

ROOT = "etl"


class ReporterHandler(logging.Handler):
    """Formats a record as ``"<level>: <message>"`` (plus the exception's one line) and
    passes it to ``reporter.message``; INFO and DEBUG come without the level."""

    def __init__(self, reporter: Reporter, level: int = logging.INFO) -> None:
        super().__init__(level)
        self.reporter = reporter

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = record.getMessage()
            if record.exc_info and record.exc_info[1] is not None:
                exc = record.exc_info[1]
                text = f"{text}: {type(exc).__name__}: {exc}"
            if record.levelno >= logging.WARNING:
                text = f"{record.levelname.lower()}: {text}"
            self.reporter.message(text)
        except Exception:  # a broken reporter must not break the caller (logging's rule)
            self.handleError(record)


@contextmanager
def route_logs(reporter: Reporter, level: int = logging.INFO) -> Iterator[ReporterHandler]:
    """While open, records of ``etl.*`` at ``level`` or above go to ``reporter`` only."""
    logger = logging.getLogger(ROOT)
    handler = ReporterHandler(reporter, level)
    saved = logger.level, logger.propagate
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(saved[0])
        logger.propagate = saved[1]
