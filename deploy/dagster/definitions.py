"""etl ingest as a Dagster asset with static partitions: partition "I" is share I of N.

An example, not a dependency of etl (Dagster >= 1.6; loaded and materialised under
Dagster 1.13.28, see deploy/README.md): ``dagster dev -f definitions.py``, then
materialise all partitions (a backfill runs them in parallel). Each partition runs
``etl ingest --shard-index I --shard-count N`` against the same DATABASE_URL (from the
code location's environment, with DATASYNC_API_URL and DATASYNC_API_KEY); a
re-materialised or retried partition resumes its shards. 2/4/10/11 (configuration, API
key, different dataset, incomplete data) fail without retrying; any other failure (75,
temporary; a process killed) asks Dagster to retry, as the Airflow DAG and the Indexed
Job do. ``ETL_SHARD_COUNT`` (default 8) and ``ETL_COMMAND`` (default ``etl``) come from
the environment.
"""

# No ``from __future__ import annotations``: Dagster reads the ``context`` annotation when
# the asset is defined and refuses it as a string ("dg.AssetExecutionContext").
import os
import subprocess

import dagster as dg

SHARD_COUNT = int(os.environ.get("ETL_SHARD_COUNT", "8"))  # partitions; ETL_SHARDS >= this
ETL = os.environ.get("ETL_COMMAND", "etl")
DO_NOT_RETRY = {2: "configuration", 4: "API key rejected", 10: "different dataset",
                11: "incomplete data"}

shares = dg.StaticPartitionsDefinition([str(i) for i in range(SHARD_COUNT)])


@dg.asset(partitions_def=shares)
def datasync_events(context: dg.AssetExecutionContext) -> None:
    """Every DataSync event, loaded into PostgreSQL exactly once (share I of N)."""
    code = subprocess.run(
        [ETL, "ingest", "--shard-index", context.partition_key,
         "--shard-count", str(SHARD_COUNT), "--log-format", "json"],
        check=False,
    ).returncode
    if code == 0:
        return
    if code in DO_NOT_RETRY:
        raise dg.Failure(
            description=f"etl ingest exited {code}: {DO_NOT_RETRY[code]}", allow_retries=False
        )
    # 75 (temporary), or killed (a negative code: the signal): the retry resumes the share
    context.log.warning(f"etl ingest exited {code}; retrying resumes the share")
    raise dg.RetryRequested(max_retries=5, seconds_to_wait=30)


defs = dg.Definitions(assets=[datasync_events])
