"""Helpers for streaming tests, following pyspark's own: start, drain, assert, stop."""

from __future__ import annotations

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.functions import col, to_date

from onceflow.config import JobSpec
from onceflow.contracts import BatchWriter
from onceflow.prove.workload import PAYMENTS_SCHEMA, payments
from onceflow.runner import start_query


def run_to_end(spark: SparkSession, spec: JobSpec, writer: BatchWriter | None = None) -> None:
    """Run ``spec``'s query until its trigger ends it; errors surface from the query."""
    query = start_query(spark, spec, writer)
    try:
        query.processAllAvailable()
        query.awaitTermination(120)
    finally:
        query.stop()
    exception = query.exception()
    if exception is not None:
        raise exception


def expected_payments(spark: SparkSession, count: int, seed: int = 7) -> DataFrame:
    """The workload built in Python (not through the job), shaped like the default job."""
    rows = [(p.id, p.account, p.amount, p.event_time) for p in payments(count, seed=seed)]
    frame = spark.createDataFrame(rows, PAYMENTS_SCHEMA)
    return frame.withColumn("event_date", to_date(col("event_time")))
