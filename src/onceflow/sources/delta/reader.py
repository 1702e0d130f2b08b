"""Reading a Delta source: the table streamed as what is appended to it."""

from __future__ import annotations

from pyspark.sql import DataFrame, SparkSession

from onceflow.sources.delta import DeltaSourceSpec

__all__ = ["read_delta_stream"]


def read_delta_stream(spark: SparkSession, spec: DeltaSourceSpec) -> DataFrame:
    """Stream the table at ``spec.path``."""
    reader = spark.readStream.format("delta")
    if spec.max_files_per_trigger is not None:
        reader = reader.option("maxFilesPerTrigger", spec.max_files_per_trigger)
    if spec.max_bytes_per_trigger is not None:
        reader = reader.option("maxBytesPerTrigger", spec.max_bytes_per_trigger)
    if spec.starting_version is not None:
        reader = reader.option("startingVersion", spec.starting_version)
    return reader.options(**spec.options).load(spec.path)
