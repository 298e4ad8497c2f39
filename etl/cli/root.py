"""The Typer app. Each command lives in its own module and registers itself on ``app``."""

from __future__ import annotations

from typing import Annotated

import typer

from etl import __version__
from etl.cli import signals
from etl.errors import EXIT_MEANINGS


def _epilog() -> str:
    codes = "\n".join(f"  {code}  {meaning}" for code, meaning in sorted(EXIT_MEANINGS.items()))
    return f"Exit codes (README.md says more):\n{codes}"


app = typer.Typer(
    name="etl",
    help="Exactly-once, resumable ingest of the DataSync Analytics API into PostgreSQL.",
    epilog=_epilog(),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"etl {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    ctx: typer.Context,
    version: Annotated[
        bool,
        typer.Option(
            "--version", is_eager=True, callback=_version, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    # From here on a signal means: `etl ingest`/`etl sync` stop gracefully; any other is
    # interrupted as usual (KeyboardInterrupt). Before here nothing has been done.
    graceful = ctx.invoked_subcommand in ("ingest", "sync")
    signals.set_mode("defer" if graceful else "interrupt")


# Command modules register themselves on import (keep this list sorted).
from etl.cli import anomalies as _anomalies  # noqa: E402,F401
from etl.cli import deliveries as _deliveries  # noqa: E402,F401
from etl.cli import export as _export  # noqa: E402,F401
from etl.cli import health as _health  # noqa: E402,F401
from etl.cli import ingest as _ingest  # noqa: E402,F401
from etl.cli import purge as _purge  # noqa: E402,F401
from etl.cli import push as _push  # noqa: E402,F401
from etl.cli import read as _read  # noqa: E402,F401
from etl.cli import reset as _reset  # noqa: E402,F401
from etl.cli import runs as _runs  # noqa: E402,F401
from etl.cli import sandbox as _sandbox  # noqa: E402,F401
from etl.cli import serve as _serve  # noqa: E402,F401
from etl.cli import signin as _signin  # noqa: E402,F401
from etl.cli import sources as _sources  # noqa: E402,F401
from etl.cli import status as _status  # noqa: E402,F401
from etl.cli import sync as _sync  # noqa: E402,F401
