"""Lazy command registration: a command's module is imported only when that command runs, and
`etl --help` still lists every command with its own help."""

from __future__ import annotations

import inspect
import json
import subprocess
import sys
from pathlib import Path

from typer.main import get_command_name
from typer.testing import CliRunner

from etl.cli import app
from etl.cli.root import COMMANDS, load_all
from tests.read_data import USERS, load, mixed

# What a read command must not pay for at start-up.
HEAVY = ("aiohttp", "rich", "msgspec", "etl.rest", "etl.pipeline", "etl.display", "yaml")
PROBE = """
import json, sys
sys.argv = ["etl", *json.loads(sys.argv[1])]
from etl.cli import main
try:
    main()
except SystemExit as exc:
    code = exc.code
print(json.dumps({"code": code, "modules": sorted(sys.modules)}), file=sys.stderr)
"""


def _run(*args: str) -> tuple[int, set[str]]:
    out = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(args)], capture_output=True, text=True
    )
    probe = json.loads(out.stderr.strip().splitlines()[-1])
    return probe["code"], set(probe["modules"])


def _heavy(modules: set[str]) -> list[str]:
    return sorted(m for m in modules if m.split(".")[0] in HEAVY or m.startswith(HEAVY))


def _other_commands(modules: set[str], *mine: str) -> list[str]:
    return sorted(
        f"etl.cli.{m}" for m, _ in COMMANDS.values() if m not in mine and f"etl.cli.{m}" in modules
    )


async def test_a_read_command_imports_no_network_client_renderer_or_decoder(db_url: str) -> None:
    """`etl events --user` answers without importing aiohttp, rich, msgspec, the REST engine
    or any other command's module (they cost 85-130 ms of every start-up)."""
    await load(db_url, [mixed(30)])
    code, modules = _run("events", "--user", USERS[1], "--database-url", db_url)
    assert code in (0, None)
    assert _heavy(modules) == []
    assert _other_commands(modules, "read") == []


def test_a_commands_help_imports_only_that_command() -> None:
    """`etl events --help` imports the read commands' module and no other command's, nor
    aiohttp, msgspec or the REST engine."""
    code, modules = _run("events", "--help")
    assert code == 0
    assert "etl.cli.read" in modules
    assert _other_commands(modules, "read") == []
    assert not {"aiohttp", "msgspec", "etl.rest"} & modules


def test_root_help_lists_every_command_without_importing_them() -> None:
    """`etl --help` lists all commands with their help, importing none of their modules."""
    code, modules = _run("--help")
    assert code == 0
    assert _other_commands(modules) == []
    shown = CliRunner().invoke(app, ["--help"], env={"COLUMNS": "200"}).stdout
    for name in COMMANDS:
        assert f" {name} " in shown


def test_the_command_table_matches_the_commands_themselves() -> None:
    """COMMANDS names every registered command, in the module that registers it, with the
    first paragraph of its real help (so the lazy `etl --help` says what the command says)."""
    load_all()
    real = {}
    for info in app.registered_commands:
        assert info.callback is not None
        name = info.name or get_command_name(info.callback.__name__)
        text = info.help if info.help is not None else inspect.getdoc(info.callback) or ""
        first = inspect.cleandoc(text).split("\n\n")[0]
        real[name] = (info.callback.__module__.removeprefix("etl.cli."), first)
    assert real == COMMANDS


def test_every_module_that_registers_a_command_is_in_the_table() -> None:
    """A new command module missing from COMMANDS would never be imported (its command would
    silently not exist): every etl/cli module using ``@app.command`` is listed."""
    import etl.cli

    folder = Path(etl.cli.__file__).parent
    registering = {p.stem for p in folder.glob("*.py") if "\n@app.command" in p.read_text()}
    assert registering == {m for m, _ in COMMANDS.values()}


def test_unknown_command_and_no_command_are_usage_errors() -> None:
    """`etl nope` and a bare `etl` exit 2 as before (no import of any command module)."""
    assert CliRunner().invoke(app, ["nope"]).exit_code == 2
    assert CliRunner().invoke(app, []).exit_code == 2
