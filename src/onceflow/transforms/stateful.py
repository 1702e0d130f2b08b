"""The stateful keys applied to a stream: ``watermark``, then ``dedup``.

``apply_stateful`` splits the stream: a row that cannot be compared (not parsed, a NULL
key or a NULL event time) skips the watermark and the deduplication and joins the rest
again, so that the quality stage judges it and nothing is merged by its NULLs or dropped
as late for want of a time. The two branches are a union of the same source, which Spark
plans as two sources: a stateful job reads its source twice per batch.

``stateful_shape`` is what of these keys the state in the checkpoint depends on: a change
to it breaks the state (``onceflow.guarantees.state``).
"""

from __future__ import annotations

from typing import Any

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from onceflow.config import JobSpec

__all__ = ["apply_stateful", "stateful_shape"]

#: A column never kept: the condition that a row skips the stateful keys.
_BYPASS = "_onceflow_bypass"


def apply_stateful(frame: DataFrame, spec: JobSpec, cannot_compare: Column | None) -> DataFrame:
    """``frame`` with the job's watermark and deduplication, when it has them.

    Args:
        frame: the stream, typed (parsed when onceflow parses the source).
        spec: the job.
        cannot_compare: rows that must skip the stateful keys whatever their values (those
            onceflow could not parse); None when every row parsed.
    """
    dedup, watermark = spec.dedup, spec.watermark
    if dedup is None:
        return frame
    columns = [*dedup.keys, *([watermark.column] if watermark is not None else [])]
    bypass = F.lit(False) if cannot_compare is None else F.coalesce(cannot_compare, F.lit(True))
    for name in columns:
        bypass = bypass | F.col(f"`{name}`").isNull()
    marked = frame.withColumn(_BYPASS, bypass)
    compared = marked.where(~F.col(_BYPASS)).drop(_BYPASS)
    skipped = marked.where(F.col(_BYPASS)).drop(_BYPASS)
    if watermark is not None:
        compared = compared.withWatermark(watermark.column, watermark.delay)
    if spec.dedups_within_watermark:
        compared = compared.dropDuplicatesWithinWatermark(list(dedup.keys))
    else:
        compared = compared.dropDuplicates(columns)
    return compared.unionByName(skipped)


def stateful_shape(spec: JobSpec) -> dict[str, Any] | None:
    """What the job's state depends on: each stateful operator, its keys and event time;
    None for a job without state. A watermark's delay is not part of it (Spark reads it
    anew each start)."""
    dedup, watermark = spec.dedup, spec.watermark
    if dedup is None:
        return None
    within = spec.dedups_within_watermark
    return {
        "operators": [
            {
                "operator": "dedup_within_watermark" if within else "dedup",
                "keys": list(dedup.keys),
                "event_time": watermark.column if watermark is not None else None,
            }
        ]
    }
