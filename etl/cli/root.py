"""The Typer app. Each command lives in its own module and registers itself on ``app``.

Commands are registered lazily: the root group knows every command's name, module and
one-line help (``COMMANDS``) and imports a command's module only when that command runs or
shows its own help. Importing all of them took 85-130 ms (aiohttp, msgspec, rich, the REST
engine, ...) before `etl events` could even parse its flags. ``etl --help`` lists the
commands from the table without importing them; a test checks the table against the real
commands.
"""

from __future__ import annotations

import importlib
from typing import Annotated, Any

import typer
from typer.core import TyperCommand, TyperGroup
from typer.main import get_command_from_info, get_command_name

from etl import __version__
from etl.cli import signals
from etl.errors import EXIT_MEANINGS

# name -> (module under etl.cli, the first paragraph of its help), in the order `etl --help`
# lists them. A command's module registers it with ``@app.command()`` when imported.
COMMANDS: dict[str, tuple[str, str]] = {
    "rollups": (
        "read",
        "The hourly rollups kept in the load transaction: rows and events per table.",
    ),
    "events": (
        "read",
        "A user's events, newest first, with their JSON details; page with --before.",
    ),
    "series": (
        "read",
        "Event counts per hour or day, per type (or --total), from the rollups: milliseconds\n"
        "on any table size. Empty buckets count 0.",
    ),
    "top": (
        "read",
        "The top users, types or pages by events or purchases, from the rollups. Ties: the\n"
        "other measure, then the key, so the order never changes between runs.",
    ),
    "anomalies": (
        "anomalies",
        "Volume anomalies per type (z-score of each bucket of the detection window against\n"
        "the training window before it) and threshold rules per day. Stored with the run.",
    ),
    "deliveries": (
        "deliveries",
        "The delivery log, newest first: every batch loaded and every push request.",
    ),
    "export-ids": ("export", "Write every loaded event id to FILE, one per line."),
    "submit": ("export", "Post the ids in FILE to /api/v1/submissions and print the verdict."),
    "health": (
        "health",
        'Print "ok" (exit 0) or "degraded: <failing parts>" (exit 8), then one line per check.',
    ),
    "push": (
        "push",
        "Push what is owed to Databox, exactly once per primary key; verify the ingestions.",
    ),
    "ingest": (
        "ingest",
        "Load every event from the DataSync API into PostgreSQL: exactly once, resumable.",
    ),
    "purge": (
        "purge",
        "Delete events (all given conditions must hold) and subtract them from the rollups,\n"
        "in one transaction. Later ingests skip the purged events unless --allow-reload.",
    ),
    "reset": (
        "reset",
        "Forget the sync state so the next `etl ingest` re-reads the source; loaded rows stay.",
    ),
    "runs": (
        "runs",
        "Run history, newest first: start, end, status, what became of the events, requests,\n"
        "retries, 429s, error.",
    ),
    "sandbox": ("sandbox", "Serve the sandbox: DataSync API, GitHub and Databox surfaces."),
    "serve": ("serve", "Serve the HTTP API (OpenAPI at /openapi.json) and the dashboard at /."),
    "sources": ("sources", "List the sources available and their streams."),
    "discover": (
        "sources",
        "Each stream's table, primary key, cursor and columns, and the config the source reads.",
    ),
    "check": (
        "signin",
        "Validate the source's spec, config and credentials with one request; load nothing.",
    ),
    "auth": (
        "signin",
        "Sign in at a terminal (OAuth2 device flow); the tokens go to the database, unprinted.",
    ),
    "status": (
        "status",
        "Progress of the current or last ingest: loaded / expected, rates, ETA, shards.",
    ),
    "sync": (
        "sync",
        "Load every stream of a source (declarative, or a Python plugin) into its own table,\n"
        "exactly once.",
    ),
}


def load_all() -> None:
    """Import every command module (tests that inspect the real commands)."""
    for module, _ in COMMANDS.values():
        importlib.import_module(f"etl.cli.{module}")


class LazyGroup(TyperGroup):
    """The root group: a command's module is imported the first time the command is looked
    up, except while the group draws its own help, which needs only ``COMMANDS``."""

    _listing = False

    def list_commands(self, ctx: Any) -> list[str]:
        return list(COMMANDS) + [name for name in self.commands if name not in COMMANDS]

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        if cmd_name in self.commands or cmd_name not in COMMANDS:
            return self.commands.get(cmd_name)
        if self._listing:
            return TyperCommand(name=cmd_name, help=COMMANDS[cmd_name][1])
        importlib.import_module(f"etl.cli.{COMMANDS[cmd_name][0]}")
        for info in app.registered_commands:
            assert info.callback is not None
            name = info.name or get_command_name(info.callback.__name__)
            if name not in self.commands:
                self.commands[name] = get_command_from_info(
                    info,
                    pretty_exceptions_short=app.pretty_exceptions_short,
                    rich_markup_mode=app.rich_markup_mode,
                )
        return self.commands.get(cmd_name)

    def format_help(self, ctx: Any, formatter: Any) -> None:
        self._listing = True
        try:
            super().format_help(ctx, formatter)
        finally:
            self._listing = False


def _epilog() -> str:
    codes = "\n".join(f"  {code}  {meaning}" for code, meaning in sorted(EXIT_MEANINGS.items()))
    return f"Exit codes (README.md says more):\n{codes}"


app = typer.Typer(
    name="etl",
    cls=LazyGroup,
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
