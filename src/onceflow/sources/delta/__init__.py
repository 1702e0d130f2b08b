"""The Delta source kind: a Delta table read as a stream of what is appended to it
(``reader``). This module is its declaration, and imports no Spark.

Replayable: a batch is a range of table versions recorded in the checkpoint.

    source:
      kind: delta
      path: tables/raw_payments
      max_files_per_trigger: 100
      starting_version: 0
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from onceflow.config.common import as_str_map
from onceflow.config.kinds import SourceKind
from onceflow.config.specs import SourceSpec

__all__ = ["SOURCE", "DeltaSourceSpec"]


class DeltaSourceSpec(SourceSpec):
    """A Delta table read as a stream of its appends."""

    kind: Literal["delta"]
    path: str
    """The Delta table to stream: relative to ``storage.root``, or a URI."""
    max_files_per_trigger: int | None = Field(default=None, ge=1)
    """At most this many new files per micro-batch (Spark's ``maxFilesPerTrigger``)."""
    max_bytes_per_trigger: str | None = None
    """About this many bytes per micro-batch, e.g. ``1g`` (Spark's ``maxBytesPerTrigger``)."""
    starting_version: int | None = Field(default=None, ge=0)
    """The first table version to read (Spark's ``startingVersion``); default: the table as it
    is, then what is appended."""
    options: dict[str, str] = Field(default_factory=dict)
    """Any other Delta reader option, passed to Spark unchanged."""

    _strings = field_validator("options", mode="before")(as_str_map)

    @property
    def location(self) -> str:
        return self.path


SOURCE = SourceKind(
    file_backed=True,
    name="delta",
    title="Delta",
    spec=DeltaSourceSpec,
    reader="onceflow.sources.delta.reader:read_delta_stream",
    feed="onceflow.sources.delta.feed:append_batches",
)
