"""Delivery guarantees: policies that wrap a job's sinks into one ``foreachBatch`` writer."""

from __future__ import annotations

from collections.abc import Sequence

from pyspark.sql import DataFrame

from onceflow.contracts import BatchWriter, Sink

__all__ = ["at_least_once_writer"]


def at_least_once_writer(sinks: Sequence[Sink]) -> BatchWriter:
    """Write every sink, then return so Spark commits the batch.

    Promise: nothing is lost. A crash after a sink was written and before Spark's commit
    replays the batch, and an append sink then holds it twice.
    """

    def write(batch: DataFrame, batch_id: int) -> None:
        reused = len(sinks) > 1
        if reused:
            batch = batch.persist()
        try:
            for sink in sinks:
                sink.write(batch, batch_id)
        finally:
            if reused:
                batch.unpersist()

    return write
