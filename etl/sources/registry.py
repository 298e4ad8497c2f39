"""Finding a source by name or path, and listing what is available.

    datasync              built in (Python: etl/source/), `etl ingest`
    github, ...           spec files in etl/sources/specs/*.yaml, `etl sync NAME`
    ./my-api.yaml         any spec file, by path
    [etl.sources] group   third-party packages: an entry point naming a callable that
                          returns a SourceSpec, the path of a spec file, or a Python
                          source (``etl.models.Source``, see ``etl.sources.plugins``)

An entry point is loaded only when asked for by name or listed by `etl sources`; a
broken one is reported in one line, never a traceback.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from etl.errors import ConfigError
from etl.models import Source
from etl.rest.load import load
from etl.rest.spec import AuthSpec, Column, Incremental, SourceSpec, StreamSpec
from etl.sources import events
from etl.sources.plugins import as_spec, is_python_source

SPECS = Path(__file__).parent / "specs"
ENTRY_POINT_GROUP = "etl.sources"
DATASYNC_STREAMS = (events.STREAM,)

#: DataSync described in the same terms as a spec (for `etl discover datasync`); its
#: reading is the built-in Python source (etl/source/), split into time-range shards.
DATASYNC = SourceSpec(
    name="datasync",
    file="built-in",
    description="DataSync Analytics events (Python source: time-range shards, cursor chains)",
    base_url="${DATASYNC_API_URL}",
    streams=(
        StreamSpec(
            name=events.STREAM,
            path="/events",
            primary_key=events.PRIMARY_KEY,
            table=events.STREAM,
            incremental=Incremental(cursor_field="occurred_at", lookback_s=1.0),
            columns=tuple(
                Column(c.name, c.type, (events.SOURCE_FIELDS[c.name],), nullable=c.nullable)
                for c in events.COLUMNS
            ),
        ),
    ),
    auth=AuthSpec(type="api_key", name="X-API-Key"),
)


@dataclass(frozen=True, slots=True)
class SourceInfo:
    name: str
    kind: str  # "python" | "spec"
    origin: str  # "built-in", a file path, or "entry point <value>"
    streams: tuple[str, ...]
    description: str = ""


EntryPoints = Callable[[], Iterable[metadata.EntryPoint]]


def _entry_points() -> Iterable[metadata.EntryPoint]:
    return metadata.entry_points(group=ENTRY_POINT_GROUP)


def _builtin_specs() -> dict[str, Path]:
    return {p.stem: p for p in sorted(SPECS.glob("*.yaml"))}


def _from_entry_point(ep: metadata.EntryPoint) -> SourceSpec:
    made = _load(ep)
    if is_python_source(made):
        return as_spec(ep.name, f"entry point {ep.value}", made)
    return _spec_of(ep, made)


def _load(ep: metadata.EntryPoint) -> object:
    try:
        made = ep.load()()
    except Exception as exc:  # a third party's code: anything can go wrong in it
        raise ConfigError(
            f"source {ep.name!r} (entry point {ep.value}) failed to load: "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    return made


def _spec_of(ep: metadata.EntryPoint, made: object) -> SourceSpec:
    if isinstance(made, SourceSpec):
        return made
    if isinstance(made, str | Path):
        return load(Path(made))
    raise ConfigError(
        f"source {ep.name!r} (entry point {ep.value}) returned {type(made).__name__}, "
        "expected a SourceSpec, the path of a spec file or a Source (etl.sources.plugins)"
    )


def find_source(
    name_or_path: str, entry_points: EntryPoints = _entry_points
) -> SourceSpec | Source:
    """Like ``find``, but a third-party Python source comes back as itself (to run it)."""
    for ep in entry_points():
        if ep.name == name_or_path:
            made = _load(ep)
            return made if is_python_source(made) else _spec_of(ep, made)
    return find(name_or_path, entry_points)


def find(name_or_path: str, entry_points: EntryPoints = _entry_points) -> SourceSpec:
    """The spec of a declarative source (ConfigError listing what exists when unknown)."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.is_file():
        return load(path)
    builtin = _builtin_specs()
    if name_or_path in builtin:
        return load(builtin[name_or_path])
    for ep in entry_points():
        if ep.name == name_or_path:
            spec = _from_entry_point(ep)
            if not spec.base_url:  # a Python source: no spec to check or sign in with
                raise ConfigError(
                    f"{name_or_path} is a Python source: `etl sync {name_or_path}` loads it,"
                    f" `etl discover {name_or_path}` describes it"
                )
            return spec
    if name_or_path == "datasync":
        raise ConfigError(
            "datasync is the built-in Python source: `etl ingest` loads it, `etl health` checks it"
        )
    known = ["datasync", *builtin, *(ep.name for ep in entry_points())]
    raise ConfigError(f"unknown source {name_or_path!r} (available: {', '.join(known)})")


def describe(name_or_path: str, entry_points: EntryPoints = _entry_points) -> SourceSpec:
    """Like ``find``, and the Python sources' declarations too (for `etl discover`)."""
    if name_or_path == "datasync":
        return DATASYNC
    for ep in entry_points():
        if ep.name == name_or_path:
            return _from_entry_point(ep)
    return find(name_or_path, entry_points)


def available(entry_points: EntryPoints = _entry_points) -> list[SourceInfo]:
    out = [
        SourceInfo("datasync", "python", "built-in", DATASYNC_STREAMS, "DataSync Analytics events")
    ]
    for name, path in _builtin_specs().items():
        spec = load(path)
        out.append(
            SourceInfo(name, "spec", "built-in", tuple(s.name for s in spec.streams),
                       spec.description)
        )  # fmt: skip
    for ep in entry_points():
        try:
            spec = _from_entry_point(ep)
        except ConfigError as exc:
            out.append(SourceInfo(ep.name, "broken", f"entry point {ep.value}", (), str(exc)))
            continue
        kind = "spec" if spec.base_url else "python"
        out.append(
            SourceInfo(ep.name, kind, f"entry point {ep.value}",
                       tuple(s.name for s in spec.streams), spec.description)
        )  # fmt: skip
    return out
