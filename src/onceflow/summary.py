"""What ``onceflow run`` says once its query has ended, after its first line (batches,
rows, query id): where the run's records went, why it found nothing when it found
nothing, and what each sink and the quarantine table hold now::

    records: 9990 good, 4 dropped, 6 quarantined
    sink 'events': 9990 row(s) at /data/tables/payments/events
    quarantine: 6 row(s) at /data/quarantine/payments

A run that found no new input says so instead of the records line::

    no new input: the checkpoint at /state/payments/checkpoint has read everything under
    /data/sample/payments, up to batch 2 (0 files unread now)

A table no batch has written yet is ``0 rows (not created yet)``, not an error.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from pyspark.sql import SparkSession

from onceflow.config import JobSpec, SinkSpec, kinds
from onceflow.config.kinds import load_reference
from onceflow.contracts import BatchReport, BatchReports
from onceflow.deep import path_exists
from onceflow.errors import first_line
from onceflow.guarantees import CheckpointPosition, checkpoint_position
from onceflow.sinks.base import build_sink

__all__ = ["RecordCounts", "RecordTally", "no_input_line", "run_summary", "sink_line"]


@dataclass(frozen=True)
class RecordCounts:
    """Where a run's records went, over its batches, as the quality stage counted them,
    and what the stateful keys removed before it (``duplicates``, ``late``: Spark's
    counts)."""

    good: int = 0
    dropped: int = 0
    quarantined: int = 0
    duplicates: int = 0
    late: int = 0


class RecordTally(BatchReports):
    """The run's ``BatchReports`` that also add up each batch's record counts as the batch
    pipeline puts its report (on Spark's batch thread)."""

    def __init__(self) -> None:
        super().__init__()
        self._sums = {"good": 0, "dropped": 0, "quarantined": 0}
        self._judged = False
        self._sums_lock = threading.Lock()

    def put(self, report: BatchReport) -> None:
        quality = report.quality
        if quality is not None:
            with self._sums_lock:
                self._judged = True
                for fate in self._sums:
                    self._sums[fate] += int(quality.get(fate) or 0)
        super().put(report)

    @property
    def counts(self) -> RecordCounts | None:
        """The sums so far; None when no batch was judged (the job has no quality stage,
        or no batch ran)."""
        with self._sums_lock:
            return RecordCounts(**self._sums) if self._judged else None


def run_summary(
    spark: SparkSession, spec: JobSpec, batches: int, records: RecordCounts | None
) -> list[str]:
    """The lines after a run's first: the records line (or, for a run of no batch, why),
    then each sink's and the quarantine table's rows."""
    lines = []
    if batches == 0:
        lines.append(no_input_line(spark, spec, checkpoint_position(spark, spec.checkpoint)))
    elif records is not None:
        removed = (
            f", {records.duplicates} duplicate(s) and {records.late} late record(s) removed "
            "by dedup"
            if spec.is_stateful
            else ""
        )
        lines.append(
            f"records: {records.good} good, {records.dropped} dropped, "
            f"{records.quarantined} quarantined{removed}"
        )
    lines += [sink_line(spark, spec, sink) for sink in spec.sinks]
    quarantine = spec.quarantine_sink()
    if quarantine is not None:
        lines.append(sink_line(spark, spec, quarantine, label="quarantine"))
    return lines


def no_input_line(spark: SparkSession, spec: JobSpec, position: CheckpointPosition) -> str:
    """Why a run ran no batch: its checkpoint had read all the source held (how far, and
    what the source's kind counts as unread now), or the source held nothing yet."""
    source, checkpoint = spec.source.location, spec.checkpoint
    unread = _unread(spark, spec, position)
    if position.last_committed is None:
        return (
            f"no input: nothing to read under {source} yet (the checkpoint at {checkpoint} "
            f"has committed no batch{', ' + unread if unread else ''})"
        )
    return (
        f"no new input: the checkpoint at {checkpoint} has read everything under {source}, "
        f"up to batch {position.last_committed}{' (' + unread + ')' if unread else ''}"
    )


def sink_line(spark: SparkSession, spec: JobSpec, sink: SinkSpec, label: str = "") -> str:
    """``sink 'x': N row(s) at PATH``, read back from storage. A file-backed table that
    does not exist is ``0 rows (not created yet)``; a sink that cannot be read back says
    why, without failing the run that wrote it."""
    name = label or f"sink '{sink.name}'"
    if kinds().sink(sink.kind).file_backed and not path_exists(spark, sink.location):
        return f"{name}: 0 rows (not created yet) at {sink.location}"
    try:
        rows = build_sink(spec, sink).read(spark).count()
    except Exception as exc:
        return f"{name}: could not be read back at {sink.location}: {first_line(exc)}"
    return f"{name}: {rows} row(s) at {sink.location}"


def _unread(spark: SparkSession, spec: JobSpec, position: CheckpointPosition) -> str:
    """What the source's kind counts as not yet read (``3 files unread``), or ''."""
    probe = kinds().source(spec.source.kind).lag
    if probe is None:
        return ""
    try:
        lag = load_reference(probe)(spark, spec.source, spec.checkpoint, position.last_planned)
    except Exception:  # the broker or store did not answer: the line goes without it
        return ""
    amounts = [f"{n:,} {unit}" for unit, n in (lag or {}).items() if unit != "as_of"]
    return f"{', '.join(amounts)} unread now" if amounts else ""
