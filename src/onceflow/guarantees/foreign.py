"""Catch a fresh checkpoint pointed at a sink that an older checkpoint wrote.

A new checkpoint restarts the source from the beginning and batch ids from 0. Against an
existing sink that means re-delivering everything (at-least-once, at-most-once) or, had
the app id been kept, Delta silently skipping new batches (exactly-once). Either way the
user almost certainly pointed the job at the wrong checkpoint, so it is an error unless the
job says ``on_foreign_sink: continue``.

Sinks are recognised by the app ids in their batch marks (``BatchSink.foreign_writers``):
for Delta the ``txn`` actions (exactly-once writes) and the commit markers (every onceflow
write), for PostgreSQL the ledger, for Parquet its marks files (and any data without marks
counts as foreign).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from pyspark.sql import SparkSession

from onceflow.config import JobSpec
from onceflow.errors import GuaranteeError
from onceflow.guarantees.app_id import AppIdentity
from onceflow.sinks import BatchSink, delta_batch_marks

__all__ = ["check_foreign_sinks", "delta_app_ids"]

_log = logging.getLogger("onceflow.guarantees")


def delta_app_ids(spark: SparkSession, path: str) -> set[str]:
    """Every app id that wrote the Delta table at ``path`` (empty if there is no table)."""
    return set(delta_batch_marks(spark, path))


def check_foreign_sinks(
    spark: SparkSession, spec: JobSpec, identity: AppIdentity, outputs: Sequence[BatchSink]
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
