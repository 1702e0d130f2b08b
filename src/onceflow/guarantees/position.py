"""Where a checkpoint stands: the last batch Spark planned and the last it committed.

Spark writes ``offsets/N`` before it runs batch N and ``commits/N`` after ``foreachBatch``
returned. A planned batch with no commit was in flight when the job stopped, and the next
start runs it again with the same batch id: a replay.
"""

from __future__ import annotations

from dataclasses import dataclass

from pyspark.sql import SparkSession

from onceflow.files import CheckpointFiles

__all__ = ["CheckpointPosition", "checkpoint_position"]


@dataclass(frozen=True)
class CheckpointPosition:
    """The highest batch ids in ``offsets/`` and ``commits/`` (None: none yet)."""

    last_planned: int | None
    last_committed: int | None

    @property
    def in_flight(self) -> int | None:
        """The batch planned but not committed, which the next start replays; else None."""
        if self.last_planned is None:
            return None
        if self.last_committed is None or self.last_planned > self.last_committed:
            return self.last_planned
        return None


def checkpoint_position(spark: SparkSession, checkpoint: str) -> CheckpointPosition:
    """Read the position from the checkpoint's ``offsets/`` and ``commits/`` folders."""
    root = checkpoint.rstrip("/")
    return CheckpointPosition(
        last_planned=_last_batch(spark, root + "/offsets"),
        last_committed=_last_batch(spark, root + "/commits"),
    )


def _last_batch(spark: SparkSession, folder: str) -> int | None:
    # Spark names each batch's file by its id; checksums (".0.crc") and temp files are not
    batch_ids = [int(name) for name in CheckpointFiles(spark, folder).names() if name.isdigit()]
    return max(batch_ids, default=None)
