"""Helpers for streaming tests, following pyspark's own: start, drain, assert, stop."""

from __future__ import annotations

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.functions import col, to_date

from onceflow.config import JobSpec
from onceflow.contracts import BatchReports, BatchWriter
from onceflow.prove.crash import CrashPlan
from onceflow.prove.workload import PAYMENTS_SCHEMA, payments
from onceflow.runner import start_query
from onceflow.testing import drain


def run_to_end(
    spark: SparkSession,
    spec: JobSpec,
    writer: BatchWriter | None = None,
    crash: CrashPlan | None = None,
    adopt_checkpoint: bool = False,
    reports: BatchReports | None = None,
) -> None:
    """Run ``spec``'s query until its trigger ends it; errors surface from the query.
    ``crash`` installs crash injection (the explicit API only tests and prove use); each
    batch's report goes to ``reports``."""
    query = start_query(
        spark,
        spec,
        writer,
        reports=reports,
        instrument=crash,
        adopt_checkpoint=adopt_checkpoint,
    )
    drain(query, timeout=120)


def crash_at(point: str, batch_id: int, action: str = "raise") -> CrashPlan:
    """A crash plan: ``crash_at("after_write", 1)``."""
    return CrashPlan.parse(f"{point}@{batch_id}:{action}")


def expected_payments(spark: SparkSession, count: int, seed: int = 7) -> DataFrame:
    """The workload built in Python (not through the job), shaped like the default job."""
    rows = [(p.id, p.account, p.amount, p.event_time) for p in payments(count, seed=seed)]
    frame = spark.createDataFrame(rows, PAYMENTS_SCHEMA)
    return frame.withColumn("event_date", to_date(col("event_time")))
