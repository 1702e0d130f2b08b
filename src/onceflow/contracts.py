"""The seams between layers: what a sink is, what a batch writer is, what a batch carries.

Sources produce a streaming DataFrame; sinks write one micro-batch; a guarantee policy
wraps the sinks into the single ``BatchWriter`` that ``foreachBatch`` calls.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

    from onceflow.config.models import WriteMode

__all__ = ["COMMIT_MARKER_PREFIX", "BatchContext", "BatchWriter", "Sink"]

BatchWriter = Callable[["DataFrame", int], None]
"""What ``writeStream.foreachBatch`` calls: ``writer(batch_df, batch_id)``."""

COMMIT_MARKER_PREFIX = "onceflow:"


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
        """Stamped on every Delta commit (``userMetadata``): which app and batch wrote it."""
        return f"{COMMIT_MARKER_PREFIX}{self.app_id}:{self.batch_id}"


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
