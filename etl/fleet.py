"""A fleet file: many sources, each loaded into its own database, dealt to N tasks as one plan.

    parallel: 4                 # sources one task loads at once (default 4)
    defaults: {shards: 4}       # options for every source; a source's own options win
    sources:
      - name: acme              # [a-z][a-z0-9_]*, unique
        api_url: https://api.example.com/api/v1
        api_key_env: ACME_KEY   # the NAME of an environment variable: never the key itself
        database: etl_acme      # on DATABASE_URL's server (default etl_<name>), made if missing
        # database_url_env: ACME_DB   # or: a variable holding the whole URL (another server;
                                      # that database must exist)
        options: {page_size: 5000}

YAML (``.yaml``/``.yml``) or TOML (``.toml``: ``[defaults]``, ``[[sources]]``,
``[sources.options]``). Every mistake is a ``ConfigError`` that starts with ``file:line:``.

The fleet's work is every source's shards in file order: source *s* with shards ``0..n-1``
takes positions ``offset(s) .. offset(s)+n-1`` (``offset`` = the shards of the sources before
it), and task ``I`` of ``N`` owns the positions ``≡ I (mod N)`` (``TaskShare.offset``): the
whole fleet is dealt evenly whatever the sizes, appending a source moves nobody's share, and
a retried task finds the same shards again. Each source lives in its own database, so its
tables, progress rows, locks and identity guard are those of a single-source run (advisory
locks are per database: schemas of one database would share them). Pure apart from reading
the file: the keys are resolved by the CLI.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from etl.errors import ConfigError, ExitCode, task_exit_code
from etl.fleet_file import Located, parse_toml, parse_yaml
from etl.settings import DEFAULTS, Settings
from etl.tasks import TaskShare

NAME = re.compile(r"^[a-z][a-z0-9_]{0,47}$")
DATABASE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
SOURCE_KEYS = ("name", "api_url", "api_key_env", "database", "database_url_env", "options")
TOP_KEYS = ("parallel", "defaults", "sources")
MAX_PARALLEL = 64

#: Options a fleet file may set, by their CLI names (``-`` or ``_``), and the Settings field.
OPTIONS: dict[str, str] = {
    "strategy": "strategy",
    "page_size": "page_size",
    "shards": "shards",
    "span_days": "span_days",
    "events_concurrency": "events_concurrency",
    "feed_concurrency": "feed_concurrency",
    "max_in_flight": "max_in_flight",
    "feed_window": "feed_window_s",
    "loaders": "loaders",
    "batch_size": "batch_size",
    "queue_batches": "queue_batches",
    "max_attempts": "max_attempts",
    "request_timeout": "request_timeout_s",
    "max_runtime": "max_runtime_s",
    "db_outage": "db_outage_s",
    "db_wait": "db_wait_s",
    "max_response_mb": "max_response_mb",
    "max_event_kb": "max_event_kb",
}


@dataclass(frozen=True, slots=True)
class FleetSource:
    name: str
    api_url: str
    api_key_env: str
    database: str | None  # on DATABASE_URL's server, or None: ``database_url_env``
    options: Mapping[str, Any]  # Settings fields -> values (defaults merged in)
    where: str  # "file:line" of its entry
    database_url_env: str | None = None  # a variable holding the source's own database URL

    @property
    def shards(self) -> int:
        return int(self.options.get("shards", DEFAULTS.shards))


@dataclass(frozen=True, slots=True)
class Fleet:
    path: Path
    sources: tuple[FleetSource, ...]
    parallel: int = 4


@dataclass(frozen=True, slots=True)
class Assignment:
    """A source with at least one shard in a task's share, and that share."""

    source: FleetSource
    share: TaskShare


def load_fleet(path: Path) -> Fleet:
    """Read and check a fleet file; ``ConfigError`` ("file:line: …") on any mistake."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"--fleet {path}: cannot read it ({exc})") from exc
    doc = parse_toml(path, text) if path.suffix == ".toml" else parse_yaml(path, text)
    return _fleet(path, doc)


def _fleet(path: Path, doc: Located) -> Fleet:
    top = doc.mapping(())
    _known(doc, (), top, TOP_KEYS)
    parallel = top.get("parallel", 4)
    if isinstance(parallel, bool) or not isinstance(parallel, int):
        raise doc.error(("parallel",), "parallel must be a whole number of sources")
    if not 1 <= parallel <= MAX_PARALLEL:
        raise doc.error(("parallel",), f"parallel must be between 1 and {MAX_PARALLEL}")
    defaults = _options(doc, ("defaults",)) if "defaults" in top else {}
    entries = top.get("sources")
    if not isinstance(entries, list) or not entries:
        raise doc.error(("sources",), "sources must be a non-empty list of sources")
    sources = tuple(_source(doc, i, defaults) for i in range(len(entries)))
    _unique(doc, sources, "name")
    _unique(doc, sources, "database")
    _unique(doc, sources, "database_url_env")
    return Fleet(path, sources, parallel)


def _source(doc: Located, i: int, defaults: Mapping[str, Any]) -> FleetSource:
    at = ("sources", i)
    entry = doc.mapping(at)
    if "api_key" in entry:
        raise doc.error(
            (*at, "api_key"),
            "a key never goes in the fleet file: put it in an environment variable and name "
            "that variable with api_key_env",
        )
    _known(doc, at, entry, SOURCE_KEYS)
    text = {k: _text(doc, at, k, entry) for k in ("name", "api_url", "api_key_env")}
    if not NAME.match(text["name"]):
        raise doc.error((*at, "name"), "name must be lowercase letters, digits and _ (<= 48)")
    if not ENV_NAME.match(text["api_key_env"]):
        raise doc.error((*at, "api_key_env"), "api_key_env must name an environment variable")
    url_env = entry.get("database_url_env")
    if url_env is not None and "database" in entry:
        raise doc.error((*at, "database_url_env"), "give database or database_url_env, not both")
    if url_env is not None and (not isinstance(url_env, str) or not ENV_NAME.match(url_env)):
        raise doc.error(
            (*at, "database_url_env"), "database_url_env must name an environment variable"
        )
    database = None if url_env else entry.get("database", f"etl_{text['name']}")
    if database is not None and (not isinstance(database, str) or not DATABASE.match(database)):
        raise doc.error((*at, "database"), "database must be a plain PostgreSQL database name")
    options = {**defaults, **(_options(doc, (*at, "options")) if "options" in entry else {})}
    source = FleetSource(
        text["name"],
        text["api_url"],
        text["api_key_env"],
        database,
        options,
        doc.where(at),
        url_env,
    )
    try:  # every value in range, as `etl ingest` would check it
        replace(DEFAULTS, api_url=source.api_url, api_key="probe", **options)
    except ConfigError as exc:
        raise doc.error(at, f"source {source.name!r}: {exc}") from exc
    return source


def _options(doc: Located, at: tuple[str | int, ...]) -> dict[str, Any]:
    given = doc.mapping(at)
    out: dict[str, Any] = {}
    for raw, value in given.items():
        name = str(raw).replace("-", "_")
        field = OPTIONS.get(name)
        if field is None:
            raise doc.error(
                (*at, raw), f"unknown option {raw!r} (known: {', '.join(sorted(OPTIONS))})"
            )
        kind = type(getattr(DEFAULTS, field))
        ok = isinstance(value, str) if kind is str else _is_number(value, whole=kind is int)
        if field in ("max_runtime_s", "feed_window_s"):
            ok = _is_number(value, whole=False)
        if not ok:
            want = "text" if kind is str else "a whole number" if kind is int else "a number"
            raise doc.error((*at, raw), f"option {raw!r} must be {want}, got {value!r}")
        out[field] = float(value) if kind is float or field.endswith("_s") else value
    return out


def _is_number(value: object, *, whole: bool) -> bool:
    if isinstance(value, bool):
        return False
    return isinstance(value, int) or (not whole and isinstance(value, float))


def _text(doc: Located, at: tuple[str | int, ...], key: str, entry: Mapping[str, Any]) -> str:
    value = entry.get(key)
    if not isinstance(value, str) or not value.strip():
        raise doc.error((*at, key) if key in entry else at, f"{key} is required (text)")
    return value


def _known(
    doc: Located, at: tuple[str | int, ...], entry: Mapping[str, Any], known: tuple[str, ...]
) -> None:
    for key in entry:
        if key not in known:
            raise doc.error((*at, key), f"unknown key {key!r} (known: {', '.join(known)})")


def _unique(doc: Located, sources: tuple[FleetSource, ...], what: str) -> None:
    seen: dict[str, FleetSource] = {}
    for s in sources:
        value = getattr(s, what)
        if value is None:
            continue
        if value in seen:
            raise ConfigError(
                f"{s.where}: {what} {value!r} is already used by the source at "
                f"{seen[value].where} (each source loads into its own database)"
            )
        seen[value] = s


def assignments(fleet: Fleet, index: int, count: int) -> list[Assignment]:
    """The sources task ``index`` of ``count`` loads, each with its share (see the module),
    in the order it loads them: its list turned to start ``index/count`` of the way in, so
    the N tasks begin on different sources (different keys) rather than all on the first."""
    out: list[Assignment] = []
    offset = 0
    for source in fleet.sources:
        share = TaskShare(index, count, offset % count)
        if any(share.owns_number(k) for k in range(source.shards)):
            out.append(Assignment(source, share))
        offset += source.shards
    turn = index * len(out) // count
    return out[turn:] + out[:turn]


def missing_keys(fleet: Fleet, env: Mapping[str, str]) -> list[str]:
    """The ``api_key_env`` (and ``database_url_env``) variables that are unset or empty,
    each with its source."""
    return [
        f"{s.where}: source {s.name!r}: {name} is not set"
        for s in fleet.sources
        for name in (s.api_key_env, s.database_url_env)
        if name is not None and not env.get(name)
    ]


def source_settings(
    base: Settings, a: Assignment, api_key: str, database_url: str | None = None
) -> Settings:
    """The settings of one source's run in a fleet task: ``base`` (the command line) with the
    source's URL, key, database (``database_url`` when it has its own), data directory,
    share and options. ``ConfigError`` names the source's line."""
    s = a.source
    assert base.database_url is not None  # task mode requires it
    if database_url is None:
        assert s.database is not None
        database_url = with_database(base.database_url, s.database)
    try:
        return _replace(base, a, api_key, database_url)
    except ConfigError as exc:
        raise ConfigError(f"{s.where}: source {s.name!r}: {exc}") from exc


def _replace(base: Settings, a: Assignment, api_key: str, database_url: str) -> Settings:
    s = a.source
    return replace(
        base,
        api_url=s.api_url,
        api_key=api_key,
        database_url=database_url,
        data_dir=base.data_dir / "fleet" / s.name,
        shard_index=a.share.index,
        shard_count=a.share.count,
        shard_offset=a.share.offset,
        **s.options,
    )


def with_database(url: str, database: str) -> str:
    """``url`` pointing at ``database`` on the same server (query and credentials kept)."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + database, parts.query, parts.fragment))


def fleet_exit_code(codes: list[int]) -> int:
    """A fleet task's exit code from its sources' (as single tasks would have them): 75
    while a retry can cure any of them (the retry re-meets the broken ones, cheaply: they
    fail at their first request), else the first do-not-retry code, else 0."""
    mapped = [task_exit_code(c) for c in codes]
    if ExitCode.TEMPFAIL in mapped:
        return ExitCode.TEMPFAIL
    return next((c for c in mapped if c != ExitCode.OK), ExitCode.OK)
