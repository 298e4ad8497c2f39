"""etl ingest as N mapped Airflow tasks (dynamic task mapping), one per share of the plan.

An example, not a dependency of etl: copy it into your DAGs folder (Airflow >= 2.7; run
for real under Airflow 3.3.2 by ``bench/bench_airflow.py``). Every mapped task runs
``etl ingest --shard-index I --shard-count N`` against the same DATABASE_URL; a retried
task resumes its shards from their progress rows. The exit code decides the retry:
75 (temporary) is retried, 2/4/10/11 (configuration, API key, different dataset,
incomplete data) fail at once without using the retries.

Two flavours:
- ``etl_ingest_shards``: the tasks run ``etl`` installed on the workers (a subprocess).
- ``etl_ingest_shards_k8s``: each task is a pod of the etl image (KubernetesPodOperator,
  from ``apache-airflow-providers-cncf-kubernetes``; defined only when it is installed).
"""

from __future__ import annotations

import os
import subprocess
from datetime import timedelta

import pendulum
from airflow.exceptions import AirflowException, AirflowFailException

try:
    from airflow.sdk import dag, task  # Airflow 3
except ImportError:  # Airflow 2
    from airflow.decorators import dag, task

# tasks per run (the plan itself has ETL_SHARDS time shards, >= this), and the etl command
SHARD_COUNT = int(os.environ.get("ETL_SHARD_COUNT", "8"))
ETL = os.environ.get("ETL_COMMAND", "etl")  # e.g. /opt/etl/.venv/bin/etl
DO_NOT_RETRY = {2: "configuration", 4: "API key rejected", 10: "different dataset",
                11: "incomplete data"}
DEFAULTS = {
    "retries": 5,
    "retry_delay": timedelta(seconds=30),
    "retry_exponential_backoff": True,
}
START = pendulum.datetime(2026, 1, 1, tz="UTC")


@dag(schedule="@hourly", start_date=START, catchup=False, max_active_runs=1,
     default_args=DEFAULTS, tags=["etl"])
def etl_ingest_shards() -> None:
    @task
    def ingest(index: int) -> None:
        # DATABASE_URL, DATASYNC_API_URL, DATASYNC_API_KEY come from the worker's
        # environment (or set them here from an Airflow Connection / Variable)
        code = subprocess.run(
            [ETL, "ingest", "--shard-index", str(index),
             "--shard-count", str(SHARD_COUNT), "--log-format", "json"],
            check=False,
        ).returncode
        if code == 0:
            return
        if code in DO_NOT_RETRY:
            raise AirflowFailException(f"etl ingest exited {code}: {DO_NOT_RETRY[code]}")
        raise AirflowException(f"etl ingest exited {code}; retrying resumes the share")

    ingest.expand(index=list(range(SHARD_COUNT)))


etl_ingest_shards()

try:
    from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator
    from kubernetes.client import models as k8s
except ImportError:  # the provider is not installed: only the first DAG
    KubernetesPodOperator = None

if KubernetesPodOperator is not None:

    @dag(schedule="@hourly", start_date=START, catchup=False, max_active_runs=1,
         default_args=DEFAULTS, tags=["etl"])
    def etl_ingest_shards_k8s() -> None:
        secret = k8s.V1EnvVarSource(
            secret_key_ref=k8s.V1SecretKeySelector(name="etl", key="database-url"))
        key = k8s.V1EnvVarSource(
            secret_key_ref=k8s.V1SecretKeySelector(name="etl", key="api-key"))
        KubernetesPodOperator.partial(
            task_id="ingest",
            name="etl-ingest",
            image="registry.example.com/datasync-etl:0.1.0",
            env_vars=[
                k8s.V1EnvVar(name="ETL_SHARD_COUNT", value=str(SHARD_COUNT)),
                k8s.V1EnvVar(name="DATASYNC_API_URL",
                             value="https://datasync.example.com/api/v1"),
                k8s.V1EnvVar(name="DATABASE_URL", value_from=secret),
                k8s.V1EnvVar(name="DATASYNC_API_KEY", value_from=key),
            ],
            get_logs=True,
            # every non-zero exit is retried here (the operator cannot tell 75 from 2);
            # use the first DAG, or the Indexed Job, for exit-code-aware retries
        ).expand(arguments=[["ingest", "--shard-index", str(i), "--log-format", "json"]
                            for i in range(SHARD_COUNT)])

    etl_ingest_shards_k8s()
