"""The Parquet sink kind: plain Parquet files, appended or replaced by batch (``sink.py``).
This module is its declaration, and imports no Spark.

Parquet has no transaction log, so nothing can carry a batch id atomically with the data:
an append is at-least-once at best; replace-batch keeps exactly-once by overwriting the
batch's own partition on a replay.

    sinks:
      - name: raw
        kind: parquet
        path: tables/raw_payments
        mode: replace-batch
"""

from __future__ import annotations

from typing import Literal

from onceflow.config.kinds import SinkKind
from onceflow.config.modes import WriteMode
from onceflow.config.specs import FileSinkSpec

__all__ = ["SINK", "ParquetSinkSpec"]


class ParquetSinkSpec(FileSinkSpec):
    """Plain Parquet files: no transaction log, so no txn guard; append or replace-batch."""

    kind: Literal["parquet"]


SINK = SinkKind(
    name="parquet",
    title="Parquet",
    spec=ParquetSinkSpec,
    build="onceflow.sinks.parquet.sink:build",
    modes=frozenset({WriteMode.APPEND, WriteMode.REPLACE_BATCH}),
    guarded_modes=frozenset({WriteMode.REPLACE_BATCH}),
    mode_hint="Parquet files have no MERGE; use a Delta sink",
    guard_hint="Parquet has no transaction to carry the batch id, so a replay appends again. "
    "Use mode: replace-batch or a Delta sink",
    read_format="parquet",
)
