"""Sources read raw, for onceflow to parse: every record as its payload text plus where it
came from, so a record that does not parse can be quarantined exactly as it arrived.

Each row has ``_onceflow_payload`` (the record's text; its bytes unchanged, even when they
are not valid UTF-8), ``_onceflow_source`` (the file's path or the Kafka topic),
``_onceflow_partition`` (the Kafka partition; NULL for files) and ``_onceflow_position``
(the line number in the file, from 1, or the Kafka offset).

A file is read whole (``wholetext``) and split into lines, which is what gives every line
its number; each landing file must fit in an executor's memory.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from onceflow.config import FileFormat, FileSourceSpec, KafkaSourceSpec
from onceflow.sources.kafka import kafka_coordinates

__all__ = ["PARTITION", "PAYLOAD", "POSITION", "SOURCE", "read_raw_stream"]

PAYLOAD = "_onceflow_payload"
SOURCE = "_onceflow_source"
PARTITION = "_onceflow_partition"
POSITION = "_onceflow_position"


def read_raw_stream(spark: SparkSession, spec: FileSourceSpec | KafkaSourceSpec) -> DataFrame:
    """The source's records unparsed, with their coordinates (see the module)."""
    if isinstance(spec, KafkaSourceSpec):
        raw = spark.readStream.format("kafka").options(**spec.spark_options()).load()
        return raw.select(
            F.col("value").cast("string").alias(PAYLOAD),
            F.col("topic").alias(SOURCE),
            F.col("partition").alias(PARTITION),
            F.col("offset").alias(POSITION),
            *kafka_coordinates(spec),
        )
    reader = spark.readStream.format("text").option("wholetext", "true")
    if spec.max_files_per_trigger is not None:
        reader = reader.option("maxFilesPerTrigger", spec.max_files_per_trigger)
    files = reader.load(spec.path).select(
        F.col("_metadata.file_path").alias(SOURCE), _lines(F.col("value")).alias("lines")
    )
    lines = files.select(
        SOURCE,
        F.posexplode(F.col("lines")).alias("index", "line"),
        F.size(F.col("lines")).alias("count"),
    )
    last_is_empty = (F.col("index") == F.col("count") - 1) & (F.col("line") == "")
    kept: Column = ~last_is_empty  # a file's final newline ends its last line, no record
    if spec.format is FileFormat.CSV and _header(spec):
        kept = kept & (F.col("index") > 0)
    return lines.where(kept).select(
        F.col("line").alias(PAYLOAD),
        SOURCE,
        F.lit(None).cast("int").alias(PARTITION),
        (F.col("index") + 1).cast("bigint").alias(POSITION),
    )


def _lines(text: Column) -> Column:
    """A file's lines (``\n`` or ``\r\n``), each with its bytes unchanged.

    ``split`` goes through Java strings, which would replace invalid UTF-8 with U+FFFD and
    so hide it. A file that is not valid UTF-8 is split on its hex text instead (each byte
    as ``HH `` so ``0A `` can only match a whole byte), and each line is turned back into
    its exact bytes.
    """
    spaced_hex = F.regexp_replace(F.hex(text.cast("binary")), "(..)", "$1 ")
    exact = F.transform(
        F.split(spaced_hex, "(0D )?0A "),
        lambda line: F.unhex(F.replace(line, F.lit(" "), F.lit(""))).cast("string"),
    )
    return F.when(F.call_function("is_valid_utf8", text), F.split(text, "\r?\n")).otherwise(exact)


def _header(spec: FileSourceSpec) -> bool:
    return spec.options.get("header", "false").lower() == "true"
