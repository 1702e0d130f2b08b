"""What ``validate --deep`` and ``run`` ask of a Delta sink beyond its query: that Spark
can analyse its MERGE (keys, ``order_by``, each clause's condition and expressions)
against the target's columns and an empty, shaped batch, before any batch runs; and, for
a CDC apply, its columns and condition against the batch (``cdc_failures``)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import StructType

from onceflow.config.documents import KeyPath
from onceflow.session import analysis_failure
from onceflow.sinks.delta import CdcSpec, DeltaSinkSpec

__all__ = ["cdc_failures", "merge_failures"]


def merge_failures(
    spark: SparkSession, sink: DeltaSinkSpec, target: StructType, batch: DataFrame
) -> Iterator[tuple[KeyPath, str]]:
    """Each MERGE expression Spark cannot analyse, by its key under the sink (``merge``,
    ...): the target is ``t`` and the batch ``s``, as in the MERGE; a not-matched clause sees
    only ``s``. A sink without ``merge`` has none; a CDC apply's are ``cdc_failures``."""
    if sink.cdc is not None:
        yield from cdc_failures(sink.cdc, batch)
    merge = sink.merge
    if merge is None:
        return
    source = batch.alias("s")
    both = spark.createDataFrame([], target).alias("t").crossJoin(source)
    checks: list[tuple[KeyPath, Any]] = []
    for name in merge.keys:
        checks.append((("keys",), lambda k=name: both.where(f"t.`{k}` = s.`{k}`")))
    if merge.order_by:
        checks.append((("order_by",), lambda: source.select(F.col(f"`{merge.order_by}`"))))
    for number, matched in enumerate(merge.when_matched):
        where: KeyPath = ("when_matched", number)
        if matched.condition:
            checks.append(((*where, "condition"), lambda c=matched.condition: both.where(c)))
        for column, value in matched.set.items():
            checks.append(((*where, "set", column), lambda v=value: both.select(F.expr(v))))
    for number, not_matched in enumerate(merge.when_not_matched):
        where = ("when_not_matched", number)
        if not_matched.condition:
            checks.append(((*where, "condition"), lambda c=not_matched.condition: source.where(c)))
        for column, value in not_matched.values.items():
            checks.append(((*where, "values", column), lambda v=value: source.select(F.expr(v))))
    for key, check in checks:
        failure = analysis_failure(check)
        if failure:
            yield ("merge", *key), failure


def cdc_failures(cdc: CdcSpec, batch: DataFrame) -> Iterator[tuple[KeyPath, str]]:
    """Each CDC setting the batch cannot serve, by its key under the sink: a key, sequence
    or excepted column it lacks, a delete condition that is no boolean over it, SCD 2
    columns that its stored columns already have."""
    checks: list[tuple[KeyPath, Any]] = []
    for setting in ("keys", "sequence_by", "except_columns"):
        for column in getattr(cdc, setting):
            checks.append(((setting,), lambda c=column: batch.select(F.col(f"`{c}`"))))
    if cdc.apply_as_deletes:
        checks.append((("apply_as_deletes",), lambda: batch.where(cdc.apply_as_deletes)))
    for key, check in checks:
        failure = analysis_failure(check)
        if failure:
            yield ("cdc", *key), failure
    if cdc.stored_as_scd_type == 2:
        stored = set(batch.columns) - set(cdc.except_columns)
        for setting in ("start_column", "end_column"):
            column = getattr(cdc, setting)
            if column in stored:
                why = (
                    f"the batch has a column '{column}' already: the history's would "
                    "overwrite it; name this one otherwise, or leave the batch's out "
                    "(except_columns)"
                )
                yield ("cdc", setting), why
