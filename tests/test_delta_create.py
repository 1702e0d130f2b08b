"""A MERGE sink creates its table even where a creator was killed before its first commit.

What a SIGKILL during the table's creation (``DeltaTable.createIfNotExists``) left behind,
in a sweep of 20 kills 0-300 ms into it: no folder (12), an empty folder (1),
``_delta_log/_staged_commits/`` (2), the same plus version 0 written to a hidden temp file
not yet renamed (3), a committed version 0 (2). With a ``_delta_log`` but no version,
``isDeltaTable`` is false while ``createIfNotExists`` takes the non-empty folder for a table
and skips creating it, so every restart failed with DELTA_TABLE_NOT_FOUND.
"""

from __future__ import annotations

import shutil
import threading
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from pathlib import Path

import pytest
from chispa import assert_df_equality
from delta.tables import DeltaTable
from pyspark.sql import SparkSession
from pyspark.sql.types import StructType

from onceflow.contracts import BatchContext
from onceflow.prove.workload import PAYMENTS_SCHEMA
from onceflow.sinks.base import build_sink
from onceflow.sinks.delta import DeltaSinkSpec
from onceflow.sinks.delta.sink import DeltaSink
from tests.conftest import JobLoader

pytestmark = pytest.mark.spark

JOB = "jobs/payments_exactly_once_transactional.yaml"
VERSION_ZERO = "00000000000000000000.json"
# the temp name Delta's local/HDFS LogStore writes version 0 under before renaming it
STAGED = f".{VERSION_ZERO}.a19dbd2b-82d6-4050-aa8e-7d4eed9177ef.tmp"

Leftover = Callable[[SparkSession, Path, StructType], None]


def _empty_log(_spark: SparkSession, table: Path, _schema: StructType) -> None:
    (table / "_delta_log").mkdir(parents=True)


def _staged_commits(_spark: SparkSession, table: Path, _schema: StructType) -> None:
    (table / "_delta_log" / "_staged_commits").mkdir(parents=True)


def _version_zero_not_renamed(spark: SparkSession, table: Path, schema: StructType) -> None:
    """Version 0 as the killed creator wrote it, still under its temp name."""
    whole = table.parent / "created-whole"
    DeltaTable.createIfNotExists(spark).location(str(whole)).addColumns(schema).execute()
    _staged_commits(spark, table, schema)
    shutil.copy(whole / "_delta_log" / VERSION_ZERO, table / "_delta_log" / STAGED)
    crc = whole / "_delta_log" / f".{VERSION_ZERO}.crc"
    shutil.copy(crc, table / "_delta_log" / f".{STAGED}.crc")


def _balances(job_in: JobLoader) -> tuple[DeltaSink, str]:
    """The job's MERGE sink (its table in the test's tmp folder) and its schema DDL."""
    spec = job_in(JOB).spec
    balances = next(s for s in spec.sinks if s.name == "balances")
    sink = build_sink(spec, balances)
    assert isinstance(sink, DeltaSink) and isinstance(balances, DeltaSinkSpec)
    assert balances.schema_ddl is not None
    return sink, balances.schema_ddl


@pytest.mark.parametrize(
    "leftover",
    [_empty_log, _staged_commits, _version_zero_not_renamed],
    ids=["empty-delta-log", "staged-commits-only", "version-zero-not-renamed"],
)
def test_merge_creates_the_table_over_a_killed_creation(
    spark: SparkSession, job_in: JobLoader, leftover: Leftover
) -> None:
    sink, ddl = _balances(job_in)
    schema = spark.createDataFrame([], ddl).schema
    leftover(spark, Path(sink.path), schema)
    assert not DeltaTable.isDeltaTable(spark, sink.path)

    at = datetime(2026, 1, 1)
    rows = [(1, "a", Decimal("1.50"), at), (2, "a", Decimal("2.00"), at), (3, "b", Decimal(5), at)]
    sink.write(spark.createDataFrame(rows, PAYMENTS_SCHEMA), BatchContext("app", 0, guarded=True))

    expected = spark.createDataFrame([("a", Decimal("3.50"), 2), ("b", Decimal("5.00"), 1)], schema)
    actual = spark.read.format("delta").load(sink.path)
    assert_df_equality(actual, expected, ignore_row_order=True)


def test_the_loser_of_a_race_to_create_uses_the_winners_table(
    spark: SparkSession, job_in: JobLoader
) -> None:
    sink, _ = _balances(job_in)
    source = spark.createDataFrame([], PAYMENTS_SCHEMA)
    start, failures = threading.Barrier(2), list[Exception]()

    def create() -> None:
        start.wait()
        try:  # creation alone: two MERGEs into a new table may conflict on their own
            sink._create_if_missing(spark, source)
        except Exception as exc:
            failures.append(exc)

    threads = [threading.Thread(target=create) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert failures == []
    versions = DeltaTable.forPath(spark, sink.path).history().select("version").collect()
    assert [row.version for row in versions] == [0]
