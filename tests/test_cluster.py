"""A job on a real Spark standalone cluster, submitted with the README's own command.

Where a task ran is read from the job's output, not from a log: the test adds a column
computed on the executor (``reflect`` of ``System.getProperty("user.dir")``, the working
folder the worker gave the executor), and every row must name a folder of one of the
cluster's workers.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from shlex import quote

import pytest
from pyspark.sql import SparkSession

from onceflow.prove.workload import write_payment_files
from onceflow.testing.services.spark_cluster import LocalSparkCluster
from tests.test_readme import blocks

ROOT = Path(__file__).resolve().parent.parent

pytestmark = [pytest.mark.cluster, pytest.mark.spark, pytest.mark.slow]

EXECUTOR_DIR = "reflect('java.lang.System', 'getProperty', 'user.dir') AS executor_dir"


def readme_submit_command() -> str:
    """The spark-submit command of the README's cluster section, as one shell line."""
    block = next(b for b in blocks("bash") if "--py-files" in b and "cluster-up" in b)
    lines = block.replace("\\\n", " ").splitlines()
    return next(line for line in lines if "spark-submit" in line)


def test_readme_job_runs_on_the_cluster_workers(
    spark: SparkSession, spark_cluster: LocalSparkCluster, tmp_path: Path
) -> None:
    write_payment_files(tmp_path / "data/sample/payments", count=400, files=4)
    overrides = [
        f"storage.root={tmp_path}",
        f'transform.select=["*", "{EXECUTOR_DIR}"]',
        # small splits: several tasks per batch, so both single-core executors get work
        'spark.conf["spark.sql.files.maxPartitionBytes"]=4096',
    ]
    command = " ".join([readme_submit_command(), *(f"--set {quote(o)}" for o in overrides)])
    env = {
        **os.environ,
        "SPARK_MASTER_URL": spark_cluster.master_url,
        "SPARK_LOCAL_IP": "127.0.0.1",
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
    }
    result = subprocess.run(
        ["bash", "-c", command], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
    )

    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    assert f"job 'payments' on {spark_cluster.master_url}:" in result.stdout
    events = spark.read.format("delta").load(str(tmp_path / "data/tables/payments/events"))
    assert events.select("id").distinct().count() == events.count() == 400

    worker_dirs = [str(spark_cluster.work_dir(i)) for i in range(spark_cluster.workers)]
    executor_dirs = {row.executor_dir for row in events.select("executor_dir").distinct().collect()}
    workers_used = {w for w in worker_dirs if any(d.startswith(w + os.sep) for d in executor_dirs)}
    assert all(any(d.startswith(w + os.sep) for w in worker_dirs) for d in executor_dirs), (
        f"rows processed outside the workers: {executor_dirs}"
    )
    assert workers_used == set(worker_dirs), f"only {workers_used} ran tasks: {executor_dirs}"
    # each executor fetched the onceflow package that --py-files named
    for folder in executor_dirs:
        assert list(Path(folder).glob("onceflow-*.zip")), f"no onceflow zip in {folder}"


def test_onceflow_run_on_a_cluster_master_ships_the_package_itself(
    spark: SparkSession, spark_cluster: LocalSparkCluster, tmp_path: Path
) -> None:
    """Without spark-submit: the session ships the zip once, though ``run`` builds it twice
    (the run, then the sinks' row counts) and Spark refuses a second file of one name."""
    write_payment_files(tmp_path / "data/sample/payments", count=100, files=2)
    env = {
        **os.environ,
        "SPARK_MASTER_URL": spark_cluster.master_url,
        "SPARK_LOCAL_IP": "127.0.0.1",
    }
    result = subprocess.run(
        [sys.executable, "-m", "onceflow", "run", "jobs/payments.yaml", "--env", "cluster",
         "--set", f"storage.root={tmp_path}"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip

    assert result.returncode == 0, result.stderr[-3000:]
    assert f"job 'payments' on {spark_cluster.master_url}:" in result.stdout
    assert "sink 'events': 100 row(s)" in result.stdout
