"""The default job (jobs/payments.yaml) end to end: JSON files -> Delta, compared with chispa."""

from __future__ import annotations

from pathlib import Path

import pytest
from chispa import assert_df_equality
from pyspark.sql import SparkSession

from onceflow.prove.workload import write_payment_files
from tests.conftest import JobLoader
from tests.streaming import expected_payments, run_to_end

pytestmark = pytest.mark.spark


def test_default_job_writes_every_payment_once(
    spark: SparkSession, job_in: JobLoader, tmp_path: Path
) -> None:
    write_payment_files(tmp_path / "data/sample/payments", count=600, files=6)
    spec = job_in("jobs/payments.yaml").spec

    run_to_end(spark, spec)

    actual = spark.read.format("delta").load(spec.sinks[0].path)
    assert_df_equality(
        actual, expected_payments(spark, 600), ignore_row_order=True, ignore_nullable=True
    )
    # max_files_per_trigger: 4 over 6 files -> two commits after the table's creation
    history = spark.sql(f"DESCRIBE HISTORY delta.`{spec.sinks[0].path}`").collect()
    assert len(history) == 2


def test_restart_picks_up_only_new_files(
    spark: SparkSession, job_in: JobLoader, tmp_path: Path
) -> None:
    folder = tmp_path / "data/sample/payments"
    spec = job_in("jobs/payments.yaml").spec
    write_payment_files(folder, count=300, files=3)
    run_to_end(spark, spec)

    # a second drop of files with new names, ids 301..600 (same seed: first 300 repeat)
    for path in write_payment_files(tmp_path / "second", count=600, files=6)[3:]:
        path.rename(folder / f"second-{path.name}")
    run_to_end(spark, spec)

    actual = spark.read.format("delta").load(spec.sinks[0].path)
    assert actual.count() == 600
    assert actual.select("id").distinct().count() == 600
