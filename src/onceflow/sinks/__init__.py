"""Sinks: where a micro-batch is written. Each states what a replay of a batch does to it."""

from __future__ import annotations

from onceflow.config import DeltaSinkSpec, SinkSpec
from onceflow.contracts import Sink
from onceflow.sinks.delta import DeltaAppendSink

__all__ = ["DeltaAppendSink", "build_sink"]


def build_sink(job: str, spec: SinkSpec) -> Sink:
    """The sink object for one ``sinks[]`` entry of job ``job``."""
    if isinstance(spec, DeltaSinkSpec):
        return DeltaAppendSink(job, spec)
    raise TypeError(f"no sink for kind {spec.kind!r}")  # unreachable: models are closed
