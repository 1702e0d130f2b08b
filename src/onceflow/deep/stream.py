"""Deep checks of the stream's own steps, in the order the stream meets them: the
watermark (a timestamp column, an interval), the dedup keys, a stream join (its second
source, its watermark, the keys on both sides, ``within``, each of ``columns``),
``transform.sql``, ``transform.python``, then the aggregate (its groups, its window's
column and intervals, each measure). A step that fails leaves the ones after it
unchecked: they read its output.
"""

from __future__ import annotations

from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from onceflow.config import JobSpec
from onceflow.config.documents import KeyPath
from onceflow.errors import TransformError, first_line
from onceflow.quality import ERROR, QualityStage
from onceflow.session import analysis_failure
from onceflow.stream import joinable, other_stream, typed_stream
from onceflow.transforms import (
    apply_aggregate,
    apply_python,
    apply_sql,
    apply_stateful,
    join_stream,
)

__all__ = ["Problem", "stream_problems"]

#: A problem before it is placed in the job's files: error class, key path, parameters.
Problem = tuple[str, KeyPath, dict[str, Any]]
_TIMESTAMPS = ("timestamp", "timestamp_ntz")


def stream_problems(spark: SparkSession, spec: JobSpec) -> list[Problem]:
    """What Spark finds wrong with the stream's steps; empty for a job without them."""
    if not (spec.is_stateful or spec.transforms_stream):
        return []
    try:
        stream = typed_stream(spark, spec, QualityStage.for_job(spec))
        stream.schema  # noqa: B018 - reading the source's schema may fail
    except Exception as exc:
        return [("CONFIG_SOURCE_UNREADABLE", ("source",), {"reason": first_line(exc)})]
    if ERROR in stream.columns:
        stream = stream.where(F.col(ERROR).isNull())
    found = _keyed_problems(stream, spec)
    if found:
        return found
    stream = apply_stateful(stream, spec)
    if spec.stream_join is not None:
        joined = _join_problems(spark, stream, spec)
        if isinstance(joined, list):
            return joined
        stream = joined
    if spec.transform.sql is not None:
        failure = analysis_failure(lambda: apply_sql(stream, spec.transform.sql or ""))
        if failure:
            return [("CONFIG_BAD_SQL", ("transform", "sql"), {"reason": failure})]
        stream = apply_sql(stream, spec.transform.sql)
    if spec.transform.python is not None:
        try:
            stream = apply_python(stream, spec.transform.python, spec.name)
            stream.schema  # noqa: B018 - what it returns must analyse
        except TransformError as exc:
            return [_bad_function(spec, str(exc.params["cause"]))]
        except Exception as exc:
            return [_bad_function(spec, first_line(exc))]
    return _aggregate_problems(stream, spec)


def _columns_note(types: dict[str, str]) -> str:
    return f"the stream's columns are {', '.join(c for c in types if not c.startswith('_'))}"


def _keyed_problems(stream: DataFrame, spec: JobSpec) -> list[Problem]:
    """The watermark's column (a timestamp) and delay (an interval), and the dedup keys."""
    types = dict(stream.dtypes)
    found: list[Problem] = []
    watermark = spec.watermark
    if watermark is not None:
        problem = _time_problem(types, watermark.column)
        if problem:
            found.append(("CONFIG_BAD_SQL", ("watermark", "column"), {"reason": problem}))
        else:
            failure = analysis_failure(
                lambda: stream.withWatermark(watermark.column, watermark.delay)
            )
            if failure:
                found.append(("CONFIG_BAD_INTERVAL", ("watermark", "delay"), {"reason": failure}))
    keys = spec.dedup.keys if spec.dedup is not None else ()
    for index, key in enumerate(keys):
        if key not in types:
            reason = f"no column '{key}': {_columns_note(types)}"
            found.append(("CONFIG_BAD_SQL", ("dedup", "keys", index), {"reason": reason}))
    return found


def _join_problems(
    spark: SparkSession, stream: DataFrame, spec: JobSpec
) -> DataFrame | list[Problem]:
    """The stream joined with the second (its good rows, as the join gets them), or what
    Spark finds wrong: the second source unreadable, its watermark, a key missing on
    either side, ``within``, each of ``columns`` alone."""
    join, watermark = spec.join, spec.watermark
    assert join is not None and join.stream is not None and watermark is not None  # noqa: S101
    source: KeyPath = ("join", "stream", "source")
    try:
        other = other_stream(spark, spec)
        other.schema  # noqa: B018 - reading the source's schema may fail
    except Exception as exc:
        reason = first_line(exc)
        if "PATH_NOT_FOUND" in reason or "does not exist" in reason:
            path = {"path": join.stream.source.location}
            return [("CONFIG_INPUT_MISSING", (*source, "path"), path)]
        return [("CONFIG_SOURCE_UNREADABLE", source, {"reason": reason})]
    other = joinable(other)
    mine, theirs = dict(stream.dtypes), dict(other.dtypes)
    found: list[Problem] = []
    for index, (this, that) in enumerate(join.key_pairs):
        for name, types, side in ((this, mine, "the stream's"), (that, theirs, "the second")):
            if name not in types:
                reason = f"no column '{name}' in {side} stream: {_columns_note(types)}"
                found.append(("CONFIG_BAD_SQL", ("join", "keys", index), {"reason": reason}))
    time = join.stream.watermark
    if time is not None:
        problem = _time_problem(theirs, time.column)
        key: KeyPath = ("join", "stream", "watermark", "column")
        if problem:
            found.append(("CONFIG_BAD_SQL", key, {"reason": problem}))
        else:
            failure = analysis_failure(lambda: other.withWatermark(time.column, time.delay))
            if failure:
                key = ("join", "stream", "watermark", "delay")
                found.append(("CONFIG_BAD_INTERVAL", key, {"reason": failure}))
            else:
                other = other.withWatermark(time.column, time.delay)
    if found:
        return found
    bare = join.model_copy(update={"columns": ()})
    failure = analysis_failure(lambda: join_stream(stream, other, bare, watermark.column))
    if failure:
        return [("CONFIG_BAD_SQL", ("join", "within"), {"reason": failure})]
    for index, column in enumerate(join.columns):
        alone = join.model_copy(update={"columns": (column,)})
        failure = analysis_failure(
            lambda alone=alone: join_stream(stream, other, alone, watermark.column)
        )
        if failure:
            found.append(("CONFIG_BAD_SQL", ("join", "columns", index), {"reason": failure}))
    return found or join_stream(stream, other, join, watermark.column)


def _time_problem(types: dict[str, str], column: str) -> str:
    kind = types.get(column)
    if kind is None:
        return f"no column '{column}': {_columns_note(types)}"
    if kind not in _TIMESTAMPS:
        return f"'{column}' is a {kind}, and an event time is a timestamp"
    return ""


def _aggregate_problems(stream: DataFrame, spec: JobSpec) -> list[Problem]:
    """The aggregate's groups and window column against the rows it gets, then its window's
    intervals, then each measure alone."""
    aggregate = spec.aggregate
    if aggregate is None:
        return []
    types = dict(stream.dtypes)
    found: list[Problem] = []
    for index, column in enumerate(aggregate.group_by):
        if column not in types:
            reason = f"no column '{column}': {_columns_note(types)}"
            found.append(("CONFIG_BAD_SQL", ("aggregate", "group_by", index), {"reason": reason}))
    time = spec.window_column
    if aggregate.window is not None and time is not None:
        problem = _time_problem(types, time)
        if problem:
            key = ("aggregate", "window", "column") if aggregate.window.column else ("watermark",)
            found.append(("CONFIG_BAD_SQL", key, {"reason": problem}))
    if found:
        return found
    bare = aggregate.model_copy(update={"measures": {"_onceflow_rows": "count(1)"}})
    failure = analysis_failure(lambda: apply_aggregate(stream, bare, time))
    if failure:
        return [("CONFIG_BAD_INTERVAL", ("aggregate", "window"), {"reason": failure})]
    for name, sql in aggregate.measures.items():
        alone = aggregate.model_copy(update={"measures": {name: sql}})
        failure = analysis_failure(lambda alone=alone: apply_aggregate(stream, alone, time))
        if failure:
            found.append(("CONFIG_BAD_SQL", ("aggregate", "measures", name), {"reason": failure}))
    return found


def _bad_function(spec: JobSpec, reason: str) -> Problem:
    params = {"reference": spec.transform.python, "reason": reason}
    return ("CONFIG_BAD_FUNCTION", ("transform", "python"), params)
