"""Deep checks: what only Spark can tell about a job, asked before anything runs.

Loading a job (``onceflow validate``) starts no Spark, so some mistakes pass it and used to
fail inside Spark only once the job ran: a schema Spark cannot parse, SQL it cannot
analyse, an interval it cannot read, an input folder that is not there. ``check_job`` asks
Spark's own parser and analyser about each of them, in a session but without starting a
query or reading a row: the SQL is analysed against an empty batch shaped like the one
``foreachBatch`` gets, through the same code that shapes it when the job runs (the
stream's own steps, ``deep.stream``; the quality stage's rules and ``transform.where``,
``transform.select``, each sink's ``query``, a MERGE's keys and clauses). Every problem is
a ConfigError naming the file, line and key, with Spark's one-line reason; one pass
reports them all.

``onceflow validate --deep`` runs it in a local session (``local_session``);
``onceflow run`` runs it once its session is up, before the checkpoint is touched, so a
mistake leaves nothing behind.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.types import DataType, StructType

from onceflow.config import JobSpec, LoadedJob, kinds
from onceflow.config.documents import KeyPath, format_key_path
from onceflow.config.kinds import load_reference
from onceflow.deep.stream import Problem, stream_problems
from onceflow.errors import ConfigError, QualityError, first_line
from onceflow.files import CheckpointFiles
from onceflow.guarantees import newest_version
from onceflow.quality import WHERE_RULE, QualityStage
from onceflow.session import analysis_failure, build_session
from onceflow.sinks.base import build_sink
from onceflow.sinks.shaping import shaped_batch
from onceflow.storage import check_storage
from onceflow.stream import shaped_stream, typed_stream
from onceflow.transforms import join_table

__all__ = ["check_job", "deep_error", "deep_problems", "local_session", "path_exists"]

_Problem = Problem
# what Hadoop reads as a glob; Spark does not look for such a path before it streams it
_GLOB = frozenset("{}[]*?\\")
# where pyspark.errors logs an AnalysisException as it raises it (pyspark 4)
_PYSPARK_ERROR_LOGGERS = ("SQLQueryContextLogger", "DataFrameQueryContextLogger")


def local_session(spec: JobSpec) -> SparkSession:
    """A session in local mode with the profile's other settings (jars, Hadoop conf for
    the input's file system): deep checks read no data, so no cluster is asked."""
    local = spec.spark.model_copy(update={"master": "local[1]"})
    return build_session(spec.model_copy(update={"spark": local}))


def check_job(loaded: LoadedJob, spark: SparkSession | None = None) -> None:
    """Raise the job's first deep problem, carrying the rest in ``others``.

    Args:
        loaded: the job, with where each of its keys was written.
        spark: the session to ask; a local one (``local_session``) when omitted.

    Raises:
        ConfigError: CONFIG_BAD_SCHEMA, CONFIG_BAD_SQL, CONFIG_BAD_INTERVAL,
            CONFIG_INPUT_MISSING or CONFIG_SOURCE_UNREADABLE.
        StorageError: the input's storage cannot be reached or refuses the credentials.
    """
    error = deep_error(loaded, spark)
    if error is not None:
        raise error


def deep_error(loaded: LoadedJob, spark: SparkSession | None = None) -> ConfigError | None:
    """``check_job``'s first error, carrying the rest in ``others``; None when Spark finds
    nothing wrong (``onceflow validate --deep``)."""
    problems = deep_problems(spark if spark is not None else local_session(loaded.spec), loaded)
    if not problems:
        return None
    problems[0].others = problems[1:]
    return problems[0]


def deep_problems(spark: SparkSession, loaded: LoadedJob) -> list[ConfigError]:
    """Every deep problem of the job: the trigger's interval, the schemas, the input, then
    the SQL, which is analysed only when the source's schema parses and its input exists
    (it is analysed against them)."""
    spec = loaded.spec
    with _quiet_pyspark_error_logs():
        found = _interval_problems(spark, spec)
        schemas = list(_schema_problems(spec))
        found += schemas
        missing = _missing_input(spark, spec)
        found += missing
        if not missing and not any(key[0] == "source" for _, key, _ in schemas):
            stateful = stream_problems(spark, spec)
            found += stateful or _sql_problems(spark, spec)
    errors = []
    for error_class, key, params in found:
        origin = loaded.origin_of(key)
        errors.append(
            ConfigError(
                error_class,
                file=origin.file,
                line=origin.line,
                key=format_key_path(key),
                **params,
            )
        )
    return errors


def path_exists(spark: SparkSession, path: str) -> bool:
    """True when ``path`` exists on its file system (local, HDFS, S3A)."""
    folder, _, name = path.rstrip("/").rpartition("/")
    return CheckpointFiles(spark, folder or "/").exists(name)


@contextmanager
def _quiet_pyspark_error_logs() -> Iterator[None]:
    """PySpark logs every analysis error it raises, with its whole plan as JSON, to stderr;
    here each is expected and becomes one line of ours, so its loggers keep quiet meanwhile."""
    loggers = [logging.getLogger(name) for name in _PYSPARK_ERROR_LOGGERS]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.CRITICAL + 1)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def _interval_problems(spark: SparkSession, spec: JobSpec) -> list[_Problem]:
    """The trigger's interval, read as ``writeStream.trigger(processingTime=...)`` reads it."""
    interval = spec.trigger.processing_time
    if interval is None:
        return []
    jvm: Any = spark.sparkContext._jvm
    try:
        jvm.org.apache.spark.sql.streaming.Trigger.ProcessingTime(interval)
    except Exception as exc:
        reason = {"reason": first_line(exc)}
        return [("CONFIG_BAD_INTERVAL", ("trigger", "processing_time"), reason)]
    return []


def _schema_problems(spec: JobSpec) -> Iterator[_Problem]:
    """Every ``schema`` key (DDL) of the source and the sinks, parsed by Spark."""
    models: list[tuple[KeyPath, Any]] = [(("source",), spec.source)]
    models += [(("sinks", index), sink) for index, sink in enumerate(spec.sinks)]
    for prefix, model in models:
        for name, field in type(model).model_fields.items():
            ddl = getattr(model, name)
            if field.alias != "schema" or not isinstance(ddl, str):
                continue
            try:
                parsed = DataType.fromDDL(ddl)
            except Exception as exc:
                yield "CONFIG_BAD_SCHEMA", (*prefix, "schema"), {"reason": first_line(exc)}
                continue
            if not isinstance(parsed, StructType):
                reason = f"it names one type ({parsed.simpleString()}), not columns: name TYPE, ..."
                yield "CONFIG_BAD_SCHEMA", (*prefix, "schema"), {"reason": reason}


def _missing_input(spark: SparkSession, spec: JobSpec) -> list[_Problem]:
    """The source's folder or table, for kinds that read one (``file_backed``), unless it is a
    glob: Spark streams a glob whose folders appear later, and so does the job."""
    if not kinds().source(spec.source.kind).file_backed:
        return []
    path = spec.source.location
    if _GLOB & set(path):
        return []
    check_storage(spark, spec.name, {"source": path})  # unreachable: a StorageError, named
    if path_exists(spark, path):
        return []
    return [("CONFIG_INPUT_MISSING", ("source", "path"), {"path": path})]


def _sql_problems(spark: SparkSession, spec: JobSpec) -> list[_Problem]:
    """The job's SQL, analysed in the order a batch meets it: the quality stage's rules
    (``transform.where`` among them), ``transform.select``, then each sink's ``query`` and
    MERGE. A step that fails leaves the ones after it unchecked (they read its output)."""
    # the stage without the select, to name a failing select item by its own line
    stage = QualityStage.for_job(
        spec.model_copy(update={"transform": spec.transform.model_copy(update={"select": ()})})
    )
    try:
        stream = typed_stream(spark, spec, stage)
        if spec.is_stateful or spec.transforms_stream:  # checked by stream_problems
            stream = shaped_stream(stream, spec)
        batch = spark.createDataFrame([], stream.schema)
    except Exception as exc:
        return [("CONFIG_SOURCE_UNREADABLE", ("source",), {"reason": first_line(exc)})]
    rows = batch
    if stage is not None:
        try:
            stage.check_rules(batch)
        except QualityError as exc:
            key = _rule_key(spec, str(exc.params["rule"]))
            return [("CONFIG_BAD_SQL", key, {"reason": exc.params["cause"]})]
        rows = stage.good_rows(stage.judged(batch))
    select = spec.transform.select
    if select:
        failure = analysis_failure(lambda: rows.selectExpr(*select))
        if failure:
            # the item that fails alone; an item may name an alias an earlier one made
            alone = (
                ("transform", "select", index)
                for index, item in enumerate(select)
                if analysis_failure(lambda item=item: rows.selectExpr(item))
            )
            key = next(alone, ("transform", "select"))
            return [("CONFIG_BAD_SQL", key, {"reason": failure})]
        rows = rows.selectExpr(*select)
    if spec.join is not None and spec.join.table is not None:  # a stream's: in the stream
        joined = _joined(spark, spec, rows)
        if isinstance(joined, tuple):
            return [joined]
        rows = joined
    return [p for index in range(len(spec.sinks)) for p in _sink_problems(spark, spec, index, rows)]


def _joined(spark: SparkSession, spec: JobSpec, rows: DataFrame) -> DataFrame | _Problem:
    """The batch joined with the join's table (its newest version), or what is wrong: the
    table missing, or the keys or columns Spark cannot find on either side."""
    join = spec.join
    assert join is not None and join.table is not None  # noqa: S101 - the caller's
    if not path_exists(spark, join.table):
        return ("CONFIG_INPUT_MISSING", ("join", "table"), {"path": join.table})
    version = newest_version(spark, join.table)
    failure = analysis_failure(lambda: join_table(rows, join, version))
    if failure:
        return ("CONFIG_BAD_SQL", ("join",), {"reason": failure})
    return join_table(rows, join, version)


def _sink_problems(
    spark: SparkSession, spec: JobSpec, index: int, rows: DataFrame
) -> list[_Problem]:
    """A sink's ``query`` over the batch (as ``{batch}``), then what its kind checks of
    its own SQL on the result (a Delta MERGE's keys and clauses)."""
    sink = spec.sinks[index]
    check = kinds().sink(sink.kind).deep_check
    entered = False
    try:
        with shaped_batch(rows, sink.query, sink.name) as shaped:
            entered = True
            if check is None:
                return []
            target = _target_schema(spark, spec, index, shaped)
            return [
                ("CONFIG_BAD_SQL", ("sinks", index, *key), {"reason": reason})
                for key, reason in load_reference(check)(spark, sink, target, shaped)
            ]
    except Exception as exc:
        if entered:
            raise
        # the query did not analyse: Spark raised as shaped_batch ran it
        return [("CONFIG_BAD_SQL", ("sinks", index, "query"), {"reason": first_line(exc)})]


def _target_schema(spark: SparkSession, spec: JobSpec, index: int, shaped: DataFrame) -> StructType:
    """The MERGE target's columns: the table's when it exists, else the declared
    ``schema``, else the batch's (what the sink creates the table with)."""
    sink = spec.sinks[index]
    try:
        if path_exists(spark, sink.location):
            schema: StructType = build_sink(spec, sink).read(spark).schema
            return schema
    except Exception:  # noqa: S110 - no table yet (a leftover folder), or its store is down:
        pass  # the run's storage check names that; the clauses are checked as if it is new
    ddl = getattr(sink, "schema_ddl", None)
    try:
        declared = DataType.fromDDL(ddl) if isinstance(ddl, str) else None
    except Exception:  # reported as the sink's CONFIG_BAD_SCHEMA already
        declared = None
    return declared if isinstance(declared, StructType) else shaped.schema


def _rule_key(spec: JobSpec, rule: str) -> KeyPath:
    """The key a quality-stage rule comes from: ``transform.where``, one of
    ``quality.rules``, or a MERGE's keys (the rules ``on_null_key`` and
    ``on_duplicate_key: quarantine`` imply), or a CDC apply's keys or sequence."""
    if rule == WHERE_RULE:
        return ("transform", "where")
    for index, declared in enumerate(spec.quality.rules):
        if declared.name == rule:
            return ("quality", "rules", index, declared.action.value)
    for index, sink in enumerate(spec.sinks):
        if getattr(sink, "cdc", None) is not None:  # a CDC apply's NULL key or sequence
            for what, setting in (("key", "keys"), ("sequence", "sequence_by")):
                if rule == f"{sink.name}_null_{what}":
                    return ("sinks", index, "cdc", setting)
        elif rule.startswith(f"{sink.name}_"):
            return ("sinks", index, "merge", "keys")
    return ("quality",)
