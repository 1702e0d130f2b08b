"""A job spec in, a running streaming query out.

``start_query`` builds, once, everything a run needs: the job's outputs by their kinds, its
quality stage, its guarantee policy, the batch pipeline (``onceflow.pipeline``) that
``foreachBatch`` calls; it checks storage, takes the job's locks and claims the checkpoint,
then starts the query. ``run_job`` also builds the session, asks Spark about the job first
(``onceflow.deep``), reports every batch, waits for the end, and turns Ctrl-C into a stop
(``onceflow.stopping``).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from pyspark.sql import SparkSession
from pyspark.sql.streaming.query import StreamingQuery
from pyspark.sql.streaming.readwriter import DataStreamWriter

from onceflow.config import Guarantee, JobSpec, LoadedJob, TriggerSpec, kinds
from onceflow.config.kinds import load_reference
from onceflow.contracts import BatchInstrument, BatchReports, BatchWriter, Sink
from onceflow.deep import check_job
from onceflow.errors import GuaranteeError, OnceflowError, StorageError, first_line
from onceflow.guarantees import (
    BatchClaims,
    CheckpointLock,
    CheckpointPosition,
    check_foreign_sinks,
    checkpoint_position,
    claim_checkpoint,
    claim_state,
    policy_for,
    resolve_app_id,
    state_store_settings,
    table_lock,
)
from onceflow.observe import MetricsFile, ProgressLogger, skipped_offsets, stateful_drops
from onceflow.pipeline import BatchPipeline, batch_function
from onceflow.quality import QualityStage
from onceflow.session import build_session
from onceflow.sinks.base import BatchSink, build_sink
from onceflow.stopping import StopOnInterrupt
from onceflow.storage import (
    check_storage,
    single_writer_tables,
    storage_failure,
    use_abortable_checkpoints,
)
from onceflow.stream import job_stream
from onceflow.summary import RecordCounts, RecordTally

__all__ = [
    "RunResult",
    "build_outputs",
    "build_pipeline",
    "run_job",
    "start_query",
    "storage_locations",
    "unwrap_streaming_error",
]


_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunResult:
    """What one ``run_job`` did: where it ran, the query's id, the batches and rows, Kafka
    offsets skipped as lost (only with ``failOnDataLoss: false``), where the records went
    (``records``: None without a quality stage or a batch), and, when Ctrl-C stopped it,
    where its checkpoint stands (``stopped_at``)."""

    master: str
    query_id: str
    batches: int
    input_rows: int
    skipped_offsets: int = 0
    records: RecordCounts | None = None
    stopped_at: CheckpointPosition | None = None


def build_outputs(spec: JobSpec) -> list[BatchSink]:
    """The job's sinks, then its quarantine table when it has one, each built once."""
    return [build_sink(spec, sink) for sink in spec.outputs]


def build_pipeline(
    spark: SparkSession,
    spec: JobSpec,
    outputs: Sequence[BatchSink] | None = None,
    *,
    reports: BatchReports | None = None,
    stage: QualityStage | None = None,
    instrument: BatchInstrument | None = None,
    lease: Callable[[], None] | None = None,
) -> BatchWriter:
    """The ``foreachBatch`` writer for ``spec``: its batch pipeline.

    ``outputs`` are the job's sinks and then its quarantine table (``build_outputs``), and
    ``stage`` its quality stage, built once by the caller (here when omitted). Resolves the
    checkpoint's app id and refuses a fresh checkpoint against an output another checkpoint
    wrote (unless ``on_foreign_sink: continue``), before any batch runs. Each batch's report goes to
    ``reports``; ``lease`` is asked before every write (the job's locks); ``instrument``
    wraps the writer and the sinks from outside (crash injection: prove and tests only).
    """
    outputs = list(outputs) if outputs is not None else build_outputs(spec)
    identity = resolve_app_id(spark, spec.checkpoint)
    check_foreign_sinks(spark, spec, identity, outputs)
    position = checkpoint_position(spark, spec.checkpoint)
    for output in outputs:  # optional: a plugin's sink may keep its marks with its data
        check_resume = getattr(output, "check_resume", None)
        if check_resume is not None:
            check_resume(spark, identity.app_id, position.last_committed)
    sinks: Sequence[Sink] = outputs[: len(spec.sinks)]
    quarantine = outputs[len(spec.sinks) :]
    if instrument is not None:
        # the job's sinks: a crash "inside the write" of a one-sink job is inside that
        # sink's write job, whether or not the batch also quarantines records
        sinks = instrument.wrap_sinks(sinks)
    claims = (
        BatchClaims(spark, spec.checkpoint) if spec.guarantee is Guarantee.AT_MOST_ONCE else None
    )
    pipeline = BatchPipeline(
        job=spec.name,
        app_id=identity.app_id,
        sinks=sinks,
        policy=policy_for(spec.guarantee, claims),
        reports=reports if reports is not None else BatchReports(),
        stage=stage if stage is not None else QualityStage.for_job(spec),
        quarantine=quarantine[0] if quarantine else None,
        retries=spec.retries,
        replay_of=position.in_flight,
        lease=lease,
        shape=batch_function(spark, spec),
    )
    return instrument.wrap_writer(pipeline) if instrument is not None else pipeline


def start_query(
    spark: SparkSession,
    spec: JobSpec,
    writer: BatchWriter | None = None,
    *,
    reports: BatchReports | None = None,
    instrument: BatchInstrument | None = None,
    adopt_checkpoint: bool = False,
    on_lock_lost: Callable[[GuaranteeError], None] | None = None,
    stop: StopOnInterrupt | None = None,
) -> StreamingQuery:
    """Start the job's query; ``writer`` replaces the job's own pipeline (tests, prove).

    The source's stream is defined first (a missing input folder stops the job here, with
    nothing written). The storage of the checkpoint and of every output is checked next (an
    unreachable store or refused credentials stop the job here, naming the path). Then the
    checkpoint's
    lock is taken, and on S3 one lock per single-writer table; the checkpoint must be this
    job's (``claim_checkpoint``; ``adopt_checkpoint`` takes over another's on purpose); a
    checkpoint on S3 gets Spark's abortable-stream checkpoint file manager. All of it is
    released or restored when the query ends, however it ends.

    Each batch's report goes to ``reports`` (a new one when omitted). A lock lost while the
    query runs (taken over after this process froze past its stale window, or not
    renewable) stops the pipeline before its next write and then the query;
    ``on_lock_lost`` hears of it first (it is logged in any case). With ``stop``, a batch cut
    short by a stop it asked for ends the query quietly (``StopOnInterrupt.guard``).
    """
    stage = QualityStage.for_job(spec)  # once, for the stream and the pipeline
    frame = job_stream(spark, spec, stage)
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
        claim_state(spark, spec)
        restore_manager = use_abortable_checkpoints(spark, spec.checkpoint)

        def lease() -> None:
            for lock in held:
                lock.check()

        writer = writer or build_pipeline(
            spark,
            spec,
            outputs,
            reports=reports,
            stage=stage,
            instrument=instrument,
            lease=lease,
        )
        if stop is not None:
            writer = stop.guard(writer)
        stream = (
            frame.writeStream.queryName(spec.name)
            .option("checkpointLocation", spec.checkpoint)
            .foreachBatch(writer)
        )
        if spec.aggregate is not None:  # what an aggregate hands each batch
            stream = stream.outputMode(spec.aggregate.output)
        with state_store_settings(spark, spec):
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
    file-backed outputs (a database sink is checked by logging in, ``BatchSink.check``)."""
    registry = kinds()
    return {"checkpoint": spec.checkpoint} | {
        f"sink '{s.name}'": s.location for s in spec.outputs if registry.sink(s.kind).file_backed
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

    Once the session is up, Spark is asked about the job (``onceflow.deep``) before the
    checkpoint is touched. Ctrl-C (SIGINT) stops the query, not the process
    (``onceflow.stopping``): the result's ``stopped_at`` then says where it stands.

    Raises:
        ConfigError: what Spark finds wrong with the job (a schema, SQL, an interval, a
            missing input), before anything is written.
        OnceflowError: the onceflow error that stopped the query, when there is one;
            GUARANTEE_LOCK_LOST when the job lost its lock, whatever else the query saw.
    """
    spec = loaded.spec
    spark = build_session(spec)
    with StopOnInterrupt(spark) as stop:
        check_storage(spark, spec.name, storage_locations(spec))  # a store down: said first
        check_job(loaded, spark)
        if stop.requested.is_set():  # Ctrl-C during the checks: start nothing
            position = checkpoint_position(spark, spec.checkpoint)
            return RunResult(spark.sparkContext.master or "?", "-", 0, 0, stopped_at=position)
        reports = RecordTally()
        listener = ProgressLogger(spec.name, reports, MetricsFile(spark, spec.checkpoint))
        spark.streams.addListener(listener)
        lock_lost: list[GuaranteeError] = []
        query = start_query(
            spark,
            spec,
            reports=reports,
            instrument=instrument,
            adopt_checkpoint=adopt_checkpoint,
            on_lock_lost=lock_lost.append,
            stop=stop,
        )
        try:
            stopped = stop.wait(query)
            if lock_lost:
                raise lock_lost[0]
        except OnceflowError:
            raise
        except Exception as exc:
            if lock_lost:
                raise lock_lost[0] from exc
            raise unwrap_streaming_error(exc, spec, spark) from exc
        finally:
            if query.isActive:
                query.stop()
            # the last batch's progress reaches the listener before the query's end does
            heard_the_end = listener.terminated.wait(10)
            spark.streams.removeListener(listener)
    progress = query.recentProgress
    records = reports.counts
    if records is not None and spec.is_stateful:
        duplicates, late = stateful_drops([p.json for p in progress])
        records = replace(records, duplicates=duplicates, late=late)
    rows = sum(int(p.numInputRows) for p in progress)
    if spec.is_stateful or spec.transforms_stream:
        # its source is read in several branches (onceflow.stream): count one
        rows = sum(max((int(s.numInputRows) for s in p.sources), default=0) for p in progress)
    if spec.judges_records and heard_the_end:
        # Spark counts a raw file source's files, not its records
        rows = listener.records + (records.duplicates + records.late if records else 0)
    return RunResult(
        master=spark.sparkContext.master or "?",
        query_id=str(query.id),
        batches=len([p for p in progress if p.numInputRows > 0]),
        input_rows=rows,
        skipped_offsets=sum(skipped_offsets(p.json) for p in progress),
        records=records,
        stopped_at=checkpoint_position(spark, spec.checkpoint) if stopped else None,
    )


def unwrap_streaming_error(
    exc: BaseException, spec: JobSpec, spark: SparkSession | None = None
) -> BaseException:
    """What stopped a query, as the most telling error there is.

    - the onceflow error raised inside ``foreachBatch`` (Spark wraps it in a
      StreamingQueryException; the original is on the ``__cause__`` chain);
    - what the source's kind names better (Kafka: a refused login, records gone);
    - storage that became unreachable or refused access mid-run as STORAGE_FAILED;
    - else ``exc`` itself.
    """
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, OnceflowError):
            return seen
        seen = seen.__cause__ or seen.__context__
    text = str(exc)
    explain = kinds().source(spec.source.kind).failure
    if explain is not None:
        named: OnceflowError | None = load_reference(explain)(spark, spec.source, spec.name, text)
        if named is not None:
            return named
    failure = storage_failure(text)
    if failure is not None:
        return StorageError("STORAGE_FAILED", job=spec.name, cause=failure[1])
    return exc
