"""The command line: the only place that reads the environment, calls asyncio.run and sets
exit codes.

This module stays light: ``main`` installs the signal handler before anything heavy is
imported (see ``signals``), then loads ``.env`` and the Typer app (``etl.cli.root``), where
each command lives in its own module and registers itself.
"""

from __future__ import annotations

from typing import Any


def main() -> None:
    from etl.cli import signals

    signals.install()
    import sys

    from etl.cli.envfile import load_env_file
    from etl.cli.out import error_line
    from etl.cli.root import app
    from etl.errors import ConfigError

    try:
        load_env_file()
    except ConfigError as exc:
        print(error_line(str(exc)), file=sys.stderr)
        sys.exit(exc.exit_code)
    app()


def __getattr__(name: str) -> Any:
    if name == "app":  # ``from etl.cli import app`` (tests, CliRunner)
        from etl.cli.root import app

        return app
    raise AttributeError(name)
