"""Finding sources: built-in specs, spec files, and third-party entry points."""

from __future__ import annotations

from importlib import metadata

import pytest

from etl.errors import ConfigError
from etl.sources.registry import ENTRY_POINT_GROUP, available, find


def _eps(*pairs: tuple[str, str]):
    def entry_points():
        return [metadata.EntryPoint(n, v, ENTRY_POINT_GROUP) for n, v in pairs]

    return entry_points


def test_an_entry_point_returning_a_spec_is_a_source():
    """A package's `[etl.sources] weather = "pkg:spec"` is found by name and listed."""
    eps = _eps(("weather", "tests.plugins.weather:spec"))
    spec = find("weather", eps)
    assert spec.streams[0].primary_key == ("station", "at")
    listed = {s.name: s for s in available(eps)}
    assert listed["weather"].streams == ("readings",)
    assert listed["weather"].origin == "entry point tests.plugins.weather:spec"


def test_an_entry_point_may_point_at_a_spec_file():
    """The callable may return the path of a spec file instead."""
    spec = find("gh2", _eps(("gh2", "tests.plugins.weather:spec_file")))
    assert spec.name == "github"


def test_a_broken_entry_point_is_one_line_not_a_traceback():
    """A plugin that raises: by name, a ConfigError naming it; in the list, marked broken."""
    eps = _eps(("vendor", "tests.plugins.weather:broken"))
    with pytest.raises(ConfigError, match=r"source 'vendor' .* failed to load: RuntimeError"):
        find("vendor", eps)
    assert {s.name: s.kind for s in available(eps)}["vendor"] == "broken"


def test_an_unknown_source_lists_what_exists():
    """A typo names the sources that do exist."""
    with pytest.raises(ConfigError, match=r"unknown source 'gitub' \(available: datasync, github"):
        find("gitub", _eps())


def test_datasync_is_described_like_any_stream():
    """`etl discover datasync`: its events stream in the same terms (table, key, cursor, types)."""
    from etl.sources.registry import describe

    (events,) = describe("datasync", _eps()).streams
    assert (events.table, events.primary_key) == ("events", ("id",))
    assert events.column("occurred_at").type == "timestamp"
    with pytest.raises(ConfigError, match="etl ingest"):
        find("datasync", _eps())
