"""Give a files source records to read: one file per batch, in the source's format.

For the prove harness's workload and ``onceflow.testing.run_job``'s rows. Each file is
written under a hidden name and renamed into place, so a source already watching never
reads half a file; their modification times are a second apart in batch order, so one file
per batch reads them in that order.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from onceflow.errors import ConfigError
from onceflow.files import write_for_a_file_source
from onceflow.sources.files import FileFormat, FileSourceSpec

__all__ = ["write_batches"]


def write_batches(
    spec: FileSourceSpec, batches: Sequence[Sequence[Mapping[str, Any]]], place: Path
) -> list[str]:
    """Write each batch's records as one file under ``place/input``; the overrides that
    point the job there, a file per batch."""
    if spec.format is FileFormat.PARQUET:
        raise ConfigError(
            "CONFIG_UNSUPPORTED",
            file=spec.path,
            problem="records are fed to JSON or CSV files; write Parquet input yourself",
        )
    folder = place / "input"
    folder.mkdir(parents=True, exist_ok=True)
    columns = [part.strip().split()[0].strip("`") for part in spec.schema_ddl.split(",")]
    write_for_a_file_source(
        [
            (folder / f"batch-{index:05d}.{spec.format.value}", _lines(spec, columns, records))
            for index, records in enumerate(batches)
        ]
    )
    return [f"source.path={folder}", "source.max_files_per_trigger=1"]


def _lines(spec: FileSourceSpec, columns: list[str], records: Sequence[Mapping[str, Any]]) -> str:
    if spec.format is FileFormat.JSON:
        return "".join(json.dumps(dict(record), default=str) + "\n" for record in records)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    if spec.options.get("header", "false").lower() == "true":
        writer.writerow(columns)
    for record in records:
        writer.writerow(["" if record.get(c) is None else record.get(c) for c in columns])
    return out.getvalue()
