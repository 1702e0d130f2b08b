"""The job's ``join``: a batch's rows left-joined with a Delta table at a given version
(``onceflow.guarantees.JoinVersions`` says which, per batch), or the stream joined with a
second stream (``join_stream``), its state in the checkpoint."""

from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from onceflow.config import JoinSpec

__all__ = ["OTHER", "THIS", "join_stream", "join_table"]

#: How ``within`` and ``columns`` may name a column both sides have: ``this.<column>`` is
#: the job's stream's, ``other.<column>`` the second's.
THIS, OTHER = "this", "other"


def join_table(rows: DataFrame, join: JoinSpec, version: int) -> DataFrame:
    """``rows`` with the columns ``join.columns`` names of the table's row of the same
    keys (NULLs without one), the table read at ``version``. A table with several rows of
    one key repeats the row: join a table keyed by ``keys`` (a MERGE target, say)."""
    assert join.table is not None  # noqa: S101 - a table join's, by the caller
    table = rows.sparkSession.read.format("delta").option("versionAsOf", version).load(join.table)
    if join.columns:
        table = table.selectExpr(*[f"`{key}`" for key in join.keys], *join.columns)
    return rows.join(table, on=list(join.keys), how="left")


def join_stream(rows: DataFrame, other: DataFrame, join: JoinSpec, time: str) -> DataFrame:
    """``rows`` (the job's stream, watermarked on ``time``) joined with ``other`` (the
    second stream, watermarked, only rows that parsed) on the keys and within the time
    range: each row of ``rows`` with the ``columns`` of its match.

    A row of ``rows`` with a NULL key or ``time`` can match nothing, and its state could
    never be evicted (a NULL time never falls behind the watermark): it never enters the
    join. An inner join leaves it out; a left join emits it at once, with NULLs.
    """
    pairs = join.key_pairs
    usable = F.col(f"`{time}`").isNotNull()
    for this, _ in pairs:
        usable = usable & F.col(f"`{this}`").isNotNull()
    this_side, other_side = rows.where(usable).alias(THIS), other.alias(OTHER)
    matched: Column = F.expr(join.within or "true")
    for this, that in pairs:
        matched = matched & (F.col(f"{THIS}.`{this}`") == F.col(f"{OTHER}.`{that}`"))
    joined = this_side.join(other_side, matched, join.join_type)
    keys = {that for _, that in pairs}
    gained = (
        [F.expr(column) for column in join.columns]
        if join.columns
        else [F.col(f"{OTHER}.`{c}`") for c in other.columns if c not in keys]
    )
    result = joined.select(F.col(f"{THIS}.*"), *gained)
    if join.join_type == "left":
        # unmatchable: emitted now with the NULLs the join would give it
        result = result.unionByName(rows.where(~usable), allowMissingColumns=True)
    return result
