"""The stateful keys applied to a stream: ``watermark``, then ``dedup``.

``apply_stateful`` splits the stream: a row that cannot be compared (a NULL key or a NULL
event time) skips the deduplication and joins the rest again, so that nothing is merged
by its NULLs or dropped as late for want of a time. The two branches are a union of the
same source, which Spark plans as two sources: such a job reads its source twice per
batch.

``stateful_shape`` is what of these keys the state in the checkpoint depends on: a change
to it breaks the state (``onceflow.guarantees.state``).
"""

from __future__ import annotations

from typing import Any

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from onceflow.config import JobSpec

__all__ = ["apply_stateful", "stateful_shape"]

#: A column never kept: the condition that a row skips the stateful keys.
_BYPASS = "_onceflow_bypass"


def apply_stateful(frame: DataFrame, spec: JobSpec) -> DataFrame:
    """``frame`` with the job's watermark and deduplication, when it has them.

    ``frame`` is typed and holds no row onceflow failed to parse (``onceflow.stream``
    keeps those apart). A row with a NULL dedup key or event time skips the deduplication
    and joins the rest again: nothing is merged by its NULLs, nor dropped as late for want
    of a time.
    """
    dedup, watermark = spec.dedup, spec.watermark
    if watermark is not None:
        frame = frame.withWatermark(watermark.column, watermark.delay)
    if dedup is None:
        return frame
    columns = [*dedup.keys, *([watermark.column] if watermark is not None else [])]
    bypass = F.lit(False)
    for name in columns:
        bypass = bypass | F.col(f"`{name}`").isNull()
    marked = frame.withColumn(_BYPASS, bypass)
    compared = marked.where(~F.col(_BYPASS)).drop(_BYPASS)
    skipped = marked.where(F.col(_BYPASS)).drop(_BYPASS)
    if spec.dedups_within_watermark:
        compared = compared.dropDuplicatesWithinWatermark(list(dedup.keys))
    else:
        compared = compared.dropDuplicates(columns)
    return compared.unionByName(skipped)


def stateful_shape(spec: JobSpec) -> dict[str, Any] | None:
    """What the job's state depends on: each stateful operator (dedup, stream join,
    aggregate, in the stream's order), its keys and event time; None for a job without
    state. A watermark's delay is not part of it (Spark reads it anew each start)."""
    dedup, watermark, aggregate = spec.dedup, spec.watermark, spec.aggregate
    operators: list[dict[str, Any]] = []
    if dedup is not None:
        within = spec.dedups_within_watermark
        operators.append(
            {
                "operator": "dedup_within_watermark" if within else "dedup",
                "keys": list(dedup.keys),
                "event_time": watermark.column if watermark is not None else None,
            }
        )
    join = spec.join
    if join is not None and join.stream is not None:
        # each side's rows are state, matched on the keys within the range: other keys, a
        # range, a join type or another second stream would read that state as something
        # else; the columns gained decide which of the second stream's columns it keeps
        other = join.stream
        operators.append(
            {
                "operator": f"{join.join_type}_stream_join",
                "keys": [f"{this} = {that}" for this, that in join.key_pairs],
                "within": join.within,
                "event_time": watermark.column if watermark is not None else None,
                "columns": list(join.columns),
                "other": {
                    "kind": other.source.kind,
                    "location": other.source.location,
                    "event_time": other.watermark.column if other.watermark else None,
                },
            }
        )
    if aggregate is not None:
        # the state holds a value per group and measure: a new group key, window or
        # measure would read the old state as something else
        window = aggregate.window
        operators.append(
            {
                "operator": "aggregate",
                "keys": list(aggregate.group_by),
                "window": window.model_dump(exclude_none=True) if window is not None else None,
                "event_time": spec.window_column,
                "measures": dict(aggregate.measures),
                "output": aggregate.output,
            }
        )
    return {"operators": operators} if operators else None
