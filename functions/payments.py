"""Functions the example payment jobs apply to their rows."""

from __future__ import annotations

from decimal import Decimal

from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import StringType


def size_of(amount: Decimal | None) -> str:
    """``large`` from 100 up, else ``small``; ``unknown`` without an amount."""
    if amount is None:
        return "unknown"
    return "large" if amount >= 100 else "small"


# a Python UDF on purpose: it runs in the executors' Python workers, which import
# ``size_of`` from this module by name (onceflow ships the package to them)
_size_udf = F.udf(size_of, StringType(), useArrow=False)


def with_size(payments: DataFrame) -> DataFrame:
    """Each payment with its ``size``: ``large`` from 100 up, else ``small``."""
    return payments.withColumn("size", _size_udf(F.col("amount")))


def with_batch(payments: DataFrame, batch_id: int) -> DataFrame:
    """Each row of a batch with the id of the batch that wrote it."""
    return payments.withColumn("written_by_batch", F.lit(batch_id).cast("bigint"))
