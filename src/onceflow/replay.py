"""``onceflow replay-quarantine``: re-feed quarantined records, once fixed, into the job's
sinks, exactly once.

Fix records in the quarantine table itself (its ``payload`` column, e.g. with a Delta
``UPDATE``), then replay. The replay reads the table at its current version V, parses and
judges every row again as the job would, writes the rows that now pass to the job's sinks,
and deletes them from the quarantine. Rows that still fail stay, with their new reason.

Exactly once across a crash anywhere: the sinks are written guarded by the replay's own app
id (``<checkpoint app id>:replay``) with batch id V, and the delete from the quarantine is a
Delta MERGE guarded by the same pair. A replay that crashed before the delete committed
reads version V again: the sinks skip what they already hold, and the delete happens. Once
the delete commits the table is at a later version, which only the remaining rows carry.
Sinks that cannot be guarded (a Parquet append) or that key rows by batch id
(``replace-batch``, whose ids would collide with the stream's) are refused.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from delta.tables import DeltaTable
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from onceflow.config import FileSourceSpec, JobSpec, KafkaSourceSpec, ParquetSinkSpec, WriteMode
from onceflow.contracts import BatchContext
from onceflow.errors import QualityError
from onceflow.guarantees import resolve_app_id
from onceflow.quality import FATE, QualityStage, parses_raw
from onceflow.quality.expectations import Fate
from onceflow.sinks import build_sink, dml_transaction
from onceflow.sources.raw import PARTITION, PAYLOAD, POSITION, SOURCE

__all__ = ["ReplayResult", "replay_quarantine"]

_log = logging.getLogger("onceflow.replay")
_BATCH = "_onceflow_quarantined_in"  # internal: dropped from the rows the sinks get
_KEYS = (_BATCH, SOURCE, PARTITION, POSITION)
_COLUMNS = ("batch_id", "source", "partition", "position")  # the same, in the quarantine


@dataclass(frozen=True)
class ReplayResult:
    """What a replay did: the quarantine version it read, rows replayed and left."""

    version: int
    replayed: int
    still_failing: int


def replay_quarantine(spark: SparkSession, spec: JobSpec) -> ReplayResult:
    """Replay the job's quarantined records that now pass (see the module)."""
    quarantine = spec.quarantine_sink()
    if spec.quality is None or quarantine is None or not parses_raw(spec.source):
        raise QualityError(
            "QUALITY_REPLAY_REFUSED",
            job=spec.name,
            why="replay needs a quality block and a source onceflow parses "
            "(JSON or CSV files, JSON Kafka values)",
        )
    _refuse_unguardable_sinks(spec)
    if not DeltaTable.isDeltaTable(spark, quarantine.path):
        return ReplayResult(version=-1, replayed=0, still_failing=0)
    table = DeltaTable.forPath(spark, quarantine.path)
    version = int(table.history(1).collect()[0]["version"])
    rows = spark.read.format("delta").option("versionAsOf", version).load(quarantine.path)
    stage = QualityStage(spec.name, spec.quality, spec.source, spec.transform, spec.key_rules())
    judged = stage.judged(_as_raw(rows, spec)).persist()
    try:
        passing = judged.where(F.col(FATE) == Fate.GOOD)
        counts = judged.agg(
            F.count(F.lit(1)).alias("total"),
            F.count(F.when(F.col(FATE) == Fate.GOOD, 1)).alias("replayed"),
        ).collect()[0]
        replayed, total = int(counts["replayed"]), int(counts["total"])
        if replayed:
            app_id = resolve_app_id(spark, spec.checkpoint).app_id
            context = BatchContext(f"{app_id}:replay", version, guarded=True)
            good = stage.good_rows(judged)
            for sink in spec.sinks:
                build_sink(spec, sink).write(good, context)
            keys = passing.select(
                *[F.col(key).alias(column) for key, column in zip(_KEYS, _COLUMNS, strict=True)]
            ).distinct()
            matched = " AND ".join(f"q.`{c}` <=> k.`{c}`" for c in _COLUMNS)
            delete = table.alias("q").merge(keys.alias("k"), matched).whenMatchedDelete()
            with dml_transaction(spark, context):
                delete.execute()
    finally:
        judged.unpersist()
    _log.info(
        "job '%s': replayed %d of %d quarantined record(s) from version %d of %s",
        spec.name,
        replayed,
        total,
        version,
        quarantine.path,
    )
    return ReplayResult(version=version, replayed=replayed, still_failing=total - replayed)


def _refuse_unguardable_sinks(spec: JobSpec) -> None:
    for sink in spec.sinks:
        mode = spec.mode_of(sink)
        if mode is WriteMode.REPLACE_BATCH or (
            isinstance(sink, ParquetSinkSpec) and mode is WriteMode.APPEND
        ):
            raise QualityError(
                "QUALITY_REPLAY_REFUSED",
                job=spec.name,
                why=f"sink '{sink.name}' ({sink.kind}, {mode}) cannot take a replay exactly "
                "once: a Parquet append has no transaction, replace-batch keys rows by the "
                "stream's batch ids",
            )


def _as_raw(rows: DataFrame, spec: JobSpec) -> DataFrame:
    """Quarantine rows shaped like the raw stream the quality stage parses."""
    # an unfixed row is parsed from its original bytes: ``payload`` shows invalid UTF-8 as
    # U+FFFD, which would parse now and let an untouched bad record through
    original = F.col("raw").cast("string")
    untouched = F.col("raw").isNotNull() & (
        F.col("payload") == F.call_function("make_valid_utf8", original)
    )
    frame = rows.select(
        F.when(untouched, original).otherwise(F.col("payload")).alias(PAYLOAD),
        F.col("source").alias(SOURCE),
        F.col("partition").alias(PARTITION),
        F.col("position").alias(POSITION),
        F.col("batch_id").alias(_BATCH),
    )
    if isinstance(spec.source, KafkaSourceSpec):
        frame = frame.select(
            "*",
            F.lit(None).cast("string").alias("kafka_key"),
            F.col(SOURCE).alias("kafka_topic"),
            F.col(PARTITION).alias("kafka_partition"),
            F.col(POSITION).alias("kafka_offset"),
            F.lit(None).cast("timestamp").alias("kafka_timestamp"),
        )
    assert isinstance(spec.source, FileSourceSpec | KafkaSourceSpec)  # noqa: S101
    return frame
