"""``onceflow replay-quarantine``: re-feed quarantined records, once fixed, into the job's
sinks, exactly once, whatever happens to the quarantine meanwhile.

Fix records in the quarantine table itself (its ``payload`` column, e.g. with a Delta
``UPDATE``), then replay. A replay is a side path into the job's sinks, so it keeps the
job's promise as strictly as the stream does:

1. It takes the job's locks (the checkpoint's, and on S3 each Delta table's): it never runs
   beside the job or another replay. The checkpoint must be the job's (its identity).
2. It finishes the replay a crash interrupted, if there is one, before anything else.
3. It reads the quarantine at its current version V, parses and judges every row again as
   the job would, and picks the rows that now pass.
4. Before any sink write it records an *intent* under the checkpoint
   (``<checkpoint>/onceflow/replay/<n>.json``, with the picked records' coordinates in
   ``<n>.records/``): replay n reads version V and replays exactly those records.
5. It writes them to the sinks guarded by ``(<app id>:replay, n)``, deletes them from the
   quarantine by a MERGE guarded by the same pair (retried on Delta's typed conflicts), and
   marks the intent done.

A crash anywhere leaves the intent; the next run reads version V again (Delta time travel),
so the sinks get the same rows under the same guard and skip what they hold, even though
the quarantine gained commits since (the job quarantined more rows, or another record was
fixed): those are left for a new intent, n + 1. Sinks that cannot be guarded (a Parquet
append) or that key rows by batch id (``replace-batch``, whose ids would collide with the
stream's) are refused.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

from delta.tables import DeltaTable
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from onceflow.config import JobSpec, kinds
from onceflow.config.kinds import load_reference
from onceflow.contracts import BatchContext, BatchInstrument, Sink
from onceflow.errors import QualityError, first_line
from onceflow.guarantees import (
    CheckpointLock,
    Intent,
    ReplayIntents,
    claim_checkpoint,
    resolve_app_id,
    retry_conflicts,
    table_lock,
)
from onceflow.quality import FATE, QualityStage
from onceflow.quality.expectations import Fate
from onceflow.sinks.base import BatchSink, build_sink
from onceflow.sinks.delta.sink import dml_transaction, is_delta_conflict
from onceflow.sources.raw import PARTITION, PAYLOAD, POSITION, SOURCE
from onceflow.storage import single_writer_tables

__all__ = ["ReplayResult", "replay_quarantine"]

_log = logging.getLogger("onceflow.replay")
_BATCH = "_onceflow_quarantined_in"  # internal: dropped from the rows the sinks get
_KEYS = (_BATCH, SOURCE, PARTITION, POSITION)
_COLUMNS = ("batch_id", "source", "partition", "position")  # the same, in the quarantine


@dataclass(frozen=True)
class ReplayResult:
    """What a replay did: the quarantine version it read, the records it replayed and the
    ones left failing, and the records of an interrupted replay it finished first."""

    version: int
    replayed: int
    still_failing: int
    resumed: int = 0


def replay_quarantine(
    spark: SparkSession, spec: JobSpec, *, instrument: BatchInstrument | None = None
) -> ReplayResult:
    """Replay the job's quarantined records that now pass (see the module).

    ``instrument`` wraps the sink writes from outside (crash injection: prove and tests).

    Raises:
        QualityError: QUALITY_REPLAY_REFUSED for a job or sink that cannot replay exactly
            once; QUALITY_REPLAY_UNFINISHED when an interrupted replay cannot be finished.
        GuaranteeError: the job's locks are held (it runs), or the checkpoint is another's.
    """
    quarantine = spec.quarantine_sink()
    if quarantine is None or not spec.parses_raw:
        raise QualityError(
            "QUALITY_REPLAY_REFUSED",
            job=spec.name,
            why="replay needs a source onceflow parses (JSON or CSV files, JSON Kafka "
            "values, without quality.parser: spark) and so a quarantine table",
        )
    _refuse_unguardable_sinks(spec)
    with _job_locks(spark, spec) as lease:
        claim_checkpoint(spark, spec)
        replay = _Replay(spark, spec, quarantine.location, lease, instrument)
        resumed = replay.finish_pending()
        if not DeltaTable.isDeltaTable(spark, quarantine.location):
            return ReplayResult(version=-1, replayed=0, still_failing=0, resumed=resumed)
        return replay.replay_current(resumed)


@contextmanager
def _job_locks(spark: SparkSession, spec: JobSpec) -> Iterator[Callable[[], None]]:
    """Hold the job's checkpoint lock and its S3 table locks; yield the lease check."""
    locks = [CheckpointLock(spark, spec.checkpoint, spec.name, spec.locks)]
    locks += [
        table_lock(spark, p, spec.name, spec.locks) for p in single_writer_tables(spark, spec)
    ]
    held: list[CheckpointLock] = []
    try:
        for lock in locks:
            lock.acquire()
            held.append(lock)

        def lease() -> None:
            for lock in held:
                lock.check()

        yield lease
    finally:
        for lock in reversed(held):
            lock.release()


class _Replay:
    """One run of ``replay_quarantine`` under the job's locks."""

    def __init__(
        self,
        spark: SparkSession,
        spec: JobSpec,
        quarantine: str,
        lease: Callable[[], None],
        instrument: BatchInstrument | None,
    ) -> None:
        self._spark = spark
        self._spec = spec
        self._quarantine = quarantine
        self._lease = lease
        self._instrument = instrument
        self._stage = QualityStage(spec)
        self._app_id = resolve_app_id(spark, spec.checkpoint).app_id + ":replay"
        self._intents = ReplayIntents(spark, spec.checkpoint)
        self._sinks: list[BatchSink] = [build_sink(spec, sink) for sink in spec.sinks]

    def finish_pending(self) -> int:
        """Finish the last intent if a crash left it undone; how many records it had."""
        intent = self._intents.pending()
        if intent is None:
            return 0
        _log.warning(
            "job '%s': replay %d of the quarantine (version %d, %d record(s)) did not "
            "finish; finishing it first",
            self._spec.name,
            intent.number,
            intent.version,
            intent.count,
        )
        self._carry_out(intent)
        return intent.count

    def _record_intent(self, version: int, keys: DataFrame, count: int) -> Intent:
        """Write replay n's records, then its intent file: the intent is what commits it."""
        # above every replay id the sinks hold too (an older onceflow keyed them otherwise)
        held = [(s.batch_marks(self._spark) or {}).get(self._app_id, -1) for s in self._sinks]
        number = self._intents.next_number(held)
        keys.write.mode("overwrite").parquet(self._intents.records_of(number))
        intent = self._intents.record(number, version, count)
        if intent is None:
            raise QualityError(
                "QUALITY_REPLAY_REFUSED",
                job=self._spec.name,
                why=f"replay intent {number} appeared meanwhile: another replay runs",
            )
        return intent

    # -- the replay ---------------------------------------------------------------------
    def _judged(self, version: int) -> DataFrame:
        rows = (
            self._spark.read.format("delta").option("versionAsOf", version).load(self._quarantine)
        )
        return self._stage.judged(_as_raw(rows, self._spec))

    def replay_current(self, resumed: int) -> ReplayResult:
        table = DeltaTable.forPath(self._spark, self._quarantine)
        version = int(table.history(1).collect()[0]["version"])
        judged = self._judged(version).persist()
        try:
            counts = judged.agg(
                F.count(F.lit(1)).alias("total"),
                F.count(F.when(F.col(FATE) == Fate.GOOD, 1)).alias("passing"),
            ).collect()[0]
            passing, total = int(counts["passing"]), int(counts["total"])
            if passing:
                keys = judged.where(F.col(FATE) == Fate.GOOD).select(
                    *[F.col(k).alias(c) for k, c in zip(_KEYS, _COLUMNS, strict=True)]
                )
                intent = self._record_intent(version, keys.distinct(), passing)
        finally:
            judged.unpersist()
        if passing:
            self._carry_out(intent)
        _log.info(
            "job '%s': replayed %d of %d quarantined record(s) from version %d of %s",
            self._spec.name,
            passing,
            total,
            version,
            self._quarantine,
        )
        return ReplayResult(version, passing, total - passing, resumed)

    def _carry_out(self, intent: Intent) -> None:
        """Write the intent's records to the sinks and delete them from the quarantine,
        both guarded by the intent's number; then mark it done."""
        context = BatchContext(self._app_id, intent.number, guarded=True)
        try:
            keys = self._spark.read.parquet(intent.records)
            judged = self._judged(intent.version)
        except Exception as exc:
            raise QualityError(
                "QUALITY_REPLAY_UNFINISHED",
                job=self._spec.name,
                intent=intent.number,
                version=intent.version,
                cause=first_line(exc),
            ) from exc
        picked = [
            F.col(f"k.{c}").eqNullSafe(F.col(f"j.{k}"))
            for k, c in zip(_KEYS, _COLUMNS, strict=True)
        ]
        chosen = (
            judged.alias("j")
            .join(keys.alias("k"), on=picked, how="left_semi")
            .where(F.col(FATE) == Fate.GOOD)
        )
        good = self._stage.good_rows(chosen).persist()
        try:
            self._writer(context)(good, intent.number)
        finally:
            good.unpersist()
        self._delete(keys, context)
        self._intents.done(intent)

    def _writer(self, context: BatchContext) -> Callable[[DataFrame, int], None]:
        sinks: Sequence[Sink] = self._sinks
        if self._instrument is not None:
            sinks = self._instrument.wrap_sinks(sinks)

        def write(frame: DataFrame, _: int) -> None:
            for sink in sinks:
                call = _write_call(sink, frame, context)
                self._guarded(f"sink '{sink.name}'", call, sink.is_conflict)

        return self._instrument.wrap_writer(write) if self._instrument is not None else write

    def _guarded(
        self,
        what: str,
        action: Callable[[], None],
        is_conflict: Callable[[BaseException], bool],
    ) -> None:
        """``action`` under the job's locks, retried on the conflicts its target names."""

        def attempt() -> None:
            self._lease()  # a lost lock stops the replay before this write
            action()

        retry_conflicts(
            attempt,
            what=f"job '{self._spec.name}' quarantine replay, {what}",
            retries=self._spec.retries,
            is_conflict=is_conflict,
        )

    def _delete(self, keys: DataFrame, context: BatchContext) -> None:
        matched = " AND ".join(f"q.`{c}` <=> k.`{c}`" for c in _COLUMNS)

        def delete() -> None:
            table = DeltaTable.forPath(self._spark, self._quarantine)
            builder = table.alias("q").merge(keys.alias("k"), matched).whenMatchedDelete()
            with dml_transaction(self._spark, context):
                builder.execute()

        # the quarantine is a Delta table (``JobSpec.quarantine_sink``)
        self._guarded("the delete from the quarantine", delete, is_delta_conflict)


def _write_call(sink: Sink, frame: DataFrame, context: BatchContext) -> Callable[[], None]:
    return lambda: sink.write(frame, context)


def _refuse_unguardable_sinks(spec: JobSpec) -> None:
    for sink in spec.sinks:
        kind = kinds().sink(sink.kind)
        mode = spec.mode_of(sink)
        if mode not in kind.replayable_modes:
            raise QualityError(
                "QUALITY_REPLAY_REFUSED",
                job=spec.name,
                why=f"sink '{sink.name}' ({sink.kind}, {mode}) cannot take a replay exactly "
                "once with a replay's own guard ids: it has no transaction to carry them (a "
                "Parquet append), or it keys rows by the stream's batch ids (replace-batch)",
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
    shape = kinds().source(spec.source.kind).replay_shape
    if shape is not None:  # the columns the kind's raw stream adds (Kafka's coordinates)
        shaped: DataFrame = load_reference(shape)(frame, spec.source)
        return shaped
    return frame
