"""A job spec in, a running streaming query out.

``start_query`` wires source -> transform -> ``foreachBatch(writer)`` with the job's
checkpoint and trigger; ``run_job`` also builds the session and waits for the end.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.streaming.query import StreamingQuery
from pyspark.sql.streaming.readwriter import DataStreamWriter

from onceflow.config import (
    FileSourceSpec,
    Guarantee,
    JobSpec,
    KafkaSourceSpec,
    LoadedJob,
    PostgresSinkSpec,
    TriggerSpec,
)
from onceflow.contracts import BatchInstrument, BatchWriter, Sink
from onceflow.errors import GuaranteeError, OnceflowError, SourceError, StorageError, first_line
from onceflow.guarantees import (
    BatchLedger,
    CheckpointLock,
    WriterSettings,
    check_foreign_sinks,
    checkpoint_position,
    claim_checkpoint,
    guarded_writer,
    resolve_app_id,
    table_lock,
)
from onceflow.observe import MetricsFile, ProgressLogger, skipped_offsets
from onceflow.quality import QualityStage
from onceflow.session import build_session
from onceflow.sinks import BatchSink, build_sink
from onceflow.sources import describe_lost_offsets, read_stream
from onceflow.sources.raw import read_raw_stream
from onceflow.storage import (
    check_storage,
    single_writer_tables,
    storage_failure,
    use_abortable_checkpoints,
)
from onceflow.transform import apply_transform

__all__ = [
    "RunResult",
    "apply_transform",
    "build_outputs",
    "build_writer",
    "run_job",
    "sink_row_counts",
    "start_query",
    "storage_locations",
    "unwrap_streaming_error",
]


_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunResult:
    """What one ``run_job`` did: where it ran, the query's id, the batches and rows, and
    Kafka offsets skipped as lost (only with ``failOnDataLoss: false``)."""

    master: str
    query_id: str
    batches: int
    input_rows: int
    skipped_offsets: int = 0


def build_writer(
    spark: SparkSession,
    spec: JobSpec,
    outputs: Sequence[BatchSink] | None = None,
    instrument: BatchInstrument | None = None,
    lease: Callable[[], None] | None = None,
) -> BatchWriter:
    """The ``foreachBatch`` writer for ``spec``: its outputs wrapped in its guarantee.

    ``outputs`` are the job's sinks and then its quarantine table (``spec.outputs``), built
    once by the caller (built here when omitted). Resolves the checkpoint's app id and
    refuses a fresh checkpoint against an output another checkpoint wrote (unless
    ``on_foreign_sink: continue``), before any batch runs. ``lease`` is asked before every
    sink write (the job's locks); ``instrument`` wraps the writer and the outputs from
    outside (crash injection: prove and tests only).
    """
    outputs = list(outputs) if outputs is not None else build_outputs(spec)
    identity = resolve_app_id(spark, spec.checkpoint)
    check_foreign_sinks(spark, spec, identity, outputs)
    sinks: list[Sink] = list(outputs[: len(spec.sinks)])
    quarantine = outputs[len(spec.sinks) :]
    if instrument is not None:
        # the job's sinks: a crash "inside the write" of a one-sink job is inside that
        # sink's write job, whether or not the batch also quarantines records
        sinks = instrument.wrap_sinks(sinks)
    settings = WriterSettings(
        job=spec.name,
        guarantee=spec.guarantee,
        app_id=identity.app_id,
        retries=spec.retries,
        ledger=(
            BatchLedger(spark, spec.checkpoint)
            if spec.guarantee is Guarantee.AT_MOST_ONCE
            else None
        ),
        quality=QualityStage.for_job(spec),
        quarantine=quarantine[0] if quarantine else None,
        replay_of=checkpoint_position(spark, spec.checkpoint).in_flight,
        lease=lease,
    )
    writer = guarded_writer(sinks, settings)
    return instrument.wrap_writer(writer) if instrument is not None else writer


def build_outputs(spec: JobSpec) -> list[BatchSink]:
    """The job's sinks, then its quarantine table when it has one, each built once."""
    return [build_sink(spec, sink) for sink in spec.outputs]


def source_frame(spark: SparkSession, spec: JobSpec) -> DataFrame:
    """The streaming DataFrame ``foreachBatch`` receives: the source read raw when onceflow
    parses it, else typed; the transform applied here unless the quality stage applies it
    (its ``where`` is then a rule, so that what it filters is counted)."""
    stage = QualityStage.for_job(spec)
    if stage is None:
        return apply_transform(read_stream(spark, spec.source), spec.transform)
    source = spec.source
    if spec.parses_raw:
        assert isinstance(source, FileSourceSpec | KafkaSourceSpec)  # noqa: S101 - parses_raw
        frame = read_raw_stream(spark, source)
    else:
        frame = read_stream(spark, source)
    stage.check_rules(spark.createDataFrame([], frame.schema))
    return frame


def start_query(
    spark: SparkSession,
    spec: JobSpec,
    writer: BatchWriter | None = None,
    *,
    instrument: BatchInstrument | None = None,
    adopt_checkpoint: bool = False,
    on_lock_lost: Callable[[GuaranteeError], None] | None = None,
) -> StreamingQuery:
    """Start the job's query; ``writer`` replaces the job's own (tests, the prove harness).

    The storage of the checkpoint and of every output is checked first (an unreachable
    store or refused credentials stop the job here, naming the path). Then the checkpoint's
    lock is taken, and on S3 one lock per Delta output (Delta's single-driver rule there);
    the checkpoint must be this job's (``claim_checkpoint``; ``adopt_checkpoint`` takes
    over another's on purpose); a checkpoint on S3 gets Spark's abortable-stream checkpoint
    file manager. All of it is released or restored when the query ends, however it ends.

    A lock lost while the query runs (taken over after this process froze past its stale
    window, or not renewable) stops the batch writer before its next sink write and then
    the query; ``on_lock_lost`` hears of it first (by default it is logged).
    """
    check_storage(spark, spec.name, storage_locations(spec))
    outputs = build_outputs(spec)
    for sink in outputs:
        sink.check()
    started: list[StreamingQuery] = []

    def lost(error: GuaranteeError) -> None:
        if on_lock_lost is not None:
            on_lock_lost(error)
        for query in started:
            query.stop()

    locks = [CheckpointLock(spark, spec.checkpoint, spec.name, spec.locks, on_lost=lost)]
    for path in single_writer_tables(spark, spec):
        table = table_lock(spark, path, spec.name, spec.locks)
        table.on_lost = lost
        locks.append(table)
    held: list[CheckpointLock] = []
    restore_manager = None
    try:
        for lock in locks:
            lock.acquire()
            held.append(lock)
        claim_checkpoint(spark, spec, adopt=adopt_checkpoint)
        restore_manager = use_abortable_checkpoints(spark, spec.checkpoint)

        def lease() -> None:
            for lock in held:
                lock.check()

        frame = source_frame(spark, spec)
        writer = writer or build_writer(spark, spec, outputs, instrument, lease)
        stream = (
            frame.writeStream.queryName(spec.name)
            .option("checkpointLocation", spec.checkpoint)
            .foreachBatch(writer)
        )
        query = _with_trigger(stream, spec.trigger).start()
        started.append(query)
    except BaseException:
        _release(spec.name, held, restore_manager)
        raise
    threading.Thread(
        target=_release_when_done,
        args=(query, spec.name, held, restore_manager),
        name=f"onceflow-{spec.name}",
        daemon=True,
    ).start()
    return query


def storage_locations(spec: JobSpec) -> dict[str, str]:
    """Role -> path of everything the job writes on a file system: its checkpoint and its
    file sinks (a database sink is checked by logging in, ``BatchSink.check``)."""
    return {"checkpoint": spec.checkpoint} | {
        f"sink '{s.name}'": s.path for s in spec.outputs if not isinstance(s, PostgresSinkSpec)
    }


def _release_when_done(
    query: StreamingQuery,
    job: str,
    locks: list[CheckpointLock],
    restore_manager: Callable[[], None] | None,
) -> None:
    try:
        query.awaitTermination()
    except Exception:  # noqa: S110 - the query's failure is its caller's to report
        pass
    _release(job, locks, restore_manager)


def _release(
    job: str, locks: list[CheckpointLock], restore_manager: Callable[[], None] | None
) -> None:
    if restore_manager is not None:
        restore_manager()
    for lock in reversed(locks):
        try:
            lock.release()
        except Exception as exc:  # the storage may be what stopped the query
            _log.warning(
                "job '%s': could not release the lock in %s (%s); the next start takes it "
                "over once this process has exited",
                job,
                lock.location,
                first_line(exc),
            )


def _with_trigger(stream: DataStreamWriter, trigger: TriggerSpec) -> DataStreamWriter:
    if trigger.available_now:
        return stream.trigger(availableNow=True)
    if trigger.once:
        return stream.trigger(once=True)
    assert trigger.processing_time is not None  # noqa: S101 - TriggerSpec guarantees one is set
    return stream.trigger(processingTime=trigger.processing_time)


def run_job(
    loaded: LoadedJob,
    *,
    instrument: BatchInstrument | None = None,
    adopt_checkpoint: bool = False,
) -> RunResult:
    """Build the session, run the job until its trigger ends it (or forever for
    ``processing_time``), and report what it processed. Every batch leaves its line in the
    job's metrics file (``onceflow.observe.metrics``) and the ``onceflow.progress`` log.

    ``adopt_checkpoint`` takes over a checkpoint recorded as another job's (see
    ``guarantees.identity``); ``instrument`` is for prove and tests (crash injection).

    Raises:
        OnceflowError: the onceflow error that stopped the query, when there is one;
            GUARANTEE_LOCK_LOST when the job lost its lock, whatever else the query saw.
    """
    spark = build_session(loaded.spec)
    listener = ProgressLogger(loaded.spec.name, MetricsFile(spark, loaded.spec.checkpoint))
    spark.streams.addListener(listener)
    lock_lost: list[GuaranteeError] = []
    query = start_query(
        spark,
        loaded.spec,
        instrument=instrument,
        adopt_checkpoint=adopt_checkpoint,
        on_lock_lost=lock_lost.append,
    )
    try:
        query.awaitTermination()
        if lock_lost:
            raise lock_lost[0]
    except OnceflowError:
        raise
    except Exception as exc:
        if lock_lost:
            raise lock_lost[0] from exc
        raise unwrap_streaming_error(exc, loaded.spec, spark) from exc
    finally:
        if query.isActive:
            query.stop()
        # the last batch's progress reaches the listener before the query's end does
        heard_the_end = listener.terminated.wait(10)
        spark.streams.removeListener(listener)
    progress = query.recentProgress
    rows = sum(int(p.numInputRows) for p in progress)
    if QualityStage.for_job(loaded.spec) is not None and heard_the_end:
        rows = listener.records  # Spark counts a raw file source's files, not its records
    return RunResult(
        master=spark.sparkContext.master or "?",
        query_id=str(query.id),
        batches=len([p for p in progress if p.numInputRows > 0]),
        input_rows=rows,
        skipped_offsets=sum(skipped_offsets(p.json) for p in progress),
    )


def unwrap_streaming_error(
    exc: BaseException, spec: JobSpec, spark: SparkSession | None = None
) -> BaseException:
    """What stopped a query, as the most telling error there is.

    - the onceflow error raised inside ``foreachBatch`` (Spark wraps it in a
      StreamingQueryException; the original is on the ``__cause__`` chain);
    - a Kafka authentication failure as SOURCE_AUTH_FAILED naming the listener;
    - Kafka data loss as SOURCE_DATA_LOSS with the partitions and offsets Spark reported;
    - storage that became unreachable or refused access mid-run as STORAGE_FAILED;
    - else ``exc`` itself.
    """
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, OnceflowError):
            return seen
        seen = seen.__cause__ or seen.__context__
    text = str(exc)
    if isinstance(spec.source, KafkaSourceSpec):
        source = f"kafka at {spec.source.options['kafka.bootstrap.servers']}"
        auth = _KAFKA_AUTH_FAILURE.search(text)
        if auth is not None:
            return SourceError("SOURCE_AUTH_FAILED", job=spec.name, source=source, cause=auth[0])
        if "failOnDataLoss" in text or "data may have been lost" in text:
            spark = spark or SparkSession.getActiveSession()
            lost = (
                describe_lost_offsets(spark, spec.source, text)
                if spark is not None
                else "Spark did not name the partitions"
            )
            return SourceError("SOURCE_DATA_LOSS", job=spec.name, source=source, lost=lost)
    failure = storage_failure(text)
    if failure is not None:
        return StorageError("STORAGE_FAILED", job=spec.name, cause=failure[1])
    return exc


_KAFKA_AUTH_FAILURE = re.compile(r"Authentication failed[^\n]*?(?= SQLSTATE|\s+at |\n|$)")


def sink_row_counts(spec: JobSpec) -> list[tuple[str, str, int]]:
    """``(name, path, rows)`` for each sink, read back from storage after a run."""
    spark = build_session(spec)
    return [
        (sink.name, sink.path, build_sink(spec, sink).read(spark).count()) for sink in spec.sinks
    ]
