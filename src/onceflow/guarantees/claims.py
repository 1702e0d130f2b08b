"""At-most-once's claims: a batch id is claimed *before* any sink is written, and a batch
whose id is claimed already is skipped.

One empty file per batch id, ``<checkpoint>/onceflow/claims/<id>``, created only if absent,
so of two attempts at one batch exactly one goes on. They live with the checkpoint so they
move, survive and are deleted together with the offsets they refer to. (A database sink's
ledger is something else: a row written in the same transaction as the batch's rows.)
"""

from __future__ import annotations

from pyspark.sql import SparkSession

from onceflow.files import CheckpointFiles
from onceflow.storage import onceflow_state

__all__ = ["BatchClaims"]

# where onceflow before 0.2 kept them; still read, so an upgrade skips what it claimed
_FORMER_FOLDER = "ledger"


class BatchClaims:
    """Which batch ids a job has started to write, durable across restarts."""

    def __init__(self, spark: SparkSession, checkpoint: str) -> None:
        state = onceflow_state(checkpoint)
        self._files = CheckpointFiles(spark, state + "/claims")
        self._former = CheckpointFiles(spark, f"{state}/{_FORMER_FOLDER}")

    def claim(self, batch_id: int) -> bool:
        """Claim ``batch_id``; True if it was new (write it), False if claimed (skip it)."""
        if self._former.exists(str(batch_id)):
            return False
        return self._files.create(str(batch_id), "")

    def claimed(self) -> list[int]:
        """Every batch id claimed, ascending."""
        names = {*self._files.names(), *self._former.names()}
        return sorted(int(name) for name in names if name.isdigit())
