"""onceflow: PySpark Structured Streaming jobs from YAML, written through ``foreachBatch``
under a delivery guarantee the job declares and the toolkit proves.

The public API here never imports Spark; ``onceflow.runner`` and ``onceflow.session`` do.
"""

from __future__ import annotations

from onceflow.config import JobSpec, LoadedJob, load_job
from onceflow.errors import (
    ConfigError,
    GuaranteeError,
    OnceflowError,
    ServiceError,
    SinkError,
    SourceError,
)

__all__ = [
    "ConfigError",
    "GuaranteeError",
    "JobSpec",
    "LoadedJob",
    "OnceflowError",
    "ServiceError",
    "SinkError",
    "SourceError",
    "__version__",
    "load_job",
]

__version__ = "0.1.0"
