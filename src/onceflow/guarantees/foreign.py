"""Catch a fresh checkpoint pointed at a sink that an older checkpoint wrote.

A new checkpoint restarts the source from the beginning and batch ids from 0. Against an
existing sink that means re-delivering everything (at-least-once, at-most-once) or, had
the app id been kept, Delta silently skipping new batches (exactly-once). Either way the
user almost certainly pointed the job at the wrong checkpoint, so it is an error unless the
job says ``on_foreign_sink: continue``.

Sinks are recognised by the app ids in their batch marks (``foreign_writers``):
for Delta the ``txn`` actions (exactly-once writes) and the commit markers (every onceflow
write), for PostgreSQL the ledger, for Parquet its marks files (and any data without marks
counts as foreign).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Protocol

from pyspark.sql import SparkSession

from onceflow.config import JobSpec
from onceflow.errors import GuaranteeError
from onceflow.guarantees.app_id import AppIdentity

__all__ = ["ForeignWriters", "check_foreign_sinks"]

_log = logging.getLogger("onceflow.guarantees")


class ForeignWriters(Protocol):
    """An output that can say which other app ids wrote it (``BatchSink``)."""

    @property
    def name(self) -> str: ...

    @property
    def path(self) -> str: ...

    def foreign_writers(self, spark: SparkSession, app_id: str) -> set[str]: ...


def check_foreign_sinks(
    spark: SparkSession,
    spec: JobSpec,
    identity: AppIdentity,
    outputs: Sequence[ForeignWriters],
) -> None:
    """Raise GUARANTEE_FOREIGN_SINK if the checkpoint is new and an output was written
    before by another. With ``on_foreign_sink: continue`` it is logged as a warning."""
    if not identity.is_new:
        return
    for sink in outputs:
        others = sink.foreign_writers(spark, identity.app_id)
        if not others:
            continue
        error = GuaranteeError(
            "GUARANTEE_FOREIGN_SINK",
            job=spec.name,
            sink=sink.name,
            path=sink.path,
            other_ids=", ".join(sorted(others)),
            app_id=identity.app_id,
            opt_in="on_foreign_sink: continue",
        )
        if spec.on_foreign_sink == "error":
            raise error
        _log.warning("%s (continuing: on_foreign_sink is 'continue')", error)
