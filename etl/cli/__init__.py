"""Typer app: the only place that reads the environment, calls asyncio.run and sets exit codes.

Each command lives in its own module and registers itself on ``app``.
"""

from __future__ import annotations

import typer

app = typer.Typer(
    name="etl",
    help="Exactly-once, resumable ingest of the DataSync Analytics API into PostgreSQL.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# Command modules register themselves on import (keep this list sorted).
from etl.cli import export as _export  # noqa: E402,F401
from etl.cli import health as _health  # noqa: E402,F401
from etl.cli import ingest as _ingest  # noqa: E402,F401
from etl.cli import runs as _runs  # noqa: E402,F401
from etl.cli import sandbox as _sandbox  # noqa: E402,F401
from etl.cli import serve as _serve  # noqa: E402,F401
from etl.cli import sources as _sources  # noqa: E402,F401
from etl.cli import status as _status  # noqa: E402,F401


def main() -> None:
    from etl.cli.options import load_dotenv

    load_dotenv()
    app()
