"""Job configuration: YAML files in, a frozen ``JobSpec`` out. Never imports Spark."""

from __future__ import annotations

from onceflow.config.loader import LoadedJob, is_uri, join_path, load_job
from onceflow.config.models import (
    DeltaSinkSpec,
    DeltaSourceSpec,
    FileFormat,
    FileSourceSpec,
    JobSpec,
    SinkSpec,
    SourceSpec,
    SparkSettings,
    StorageSettings,
    TransformSpec,
    TriggerSpec,
)

__all__ = [
    "DeltaSinkSpec",
    "DeltaSourceSpec",
    "FileFormat",
    "FileSourceSpec",
    "JobSpec",
    "LoadedJob",
    "SinkSpec",
    "SourceSpec",
    "SparkSettings",
    "StorageSettings",
    "TransformSpec",
    "TriggerSpec",
    "is_uri",
    "join_path",
    "load_job",
]
