"""A job on a real Spark standalone cluster, started by ``onceflow run`` without spark-submit.

The README's spark-submit command for the cluster is walked as written, with the cluster
it starts, by ``tests/test_readme_walk.py``, which also finds the executors it ran on both
workers, each with the onceflow zip that ``--py-files`` named.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from pyspark.sql import SparkSession

from onceflow.prove.workload import write_payment_files
from onceflow.testing.services.spark_cluster import LocalSparkCluster

ROOT = Path(__file__).resolve().parent.parent

pytestmark = [pytest.mark.cluster, pytest.mark.spark, pytest.mark.slow]

EXECUTOR_DIR = "reflect('java.lang.System', 'getProperty', 'user.dir') AS executor_dir"


def test_onceflow_run_on_a_cluster_master_ships_the_packages_itself(
    spark: SparkSession, spark_cluster: LocalSparkCluster, tmp_path: Path
) -> None:
    """Without spark-submit: the session ships onceflow's zip and the job's own function
    package once each, though ``run`` builds it twice (the run, then the sinks' row
    counts) and Spark refuses a second file of one name.

    Where a task ran is read from the job's output, not from a log: a column computed on
    the executor (``reflect`` of ``System.getProperty("user.dir")``, the working folder the
    worker gave the executor) must name a folder of one of the cluster's workers, both used.
    """
    write_payment_files(tmp_path / "data/sample/payments", count=100, files=2)
    env = {
        **os.environ,
        "SPARK_MASTER_URL": spark_cluster.master_url,
        "SPARK_LOCAL_IP": "127.0.0.1",
    }
    overrides = [
        f"storage.root={tmp_path}",
        f'transform.select=["*", "{EXECUTOR_DIR}"]',
        # a Python UDF of the project's own package: the executors import it from the zip
        # the session ships (their working folder is not the project's)
        "transform.python=functions.payments:with_size",
        # small splits: several tasks per batch, so both single-core executors get work
        'spark.conf["spark.sql.files.maxPartitionBytes"]=2048',
    ]
    result = subprocess.run(
        [sys.executable, "-m", "onceflow", "run", "jobs/payments.yaml", "--env", "cluster",
         *(arg for o in overrides for arg in ("--set", o))],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip

    # onceflow's own error line first: the plan Spark prints after it fills the tail
    errors = [line[:600] for line in result.stderr.splitlines() if "rror" in line][:6]
    assert result.returncode == 0, (errors, result.stderr[-3000:])
    assert f"job 'payments' on {spark_cluster.master_url}:" in result.stdout
    assert "sink 'events': 100 row(s)" in result.stdout
    events = spark.read.format("delta").load(str(tmp_path / "data/tables/payments/events"))
    assert events.select("id").distinct().count() == events.count() == 100
    sizes = {(r.amount >= 100, r.size) for r in events.select("amount", "size").collect()}
    assert sizes == {(True, "large"), (False, "small")}
    worker_dirs = [str(spark_cluster.work_dir(i)) for i in range(spark_cluster.workers)]
    executor_dirs = {row.executor_dir for row in events.select("executor_dir").distinct().collect()}
    assert all(any(d.startswith(w + os.sep) for w in worker_dirs) for d in executor_dirs), (
        f"rows processed outside the workers: {executor_dirs}"
    )
    used = {w for w in worker_dirs if any(d.startswith(w + os.sep) for d in executor_dirs)}
    assert used == set(worker_dirs), f"only {used} ran tasks: {executor_dirs}"
