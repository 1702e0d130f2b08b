"""What every source and sink spec shares, whatever its kind.

A kind's own spec (in its module under ``onceflow.sources`` / ``onceflow.sinks``, or in a
package of its own) subclasses one of these, narrows ``kind`` to its name
(``kind: Literal["delta"]``) and adds its keys. ``onceflow.config.kinds`` collects the
kinds, and a job's ``source`` and ``sinks`` are validated against the union of theirs.
"""

from __future__ import annotations

from pydantic import Field, field_validator

from onceflow.config.common import Model, as_str_map
from onceflow.config.modes import WriteMode

__all__ = ["FileSinkSpec", "SinkSpec", "SourceSpec"]


class SourceSpec(Model):
    """A job's source: its ``kind`` picks the model that reads the rest."""

    kind: str
    """Which kind of source; it picks the model that reads the other keys."""

    @property
    def location(self) -> str:
        """What the source reads, in one phrase (a folder, ``subscribe=payments``): part
        of the job's identity a checkpoint records."""
        raise NotImplementedError(f"source kind {self.kind!r} names no location")


class SinkSpec(Model):
    """One of a job's outputs: ``kind`` picks the model; ``name`` is unique in the job;
    ``mode`` says how a batch lands (default from the job's strategy and the kind);
    ``query`` shapes the batch first, in SQL over ``{batch}``."""

    kind: str
    """Which kind of sink; it picks the model that reads the other keys."""
    name: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    """The sink's name, unique within the job; errors and reports use it."""
    mode: WriteMode | None = None
    """How a batch lands: ``append``, ``merge``, ``replace-batch``, or for a database
    ``upsert``. Default: from the job's ``strategy`` and the kind."""
    query: str | None = None
    """SQL that shapes the batch for this sink, with ``{batch}`` as the batch. Must be
    deterministic."""

    @property
    def location(self) -> str:
        """Where the sink writes, for messages, checks and the job's identity: a folder
        or URI, or for a database ``<kind>:<connection>/<table>``."""
        raise NotImplementedError(f"sink kind {self.kind!r} names no location")


class FileSinkSpec(SinkSpec):
    """A sink that is a folder on a file system (local, HDFS, S3): ``path`` is joined to
    ``storage.root`` when relative."""

    path: str
    """The table's folder: relative to ``storage.root``, or a URI."""
    batch_id_column: str = "_batch_id"
    """The column ``replace-batch`` stores the batch id in."""
    partition_by: tuple[str, ...] = ()
    """Columns to partition the table by."""
    options: dict[str, str] = Field(default_factory=dict)
    """Writer options, passed to Spark unchanged."""

    _strings = field_validator("options", mode="before")(as_str_map)

    @property
    def location(self) -> str:
        return self.path
