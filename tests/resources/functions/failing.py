"""Job functions that fail: on one batch, while the stream is built, or by their result."""

from __future__ import annotations

from pyspark.sql import DataFrame


def on_batch(rows: DataFrame, batch_id: int) -> DataFrame:
    if batch_id == 1:
        raise ValueError("no rates for this day")
    return rows


def on_stream(stream: DataFrame) -> DataFrame:
    raise KeyError("rates")


def not_a_frame(stream: DataFrame) -> int:
    return 1
