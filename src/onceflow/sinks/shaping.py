"""What a sink does to a batch before writing it: its own SQL, and the MERGE dedup."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

__all__ = ["latest_per_key", "shaped_batch"]

_ROW_NUMBER = "__onceflow_row_number"


@contextmanager
def shaped_batch(batch: DataFrame, query: str | None, sink: str) -> Iterator[DataFrame]:
    """The sink's ``query`` (SQL with ``{batch}`` as the batch) over ``batch``, or ``batch``.

    The batch is bound as a temporary view, not through ``spark.sql(query, batch=df)``:
    that form re-plans the DataFrame so it misses the cache, and a persisted batch would be
    read from the source again (Spark's ``numInputRows`` doubles, and so does the work).
    The query must be deterministic: a replayed batch has to produce the same rows.
    """
    if query is None:
        yield batch
        return
    view = f"onceflow_batch_{sink}"
    batch.createOrReplaceTempView(view)
    try:
        yield batch.sparkSession.sql(query.replace("{batch}", f"`{view}`"))
    finally:
        batch.sparkSession.catalog.dropTempView(view)


def latest_per_key(frame: DataFrame, keys: tuple[str, ...], order_by: str | None) -> DataFrame:
    """One row per key: the greatest ``order_by`` (nulls last), ties broken by the whole
    row's JSON, so the same batch always keeps the same row."""
    tiebreak = F.to_json(F.struct(*[F.col(f"`{c}`") for c in frame.columns]))
    order = [F.col(order_by).desc_nulls_last()] if order_by else []
    window = Window.partitionBy(*[F.col(f"`{k}`") for k in keys]).orderBy(*order, tiebreak.desc())
    return (
        frame.withColumn(_ROW_NUMBER, F.row_number().over(window))
        .where(F.col(_ROW_NUMBER) == 1)
        .drop(_ROW_NUMBER)
    )
