"""The seams between layers: what a sink is, what a batch writer is.

Sources produce a streaming DataFrame; sinks write one micro-batch; a guarantee policy
wraps the sinks into the single ``BatchWriter`` that ``foreachBatch`` calls.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

__all__ = ["BatchWriter", "Sink"]

BatchWriter = Callable[["DataFrame", int], None]
"""What ``writeStream.foreachBatch`` calls: ``writer(batch_df, batch_id)``."""


class Sink(Protocol):
    """One output of a job. ``write`` must be safe to call again with the same batch id:
    whether a replay duplicates, is skipped or replaces is the guarantee policy's business,
    and each sink documents which of those it supports."""

    @property
    def name(self) -> str: ...

    @property
    def path(self) -> str: ...

    def write(self, batch: DataFrame, batch_id: int) -> None: ...
