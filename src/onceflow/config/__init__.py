"""Job configuration: YAML files in, a frozen ``JobSpec`` out. Never imports Spark.

The kinds of sources and sinks a job may name are declared by their own modules and
collected by ``kinds()`` (``onceflow.config.kinds``); a job's ``source`` and ``sinks`` are
validated against their specs.
"""

from __future__ import annotations

from onceflow.config.common import Model
from onceflow.config.connections import PostgresConnection
from onceflow.config.job import (
    JobSpec,
    LockSettings,
    SparkSettings,
    StorageSettings,
    TransformSpec,
    TriggerSpec,
    job_model,
)
from onceflow.config.joins import JoinSpec, JoinStreamSpec
from onceflow.config.kinds import Kinds, RawFormat, SinkKind, SourceKind, kinds
from onceflow.config.loader import LoadedJob, is_uri, join_path, load_job
from onceflow.config.modes import (
    MODE_OF_STRATEGY,
    STRATEGY_OF_MODE,
    Guarantee,
    Strategy,
    WriteMode,
)
from onceflow.config.quality import QualityParser, QualitySpec, RuleAction, RuleSpec
from onceflow.config.specs import FileSinkSpec, SinkSpec, SourceSpec
from onceflow.config.stateful import (
    AggregateSpec,
    DedupSpec,
    StateSettings,
    WatermarkSpec,
    WindowSpec,
)

__all__ = [
    "MODE_OF_STRATEGY",
    "STRATEGY_OF_MODE",
    "AggregateSpec",
    "DedupSpec",
    "FileSinkSpec",
    "Guarantee",
    "JobSpec",
    "JoinSpec",
    "JoinStreamSpec",
    "Kinds",
    "LoadedJob",
    "LockSettings",
    "Model",
    "PostgresConnection",
    "QualityParser",
    "QualitySpec",
    "RawFormat",
    "RuleAction",
    "RuleSpec",
    "SinkKind",
    "SinkSpec",
    "SourceKind",
    "SourceSpec",
    "SparkSettings",
    "StateSettings",
    "StorageSettings",
    "Strategy",
    "TransformSpec",
    "TriggerSpec",
    "WatermarkSpec",
    "WindowSpec",
    "WriteMode",
    "is_uri",
    "job_model",
    "join_path",
    "kinds",
    "load_job",
]
