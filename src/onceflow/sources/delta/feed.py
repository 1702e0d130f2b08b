"""Give a Delta source records to read: a new table, one append per batch.

For ``onceflow.testing.run_job``'s rows. Each batch is one commit of one file, so a job
that reads one file per trigger reads the batches as they were given.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pyspark.sql import SparkSession

__all__ = ["append_batches"]


def append_batches(
    spec: Any, batches: Sequence[Sequence[Mapping[str, Any]]], place: Path
) -> list[str]:
    """Append each batch's records to a new Delta table under ``place/input_table`` (the
    columns inferred from the records); the overrides that point the job there, from its
    first version, a commit per batch."""
    spark = SparkSession.getActiveSession() or SparkSession.builder.getOrCreate()
    table = place / "input_table"
    for records in batches:
        if records:
            frame = spark.createDataFrame([dict(record) for record in records])
            frame.coalesce(1).write.format("delta").mode("append").save(str(table))
    return [
        f"source.path={table}",
        "source.max_files_per_trigger=1",
        "source.starting_version=0",
    ]
