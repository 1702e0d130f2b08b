"""The job's ``join``: a batch's rows left-joined with a Delta table at a given version
(``onceflow.guarantees.JoinVersions`` says which, per batch)."""

from __future__ import annotations

from pyspark.sql import DataFrame

from onceflow.config import TableJoinSpec

__all__ = ["join_table"]


def join_table(rows: DataFrame, join: TableJoinSpec, version: int) -> DataFrame:
    """``rows`` with the columns ``join.columns`` names of the table's row of the same
    keys (NULLs without one), the table read at ``version``. A table with several rows of
    one key repeats the row: join a table keyed by ``keys`` (a MERGE target, say)."""
    table = rows.sparkSession.read.format("delta").option("versionAsOf", version).load(join.table)
    if join.columns:
        table = table.selectExpr(*[f"`{key}`" for key in join.keys], *join.columns)
    return rows.join(table, on=list(join.keys), how="left")
