"""The at-most-once ledger: one empty file per batch id, under the checkpoint.

A batch id is recorded *before* any sink is written; a batch whose id is already recorded
is skipped. The ledger lives with the checkpoint (``<checkpoint>/onceflow/ledger/<id>``) so
it moves, survives and is deleted together with the offsets it refers to.
"""

from __future__ import annotations

from pyspark.sql import SparkSession

from onceflow.files import CheckpointFiles
from onceflow.guarantees.app_id import onceflow_state

__all__ = ["BatchLedger"]


class BatchLedger:
    """Which batch ids a job has started to write, durable across restarts."""

    def __init__(self, spark: SparkSession, checkpoint: str) -> None:
        self._files = CheckpointFiles(spark, onceflow_state(checkpoint) + "/ledger")

    def claim(self, batch_id: int) -> bool:
        """Record ``batch_id``; True if it was new (write it), False if seen (skip it)."""
        return self._files.create(str(batch_id), "")

    def recorded(self) -> list[int]:
        """Every batch id in the ledger, ascending."""
        return sorted(int(name) for name in self._files.names() if name.isdigit())
