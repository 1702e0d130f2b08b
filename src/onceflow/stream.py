"""The streaming DataFrame a job's ``foreachBatch`` receives: its source, read and shaped.

A job that only filters and projects hands its batches on raw when onceflow parses the
source (the quality stage parses, judges and counts each batch). A job that shapes the
stream itself is parsed in the stream instead, since its steps need typed columns::

    parsed ──▶ watermark ──▶ dedup ──▶ join ──▶ transform.sql ──▶ transform.python ──▶ aggregate
      │                                 ▲                                  │ (a window:
      │      second stream, parsed ─────┘ (join.stream: watermarked)       │  no event time)
      │                      │                                             │
      └── rows that did not parse (either stream) ──────┬──────────────────┘
                                                        ▼
                      joined again below the output, to be quarantined with their reason

A row set apart keeps only onceflow's own columns (its payload, where it came from, the
reason, and as JSON what it was when it has no payload), so it joins whatever the steps
made of the rest; the quality stage quarantines it and the sinks never see it.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from onceflow.config import JobSpec
from onceflow.quality import ERROR, RECORD, QualityStage, parse_raw
from onceflow.sources.raw import PAYLOAD
from onceflow.sources.read import read_job_stream, read_raw_stream, read_stream
from onceflow.transforms import (
    apply_aggregate,
    apply_python,
    apply_sql,
    apply_stateful,
    apply_transform,
    join_stream,
)

__all__ = ["job_stream", "joinable", "other_stream", "shaped_stream", "typed_stream"]

_INTERNAL = "_onceflow_"


def typed_stream(spark: SparkSession, spec: JobSpec, stage: QualityStage | None) -> DataFrame:
    """The source's stream, parsed when the stream's own steps need its columns typed."""
    frame = read_job_stream(spark, spec)
    if stage is not None and spec.parses_in_stream:
        return stage.parse(frame)
    return frame


def shaped_stream(frame: DataFrame, spec: JobSpec) -> DataFrame:
    """``frame`` (typed) through the job's stream steps, rows set apart joined below.

    Raises:
        TransformError: TRANSFORM_FAILED when ``transform.python`` raises.
    """
    apart: list[DataFrame] = []
    if ERROR in frame.columns:
        apart.append(_set_apart(frame.where(F.col(ERROR).isNotNull()), None))
        frame = frame.where(F.col(ERROR).isNull())
    frame = apply_stateful(frame, spec)
    join, watermark = spec.join, spec.watermark
    if join is not None and join.stream is not None and watermark is not None:
        # a stream join has both watermarks: the config rules refuse it otherwise
        other = other_stream(frame.sparkSession, spec)
        apart.append(_set_apart(other.where(F.col(ERROR).isNotNull()), None))
        other = joinable(other)
        if join.stream.watermark is not None:
            other = other.withWatermark(join.stream.watermark.column, join.stream.watermark.delay)
        frame = join_stream(frame, other, join, watermark.column)
    if spec.transform.sql is not None:
        frame = apply_sql(frame, spec.transform.sql)
    if spec.transform.python is not None:
        frame = apply_python(frame, spec.transform.python, spec.name)
    if spec.aggregate is not None:
        time = spec.window_column
        if spec.windows and time is not None:
            untimed: Column = F.col(f"`{time}`").isNull()
            reason = f"'{time}' is NULL: no event-time window holds the record"
            apart.append(_set_apart(frame.where(untimed), reason))
            frame = frame.where(~untimed)
        frame = apply_aggregate(frame, spec.aggregate, time)
    for rows in apart:
        frame = frame.unionByName(rows, allowMissingColumns=True)
    return frame


def other_stream(spark: SparkSession, spec: JobSpec) -> DataFrame:
    """The second stream of a stream join, typed, with ``ERROR``: why a record cannot join
    (it did not parse, or lacks a key or its event time), NULL when it can.

    Raises:
        ValueError: for a job without a stream join.
    """
    join = spec.join
    other = join.stream if join is not None else None
    if join is None or other is None:
        raise ValueError(f"job {spec.name!r} has no stream join")
    # a record without a key or an event time could never join: it is quarantined
    needed = (*[that for _, that in join.key_pairs],
              *([other.watermark.column] if other.watermark is not None else []))  # fmt: skip
    raw = spec.join_raw_format
    if raw is not None:
        frame = read_raw_stream(spark, other.source)
        return parse_raw(frame, raw, needed, spec.quality.max_payload_bytes)
    frame = read_stream(spark, other.source)
    reason: Column = F.lit(None).cast("string")
    for name in reversed(needed):  # the first NULL one is named
        reason = F.when(
            F.col(f"`{name}`").isNull(), F.lit(f"'{name}' is NULL: the join can match nothing")
        ).otherwise(reason)
    return frame.withColumn(ERROR, reason)


def joinable(other: DataFrame) -> DataFrame:
    """The rows of ``other_stream`` that can join, without onceflow's own columns."""
    other = other.where(F.col(ERROR).isNull())
    return other.drop(*[c for c in other.columns if c.startswith(_INTERNAL)])


def job_stream(spark: SparkSession, spec: JobSpec, stage: QualityStage | None = None) -> DataFrame:
    """The stream ``foreachBatch`` receives: the stream's steps applied, and the transform's
    ``where``/``select`` unless the quality stage applies them (its ``where`` is then a
    rule, so that what it filters is counted). ``stage`` is the job's quality stage when
    the caller built it already; its rules are checked against the stream's columns before
    anything starts.

    Raises:
        QualityError: QUALITY_RULE_INVALID for a rule the stream's rows cannot answer.
        TransformError: TRANSFORM_FAILED when ``transform.python`` raises.
    """
    stage = stage if stage is not None else QualityStage.for_job(spec)
    frame = typed_stream(spark, spec, stage)
    if spec.is_stateful or spec.transforms_stream:
        frame = shaped_stream(frame, spec)
    if stage is None:
        return apply_transform(frame, spec.transform)
    stage.check_rules(spark.createDataFrame([], frame.schema))
    return frame


def _set_apart(rows: DataFrame, reason: str | None) -> DataFrame:
    """``rows`` reduced to onceflow's columns, ``reason`` (when given) as their error, and
    what they were as JSON when they have no payload to show."""
    if reason is not None:
        rows = rows.withColumn(ERROR, F.lit(reason))
    if PAYLOAD not in rows.columns:
        data = [F.col(f"`{c}`") for c in rows.columns if not c.startswith(_INTERNAL)]
        rows = rows.withColumn(RECORD, F.to_json(F.struct(*data)))
    return rows.select(*[F.col(c) for c in rows.columns if c.startswith(_INTERNAL)])
