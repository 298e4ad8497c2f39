"""Spec files are validated before any request: file, line and what was expected (exit 2)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from etl.errors import ConfigError, ExitCode
from etl.rest.load import load, parse, resolve

GOOD = """\
version: 1
name: tiny
config:
  url: {env: TINY_URL, default: "http://127.0.0.1:1/api"}
  key: {env: TINY_KEY, required: true, secret: true}
auth: {type: api_key, value: "${key}", name: api_key, in: query}
base_url: ${url}
streams:
  things:
    path: /things
    records: data.items
    paginator: {type: cursor, cursor_path: meta.next}
    primary_key: id
    incremental: {cursor_field: changed, param: after, lookback: 5m}
    columns:
      id: text
      changed: timestamp
      size: {type: number, from: stats.size}
"""


def _error(text: str) -> str:
    with pytest.raises(ConfigError) as err:
        parse(text, "tiny.yaml")
    assert err.value.exit_code == ExitCode.CONFIG
    return str(err.value)


def test_a_good_spec_reads_into_streams_with_paths_and_types():
    """Records path, paginator, look-back and dotted field paths come through as written."""
    spec = resolve(parse(GOOD, "tiny.yaml"), {"TINY_KEY": "k"})
    (things,) = spec.streams
    assert things.records == ("data", "items") and things.paginator.cursor_path == "meta.next"
    assert things.incremental is not None and things.incremental.lookback_s == 300
    assert things.column("size").source == ("stats", "size")
    assert spec.auth.value == "k" and spec.base_url == "http://127.0.0.1:1/api"
    assert things.table == "tiny_things"


def test_an_unknown_key_names_the_line_and_the_closest_valid_key():
    """A typo is reported where it is, with the keys that are allowed there."""
    message = _error(GOOD.replace("    records: data.items", "    recrods: data.items"))
    assert message.startswith("tiny.yaml:11: streams.things: unknown key 'recrods'")
    assert "did you mean 'records'?" in message


def test_a_wrong_type_says_what_was_expected():
    """A mapping where a type name belongs: expected the list of column types, at its line."""
    message = _error(GOOD.replace("      id: text", "      id: uuid4"))
    assert message.startswith("tiny.yaml:16: streams.things.columns.id: expected one of text,")
    assert "got 'uuid4'" in message


def test_a_missing_required_key_is_named():
    """A stream without primary_key is rejected, pointing at the stream."""
    message = _error(GOOD.replace("    primary_key: id\n", ""))
    assert "tiny.yaml:10: streams.things: missing required key 'primary_key'" in message


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (("primary_key: id", "primary_key: uid"), "'uid' is not one of the columns"),
        (("cursor_field: changed", "cursor_field: size"), "must be a column of type"),
        (("path: /things", "path: /${nope}/things"), "${nope} is not a declared config"),
        (("lookback: 5m", "lookback: soon"), "expected a duration like 60s"),
        (("type: cursor,", "type: cursors,"), "expected one of none, link_header, cursor"),
    ],
)
def test_references_and_values_are_checked(change, expected):
    """Names a stream refers to must exist; enumerations and durations are checked."""
    assert expected in _error(GOOD.replace(*change))


def test_broken_yaml_reports_its_line():
    """Invalid YAML is a spec error at the parser's line, not a traceback."""
    assert _error(GOOD + "  bad: [unclosed\n").startswith("tiny.yaml:20: not valid YAML")


def test_a_required_config_value_missing_names_its_variable():
    """Resolving without TINY_KEY: a one-line ConfigError naming the variable to set."""
    with pytest.raises(ConfigError, match="set TINY_KEY"):
        resolve(parse(GOOD), {})


def test_a_missing_value_points_at_the_spec_file_the_user_gave(tmp_path):
    """A spec read from a file names that file in its hint (`etl discover <file>`: its name
    alone is no source `etl discover` knows); a shipped spec is named by its name."""
    spec_file = tmp_path / "tiny.yaml"
    spec_file.write_text(GOOD)
    with pytest.raises(ConfigError, match=f"etl discover {spec_file}`"):
        resolve(load(spec_file), {})
    github = load(Path(__file__).parent.parent / "etl/sources/specs/github.yaml")
    no_default = replace(github, config=tuple(replace(p, default=None, required=True, sandbox=None)
                                              for p in github.config))  # fmt: skip
    with pytest.raises(ConfigError, match="etl discover github`"):
        resolve(no_default, {})


def test_the_github_spec_is_valid_and_describes_both_streams():
    """The built-in GitHub spec loads: issues and comments, keyed by GitHub's numeric ids."""
    spec = load(Path(__file__).parent.parent / "etl/sources/specs/github.yaml")
    assert [s.name for s in spec.streams] == ["issues", "issue_comments"]
    issues = spec.streams[0]
    assert issues.primary_key == ("id",) and issues.column("id").type == "bigint"
    assert issues.incremental is not None and issues.incremental.param == "since"
    assert spec.auth.type == "oauth2_refresh_token" and spec.auth.device_url
