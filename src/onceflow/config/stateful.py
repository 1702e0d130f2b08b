"""The stream's stateful keys: an event-time watermark, deduplication, and where state lives.

What these keys keep across batches lives in the checkpoint (``<checkpoint>/state``), so a
replayed batch recomputes the same rows from the same state version and the job's
guarantee covers them like any other output (DESIGN: "Stateful operators")::

    watermark: {column: event_time, delay: 10 minutes}
    dedup: {keys: [id]}                  # within the watermark, since the job has one
    state: {store: rocksdb}              # the default; changelog checkpointing on
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from onceflow.config.common import Model

__all__ = ["DedupSpec", "StateSettings", "WatermarkSpec"]


class WatermarkSpec(Model):
    """How late an event may arrive, by its event-time column: Spark's ``withWatermark``.

    The watermark trails the latest event time seen by ``delay``; state for times older
    than the watermark is dropped, and so are records that arrive with such an old time.
    """

    column: str = Field(min_length=1)
    """The event-time column (a TIMESTAMP) of the stream's rows."""
    delay: str = Field(min_length=1)
    """How far the watermark trails the latest event time: an interval Spark reads
    (``10 minutes``, ``1 hour``)."""


class DedupSpec(Model):
    """Drop each record whose ``keys`` were already seen, across batches and restarts.

    With ``within_watermark`` (the default when the job has a ``watermark``), Spark's
    ``dropDuplicatesWithinWatermark``: a key is remembered until the watermark passes its
    first event time plus the delay, so a duplicate must arrive within the delay of the
    first copy. With ``within_watermark: false`` the event-time column becomes part of the
    key (``dropDuplicates`` with the watermark): only copies with the same event time are
    duplicates. Without a watermark every key is remembered forever (state grows with the
    distinct keys).

    A record with a NULL key (or a NULL event time), or one onceflow could not parse, is
    never compared: it passes to the batch, where the quality rules judge it, so that
    nothing is merged into one record by its NULLs. Of several copies within one batch,
    which one is kept is Spark's choice: send copies that are the same record.
    """

    keys: tuple[str, ...] = Field(min_length=1)
    """The columns that identify a record (``[id]``)."""
    within_watermark: bool | None = None
    """Remember keys only within the watermark's delay (default: true when the job has a
    ``watermark``, which it then needs)."""

    @field_validator("keys")
    @classmethod
    def _distinct(cls, keys: tuple[str, ...]) -> tuple[str, ...]:
        repeated = sorted({key for key in keys if keys.count(key) > 1})
        if repeated:
            raise ValueError(f"keys must be distinct; repeated: {', '.join(repeated)}")
        return keys


class StateSettings(Model):
    """Where a stateful job's state store keeps its state, inside the checkpoint.

    Only read by a job that has state (``dedup``). A checkpoint keeps the store it started
    with: Spark records the provider in the checkpoint, and a later change of ``store`` does
    not convert existing state.
    """

    store: Literal["rocksdb", "hdfs"] = "rocksdb"
    """``rocksdb`` (state on local disk, off the JVM heap, uploaded to the checkpoint) or
    ``hdfs`` (Spark's default store: state in executor memory)."""
    changelog_checkpointing: bool = True
    """RocksDB only: each batch uploads the changes it made, not a snapshot of all state."""
