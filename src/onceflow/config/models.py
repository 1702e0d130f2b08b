"""The typed, frozen shape of a job: what ``load_job`` returns and everything else reads.

Closed vocabularies are ``str`` enums; sources and sinks are discriminated on ``kind``.
Models forbid unknown keys, so a typo is an error (with a suggestion), never a silent default.
Relative paths have already been resolved against ``storage.root`` when a model is built.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = [
    "DeltaSinkSpec",
    "DeltaSourceSpec",
    "FileFormat",
    "FileSourceSpec",
    "JobSpec",
    "SinkSpec",
    "SourceSpec",
    "SparkSettings",
    "StorageSettings",
    "TransformSpec",
    "TriggerSpec",
]


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


def _as_str_map(value: Any) -> Any:
    """YAML reads ``maxFilesPerTrigger: 1`` as an int; Spark options are strings."""
    if isinstance(value, dict):
        return {
            str(k): (str(v).lower() if isinstance(v, bool) else str(v)) for k, v in value.items()
        }
    return value


class FileFormat(StrEnum):
    JSON = "json"
    CSV = "csv"
    PARQUET = "parquet"


class FileSourceSpec(_Model):
    """Files landing in a folder, read as a stream. A schema is required (no inference)."""

    kind: Literal["files"]
    format: FileFormat
    path: str
    schema_ddl: str = Field(alias="schema", min_length=1)
    max_files_per_trigger: int | None = Field(default=None, ge=1)
    options: dict[str, str] = Field(default_factory=dict)

    _strings = field_validator("options", mode="before")(_as_str_map)


class DeltaSourceSpec(_Model):
    """A Delta table read as a stream of its appends."""

    kind: Literal["delta"]
    path: str
    max_files_per_trigger: int | None = Field(default=None, ge=1)
    max_bytes_per_trigger: str | None = None
    starting_version: int | None = Field(default=None, ge=0)
    options: dict[str, str] = Field(default_factory=dict)

    _strings = field_validator("options", mode="before")(_as_str_map)


SourceSpec = Annotated[FileSourceSpec | DeltaSourceSpec, Field(discriminator="kind")]


class TransformSpec(_Model):
    """Row-wise shaping of the stream before it reaches the sinks: filter, then project."""

    where: str | None = None
    select: tuple[str, ...] = ()


class DeltaSinkSpec(_Model):
    """A Delta table written by ``foreachBatch``."""

    kind: Literal["delta"]
    name: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    path: str
    mode: Literal["append"] = "append"
    partition_by: tuple[str, ...] = ()
    options: dict[str, str] = Field(default_factory=dict)

    _strings = field_validator("options", mode="before")(_as_str_map)


SinkSpec = Annotated[DeltaSinkSpec, Field(discriminator="kind")]


class TriggerSpec(_Model):
    """Exactly one of ``available_now: true``, ``once: true``, ``processing_time: 10 seconds``."""

    available_now: bool = False
    once: bool = False
    processing_time: str | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> TriggerSpec:
        chosen = [self.available_now, self.once, self.processing_time is not None]
        if sum(chosen) != 1:
            raise ValueError(
                "set exactly one of available_now: true, once: true, processing_time: '<interval>'"
            )
        return self


class SparkSettings(_Model):
    """How the SparkSession is built. Usually set by a profile in ``conf/``."""

    master: str | None = None
    app_name: str | None = None
    jars_dir: str = ".jars/spark"
    log_level: Literal["ALL", "DEBUG", "INFO", "WARN", "ERROR", "FATAL", "OFF"] = "WARN"
    conf: dict[str, str] = Field(default_factory=dict)

    _strings = field_validator("conf", mode="before")(_as_str_map)


class StorageSettings(_Model):
    """Where relative paths of the job live: a local folder, ``hdfs://...`` or ``s3a://...``."""

    root: str = "."


class JobSpec(_Model):
    """One streaming job: a source, optional row shaping, one or more sinks, a checkpoint."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    description: str = ""
    source: SourceSpec
    transform: TransformSpec = TransformSpec()
    sinks: tuple[SinkSpec, ...] = Field(min_length=1)
    checkpoint: str
    trigger: TriggerSpec = TriggerSpec(available_now=True)
    spark: SparkSettings = SparkSettings()
    storage: StorageSettings = StorageSettings()

    @field_validator("sinks")
    @classmethod
    def _unique_sink_names(cls, sinks: tuple[SinkSpec, ...]) -> tuple[SinkSpec, ...]:
        names = [sink.name for sink in sinks]
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise ValueError(f"sink names must be unique; repeated: {', '.join(repeated)}")
        return sinks
