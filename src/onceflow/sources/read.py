"""A job's source read by its kind (``onceflow.config.kinds``): typed, or raw for onceflow
to parse."""

from __future__ import annotations

from pyspark.sql import DataFrame, SparkSession

from onceflow.config import JobSpec, SourceSpec
from onceflow.config.kinds import kinds, load_reference

__all__ = ["read_job_stream", "read_raw_stream", "read_stream"]


def read_stream(spark: SparkSession, spec: SourceSpec) -> DataFrame:
    """The typed streaming DataFrame of ``spec``'s kind."""
    frame: DataFrame = load_reference(kinds().source(spec.kind).reader)(spark, spec)
    return frame


def read_raw_stream(spark: SparkSession, spec: SourceSpec) -> DataFrame:
    """The source's records unparsed, with their coordinates (``onceflow.sources.raw``).

    Raises:
        ValueError: for a kind that reads no raw records (the job's ``parses_raw`` said so).
    """
    reader = kinds().source(spec.kind).raw_reader
    if reader is None:
        raise ValueError(f"source kind {spec.kind!r} reads no raw records")
    frame: DataFrame = load_reference(reader)(spark, spec)
    return frame


def read_job_stream(spark: SparkSession, job: JobSpec) -> DataFrame:
    """The stream ``foreachBatch`` gets for ``job``: the records raw when onceflow parses
    them (``job.parses_raw``), else the kind's typed rows. Defining it reads no data, but
    a folder source must exist (Spark looks for it here)."""
    if job.parses_raw:
        return read_raw_stream(spark, job.source)
    return read_stream(spark, job.source)
