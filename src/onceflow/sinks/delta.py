"""Delta Lake sinks written from ``foreachBatch``.

``DeltaAppendSink`` appends the batch in one Delta commit. On its own it promises nothing
about replays: a batch written and then replayed after a crash is appended twice. The job's
guarantee policy decides whether that can happen.

    sinks:
      - name: events
        kind: delta
        path: tables/events
        mode: append
        partition_by: [account]
"""

from __future__ import annotations

from pyspark.sql import DataFrame

from onceflow.config import DeltaSinkSpec
from onceflow.errors import SinkError

__all__ = ["DeltaAppendSink"]


class DeltaAppendSink:
    """Appends each batch to the Delta table at ``spec.path`` in a single commit."""

    def __init__(self, job: str, spec: DeltaSinkSpec) -> None:
        self._job = job
        self._spec = spec

    @property
    def name(self) -> str:
        return self._spec.name

    @property
    def path(self) -> str:
        return self._spec.path

    def write(self, batch: DataFrame, batch_id: int) -> None:
        """Append ``batch``; a failure is re-raised as SINK_WRITE_FAILED naming job and sink."""
        writer = batch.write.format("delta").mode("append").options(**self._spec.options)
        if self._spec.partition_by:
            writer = writer.partitionBy(*self._spec.partition_by)
        try:
            writer.save(self._spec.path)
        except Exception as exc:
            raise SinkError(
                "SINK_WRITE_FAILED",
                job=self._job,
                sink=self.name,
                batch_id=batch_id,
                cause=_first_line(exc),
            ) from exc


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
