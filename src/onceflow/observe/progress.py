"""What a running job reports: one structured line per batch, from Spark's own progress.

``ProgressLogger`` is a ``StreamingQueryListener``: it logs one JSON line per micro-batch
to the ``onceflow.progress`` logger (and the job's metrics file), with the numbers a data
engineer looks at first: rows and rates, durations by phase, how far behind the source it
is, what the guarantee did with the batch (``guarantee``), Kafka offsets skipped because
they were gone (``failOnDataLoss: false``) and, for a job whose records the quality stage
judges, where the batch's records went (``quality``: input, good, dropped, quarantined,
each rule's violations), as the batch's writer noted them. ``input_rows`` and the rates
then count records as the stage counted them (Spark counts a file read whole as one row).
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

from onceflow.contracts import BatchReports
from onceflow.observe.metrics import MetricsFile

__all__ = [
    "ProgressLogger",
    "batch_summary",
    "skipped_offsets",
    "source_lag",
    "state_operators",
    "stateful_drops",
]

_log = logging.getLogger("onceflow.progress")


def skipped_offsets(progress_json: str) -> int:
    """Kafka offsets a batch covered but did not read: records gone before it read them.

    For each Kafka source: the offsets between its start and end, minus the rows it read.
    Zero for other sources and for a batch with no start (the first).
    """
    return _skipped(json.loads(progress_json))


def _skipped(progress: dict[str, Any]) -> int:
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


def state_operators(progress: dict[str, Any]) -> list[dict[str, Any]]:
    """Each stateful operator of a batch: its state rows and memory, and what it dropped
    (duplicates, records later than the watermark); empty for a stateless query."""
    found = []
    for operator in progress.get("stateOperators") or []:
        metrics = operator.get("customMetrics") or {}
        found.append(
            {
                "operator": operator.get("operatorName"),
                "state_rows": int(operator.get("numRowsTotal") or 0),
                "memory_bytes": int(operator.get("memoryUsedBytes") or 0),
                "duplicates_dropped": int(metrics.get("numDroppedDuplicateRows") or 0),
                "late_dropped": int(operator.get("numRowsDroppedByWatermark") or 0),
            }
        )
    return found


def stateful_drops(progress_jsons: list[str]) -> tuple[int, int]:
    """The duplicates and the late records the stateful operators dropped over batches."""
    duplicates = late = 0
    for text in progress_jsons:
        for operator in state_operators(json.loads(text)):
            duplicates += operator["duplicates_dropped"]
            late += operator["late_dropped"]
    return duplicates, late


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


def source_lag(progress_json: str) -> dict[str, int] | None:
    """How far the batch ended behind its sources' newest data, where a source says:
    ``offsets`` for Kafka (its latest offsets minus where the batch ended, over every
    partition), ``files``/``bytes`` for a Delta source (``numFilesOutstanding``,
    ``numBytesOutstanding``). None when no source reports it (a file source does not).
    """
    return _lag(json.loads(progress_json))


def _lag(progress: dict[str, Any]) -> dict[str, int] | None:
    lag: dict[str, int] = {}
    for source in progress.get("sources", []):
        if str(source.get("description", "")).startswith("Kafka"):
            end, latest = _offsets(source.get("endOffset")), _offsets(source.get("latestOffset"))
            if end and latest:
                behind = sum(max(0, latest[key] - end.get(key, 0)) for key in latest)
                lag["offsets"] = lag.get("offsets", 0) + behind
        metrics = source.get("metrics") or {}
        for metric, unit in (("numFilesOutstanding", "files"), ("numBytesOutstanding", "bytes")):
            if metric in metrics:
                lag[unit] = lag.get(unit, 0) + int(float(metrics[metric]))
    return lag or None


def batch_summary(progress_json: str) -> dict[str, Any]:
    """The per-batch line from Spark's progress: ids, time, rows, rates, durations by
    phase, source lag, skipped Kafka offsets. ``rows_per_second.in`` is the rate rows
    arrived at since the previous batch, ``out`` the rate this batch processed them."""
    progress = json.loads(progress_json)
    return {
        "job": progress.get("name"),
        "query_id": progress.get("id"),
        "run_id": progress.get("runId"),
        "batch_id": progress.get("batchId"),
        "timestamp": progress.get("timestamp"),
        "input_rows": progress.get("numInputRows"),
        "rows_per_second": {
            "in": progress.get("inputRowsPerSecond"),
            "out": progress.get("processedRowsPerSecond"),
        },
        "durations_ms": progress.get("durationMs", {}),
        "source_lag": _lag(progress),
        "skipped_offsets": _skipped(progress),
        **({"state": state} if (state := state_operators(progress)) else {}),
    }


def _count_records(summary: dict[str, Any], records: int) -> None:
    """Make ``summary`` count records, as the quality stage counted them: Spark counts a
    raw file source's rows as files (one per file read whole). The processing rate is then
    records over the batch's ``triggerExecution``; the arrival rate, which Spark reports
    rounded to 0.1 row/s, scales by records per row."""
    rows = int(summary.get("input_rows") or 0)
    summary["input_rows"] = records
    rates = summary["rows_per_second"]
    took = float((summary.get("durations_ms") or {}).get("triggerExecution") or 0)
    if took > 0:
        rates["out"] = records / (took / 1000)
    if rates.get("in") is not None:
        rates["in"] = rates["in"] * records / rows if rows else 0.0


class ProgressLogger(StreamingQueryListener):
    """For every batch of the queries named ``job``: ``batch_summary`` and the report the
    batch pipeline left in ``reports`` (``guarantee``, ``quality``), as one JSON line to the
    ``onceflow.progress`` logger and, given a ``MetricsFile``, to the job's metrics file.

    The log record carries the line as ``record.summary`` too, for a handler that shows it
    another way (``onceflow.observe.LiveProgress``).
    """

    def __init__(self, job: str, reports: BatchReports, metrics: MetricsFile | None = None) -> None:
        self._job = job
        self._reports = reports
        self._metrics = metrics
        self.records = 0  # records the quality stage counted, over every batch
        self.terminated = threading.Event()  # set once the job's query has ended

    def onQueryStarted(self, event: QueryStartedEvent) -> None:
        pass

    def onQueryProgress(self, event: QueryProgressEvent) -> None:
        if event.progress.name != self._job:
            return
        summary = batch_summary(event.progress.json)
        report = self._reports.take(int(summary["batch_id"]))
        if report is not None:
            summary |= report.as_line()
        quality = summary.get("quality")
        if isinstance(quality, dict):
            _count_records(summary, int(quality["input"]))
            self.records += int(quality["input"])
        if self._metrics is not None:
            self._metrics.write(summary)
        level = logging.WARNING if summary["skipped_offsets"] else logging.INFO
        _log.log(level, json.dumps(summary, default=str), extra={"summary": summary})

    def onQueryIdle(self, event: QueryIdleEvent) -> None:
        pass

    def onQueryTerminated(self, event: QueryTerminatedEvent) -> None:
        # the listener bus delivers a query's progress events before its end
        self.terminated.set()
