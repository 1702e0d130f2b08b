"""The Parquet sink: plain Parquet files written from ``foreachBatch``.

- ``append``: a replay appends the batch again (refused under exactly-once).
- ``replace-batch``: rows carry their batch id in ``batch_id_column`` (a partition column);
  a replay overwrites exactly that partition by dynamic partition overwrite. While the
  replay's job commits, a reader listing the folder can see the partition missing or half
  moved; once it completes the partition holds the batch exactly once. Readers that need
  a consistent view at every moment want a Delta sink.

Its batch marks live in ``<path>/_onceflow/marks/``, one small file per app id (Spark's
readers skip folders starting with ``_``): the file is created before the app's first
write, so a sink holding data of a run that crashed in its first batch is known as that
run's own, and it is rewritten with the batch id after every batch. The foreign-sink check,
``onceflow status`` and a replay's outcome read them as they read Delta's commit markers.
"""

from __future__ import annotations

import hashlib
import json

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from onceflow.config import JobSpec, WriteMode
from onceflow.contracts import BatchContext
from onceflow.files import CheckpointFiles
from onceflow.sinks.base import BatchSink
from onceflow.sinks.parquet import ParquetSinkSpec

__all__ = ["MARKS_FOLDER", "ParquetSink", "build"]

MARKS_FOLDER = "_onceflow/marks"
# what a Parquet folder holds besides data: Spark's and Hadoop's bookkeeping, our marks
_NOT_DATA = ("_onceflow", "_SUCCESS", "_temporary", "_spark_metadata", "_committed", "_started")


def build(job: JobSpec, spec: ParquetSinkSpec, mode: WriteMode) -> ParquetSink:
    """The kind's factory (``onceflow.sinks.parquet.SINK.build``)."""
    return ParquetSink(job.name, spec, mode)


class ParquetSink(BatchSink):
    """A folder of Parquet files; ``replace-batch`` partitions it by the batch id."""

    _spec: ParquetSinkSpec

    def __init__(self, job: str, spec: ParquetSinkSpec, mode: WriteMode) -> None:
        super().__init__(job, spec, mode)

    def read(self, spark: SparkSession) -> DataFrame:
        return spark.read.parquet(self.path)

    def _marks_files(self, spark: SparkSession) -> CheckpointFiles:
        return CheckpointFiles(spark, f"{self.path.rstrip('/')}/{MARKS_FOLDER}")

    def _write(self, frame: DataFrame, context: BatchContext) -> None:
        marks = self._marks_files(frame.sparkSession)
        name = _mark_name(context.app_id)
        if not marks.exists(name):  # before the first write: this data is ours
            marks.create(name, json.dumps({"app_id": context.app_id, "last_batch": None}))
        partitions = list(self._spec.partition_by)
        writer_mode = "append"
        if self._mode is WriteMode.REPLACE_BATCH:
            column = self._spec.batch_id_column
            frame = frame.withColumn(column, F.lit(context.batch_id).cast("bigint"))
            partitions = [column, *partitions]
            writer_mode = "overwrite"
        writer = frame.write.mode(writer_mode).options(**self._spec.options)
        if self._mode is WriteMode.REPLACE_BATCH:
            writer = writer.option("partitionOverwriteMode", "dynamic")
        if partitions:
            writer = writer.partitionBy(*partitions)
        writer.parquet(self.path)
        marks.overwrite(
            name, json.dumps({"app_id": context.app_id, "last_batch": context.batch_id})
        )

    def batch_marks(self, spark: SparkSession) -> dict[str, int]:
        """App id -> the last batch it completed here, from the marks files."""
        return {app: batch for app, batch in self._recorded(spark).items() if batch is not None}

    def foreign_writers(self, spark: SparkSession, app_id: str) -> set[str]:
        """Other app ids that wrote (or began to write) here; data with no marks at all (an
        older onceflow's, another tool's) counts as foreign too."""
        recorded = self._recorded(spark)
        if not recorded and self._holds_data(spark):
            return {"(unmarked Parquet data)"}
        return set(recorded) - {app_id}

    def _recorded(self, spark: SparkSession) -> dict[str, int | None]:
        marks = self._marks_files(spark)
        found: dict[str, int | None] = {}
        for name in marks.names():
            if name.startswith("."):
                continue
            try:
                record = json.loads(marks.read(name) or "")
            except ValueError:
                continue  # not ours
            if isinstance(record, dict) and isinstance(record.get("app_id"), str):
                batch = record.get("last_batch")
                found[record["app_id"]] = batch if isinstance(batch, int) else None
        return found

    def _holds_data(self, spark: SparkSession) -> bool:
        """True when the folder holds data files or partition folders (``_batch_id=3``)."""
        return any(
            not name.startswith(".") and name not in _NOT_DATA
            and (not name.startswith("_") or "=" in name)
            for name in CheckpointFiles(spark, self.path).names()
        )  # fmt: skip


def _mark_name(app_id: str) -> str:
    """A file name for ``app_id`` that any file system takes (an app id may hold ``:``)."""
    return hashlib.sha256(app_id.encode()).hexdigest()[:24] + ".json"
