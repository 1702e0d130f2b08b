"""Reading a files source: typed by Spark's reader, or raw for onceflow to parse, and how
many landed files its checkpoint has not listed yet (``onceflow status``).

A file read raw is read whole (``wholetext``) and split into lines, which is what gives
every line its number; each landing file must fit in an executor's memory.
"""

from __future__ import annotations

import json

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from onceflow.files import CheckpointFiles
from onceflow.sources.files import FileFormat, FileSourceSpec
from onceflow.sources.raw import PARTITION, PAYLOAD, POSITION, SOURCE

__all__ = ["read_file_stream", "read_raw_files", "unread_files"]


def read_file_stream(spark: SparkSession, spec: FileSourceSpec) -> DataFrame:
    """Stream ``spec.path`` with the declared schema (Spark never infers it for a stream)."""
    reader = spark.readStream.format(spec.format.value).schema(spec.schema_ddl)
    if spec.max_files_per_trigger is not None:
        reader = reader.option("maxFilesPerTrigger", spec.max_files_per_trigger)
    return reader.options(**spec.options).load(spec.path)


def read_raw_files(spark: SparkSession, spec: FileSourceSpec) -> DataFrame:
    """Every line of every landing file, unparsed, with its file and line number."""
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


def unread_files(
    spark: SparkSession, spec: FileSourceSpec, checkpoint: str, last_planned: int | None
) -> dict[str, object] | None:
    """Data files in the source folder that its log (``sources/0``) has not listed yet."""
    present = {
        name
        for name in CheckpointFiles(spark, spec.path).names()
        if not name.startswith(("_", "."))
    }
    log = CheckpointFiles(spark, checkpoint.rstrip("/") + "/sources/0")
    seen: set[str] = set()
    for entry in log.names():
        if entry.startswith("."):
            continue
        for line in (log.read(entry) or "").splitlines()[1:]:  # the first line is "v1"
            path = json.loads(line).get("path", "")
            seen.add(path.rstrip("/").rsplit("/", 1)[-1])
    return {"files": len(present - seen), "as_of": "now"}
