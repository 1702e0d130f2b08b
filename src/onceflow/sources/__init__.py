"""Sources: a job's ``source`` spec in, a streaming DataFrame out."""

from __future__ import annotations

from pyspark.sql import DataFrame, SparkSession

from onceflow.config import DeltaSourceSpec, FileSourceSpec, KafkaSourceSpec, SourceSpec
from onceflow.sources.delta import read_delta_stream
from onceflow.sources.files import read_file_stream
from onceflow.sources.kafka import (
    KAFKA_COORDINATES,
    describe_lost_offsets,
    latest_offsets,
    read_kafka_stream,
)

__all__ = [
    "KAFKA_COORDINATES",
    "describe_lost_offsets",
    "latest_offsets",
    "read_delta_stream",
    "read_file_stream",
    "read_kafka_stream",
    "read_stream",
]


def read_stream(spark: SparkSession, spec: SourceSpec) -> DataFrame:
    """The streaming DataFrame for ``spec``, dispatched on its ``kind``."""
    if isinstance(spec, FileSourceSpec):
        return read_file_stream(spark, spec)
    if isinstance(spec, DeltaSourceSpec):
        return read_delta_stream(spark, spec)
    if isinstance(spec, KafkaSourceSpec):
        return read_kafka_stream(spark, spec)
    raise TypeError(f"no reader for source kind {spec.kind!r}")  # unreachable: models are closed
