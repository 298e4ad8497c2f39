"""`etl reset`: forget the sync state, all of it or named shards, so the next ingest re-reads.

Loaded rows stay (and keep counting) unless ``--drop-data`` asks in so many words. On a
terminal it asks before doing anything; a script says ``--yes``; without a terminal and
without ``--yes`` it refuses (exit 2). It takes the ingest lock, so it never pulls the state
from under a running ``etl ingest`` (exit 7).
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer

from etl.cli.db import fail, open_database
from etl.cli.options import DatabaseUrl, DataDir
from etl.cli.root import app
from etl.errors import ConfigError, EtlError


def _plan(
    shards: list[str], done: int, loaded: int, quarantined: int, api: str | None, *, drop: bool
) -> list[str]:
    if drop:
        return [
            f"DELETE all {loaded:,} loaded events and the {quarantined:,} quarantined ones "
            "(this cannot be undone)",
            f"forget all {len(shards)} shard(s) and the source identity"
            + (f" ({api})" if api else ""),
        ]
    return [
        f"forget all {len(shards)} shard(s) ({done} done): the next `etl ingest` re-reads "
        "the whole source",
        "forget the source identity" + (f" ({api})" if api else ""),
        f"keep the {loaded:,} loaded events (they still count; --drop-data deletes them)",
    ]


async def reset_main(
    database_url: str | None,
    data_dir: Path,
    shard_ids: list[str],
    *,
    drop: bool,
    confirm: Callable[[list[str], str], bool],
) -> str:
    from etl.sink.postgres import PostgresSink
    from etl.source.datasync import EVENTS

    async with open_database(database_url, data_dir) as dsn:
        if dsn is None:
            return f"nothing to reset: no database in {data_dir} (no ingest has run)"
        async with PostgresSink(dsn, stream=EVENTS, loaders=1) as sink:
            where = sink.dsn_redacted if database_url else f"the embedded database in {data_dir}"
            await sink.try_lock()
            shards = await sink.load_shards()
            if not shards and not drop:
                return f"nothing to reset: no sync state in {where}"
            if shard_ids:
                known = {s.shard_id for s in shards}
                unknown = [i for i in shard_ids if i not in known]
                if unknown:
                    raise ConfigError(
                        f"no shard {', '.join(unknown)} in {where} "
                        f"(`etl status` lists them: {', '.join(sorted(known)[:8])}…)"
                    )
                plan = [
                    f"start shard(s) {', '.join(shard_ids)} over (re-read whole); "
                    "loaded events stay"
                ]
            else:
                tally = await sink.tally()
                identity = await sink.load_identity()
                done = sum(1 for s in shards if s.status == "done")
                api = identity.api if identity else None
                ids = [s.shard_id for s in shards]
                plan = _plan(ids, done, tally.events, tally.quarantined, api, drop=drop)
            if not confirm(plan, where):
                return "nothing changed"
            if drop:
                dropped = await sink.drop_everything()
                return f"reset: deleted {dropped:,} loaded events and all sync state in {where}"
            if shard_ids:
                await sink.reset_shards(shard_ids)
                return f"reset: {len(shard_ids)} shard(s) start over at the next `etl ingest`"
            retired = await sink.reset_progress()
            return (
                f"reset: {retired} shard(s) and the source identity forgotten in {where}; "
                "loaded events kept. The next `etl ingest` re-reads the whole source"
            )


@app.command()
def reset(
    data_dir: DataDir,
    database_url: DatabaseUrl = None,
    shard: Annotated[
        list[str] | None,
        typer.Option(
            "--shard",
            help="Start only this shard over (repeatable; ids as `etl status` shows them). "
            "Default: all sync state.",
            show_default=False,
        ),
    ] = None,
    drop_data: Annotated[
        bool,
        typer.Option(
            "--drop-data", help="Also DELETE every loaded event and the quarantine (no undo)."
        ),
    ] = False,
    yes: Annotated[
        bool, typer.Option("--yes", "-y", help="Do not ask (needed when stdin is no terminal).")
    ] = False,
) -> None:
    """Forget the sync state so the next `etl ingest` re-reads the source; loaded rows stay.

    Asks first on a terminal; refuses without --yes otherwise (exit 2). Exit 7 while an
    ingest is running. `etl ingest --full-refresh` does the same reset as part of a run.
    """
    shard_ids = list(shard or [])
    try:
        if shard_ids and drop_data:
            raise ConfigError("--drop-data resets everything: it cannot be combined with --shard")
        if not yes and not sys.stdin.isatty():
            raise ConfigError(
                "etl reset changes the sync state: pass --yes to confirm "
                "(stdin is not a terminal to ask on)"
            )

        def confirm(plan: list[str], where: str) -> bool:
            typer.echo(f"etl reset will, in {where}:")
            for line in plan:
                typer.echo(f"  - {line}")
            return yes or typer.confirm("Proceed?", default=False)

        message = asyncio.run(
            reset_main(database_url, data_dir, shard_ids, drop=drop_data, confirm=confirm)
        )
    except EtlError as exc:
        raise fail(exc) from None
    typer.echo(message)
