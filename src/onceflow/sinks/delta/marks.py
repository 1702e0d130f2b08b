"""A Delta table's batch marks, read from its log: which app ids wrote it, to which batch.

Every commit onceflow makes carries a marker (``BatchContext.commit_marker``, JSON), and
every guarded write a ``txn`` action (app id, version = batch id), which Delta also carries
into its log's checkpoints, so it outlives log cleanup.
"""

from __future__ import annotations

import functools

from delta.tables import DeltaTable
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from onceflow.contracts import MARKER_APP_ID, MARKER_BATCH_ID
from onceflow.files import CheckpointFiles

__all__ = ["delta_app_ids", "delta_batch_marks"]


def delta_app_ids(spark: SparkSession, path: str) -> set[str]:
    """Every app id that wrote the Delta table at ``path`` (empty if there is no table)."""
    return set(delta_batch_marks(spark, path))


def delta_batch_marks(spark: SparkSession, path: str) -> dict[str, int]:
    """App id -> the highest batch id it wrote into the Delta table at ``path``.

    Read from the table's log: the commit marker (``BatchContext.commit_marker``) of every
    commit still in the log's JSON files, and the ``txn`` (app id, version = batch id) of
    exactly-once writes, which Delta also carries into its checkpoints, so it outlives log
    cleanup. One aggregate over all of them. Empty when there is no table.
    """
    if not DeltaTable.isDeltaTable(spark, path):
        return {}
    log = path.rstrip("/") + "/_delta_log"
    names = CheckpointFiles(spark, log).names()
    found: list[DataFrame] = []  # (app, batch) pairs from each place that holds them
    commits = [f"{log}/{n}" for n in names if n.endswith(".json")]
    if commits:
        actions = spark.read.json(commits)
        found += _txn_marks(actions)
        if (
            "commitInfo" in actions.columns
            and "userMetadata" in actions.select("commitInfo.*").columns
        ):
            found.append(_marker_marks(actions.select(F.col("commitInfo.userMetadata"))))
    checkpoints = [f"{log}/{n}" for n in names if ".checkpoint" in n and n.endswith(".parquet")]
    if checkpoints:
        found += _txn_marks(spark.read.parquet(*checkpoints))
    if not found:
        return {}
    pairs = functools.reduce(DataFrame.unionByName, found)
    known = F.col("app").isNotNull() & F.col("batch").isNotNull()
    rows = pairs.where(known).groupBy("app").max("batch").collect()
    return {str(row[0]): int(row[1]) for row in rows}


def _marker_marks(markers: DataFrame) -> DataFrame:
    """The (app, batch) pairs of commit markers: the JSON object onceflow stamps, or the
    ``onceflow:<app id>:<batch id>`` text of onceflow before 0.2 (the batch id is what
    follows the last ``:``, so an app id with a ``:`` reads back whole there too)."""
    text = F.col("userMetadata")
    legacy = r"^onceflow:(.*):([0-9]+)$"
    app = F.coalesce(
        F.get_json_object(text, f"$.{MARKER_APP_ID}"),
        F.nullif(F.regexp_extract(text, legacy, 1), F.lit("")),
    )
    batch = F.coalesce(
        F.get_json_object(text, f"$.{MARKER_BATCH_ID}"),
        F.nullif(F.regexp_extract(text, legacy, 2), F.lit("")),
    )
    return markers.select(app.alias("app"), batch.try_cast("bigint").alias("batch"))


def _txn_marks(actions: DataFrame) -> list[DataFrame]:
    """The (app, batch) pairs of the ``txn`` actions among ``actions``, if it has any."""
    if "txn" not in actions.columns:
        return []
    return [actions.select(F.col("txn.appId").alias("app"), F.col("txn.version").alias("batch"))]
