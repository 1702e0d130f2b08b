"""Each source kind and trigger, through a real query into a Delta sink."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from chispa import assert_df_equality
from pyspark.sql import SparkSession

from onceflow.prove.workload import PAYMENTS_SCHEMA
from tests.conftest import JobLoader
from tests.streaming import expected_payments, run_to_end

pytestmark = pytest.mark.spark


def write_job(folder: Path, source: dict[str, object], **extra: object) -> Path:
    job = {
        "name": "source-test",
        "source": source,
        "sinks": [{"name": "out", "kind": "delta", "path": "tables/out"}],
        "checkpoint": "state/source-test",
        **extra,
    }
    path = folder / "job.yaml"
    path.write_text(yaml.safe_dump(job))
    return path


@pytest.mark.parametrize("file_format", ["csv", "parquet", "json"])
def test_file_formats(
    spark: SparkSession, job_in: JobLoader, tmp_path: Path, file_format: str
) -> None:
    expected = expected_payments(spark, 200).drop("event_date")
    expected.coalesce(2).write.format(file_format).option("header", True).save(str(tmp_path / "in"))
    options = {"header": True} if file_format == "csv" else {}
    source = {
        "kind": "files",
        "format": file_format,
        "path": "in",
        "schema": PAYMENTS_SCHEMA,
        "options": options,
        "max_files_per_trigger": 1,
    }
    spec = job_in(write_job(tmp_path, source)).spec

    run_to_end(spark, spec)

    actual = spark.read.format("delta").load(spec.sinks[0].path)
    assert_df_equality(actual, expected, ignore_row_order=True, ignore_nullable=True)


def test_delta_source_streams_appends(
    spark: SparkSession, job_in: JobLoader, tmp_path: Path
) -> None:
    upstream = str(tmp_path / "upstream")
    expected = expected_payments(spark, 300).drop("event_date")
    expected.limit(100).write.format("delta").save(upstream)
    spec = job_in(write_job(tmp_path, {"kind": "delta", "path": "upstream"})).spec
    run_to_end(spark, spec)

    expected.subtract(expected.limit(100)).write.format("delta").mode("append").save(upstream)
    run_to_end(spark, spec)

    actual = spark.read.format("delta").load(spec.sinks[0].path)
    assert_df_equality(actual, expected, ignore_row_order=True, ignore_nullable=True)


def test_trigger_once_takes_one_batch(
    spark: SparkSession, job_in: JobLoader, tmp_path: Path
) -> None:
    expected_payments(spark, 100).drop("event_date").repartition(4).write.json(str(tmp_path / "in"))
    source = {
        "kind": "files",
        "format": "json",
        "path": "in",
        "schema": PAYMENTS_SCHEMA,
        "max_files_per_trigger": 1,
    }
    spec = job_in(write_job(tmp_path, source, trigger={"once": True})).spec

    run_to_end(spark, spec)

    # once ignores max_files_per_trigger and takes everything in one batch
    assert spark.read.format("delta").load(spec.sinks[0].path).count() == 100
    assert spark.sql(f"DESCRIBE HISTORY delta.`{spec.sinks[0].path}`").count() == 1


def test_processing_time_keeps_running(
    spark: SparkSession, job_in: JobLoader, tmp_path: Path
) -> None:
    from onceflow.runner import start_query

    expected_payments(spark, 50).drop("event_date").write.json(str(tmp_path / "in"))
    source = {"kind": "files", "format": "json", "path": "in", "schema": PAYMENTS_SCHEMA}
    spec = job_in(write_job(tmp_path, source, trigger={"processing_time": "1 second"})).spec

    query = start_query(spark, spec)
    try:
        query.processAllAvailable()
        assert query.isActive  # a processing-time query waits for more input
    finally:
        query.stop()
    assert spark.read.format("delta").load(spec.sinks[0].path).count() == 50
