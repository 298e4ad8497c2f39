"""Settings: validated at construction, secrets kept out of their text."""

from __future__ import annotations

import pytest

from etl.errors import ConfigError
from etl.settings import Settings, redact_url


def test_repr_never_shows_the_key_or_the_database_password() -> None:
    """A Settings object printed in a log or traceback leaks no secret."""
    s = Settings(
        api_url="http://127.0.0.1:8080/api/v1",
        api_key="ds_topsecretkey",
        database_url="postgresql://etl:hunter2@db/etl",
    )
    assert "ds_topsecretkey" not in repr(s) and "hunter2" not in repr(s)


def test_redact_url_masks_only_the_password() -> None:
    """redact_url masks the password and nothing else."""
    assert redact_url("postgresql://etl:hunter2@db:5432/etl") == "postgresql://etl:***@db:5432/etl"
    assert redact_url("postgresql://etl@db/etl") == "postgresql://etl@db/etl"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"api_url": "http://h/api/v1", "api_key": ""}, "an API key is required"),
        ({"database_url": "mysql://x:pw@h/db"}, "must start with postgresql://"),
        ({"batch_size": 0}, "--batch-size must be between"),
        ({"events_concurrency": 0, "feed_concurrency": 0}, "at least one of"),
        ({"max_runtime_s": -1.0}, "--max-runtime must be a positive"),
    ],
)
def test_bad_values_are_refused_with_a_clear_message(
    kwargs: dict[str, object], message: str
) -> None:
    """Each out-of-range setting is refused with a message naming the flag, never echoing a
    password."""
    base: dict[str, object] = {"api_url": None, "api_key": "k"}
    with pytest.raises(ConfigError, match=message) as info:
        Settings(**{**base, **kwargs})  # type: ignore[arg-type]
    assert "pw" not in str(info.value)


def test_feed_window_follows_the_bundled_sandbox_time_scale() -> None:
    """With the tool's own sandbox at 10x, the throttle's window is 30 s, else the spec's 300."""
    assert Settings(api_url=None, api_key="", sandbox_time_scale=10).effective_feed_window_s == 30
    real = Settings(api_url="http://h/api/v1", api_key="k", sandbox_time_scale=10)
    assert real.effective_feed_window_s == 300
    assert Settings(api_url=None, api_key="", feed_window_s=60).effective_feed_window_s == 60


def test_every_ingest_option_defaults_to_the_settings_default() -> None:
    """`etl ingest` with no flags behaves as Settings() documents (a default written twice
    once left the CLI on 2 loaders while Settings said 3)."""
    import dataclasses

    import typer.main

    from etl.cli import app
    from etl.cli.root import load_all
    from etl.settings import Settings

    defaults = {f.name: f.default for f in dataclasses.fields(Settings)}
    load_all()  # commands register when their module is imported
    command = typer.main.get_command(app).commands["ingest"]
    checked = 0
    for param in command.params:
        name = param.name
        key = name if name in defaults else f"{name}_s"
        if key in defaults and defaults[key] is not dataclasses.MISSING and key != "data_dir":
            assert param.default == defaults[key], name
            checked += 1
    assert checked >= 12


def test_data_dir_default_is_the_xdg_data_home_everywhere() -> None:
    """Settings and the CLI agree on the data dir: $XDG_DATA_HOME/etl, else
    ~/.local/share/etl (they once differed: `.etl-data` in one, XDG in the other)."""
    import os
    from pathlib import Path

    from etl.cli.options import default_data_dir as cli_default
    from etl.settings import default_data_dir

    assert default_data_dir({"XDG_DATA_HOME": "/srv/data"}) == Path("/srv/data/etl")
    assert default_data_dir({}) == Path("~/.local/share/etl").expanduser()
    assert Settings(api_url=None, api_key="").data_dir == default_data_dir({})
    assert cli_default() == default_data_dir(os.environ)
