"""A job spec in, a running streaming query out.

``start_query`` wires source -> transform -> ``foreachBatch(writer)`` with the job's
checkpoint and trigger; ``run_job`` also builds the session and waits for the end.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.streaming.query import StreamingQuery
from pyspark.sql.streaming.readwriter import DataStreamWriter

from onceflow.config import Guarantee, JobSpec, LoadedJob, TransformSpec, TriggerSpec
from onceflow.contracts import BatchWriter
from onceflow.errors import OnceflowError
from onceflow.guarantees import (
    BatchLedger,
    CrashPlan,
    WriterSettings,
    check_foreign_sinks,
    guarded_writer,
    resolve_app_id,
)
from onceflow.session import build_session
from onceflow.sinks import build_sink
from onceflow.sources import read_stream

__all__ = [
    "RunResult",
    "apply_transform",
    "build_writer",
    "run_job",
    "sink_row_counts",
    "start_query",
]


@dataclass(frozen=True)
class RunResult:
    """What one ``run_job`` did: where it ran, the query's id, the batches and rows."""

    master: str
    query_id: str
    batches: int
    input_rows: int


def apply_transform(frame: DataFrame, spec: TransformSpec) -> DataFrame:
    """Filter with ``where``, then project with ``select`` (SQL expressions)."""
    if spec.where:
        frame = frame.where(spec.where)
    if spec.select:
        frame = frame.selectExpr(*spec.select)
    return frame


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
    )
    return guarded_writer([build_sink(spec, sink) for sink in spec.sinks], settings)


def start_query(
    spark: SparkSession, spec: JobSpec, writer: BatchWriter | None = None
) -> StreamingQuery:
    """Start the job's query; ``writer`` replaces the job's own (tests, the prove harness)."""
    writer = writer or build_writer(spark, spec)
    frame = apply_transform(read_stream(spark, spec.source), spec.transform)
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
    ``processing_time``), and report what it processed.

    Raises:
        OnceflowError: the onceflow error that stopped the query, when there is one.
    """
    spark = build_session(loaded.spec)
    query = start_query(spark, loaded.spec)
    try:
        query.awaitTermination()
    except Exception as exc:
        raise _unwrap_streaming_error(exc) from exc
    finally:
        if query.isActive:
            query.stop()
    progress = query.recentProgress
    return RunResult(
        master=spark.sparkContext.master or "?",
        query_id=str(query.id),
        batches=len([p for p in progress if p.get("numInputRows", 0) > 0]),
        input_rows=sum(int(p.get("numInputRows", 0)) for p in progress),
    )


def _unwrap_streaming_error(exc: Exception) -> Exception:
    """The onceflow error raised inside ``foreachBatch`` if there is one, else ``exc``.

    Spark re-raises a Python error from ``foreachBatch`` inside a StreamingQueryException,
    losing its type; the original is still on the ``__cause__``/``__context__`` chain.
    """
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, OnceflowError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return exc


def sink_row_counts(spec: JobSpec) -> list[tuple[str, str, int]]:
    """``(name, path, rows)`` for each sink, read back from storage after a run."""
    spark = build_session(spec)
    return [
        (sink.name, sink.path, spark.read.format(sink.kind).load(sink.path).count())
        for sink in spec.sinks
    ]
