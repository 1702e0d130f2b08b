"""The version of a joined table each batch read: recorded before the batch writes, so a
replay of the batch joins the same rows.

A batch's rows must be the same each time it runs, or a guarantee cannot say what its
replay writes (a sink written before a crash skips the replay, another one writes it with
what the table holds by then). Spark's own stream-static join reads the table's newest
version on every run of a batch; ``JoinVersions`` reads the version the batch's first
run recorded in ``<checkpoint>/onceflow/joins/<batch id>.json``, and the join reads the
table at that version (Delta's time travel: a version removed by VACUUM or log cleanup
since makes the replay fail, loudly, rather than join other rows).
"""

from __future__ import annotations

import json

from delta.tables import DeltaTable
from pyspark.sql import SparkSession

from onceflow.files import CheckpointFiles
from onceflow.storage import onceflow_state

__all__ = ["JoinVersions", "newest_version"]

#: Records of batches this much older than the one running are deleted now and then.
_KEEP_BATCHES = 100


class JoinVersions:
    """The version of the join's table each batch of one checkpoint joined with."""

    def __init__(self, spark: SparkSession, checkpoint: str) -> None:
        self._spark = spark
        self._files = CheckpointFiles(spark, onceflow_state(checkpoint) + "/joins")

    def version_for(self, batch_id: int, table: str) -> int:
        """The version batch ``batch_id`` joins ``table`` at: the one its first run
        recorded, else the table's newest, recorded now (over a record of another table:
        the job's join changed, and the new table is read anew)."""
        name = f"{batch_id}.json"
        text = self._files.read(name)
        record = json.loads(text) if text else None
        if record is not None and record.get("table") == table:
            return int(record["version"])
        version = newest_version(self._spark, table)
        written = json.dumps({"table": table, "version": version})
        if record is None:
            self._files.create(name, written)
        else:
            self._files.overwrite(name, written)
        if batch_id % _KEEP_BATCHES == 0:
            self._forget_before(batch_id - _KEEP_BATCHES)
        return version

    def _forget_before(self, batch_id: int) -> None:
        for name in self._files.names():
            stem = name.removesuffix(".json")
            if stem.isdigit() and int(stem) < batch_id:
                self._files.delete(name)


def newest_version(spark: SparkSession, table: str) -> int:
    """The newest committed version of the Delta table at ``table``."""
    newest = DeltaTable.forPath(spark, table).history(1).select("version").first()
    assert newest is not None  # noqa: S101 - a Delta table has a version
    return int(newest[0])
