"""The default job through a real ``spark-submit`` in local mode, as the README shows it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from pyspark.sql import SparkSession

from onceflow.prove.workload import write_payment_files

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent

pytestmark = [pytest.mark.spark, pytest.mark.slow]


def test_spark_submit_runs_the_default_job(spark: SparkSession, tmp_path: Path) -> None:
    write_payment_files(tmp_path / "data/sample/payments", count=400, files=4)
    jars = subprocess.run(
        [str(BIN / "onceflow"), "jars"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.strip()
    entrypoint = subprocess.run(
        [str(BIN / "onceflow"), "entrypoint"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.strip()

    command = [
        str(BIN / "spark-submit"),
        "--master", "local[1]",
        "--conf", "spark.ui.enabled=false",
        "--jars", jars,
        entrypoint, "run", "jobs/payments.yaml",
        "--env", "local",
        "--set", f"storage.root={tmp_path}",
    ]  # fmt: skip
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable, "SPARK_LOCAL_IP": "127.0.0.1"}
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)

    assert result.returncode == 0, result.stderr[-3000:]
    table = tmp_path / "data/tables/payments/events"
    assert f"sink 'events': 400 row(s) at {table}" in result.stdout
    assert spark.read.format("delta").load(str(table)).select("id").distinct().count() == 400
    # --master local[1] won over the profile's local[2]: the profile yields to spark-submit
    assert "job 'payments' on local[1]:" in result.stdout
