"""A job spec in, a running streaming query out.

``start_query`` wires source -> transform -> ``foreachBatch(writer)`` with the job's
checkpoint and trigger; ``run_job`` also builds the session and waits for the end.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from collections.abc import Callable
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
from onceflow.contracts import BatchWriter, Sink
from onceflow.errors import OnceflowError, SourceError, StorageError, first_line
from onceflow.guarantees import (
    BatchLedger,
    CheckpointLock,
    CrashPlan,
    WriterSettings,
    check_foreign_sinks,
    checkpoint_position,
    guarded_writer,
    resolve_app_id,
    table_lock,
)
from onceflow.observe import MetricsFile, ProgressLogger, skipped_offsets
from onceflow.quality import QualityStage, parses_raw
from onceflow.session import build_session
from onceflow.sinks import build_sink
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


def build_writer(spark: SparkSession, spec: JobSpec) -> BatchWriter:
    """The ``foreachBatch`` writer for ``spec``: its sinks wrapped in its guarantee.

    Resolves the checkpoint's app id and refuses a fresh checkpoint against a sink another
    checkpoint wrote (unless ``on_foreign_sink: continue``), before any batch runs.
    """
    identity = resolve_app_id(spark, spec.checkpoint)
    check_foreign_sinks(spark, spec, identity)
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
        crash=CrashPlan.from_job(spec.faults, os.environ),
        quality=quality_stage(spec),
        quarantine=_quarantine(spec),
        replay_of=checkpoint_position(spark, spec.checkpoint).in_flight,
    )
    return guarded_writer([build_sink(spec, sink) for sink in spec.sinks], settings)


def quality_stage(spec: JobSpec) -> QualityStage | None:
    """The job's quality stage (parsing, rules), or None without a ``quality`` block."""
    if spec.quality is None:
        return None
    return QualityStage(spec.name, spec.quality, spec.source, spec.transform, spec.key_rules())


def _quarantine(spec: JobSpec) -> Sink | None:
    quarantine = spec.quarantine_sink()
    return build_sink(spec, quarantine) if quarantine is not None else None


def source_frame(spark: SparkSession, spec: JobSpec) -> DataFrame:
    """The streaming DataFrame ``foreachBatch`` receives: the source read raw when the
    quality stage parses it, else typed; the transform applied here unless the quality
    stage applies it to the good rows."""
    if spec.quality is None:
        return apply_transform(read_stream(spark, spec.source), spec.transform)
    source = spec.source
    if parses_raw(source):
        assert isinstance(source, FileSourceSpec | KafkaSourceSpec)  # noqa: S101 - parses_raw
        frame = read_raw_stream(spark, source)
    else:
        frame = read_stream(spark, source)
    stage = quality_stage(spec)
    assert stage is not None  # noqa: S101 - spec.quality is set
    stage.check_rules(spark.createDataFrame([], frame.schema))
    return frame


def start_query(
    spark: SparkSession, spec: JobSpec, writer: BatchWriter | None = None
) -> StreamingQuery:
    """Start the job's query; ``writer`` replaces the job's own (tests, the prove harness).

    The storage of the checkpoint and of every sink is checked first (an unreachable store or
    refused credentials stop the job here, naming the path). Then the checkpoint's lock is
    taken, and on S3 one lock per Delta sink (Delta's single-driver rule there); a checkpoint
    on S3 gets Spark's abortable-stream checkpoint file manager. All of it is released or
    restored when the query ends, however it ends.
    """
    check_storage(spark, spec.name, storage_locations(spec))
    for sink in spec.sinks:
        build_sink(spec, sink).check()
    locks = [CheckpointLock(spark, spec.checkpoint, spec.name)]
    locks += [table_lock(spark, path, spec.name) for path in single_writer_tables(spark, spec)]
    held: list[CheckpointLock] = []
    restore_manager = None
    try:
        for lock in locks:
            lock.acquire()
            held.append(lock)
        restore_manager = use_abortable_checkpoints(spark, spec.checkpoint)
        query = _start(spark, spec, writer)
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
                lock.folder or lock.checkpoint,
                first_line(exc),
            )


def _start(spark: SparkSession, spec: JobSpec, writer: BatchWriter | None) -> StreamingQuery:
    frame = source_frame(spark, spec)
    writer = writer or build_writer(spark, spec)
    stream = (
        frame.writeStream.queryName(spec.name)
        .option("checkpointLocation", spec.checkpoint)
        .foreachBatch(writer)
    )
    return _with_trigger(stream, spec.trigger).start()


def _with_trigger(stream: DataStreamWriter, trigger: TriggerSpec) -> DataStreamWriter:
    if trigger.available_now:
        return stream.trigger(availableNow=True)
    if trigger.once:
        return stream.trigger(once=True)
    assert trigger.processing_time is not None  # noqa: S101 - TriggerSpec guarantees one is set
    return stream.trigger(processingTime=trigger.processing_time)


def run_job(loaded: LoadedJob) -> RunResult:
    """Build the session, run the job until its trigger ends it (or forever for
    ``processing_time``), and report what it processed. Every batch leaves its line in the
    job's metrics file (``onceflow.observe.metrics``) and the ``onceflow.progress`` log.

    Raises:
        OnceflowError: the onceflow error that stopped the query, when there is one.
    """
    spark = build_session(loaded.spec)
    listener = ProgressLogger(loaded.spec.name, MetricsFile(spark, loaded.spec.checkpoint))
    spark.streams.addListener(listener)
    query = start_query(spark, loaded.spec)
    try:
        query.awaitTermination()
    except Exception as exc:
        raise unwrap_streaming_error(exc, loaded.spec, spark) from exc
    finally:
        if query.isActive:
            query.stop()
        # the last batch's progress reaches the listener before the query's end does
        heard_the_end = listener.terminated.wait(10)
        spark.streams.removeListener(listener)
    progress = query.recentProgress
    rows = sum(int(p.numInputRows) for p in progress)
    if loaded.spec.quality is not None and heard_the_end:
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
