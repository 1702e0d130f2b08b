"""The Delta sink: a table written from ``foreachBatch`` by append, MERGE or replace-batch.

What a replay of batch N does, per mode, guarded (exactly-once) or not:

- ``append``: unguarded, a replay appends the batch again. Guarded, the commit carries
  the writer options ``txnAppId``/``txnVersion`` = (app id, N) and Delta skips a replay.
- ``merge``: unguarded, the MERGE runs again (``t.x + s.x`` applies twice). Guarded, the
  DML transaction id session settings are set around the MERGE, then reset, and Delta
  skips a replay.
- ``replace-batch``: the rows carry N; a replay replaces batch N's rows in one commit
  (``replaceWhere``), guarded or not.
- ``cdc``: one MERGE into the table, then one into its ledger, each guarded as ``merge``
  is (``onceflow.sinks.delta.cdc``).

Every commit carries ``userMetadata = {"onceflow_app_id": "<app id>", "onceflow_batch_id": N}``
(``onceflow.sinks.delta.marks`` reads them back). The kind's declaration, its keys and
what it refuses are in ``onceflow.sinks.delta``.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from delta.tables import DeltaMergeBuilder, DeltaTable
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from onceflow.config import JobSpec, WriteMode
from onceflow.contracts import BatchContext
from onceflow.errors import SinkError
from onceflow.sinks.base import BatchSink
from onceflow.sinks.delta import DeltaSinkSpec, MergeSpec
from onceflow.sinks.delta.key_range import key_ranges, ranged_keys
from onceflow.sinks.delta.marks import delta_batch_marks
from onceflow.sinks.shaping import latest_per_key

if TYPE_CHECKING:
    from onceflow.sinks.delta.cdc import CdcApply

__all__ = [
    "DML_TXN_APP_ID",
    "DML_TXN_VERSION",
    "DeltaSink",
    "build",
    "dml_transaction",
    "is_delta_conflict",
]

DML_TXN_APP_ID = "spark.databricks.delta.write.txnAppId"
DML_TXN_VERSION = "spark.databricks.delta.write.txnVersion"
_DML_TXN_AUTO_RESET = "spark.databricks.delta.write.txnVersion.autoReset.enabled"
_COMMIT_USER_METADATA = "spark.databricks.delta.commitInfo.userMetadata"

# Delta's DML transaction id is a *session* setting. Each streaming query runs in its own
# cloned session, but a user may share one (a notebook, a replay beside its job): one lock
# per session makes set-write-reset atomic there, so two writers of one session never see
# each other's transaction id, while queries of different sessions MERGE side by side.
_DML_TXN_LOCKS: dict[int, threading.Lock] = {}
_DML_TXN_LOCKS_GUARD = threading.Lock()


def _session_lock(spark: SparkSession) -> threading.Lock:
    """The DML lock of ``spark``'s JVM session (a Python wrapper may be made anew for it)."""
    key = int(spark._jsparkSession.hashCode())
    with _DML_TXN_LOCKS_GUARD:
        return _DML_TXN_LOCKS.setdefault(key, threading.Lock())


@contextmanager
def dml_transaction(spark: SparkSession, context: BatchContext) -> Iterator[None]:
    """Within the block, Delta DML (MERGE) commits carry ``(app id, batch id)`` as their
    transaction id when ``context.guarded``, and the commit marker always; both are reset
    after, whatever happens."""
    settings = {_COMMIT_USER_METADATA: context.commit_marker}
    if context.guarded:
        settings |= {
            DML_TXN_APP_ID: context.app_id,
            DML_TXN_VERSION: str(context.batch_id),
            _DML_TXN_AUTO_RESET: "true",
        }
    with _session_lock(spark):
        try:
            for key, value in settings.items():
                spark.conf.set(key, value)
            yield
        finally:
            for key in settings:
                spark.conf.unset(key)


def build(job: JobSpec, spec: DeltaSinkSpec, mode: WriteMode) -> DeltaSink:
    """The kind's factory (``onceflow.sinks.delta.SINK.build``)."""
    return DeltaSink(job.name, spec, mode)


def is_delta_conflict(exc: BaseException) -> bool:
    """True for Delta's typed concurrent-modification exceptions (safe to retry)."""
    from delta import exceptions as delta_errors

    conflicts = (
        delta_errors.ConcurrentAppendException,
        delta_errors.ConcurrentDeleteDeleteException,
        delta_errors.ConcurrentDeleteReadException,
        delta_errors.ConcurrentTransactionException,
        delta_errors.ConcurrentWriteException,
        delta_errors.DeltaConcurrentModificationException,
        delta_errors.MetadataChangedException,
        delta_errors.ProtocolChangedException,
    )
    return isinstance(exc, conflicts)


class DeltaSink(BatchSink):
    """One Delta table; ``mode`` says how a batch lands in it (see the module's docstring)."""

    _spec: DeltaSinkSpec

    def __init__(self, job: str, spec: DeltaSinkSpec, mode: WriteMode) -> None:
        super().__init__(job, spec, mode)
        self._cdc: CdcApply | None = None  # made by the first batch of a CDC apply

    def batch_marks(self, spark: SparkSession) -> dict[str, int]:
        return delta_batch_marks(spark, self.path)

    def is_conflict(self, exc: BaseException) -> bool:
        return is_delta_conflict(exc)

    def read(self, spark: SparkSession) -> DataFrame:
        return spark.read.format("delta").load(self.path)

    def _write(self, frame: DataFrame, context: BatchContext) -> None:
        if self._mode is WriteMode.CDC:
            if self._cdc is None:
                from onceflow.sinks.delta.cdc import CdcApply  # it imports this module

                self._cdc = CdcApply(self._job, self._spec, self._create_if_missing)
            self._cdc.write(frame, context)
        elif self._mode is WriteMode.MERGE:
            assert self._spec.merge is not None  # noqa: S101 - config rules ensure it
            self._merge(frame, self._spec.merge, context)
        elif self._mode is WriteMode.REPLACE_BATCH:
            self._replace_batch(frame, context)
        else:
            self._append(frame, context)

    def _append(self, frame: DataFrame, context: BatchContext) -> None:
        writer = frame.write.format("delta").mode("append").options(**self._spec.options)
        writer = writer.option("userMetadata", context.commit_marker)
        if context.guarded:
            writer = writer.option("txnAppId", context.app_id)
            writer = writer.option("txnVersion", context.batch_id)
        if self._spec.partition_by:
            writer = writer.partitionBy(*self._spec.partition_by)
        writer.save(self.path)

    def _replace_batch(self, frame: DataFrame, context: BatchContext) -> None:
        column = self._spec.batch_id_column
        frame = frame.withColumn(column, F.lit(context.batch_id).cast("bigint"))
        writer = (
            frame.write.format("delta")
            .mode("overwrite")
            .options(**self._spec.options)
            .option("replaceWhere", f"`{column}` = {context.batch_id}")
            .option("userMetadata", context.commit_marker)
        )
        if self._spec.partition_by:
            writer = writer.partitionBy(*self._spec.partition_by)
        writer.save(self.path)

    def _merge(self, frame: DataFrame, merge: MergeSpec, context: BatchContext) -> None:
        spark = frame.sparkSession
        key_range = self._check_keys(frame, merge, context)
        source = latest_per_key(frame, merge.keys, merge.order_by)
        self._create_if_missing(spark, source)  # its own commit: outside the txn guard
        condition = " AND ".join(f"t.`{key}` = s.`{key}`" for key in merge.keys)
        if key_range:  # empty without merge.prune
            condition += " AND " + " AND ".join(key_range)
        builder = (
            DeltaTable.forPath(spark, self.path).alias("t").merge(source.alias("s"), condition)
        )
        builder = _with_clauses(builder, merge)
        with dml_transaction(spark, context):
            builder.execute()

    def _check_keys(self, frame: DataFrame, merge: MergeSpec, context: BatchContext) -> list[str]:
        """Stop the batch on a NULL key (``on_null_key: fail``) or a repeated key
        (``on_duplicate_key: fail``), naming a sample row; return the batch's key range as
        predicates on the target (see ``_key_summary``). Rows the job quarantines by key
        never get here; with ``latest`` a repeated key is deduplicated, never Delta's
        "multiple source rows matched" error."""
        null_keys, key_range = _key_summary(frame, merge)
        found: list[tuple[str, DataFrame]] = []
        if merge.on_null_key == "fail" and null_keys:
            found.append(
                (
                    "a NULL key, which would match no row and insert a new one",
                    frame.where(_any_null_key(merge.keys)),
                )
            )
        if merge.on_duplicate_key == "fail":
            keys = [F.col(f"`{key}`") for key in merge.keys]
            repeated = frame.groupBy(*keys).count().where(F.col("count") > 1).drop("count")
            found.append(("a key that several rows of the batch share", repeated))
        for problem, rows in found:
            sample = rows.limit(1).toJSON().collect()
            if sample:
                raise SinkError(
                    "SINK_MERGE_KEY_REFUSED",
                    job=self._job,
                    sink=self.name,
                    batch_id=context.batch_id,
                    keys=", ".join(merge.keys),
                    problem=problem,
                    sample=sample[0][:500],
                )
        return key_range

    def _create_if_missing(self, spark: SparkSession, source: DataFrame) -> None:
        """Commit version 0 (the schema, no rows) unless the table has a committed version.

        Not ``DeltaTable.createIfNotExists``: for a path it creates nothing when the folder
        merely is non-empty, so a creator killed before its first commit (leaving
        ``_delta_log/_staged_commits/`` or a ``.00000000000000000000.json.<uuid>.tmp``) made
        every restart fail with DELTA_TABLE_NOT_FOUND. A write in ``ignore`` mode asks
        what ``isDeltaTable`` asks, whether a version exists, and Delta skips such
        leftovers, so nothing has to be deleted. A creator that loses a race to another
        gets a conflict; its second attempt finds the winner's version 0 and does nothing.
        """
        if DeltaTable.isDeltaTable(spark, self.path):
            return
        schema = (
            spark.createDataFrame([], self._spec.schema_ddl).schema
            if self._spec.schema_ddl
            else source.schema
        )
        writer = spark.createDataFrame([], schema).write.format("delta").mode("ignore")
        if self._spec.partition_by:
            writer = writer.partitionBy(*self._spec.partition_by)
        try:
            writer.save(self.path)
        except Exception as exc:
            if not is_delta_conflict(exc):
                raise
            writer.save(self.path)  # another creator won: now a no-op


def _any_null_key(keys: tuple[str, ...]) -> Column:
    """True for a row with a NULL in any of ``keys``."""
    any_null = F.lit(False)
    for key in keys:
        any_null = any_null | F.col(f"`{key}`").isNull()
    return any_null


def _key_summary(frame: DataFrame, merge: MergeSpec) -> tuple[int, list[str]]:
    """The batch's rows with a NULL key, and its key range as predicates on the target
    (``t.k >= lo AND t.k <= hi`` per orderable key, with ``merge.prune``), in one aggregate.

    The range lets Delta skip every target file whose min/max statistics lie outside it,
    so a MERGE into an append-ordered table reads the files the batch can touch, not the
    whole table. The key equality implies it, so it changes no result. No aggregate runs
    when neither the range nor the NULL count is wanted.
    """
    keys = merge.keys if merge.prune else ()
    if not ranged_keys(frame, keys) and merge.on_null_key != "fail":
        return 0, []
    null_keys = F.count_if(_any_null_key(merge.keys))
    counts, ranges = key_ranges(frame, keys, {"null_keys": null_keys})
    predicates = []
    for key, low, high in ranges:
        predicates += [f"t.`{key}` >= {low}", f"t.`{key}` <= {high}"]
    return counts["null_keys"], predicates


def _with_clauses(builder: DeltaMergeBuilder, merge: MergeSpec) -> DeltaMergeBuilder:
    for matched in merge.when_matched:
        if matched.action == "update_all":
            builder = builder.whenMatchedUpdateAll(condition=matched.condition)
        elif matched.action == "update":
            builder = builder.whenMatchedUpdate(condition=matched.condition, set=dict(matched.set))
        else:
            builder = builder.whenMatchedDelete(condition=matched.condition)
    for not_matched in merge.when_not_matched:
        if not_matched.action == "insert_all":
            builder = builder.whenNotMatchedInsertAll(condition=not_matched.condition)
        else:
            builder = builder.whenNotMatchedInsert(
                condition=not_matched.condition,  # type: ignore[arg-type]  # None is allowed
                values=dict(not_matched.values),
            )
    if merge.schema_evolution:
        builder = builder.withSchemaEvolution()
    return builder
