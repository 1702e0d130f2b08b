"""Files landing in a folder (json, csv, parquet), read as a stream.

Replayable: Spark's file source logs which files each batch took (``sources/0`` in the
checkpoint), so a replayed batch reads the same files. A file must be complete when it
appears in the folder — write it elsewhere and move it in.

    source:
      kind: files
      format: json
      path: data/sample/payments
      schema: "id BIGINT, account STRING, amount DECIMAL(18,2), event_time TIMESTAMP"
      max_files_per_trigger: 4
"""

from __future__ import annotations

from pyspark.sql import DataFrame, SparkSession

from onceflow.config import FileSourceSpec

__all__ = ["read_file_stream"]


def read_file_stream(spark: SparkSession, spec: FileSourceSpec) -> DataFrame:
    """Stream ``spec.path`` with the declared schema (Spark never infers it for a stream)."""
    reader = spark.readStream.format(spec.format.value).schema(spec.schema_ddl)
    if spec.max_files_per_trigger is not None:
        reader = reader.option("maxFilesPerTrigger", spec.max_files_per_trigger)
    return reader.options(**spec.options).load(spec.path)
