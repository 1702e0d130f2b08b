"""The seams between layers: what a sink is, what a batch writer is, what a batch carries
in, and what it reports out.

Sources produce a streaming DataFrame; the batch pipeline (``onceflow.pipeline``) writes
each micro-batch to the sinks under the job's guarantee policy, and leaves a
``BatchReport`` in the run's ``BatchReports``, which the progress listener takes.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

    from onceflow.config import WriteMode

__all__ = [
    "MARKER_APP_ID",
    "MARKER_BATCH_ID",
    "BatchContext",
    "BatchInstrument",
    "BatchReport",
    "BatchReports",
    "BatchWriter",
    "Sink",
    "WrappedSink",
]

BatchWriter = Callable[["DataFrame", int], None]
"""What ``writeStream.foreachBatch`` calls: ``writer(batch_df, batch_id)``."""

#: The two fields of the JSON object stamped on every Delta commit onceflow makes.
MARKER_APP_ID = "onceflow_app_id"
MARKER_BATCH_ID = "onceflow_batch_id"


@dataclass(frozen=True)
class BatchContext:
    """What a sink needs to know about the batch it writes.

    Attributes:
        app_id: the job's app id, from its checkpoint (see ``guarantees.app_id``).
        batch_id: Spark's batch id; a replay after a crash has the same one.
        guarded: True when the sink must make a replay of this batch id harmless (the
            exactly-once policy); False when the policy has decided replays are acceptable.
    """

    app_id: str
    batch_id: int
    guarded: bool

    @property
    def commit_marker(self) -> str:
        """Stamped on every Delta commit (``userMetadata``): which app and batch wrote it, as
        JSON, so that any app id reads back whole (a replay's holds a ``:``)."""
        return json.dumps({MARKER_APP_ID: self.app_id, MARKER_BATCH_ID: self.batch_id})


class Sink(Protocol):
    """One output of a job.

    ``write`` with ``context.guarded`` must leave the sink as if the batch had been written
    once, however often it is called with the same app id and batch id. Unguarded, a sink
    may hold a replayed batch twice; each sink documents which.
    """

    @property
    def name(self) -> str: ...

    @property
    def path(self) -> str: ...

    @property
    def mode(self) -> WriteMode: ...

    def write(self, batch: DataFrame, context: BatchContext) -> None: ...

    def batch_marks(self, spark: SparkSession) -> dict[str, int] | None:
        """App id -> the highest batch id it wrote here; None if the sink keeps no marks."""
        ...

    def is_conflict(self, exc: BaseException) -> bool:
        """True when a failed write committed nothing because another writer committed
        first: the write may be tried again."""
        ...


class BatchInstrument(Protocol):
    """Wraps a job's batch pipeline from outside, without a hook inside it: crash injection
    (``onceflow.prove.crash``), which only the prove harness and tests install."""

    def wrap_writer(self, writer: BatchWriter) -> BatchWriter:
        """The ``foreachBatch`` writer to use instead of ``writer``."""
        ...

    def wrap_sinks(self, sinks: Sequence[Sink]) -> list[Sink]:
        """The job's sinks, in write order, to use instead of ``sinks``."""
        ...


class WrappedSink:
    """A sink as an instrument hands it to the pipeline: everything is the wrapped sink's
    (``name``, ``path``, ``mode``, ``batch_marks`` and any kind's own, such as ``check``),
    and a subclass replaces ``write`` to act around it."""

    def __init__(self, sink: Sink) -> None:
        self._sink = sink

    @property
    def name(self) -> str:
        return self._sink.name

    @property
    def path(self) -> str:
        return self._sink.path

    @property
    def mode(self) -> WriteMode:
        return self._sink.mode

    def batch_marks(self, spark: SparkSession) -> dict[str, int] | None:
        return self._sink.batch_marks(spark)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sink, name)

    def write(self, batch: DataFrame, context: BatchContext) -> None:
        self._sink.write(batch, context)


@dataclass
class BatchReport:
    """What the pipeline did with one batch, for the progress line and the metrics file.

    Attributes:
        batch_id: Spark's batch id.
        action: ``written``, ``retried``, ``replayed`` or ``skipped_as_replay``.
        replay: the batch was the one in flight when the job last stopped.
        guard_ms: the guard's own work (the at-most-once claim), ms.
        write_ms: each output's write, ms.
        retries: conflicts retried, over every output.
        sinks: on a replay, each sink's outcome (``skipped_as_replay``, ``written_again``,
            ``replaced``, ``written``).
        skipped_by: what skipped the batch (``claims``), if something did.
        quality: where the batch's records went (input, good, dropped, quarantined, each
            rule's violations), when the quality stage judged them.
    """

    batch_id: int
    action: str = "written"
    replay: bool = False
    guard_ms: float = 0.0
    write_ms: dict[str, float] = field(default_factory=dict)
    retries: int = 0
    sinks: dict[str, str] = field(default_factory=dict)
    skipped_by: str | None = None
    quality: dict[str, Any] | None = None

    def as_line(self) -> dict[str, Any]:
        """The report's part of the batch's progress line: ``guarantee`` and ``quality``."""
        guarantee: dict[str, Any] = {
            "action": self.action,
            "replay": self.replay,
            "guard_ms": round(self.guard_ms, 1),
            "write_ms": self.write_ms,
            "retries": self.retries,
        }
        if self.skipped_by is not None:
            guarantee["by"] = self.skipped_by
        if self.sinks:
            guarantee["sinks"] = self.sinks
        line: dict[str, Any] = {"guarantee": guarantee}
        if self.quality is not None:
            line["quality"] = self.quality
        return line


class BatchReports:
    """The reports of one run's batches, handed from the pipeline (on Spark's batch thread)
    to whoever reads them (the progress listener, a test); each is taken once."""

    def __init__(self) -> None:
        self._reports: dict[int, BatchReport] = {}
        self._lock = threading.Lock()

    def put(self, report: BatchReport) -> None:
        with self._lock:
            self._reports[report.batch_id] = report

    def take(self, batch_id: int) -> BatchReport | None:
        """The report of ``batch_id``, removed; None when the pipeline left none."""
        with self._lock:
            return self._reports.pop(batch_id, None)
