"""The job's ``aggregate``: measures per group, in event-time windows or over all time.

Spark keeps each group's running value in the state store (in the checkpoint), so a
replayed batch recomputes the same output rows from the same state version. What a batch
hands on depends on the output mode the query runs in (``aggregate.output``): ``update``,
the groups the batch changed with their whole value so far; ``append``, the windows the
watermark closed in it, once.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from onceflow.config import AggregateSpec

__all__ = ["apply_aggregate"]

_WINDOW = "_onceflow_window"


def apply_aggregate(
    frame: DataFrame, aggregate: AggregateSpec, time_column: str | None
) -> DataFrame:
    """``frame`` grouped and aggregated: ``window_start``, ``window_end`` (with a window),
    the ``group_by`` columns, then the measures, in that order. ``time_column`` is the
    window's event time (None without a window)."""
    groups: list[Column] = [F.col(f"`{name}`") for name in aggregate.group_by]
    window = aggregate.window
    if window is not None:
        assert time_column is not None  # noqa: S101 - the config rules ensure it
        time = F.col(f"`{time_column}`")
        if window.type == "session":
            assert window.gap is not None  # noqa: S101 - WindowSpec's validator
            bounds = F.session_window(time, window.gap)
        else:
            assert window.duration is not None  # noqa: S101 - WindowSpec's validator
            bounds = F.window(time, window.duration, window.slide)
        groups.insert(0, bounds.alias(_WINDOW))
    measures = [F.expr(sql).alias(name) for name, sql in aggregate.measures.items()]
    grouped = frame.groupBy(*groups).agg(*measures)
    if window is None:
        return grouped
    return grouped.select(
        F.col(f"{_WINDOW}.start").alias("window_start"),
        F.col(f"{_WINDOW}.end").alias("window_end"),
        *[F.col(f"`{name}`") for name in (*aggregate.group_by, *aggregate.measures)],
    )
