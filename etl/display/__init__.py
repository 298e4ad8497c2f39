"""Everything that draws (rich lives here and in no other module of etl/).

    progress  `etl ingest`'s reporters: log lines or the live view (``make_reporter``)
    status    `etl status` (once or ``watch_status``) and `etl runs` (``runs_table``)
    figures   the headline figures and shard table both views share

Nothing here reads the database: values come from ``etl.read.views``.
"""

from etl.display.progress import LogReporter, ManagedReporter, RichReporter, make_reporter
from etl.display.status import render_status, runs_table, watch_status

__all__ = [
    "LogReporter",
    "ManagedReporter",
    "RichReporter",
    "make_reporter",
    "render_status",
    "runs_table",
    "watch_status",
]
