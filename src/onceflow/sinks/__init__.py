"""Sinks: where a micro-batch is written. Each states what a replay of a batch does to it."""

from __future__ import annotations

from onceflow.config import DeltaSinkSpec, JobSpec, ParquetSinkSpec, PostgresSinkSpec, SinkSpec
from onceflow.sinks.base import BatchSink, is_delta_conflict
from onceflow.sinks.delta import DeltaSink, delta_batch_marks, dml_transaction
from onceflow.sinks.parquet import ParquetSink
from onceflow.sinks.postgres import PostgresSink

__all__ = [
    "BatchSink",
    "DeltaSink",
    "ParquetSink",
    "PostgresSink",
    "build_sink",
    "delta_batch_marks",
    "dml_transaction",
    "is_delta_conflict",
]


def build_sink(job: JobSpec, spec: SinkSpec) -> BatchSink:
    """The sink object for one ``sinks[]`` entry of ``job``."""
    if isinstance(spec, DeltaSinkSpec):
        return DeltaSink(job.name, spec, job.mode_of(spec))
    if isinstance(spec, ParquetSinkSpec):
        return ParquetSink(job.name, spec, job.mode_of(spec))
    if isinstance(spec, PostgresSinkSpec):
        return PostgresSink(job.name, spec, job.mode_of(spec), job.connections[spec.connection])
    raise TypeError(f"no sink for kind {spec.kind!r}")  # unreachable: models are closed
