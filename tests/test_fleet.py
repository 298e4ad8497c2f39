"""A fleet file (`etl ingest --fleet FILE`): what it may say, the file:line of each mistake,
how the whole fleet's shards are dealt to N tasks, and the exit code of a fleet task."""

from __future__ import annotations

from pathlib import Path

import pytest

from etl.errors import ConfigError, ExitCode
from etl.fleet import (
    Fleet,
    assignments,
    fleet_exit_code,
    load_fleet,
    missing_keys,
    source_settings,
    with_database,
)
from etl.settings import Settings

YAML = """\
parallel: 3
defaults:
  shards: 4
  page-size: 1000
sources:
  - name: acme
    api_url: https://api.example.com/api/v1
    api_key_env: ACME_KEY
  - name: globex
    api_url: https://other.example.com/api/v1
    api_key_env: GLOBEX_KEY
    database: globex_events
    options:
      shards: 2
      request_timeout: 30
"""

TOML = """\
parallel = 3

[defaults]
shards = 4
page-size = 1000

[[sources]]
name = "acme"
api_url = "https://api.example.com/api/v1"
api_key_env = "ACME_KEY"

[[sources]]
name = "globex"
api_url = "https://other.example.com/api/v1"
api_key_env = "GLOBEX_KEY"
database = "globex_events"

[sources.options]
shards = 2
request_timeout = 30
"""


def write(tmp_path: Path, text: str, name: str = "fleet.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def fleet_of(tmp_path: Path, shards: list[int]) -> Fleet:
    entries = "".join(
        f"  - {{name: s{i}, api_url: 'http://h/api/v1', api_key_env: K{i}, "
        f"options: {{shards: {n}}}}}\n"
        for i, n in enumerate(shards)
    )
    return load_fleet(write(tmp_path, "sources:\n" + entries))


@pytest.mark.parametrize(("name", "text"), [("fleet.yaml", YAML), ("fleet.toml", TOML)])
def test_a_fleet_file_reads_the_same_in_yaml_and_toml(tmp_path: Path, name: str, text: str) -> None:
    """Both formats give the sources, their databases (etl_<name> unless named) and their
    options, a source's own options over the defaults."""
    fleet = load_fleet(write(tmp_path, text, name))
    assert fleet.parallel == 3
    acme, globex = fleet.sources
    assert (acme.name, acme.database, acme.api_key_env) == ("acme", "etl_acme", "ACME_KEY")
    assert acme.options == {"shards": 4, "page_size": 1000}
    assert globex.database == "globex_events"
    assert globex.options == {"shards": 2, "page_size": 1000, "request_timeout_s": 30.0}
    assert acme.where.endswith(f"{name}:6" if name.endswith("yaml") else f"{name}:7")


@pytest.mark.parametrize(
    ("text", "line", "says"),
    [
        (YAML.replace("api_key_env: GLOBEX_KEY", "api_key: ds_live_123"), 11, "never goes in"),
        (YAML.replace("request_timeout: 30", "request_timeout: soon"), 15, "must be a number"),
        (YAML.replace("request_timeout: 30", "colour: blue"), 15, "unknown option 'colour'"),
        (YAML.replace("request_timeout: 30", "request_timeout: 0"), 9, "--request-timeout"),
        (YAML.replace("database: globex_events", "databse: x"), 12, "unknown key 'databse'"),
        (YAML.replace("name: globex", "name: Globex Inc"), 9, "lowercase"),
        (YAML.replace("name: globex", "name: acme"), 9, "already used by the source at"),
        (YAML.replace("database: globex_events", "database: etl_acme"), 9, "already used"),
        (YAML.replace("    api_key_env: ACME_KEY\n", ""), 6, "api_key_env is required"),
        (YAML.replace("parallel: 3", "parallel: 0"), 1, "parallel must be between"),
        (YAML.replace("  shards: 4", "  shards: [4"), 4, "not valid YAML"),
        ("sources: []\n", 1, "non-empty list"),
    ],
)
def test_a_mistake_in_a_fleet_file_names_its_line(
    tmp_path: Path, text: str, line: int, says: str
) -> None:
    """Every mistake is a config error (exit 2) that starts with the file and the line."""
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_fleet(path)
    assert str(caught.value).startswith(f"{path}:{line}: "), caught.value
    assert says in str(caught.value)
    assert caught.value.exit_code == ExitCode.CONFIG
    assert "ds_live_123" not in str(caught.value)


def test_a_mistake_in_a_toml_fleet_file_names_its_line(tmp_path: Path) -> None:
    """TOML too: a bad value in a source's options table, and broken syntax."""
    path = write(tmp_path, TOML.replace("request_timeout = 30", "request_timeout = 'x'"), "f.toml")
    with pytest.raises(ConfigError, match=r"f\.toml:20: option 'request_timeout'"):
        load_fleet(path)
    path = write(tmp_path, TOML.replace('name = "acme"', "name = acme"), "f.toml")
    with pytest.raises(ConfigError, match=r"f\.toml:8: not valid TOML"):
        load_fleet(path)


@pytest.mark.parametrize("count", [1, 2, 3, 8, 16, 100])
def test_every_shard_of_the_fleet_belongs_to_exactly_one_task(tmp_path: Path, count: int) -> None:
    """Sources of different sizes, N tasks: each (source, shard) is owned by one task, and
    the tasks' loads differ by at most one shard."""
    fleet = fleet_of(tmp_path, [16, 1, 5, 16, 3, 1, 1, 8])
    owners: dict[tuple[str, int], list[int]] = {}
    for task in range(count):
        for a in assignments(fleet, task, count):
            for k in range(a.source.shards):
                if a.share.owns(f"full-{k:02d}"):
                    owners.setdefault((a.source.name, k), []).append(task)
    assert len(owners) == sum(s.shards for s in fleet.sources)
    assert all(len(o) == 1 for o in owners.values())
    loads = [sum(1 for o in owners.values() if o == [t]) for t in range(count)]
    assert max(loads) - min(loads) <= 1


def test_a_task_skips_the_sources_with_no_shard_in_its_share(tmp_path: Path) -> None:
    """Ten one-shard sources over 4 tasks: each task opens only its own sources' databases,
    and appending a source moves no other source's shard."""
    fleet = fleet_of(tmp_path, [1] * 10)
    names = [{a.source.name for a in assignments(fleet, t, 4)} for t in range(4)]
    assert names == [{"s0", "s4", "s8"}, {"s1", "s5", "s9"}, {"s2", "s6"}, {"s3", "s7"}]
    grown = fleet_of(tmp_path, [1] * 11)
    assert {a.source.name for a in assignments(grown, 2, 4)} == {"s2", "s6", "s10"}


def test_the_tasks_begin_on_different_sources(tmp_path: Path) -> None:
    """8 sources of 16 shards over 8 tasks: every task loads all 8, each starting on its own
    source, so no key has all 8 tasks on it at once."""
    fleet = fleet_of(tmp_path, [16] * 8)
    walks = [[a.source.name for a in assignments(fleet, t, 8)] for t in range(8)]
    assert all(sorted(w) == [f"s{i}" for i in range(8)] for w in walks)
    assert [w[0] for w in walks] == [f"s{i}" for i in range(8)]


def test_a_sources_settings_come_from_the_file_and_its_database(tmp_path: Path) -> None:
    """The command line is the base; the source brings its URL, key, database on the same
    server (credentials and query kept), data directory, share and options."""
    fleet = load_fleet(write(tmp_path, YAML))
    base = Settings(
        api_url=None,
        api_key="",
        database_url="postgresql://etl:pw@db:5432/postgres?sslmode=require",
        data_dir=tmp_path,
        shard_index=1,
        shard_count=3,
    )
    globex = next(a for a in assignments(fleet, 1, 3) if a.source.name == "globex")
    s = source_settings(base, globex, "k3y")
    assert s.database_url == "postgresql://etl:pw@db:5432/globex_events?sslmode=require"
    assert (s.api_url, s.api_key, s.shards, s.page_size) == (globex.source.api_url, "k3y", 2, 1000)
    assert s.share == globex.share and s.share is not None and s.share.offset == 4 % 3
    assert s.data_dir == tmp_path / "fleet" / "globex"
    assert with_database("postgresql://u@h/a", "b") == "postgresql://u@h/b"


def test_an_unset_key_variable_is_named_never_its_value(tmp_path: Path) -> None:
    """Each source whose api_key_env is unset or empty is named with its line."""
    fleet = load_fleet(write(tmp_path, YAML))
    said = missing_keys(fleet, {"ACME_KEY": "secret", "GLOBEX_KEY": ""})
    assert said == [f"{tmp_path / 'fleet.yaml'}:9: source 'globex': GLOBEX_KEY is not set"]


@pytest.mark.parametrize(
    ("codes", "exit_code"),
    [
        ([0, 0, 0], 0),
        ([0, 5, 4], ExitCode.TEMPFAIL),  # a retry can cure the 5; the 4 fails again, cheaply
        ([0, 4, 11], ExitCode.AUTH),
        ([3, 0], ExitCode.TEMPFAIL),
        ([0, 11], ExitCode.INCOMPLETE),
        ([], 0),
    ],
)
def test_a_fleet_task_asks_for_a_retry_while_a_retry_can_help(
    codes: list[int], exit_code: int
) -> None:
    """75 while any source has a failure a retry cures, else the first do-not-retry code."""
    assert fleet_exit_code(codes) == exit_code


def test_the_example_fleet_file_in_deploy_is_valid() -> None:
    """deploy/fleet/fleet.example.yaml loads: two sources, the second with its own options."""
    path = Path(__file__).resolve().parent.parent / "deploy" / "fleet" / "fleet.example.yaml"
    fleet = load_fleet(path)
    assert [s.database for s in fleet.sources] == ["etl_acme", "globex_events"]
    assert [s.shards for s in fleet.sources] == [16, 4]


def test_a_source_may_name_its_own_database_url(tmp_path: Path) -> None:
    """database_url_env: the source loads into that URL (another server); the variable is
    required like a key's, and a URL that is not PostgreSQL's is a config error naming the
    source's line, never the password."""
    text = YAML.replace("database: globex_events", "database_url_env: GLOBEX_DB")
    fleet = load_fleet(write(tmp_path, text))
    globex = fleet.sources[1]
    assert (globex.database, globex.database_url_env) == (None, "GLOBEX_DB")
    said = missing_keys(fleet, {"ACME_KEY": "k", "GLOBEX_KEY": "k"})
    assert said == [f"{tmp_path / 'fleet.yaml'}:9: source 'globex': GLOBEX_DB is not set"]
    server = "postgresql://u@h/postgres"
    base = Settings(api_url=None, api_key="", database_url=server, shard_index=0, shard_count=1)
    a = next(a for a in assignments(fleet, 0, 1) if a.source.name == "globex")
    url = "postgresql://etl:pw@other:5432/globex"
    assert source_settings(base, a, "k", url).database_url == url
    with pytest.raises(ConfigError, match=r"fleet\.yaml:9: source 'globex': --database-url") as e:
        source_settings(base, a, "k", "mysql://etl:pw@other/globex")
    assert "pw" not in str(e.value)


@pytest.mark.parametrize(
    ("change", "says"),
    [
        ("    database_url_env: GLOBEX_DB\n", "give database or database_url_env, not both"),
        ("    database_url_env: 'not a name'\n", "must name an environment variable"),
    ],
)
def test_a_database_url_env_mistake_names_its_line(tmp_path: Path, change: str, says: str) -> None:
    """database and database_url_env together, or a variable name that is not one: exit 2
    at the line of database_url_env."""
    text = YAML.replace("    options:\n      shards: 2", change + "    options:\n      shards: 2")
    if "not both" not in says:
        text = text.replace("    database: globex_events\n", "")
    path = write(tmp_path, text)
    with pytest.raises(ConfigError, match=says) as caught:
        load_fleet(path)
    line = 13 if "not both" in says else 12
    assert str(caught.value).startswith(f"{path}:{line}: ")
