"""What a running job reports: one structured line per batch, from Spark's own progress.

``ProgressLogger`` is a ``StreamingQueryListener``: it logs one JSON line per micro-batch
to the ``onceflow.progress`` logger, with the numbers a data engineer looks at first,
including Kafka offsets skipped because they were gone (``failOnDataLoss: false``) and,
for a job with a ``quality`` block, where the batch's rows went (``quality``: input, good,
dropped, quarantined, and each rule's violations), as the batch's writer noted them.
"""

from __future__ import annotations

import json
import logging
import threading
from typing import Any

from pyspark.sql.streaming.listener import (
    QueryIdleEvent,
    QueryProgressEvent,
    QueryStartedEvent,
    QueryTerminatedEvent,
    StreamingQueryListener,
)

from onceflow.contracts import pop_batch_notes

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
        self.records = 0  # records the quality stage counted, over every batch
        self.terminated = threading.Event()  # set once the job's query has ended

    def onQueryStarted(self, event: QueryStartedEvent) -> None:
        pass

    def onQueryProgress(self, event: QueryProgressEvent) -> None:
        if event.progress.name != self._job:
            return
        summary = batch_summary(event.progress.json)
        summary |= pop_batch_notes(self._job, int(summary["batch_id"]))
        quality = summary.get("quality")
        if isinstance(quality, dict):
            # Spark counts a raw file source's rows as files; the stage counted records
            self.records += int(quality["input"])
        level = logging.WARNING if summary["skipped_offsets"] else logging.INFO
        _log.log(level, json.dumps(summary, default=str))

    def onQueryIdle(self, event: QueryIdleEvent) -> None:
        pass

    def onQueryTerminated(self, event: QueryTerminatedEvent) -> None:
        # the listener bus delivers a query's progress events before its end
        self.terminated.set()
