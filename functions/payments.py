"""Functions the example payment jobs apply to their rows."""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import StringType


@F.udf(returnType=StringType())
def _size_of(amount: object) -> str:
    """A Python UDF on purpose: it runs in the executors' Python workers, which must be
    able to import this module (onceflow ships it)."""
    if amount is None:
        return "unknown"
    return "large" if float(amount) >= 100 else "small"  # type: ignore[arg-type]


def with_size(payments: DataFrame) -> DataFrame:
    """Each payment with its ``size``: ``large`` from 100 up, else ``small``."""
    return payments.withColumn("size", _size_of(F.col("amount")))


def with_batch(payments: DataFrame, batch_id: int) -> DataFrame:
    """Each row of a batch with the id of the batch that wrote it."""
    return payments.withColumn("written_by_batch", F.lit(batch_id).cast("bigint"))
