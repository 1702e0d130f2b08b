"""The files source kind: files landing in a folder (JSON, CSV, Parquet), read as a stream
(``reader``). This module is its declaration, and imports no Spark.

Replayable: Spark's file source logs which files each batch took (``sources/0`` in the
checkpoint), so a replayed batch reads the same files. A file must be complete when it
appears in the folder: write it elsewhere and move it in.

    source:
      kind: files
      format: json
      path: data/sample/payments
      schema: "id BIGINT, account STRING, amount DECIMAL(18,2), event_time TIMESTAMP"
      max_files_per_trigger: 4
"""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

from pydantic import Field, field_validator

from onceflow.config.common import as_str_map
from onceflow.config.kinds import RawFormat, SourceKind
from onceflow.config.specs import SourceSpec

__all__ = ["SOURCE", "FileFormat", "FileSourceSpec"]


class FileFormat(StrEnum):
    JSON = "json"
    CSV = "csv"
    PARQUET = "parquet"


class FileSourceSpec(SourceSpec):
    """Files landing in a folder, read as a stream. A schema is required (no inference)."""

    kind: Literal["files"]
    format: FileFormat
    """How the files are written."""
    path: str
    """The folder to stream: relative to ``storage.root``, or a URI."""
    schema_ddl: str = Field(alias="schema", min_length=1)
    """The records' schema as Spark DDL (``id BIGINT, account STRING``); a stream never infers
    its schema."""
    max_files_per_trigger: int | None = Field(default=None, ge=1)
    """At most this many new files per micro-batch (Spark's ``maxFilesPerTrigger``)."""
    options: dict[str, str] = Field(default_factory=dict)
    """Any other reader option, passed to Spark unchanged (``header: true`` for CSV)."""

    _strings = field_validator("options", mode="before")(as_str_map)

    @property
    def location(self) -> str:
        return self.path


def _raw_format(spec: FileSourceSpec) -> RawFormat | None:
    """JSON and CSV lines are parsed by onceflow; Parquet arrives typed."""
    if spec.format is FileFormat.PARQUET:
        return None
    return RawFormat(spec.format.value, spec.schema_ddl, spec.options)


SOURCE = SourceKind(
    file_backed=True,
    name="files",
    title="files",
    spec=FileSourceSpec,
    reader="onceflow.sources.files.reader:read_file_stream",
    raw_reader="onceflow.sources.files.reader:read_raw_files",
    raw_format=_raw_format,
    lag="onceflow.sources.files.reader:unread_files",
    feed="onceflow.sources.files.feed:write_batches",
)
