"""Plain Parquet files written from ``foreachBatch``: append or replace-batch.

Parquet has no transaction log, so nothing can carry a batch id atomically with the data.

- ``append``: a replay appends the batch again. Refused under exactly-once.
- ``replace-batch``: rows carry their batch id in ``batch_id_column`` (a partition column);
  a replay overwrites exactly that partition by dynamic partition overwrite. While the
  replay's job commits, a reader listing the folder can see the partition missing or half
  moved; once it completes the partition holds the batch exactly once. Readers that need
  a consistent view at every moment want a Delta sink.

    sinks:
      - name: raw
        kind: parquet
        path: tables/raw_payments
        mode: replace-batch
"""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from onceflow.config import ParquetSinkSpec, WriteMode
from onceflow.contracts import BatchContext
from onceflow.sinks.base import BatchSink

__all__ = ["ParquetSink"]


class ParquetSink(BatchSink):
    """A folder of Parquet files; ``replace-batch`` partitions it by the batch id."""

    _spec: ParquetSinkSpec

    def __init__(self, job: str, spec: ParquetSinkSpec, mode: WriteMode) -> None:
        super().__init__(job, spec, mode)

    def _write(self, frame: DataFrame, context: BatchContext) -> None:
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
