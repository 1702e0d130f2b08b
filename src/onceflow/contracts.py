"""The seams between layers: what a sink is, what a batch writer is, what a batch carries.

Sources produce a streaming DataFrame; sinks write one micro-batch; a guarantee policy
wraps the sinks into the single ``BatchWriter`` that ``foreachBatch`` calls.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

    from onceflow.config.models import WriteMode

__all__ = [
    "MARKER_APP_ID",
    "MARKER_BATCH_ID",
    "BatchContext",
    "BatchInstrument",
    "BatchWriter",
    "Sink",
    "pop_batch_notes",
    "record_batch_note",
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


class BatchInstrument(Protocol):
    """Wraps a job's batch pipeline from outside, without a hook inside it: crash injection
    (``onceflow.prove.crash``), which only the prove harness and tests install."""

    def wrap_writer(self, writer: BatchWriter) -> BatchWriter:
        """The ``foreachBatch`` writer to use instead of ``writer``."""
        ...

    def wrap_sinks(self, sinks: Sequence[Sink]) -> list[Sink]:
        """The outputs of a batch, in write order, to use instead of ``sinks``."""
        ...


# What a batch's writer learned (quality counts, ...) for the progress listener to report.
# Both run in the driver's Python; the listener hears of a batch after its writer returned.
_NOTES: dict[tuple[str, int], dict[str, Any]] = {}
_NOTES_LOCK = threading.Lock()


def record_batch_note(job: str, batch_id: int, key: str, value: Any) -> None:
    """Leave ``key: value`` for the progress line of ``job``'s batch ``batch_id``."""
    with _NOTES_LOCK:
        _NOTES.setdefault((job, batch_id), {})[key] = value


def pop_batch_notes(job: str, batch_id: int) -> dict[str, Any]:
    """The notes left for that batch (empty if none), removed once read."""
    with _NOTES_LOCK:
        return _NOTES.pop((job, batch_id), {})
