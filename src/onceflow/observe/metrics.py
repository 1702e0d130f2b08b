"""The job's metrics file: one JSON line per completed batch, kept with the checkpoint.

Each batch's line is the file ``<checkpoint>/onceflow/metrics/<batch id>.json``: one small
file per batch, as Spark keeps ``offsets/`` and ``commits/``, because an object store (S3)
cannot append to a file. The folder reads as one JSON Lines data set
(``spark.read.json(folder)``) or through ``read_metrics``. The oldest files beyond
``KEEP_BATCHES`` are deleted as new ones arrive.

Only batches that completed have a line: Spark reports a batch's progress after it
committed it, so a batch that a crash interrupted appears once, when its replay completes.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from pyspark.sql import SparkSession

from onceflow.files import CheckpointFiles
from onceflow.storage import onceflow_state

__all__ = ["KEEP_BATCHES", "MetricsFile", "metrics_folder", "read_metrics"]

KEEP_BATCHES = 1000

_log = logging.getLogger("onceflow.observe")


def metrics_folder(checkpoint: str) -> str:
    """Where the job whose checkpoint is ``checkpoint`` keeps its metrics."""
    return onceflow_state(checkpoint) + "/metrics"


class MetricsFile:
    """Writes the metrics lines of one checkpoint; a failing store is logged, never raised:
    a metrics line is not worth stopping a job for."""

    def __init__(self, spark: SparkSession, checkpoint: str, keep: int = KEEP_BATCHES) -> None:
        self._files = CheckpointFiles(spark, metrics_folder(checkpoint))
        self._keep = keep
        self._warned = False
        self.folder = self._files.folder

    def write(self, line: dict[str, Any]) -> None:
        """Store ``line`` as its batch's file, replacing an earlier one of the same batch."""
        batch_id = int(line["batch_id"])
        try:
            self._files.overwrite(f"{batch_id}.json", json.dumps(line, default=str) + "\n")
            if batch_id >= self._keep:
                self._files.delete(f"{batch_id - self._keep}.json")
        except Exception as exc:
            if not self._warned:  # once per run: a store that is down says so elsewhere
                _log.warning("could not write the metrics line to %s: %s", self.folder, exc)
                self._warned = True


def read_metrics(
    spark: SparkSession, checkpoint: str, last: int | None = None
) -> list[dict[str, Any]]:
    """The metrics lines of the job checkpointed at ``checkpoint``, in batch order; only the
    ``last`` ones if given. Empty when the job never completed a batch."""
    files = CheckpointFiles(spark, metrics_folder(checkpoint))
    batch_ids = sorted(
        int(name.removesuffix(".json"))
        for name in files.names()
        if name.endswith(".json") and name.removesuffix(".json").isdigit()
    )
    if last is not None:
        batch_ids = batch_ids[-last:] if last > 0 else []
    lines = []
    for batch_id in batch_ids:
        text = files.read(f"{batch_id}.json")
        if text:  # deleted meanwhile by the running job's retention
            lines.append(json.loads(text))
    return lines
