"""What a running job reports: one structured line per batch, from Spark's own progress.

``ProgressLogger`` is a ``StreamingQueryListener``: it logs one JSON line per micro-batch
to the ``onceflow.progress`` logger, with the numbers a data engineer looks at first,
including Kafka offsets skipped because they were gone (``failOnDataLoss: false``).
"""

from __future__ import annotations

import json
import logging
from typing import Any

from pyspark.sql.streaming.listener import (
    QueryIdleEvent,
    QueryProgressEvent,
    QueryStartedEvent,
    QueryTerminatedEvent,
    StreamingQueryListener,
)

__all__ = ["ProgressLogger", "batch_summary", "skipped_offsets"]

_log = logging.getLogger("onceflow.progress")


def skipped_offsets(progress_json: str) -> int:
    """Kafka offsets a batch covered but did not read: records gone before it read them.

    For each Kafka source: the offsets between its start and end, minus the rows it read.
    Zero for other sources and for a batch with no start (the first).
    """
    progress = json.loads(progress_json)
    skipped = 0
    for source in progress.get("sources", []):
        if not str(source.get("description", "")).startswith("Kafka"):
            continue
        start, end = _offsets(source.get("startOffset")), _offsets(source.get("endOffset"))
        if not start or not end:
            continue
        covered = sum(end[key] - start.get(key, end[key]) for key in end)
        skipped += max(0, covered - int(source.get("numInputRows", 0)))
    return skipped


def _offsets(value: Any) -> dict[tuple[str, str], int]:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return {}
    if not isinstance(value, dict):
        return {}
    return {
        (topic, partition): int(offset)
        for topic, partitions in value.items()
        if isinstance(partitions, dict)
        for partition, offset in partitions.items()
    }


def batch_summary(progress_json: str) -> dict[str, Any]:
    """The per-batch line: ids, rows, rates, durations, skipped Kafka offsets."""
    progress = json.loads(progress_json)
    return {
        "job": progress.get("name"),
        "query_id": progress.get("id"),
        "batch_id": progress.get("batchId"),
        "input_rows": progress.get("numInputRows"),
        "input_rows_per_second": progress.get("inputRowsPerSecond"),
        "processed_rows_per_second": progress.get("processedRowsPerSecond"),
        "durations_ms": progress.get("durationMs", {}),
        "skipped_offsets": skipped_offsets(progress_json),
    }


class ProgressLogger(StreamingQueryListener):
    """Logs ``batch_summary`` of every batch of the queries named ``job`` as one JSON line."""

    def __init__(self, job: str) -> None:
        self._job = job

    def onQueryStarted(self, event: QueryStartedEvent) -> None:
        pass

    def onQueryProgress(self, event: QueryProgressEvent) -> None:
        if event.progress.name != self._job:
            return
        summary = batch_summary(event.progress.json)
        level = logging.WARNING if summary["skipped_offsets"] else logging.INFO
        _log.log(level, json.dumps(summary, default=str))

    def onQueryIdle(self, event: QueryIdleEvent) -> None:
        pass

    def onQueryTerminated(self, event: QueryTerminatedEvent) -> None:
        pass
