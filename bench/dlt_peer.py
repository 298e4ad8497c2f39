"""The peer a user would pick instead of etl: dlt's ``rest_api`` source into PostgreSQL.

One ``rest_api`` resource on ``/events`` (``X-API-Key`` header, ``data_selector: data``, a
cursor paginator reading ``pagination.nextCursor`` and sending ``cursor``, ``limit=5000``,
primary key ``id``). Run by ``bench/bench_ingest.py`` in its own process so its CPU and peak
RSS are measured like etl's; usable on its own too:

    .venv/bin/python bench/dlt_peer.py --api-url http://127.0.0.1:8080/api/v1 \\
        --api-key ds_sandbox_demo_key_0000000000000000 \\
        --database-url postgresql://postgres@127.0.0.1:5432/etl --write-disposition merge

Prints one JSON line on stdout: rows loaded (counted in the destination table), seconds per
dlt step (extract, normalize, load) and the total. dlt is a benchmark-only dependency
(``pip install -e '.[bench]'``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit


def dlt_credentials(dsn: str) -> dict[str, Any]:
    """A libpq URL as dlt's credential fields.

    dlt renders its credentials back into a URL, so a unix-socket URL (``...@/db?host=/dir``,
    as the embedded PostgreSQL gives) keeps its socket directory as the ``host`` query
    parameter, which libpq honours over the URL's host part.
    """
    p = urlsplit(dsn)
    query = {k: v[0] for k, v in parse_qs(p.query).items()}
    creds: dict[str, Any] = {
        "database": unquote(p.path.lstrip("/")) or "postgres",
        "username": unquote(p.username or "postgres"),
        "password": unquote(p.password or ""),
        "host": p.hostname or "localhost",
        "port": p.port or 5432,
    }
    if query:
        creds["query"] = query
    return creds


def run(args: argparse.Namespace) -> dict[str, Any]:
    os.environ.setdefault("RUNTIME__DLTHUB_TELEMETRY", "false")
    import dlt
    from dlt.sources.rest_api import rest_api_source

    source = rest_api_source(
        {
            "client": {
                "base_url": args.api_url.rstrip("/") + "/",
                "headers": {"X-API-Key": args.api_key},
                "paginator": {
                    "type": "cursor",
                    "cursor_path": "pagination.nextCursor",
                    "cursor_param": "cursor",
                },
            },
            "resource_defaults": {
                "primary_key": "id",
                "write_disposition": args.write_disposition,
            },
            "resources": [
                {
                    "name": "events",
                    "endpoint": {
                        "path": "events",
                        "params": {"limit": args.limit},
                        "data_selector": "data",
                    },
                }
            ],
        }
    )
    extra: dict[str, Any] = {"progress": "log"} if args.progress else {}
    pipeline = dlt.pipeline(
        pipeline_name=f"dlt_peer_{args.write_disposition}",
        pipelines_dir=str(args.pipelines_dir),
        destination=dlt.destinations.postgres(credentials=dlt_credentials(args.database_url)),
        dataset_name=str(args.dataset),
        **extra,
    )
    steps: dict[str, float] = {}
    t0 = time.perf_counter()
    pipeline.extract(source, loader_file_format=args.loader_file_format)
    steps["extract_s"] = time.perf_counter() - t0
    t = time.perf_counter()
    pipeline.normalize()
    steps["normalize_s"] = time.perf_counter() - t
    t = time.perf_counter()
    pipeline.load()
    steps["load_s"] = time.perf_counter() - t
    total = time.perf_counter() - t0
    with pipeline.sql_client() as client:
        rows = client.execute_sql(f"SELECT count(*) FROM {args.dataset}.events")[0][0]
    return {
        "rows": int(rows),
        "seconds": round(total, 3),
        **{k: round(v, 3) for k, v in steps.items()},
        "write_disposition": args.write_disposition,
        "loader_file_format": args.loader_file_format or "default",
        "dlt_version": dlt.__version__,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--api-url", required=True, help="API base, e.g. http://host:port/api/v1")
    ap.add_argument("--api-key", default=os.environ.get("DATASYNC_API_KEY", ""))
    ap.add_argument("--database-url", required=True, help="postgresql://… (unix socket ok)")
    ap.add_argument("--write-disposition", choices=("merge", "append"), default="merge")
    ap.add_argument("--loader-file-format", default=None, help="dlt default when unset")
    ap.add_argument("--dataset", default="dlt_peer")
    ap.add_argument("--limit", type=int, default=5000)
    ap.add_argument("--pipelines-dir", default=None, help="dlt state (default: a temp dir)")
    ap.add_argument("--progress", action="store_true", help="dlt progress log on stderr")
    args = ap.parse_args()
    if args.pipelines_dir is None:
        with tempfile.TemporaryDirectory(prefix="dlt-peer-") as tmp:
            args.pipelines_dir = str(Path(tmp))
            result = run(args)
    else:
        result = run(args)
    sys.stdout.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
