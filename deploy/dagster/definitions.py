"""etl ingest as a Dagster asset with static partitions: partition "I" is share I of N.

An example, not a dependency of etl (Dagster >= 1.6): ``dagster dev -f definitions.py``,
then materialise all partitions (a backfill runs them in parallel). Each partition runs
``etl ingest --shard-index I --shard-count N`` against the same DATABASE_URL (from the
code location's environment); a re-materialised partition resumes its shards. Exit 75
(temporary) asks Dagster to retry; 2/4/10/11 fail without retrying.
"""

from __future__ import annotations

import subprocess

import dagster as dg

SHARD_COUNT = 8  # partitions; the plan itself has ETL_SHARDS time shards (>= this)
DO_NOT_RETRY = {2: "configuration", 4: "API key rejected", 10: "different dataset",
                11: "incomplete data"}

shares = dg.StaticPartitionsDefinition([str(i) for i in range(SHARD_COUNT)])


@dg.asset(partitions_def=shares)
def datasync_events(context: dg.AssetExecutionContext) -> None:
    """Every DataSync event, loaded into PostgreSQL exactly once (share I of N)."""
    code = subprocess.run(
        ["etl", "ingest", "--shard-index", context.partition_key,
         "--shard-count", str(SHARD_COUNT), "--log-format", "json"],
        check=False,
    ).returncode
    if code == 0:
        return
    if code == 75:  # temporary: the retry resumes the share where it stopped
        raise dg.RetryRequested(max_retries=5, seconds_to_wait=30)
    raise dg.Failure(
        description=f"etl ingest exited {code}: {DO_NOT_RETRY.get(code, 'see the log')}",
        allow_retries=False,
    )


defs = dg.Definitions(assets=[datasync_events])
