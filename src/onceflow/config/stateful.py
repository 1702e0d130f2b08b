"""The stream's stateful keys: an event-time watermark, deduplication, aggregation, and
where state lives.

What these keys keep across batches lives in the checkpoint (``<checkpoint>/state``), so a
replayed batch recomputes the same rows from the same state version and the job's
guarantee covers them like any other output (DESIGN: "Stateful operators")::

    watermark: {column: event_time, delay: 10 minutes}
    dedup: {keys: [id]}                  # within the watermark, since the job has one
    aggregate: {group_by: [account], window: {type: tumbling, duration: 5 minutes},
                measures: {total: "sum(amount)"}}
    state: {store: rocksdb}              # the default; changelog checkpointing on
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from onceflow.config.common import Model, refuse_repeats

__all__ = ["AggregateSpec", "DedupSpec", "StateSettings", "WatermarkSpec", "WindowSpec"]


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
        refuse_repeats(keys, "keys must be distinct")
        return keys


class StateSettings(Model):
    """Where a stateful job's state store keeps its state, inside the checkpoint.

    Only read by a job that has state (``dedup``, ``aggregate``). A checkpoint keeps the
    store it started with: Spark records the provider in the checkpoint, and a later change
    of ``store`` does not convert existing state.
    """

    store: Literal["rocksdb", "hdfs"] = "rocksdb"
    """``rocksdb`` (state on local disk, off the JVM heap, uploaded to the checkpoint) or
    ``hdfs`` (Spark's default store: state in executor memory)."""
    changelog_checkpointing: bool = True
    """RocksDB only: each batch uploads the changes it made, not a snapshot of all state."""


class WindowSpec(Model):
    """An event-time window: ``tumbling`` (``duration``), ``sliding`` (``duration`` every
    ``slide``) or ``session`` (a ``gap`` of inactivity closes it).

    Each output row carries its window as ``window_start`` and ``window_end``. A row whose
    event time is NULL belongs to no window: it is quarantined with that reason.
    """

    type: Literal["tumbling", "sliding", "session"]
    """``tumbling``, ``sliding`` or ``session``."""
    duration: str | None = None
    """Tumbling and sliding: how long a window is (``5 minutes``)."""
    slide: str | None = None
    """Sliding: how often a window starts (``1 minute``); shorter than ``duration``."""
    gap: str | None = None
    """Session: how long without an event closes a key's session (``10 minutes``)."""
    column: str | None = None
    """The event-time column the window is over; default the watermark's."""

    @model_validator(mode="after")
    def _settings_of_type(self) -> WindowSpec:
        wanted = {"tumbling": {"duration"}, "sliding": {"duration", "slide"}, "session": {"gap"}}
        given = {name for name in ("duration", "slide", "gap") if getattr(self, name)}
        if given != wanted[self.type]:
            needs = " and ".join(sorted(wanted[self.type]))
            raise ValueError(f"a {self.type} window takes {needs}, and only that")
        return self


class AggregateSpec(Model):
    """Aggregate the stream per group, in event-time windows or over all time, with the
    group's state in the checkpoint::

        aggregate:
          group_by: [account]
          window: {type: tumbling, duration: 5 minutes}
          measures: {payments: "count(*)", total: "sum(amount)"}
          output: update        # into a MERGE on (window_start, window_end, account)

    Output rows are ``window_start``, ``window_end`` (with a ``window``), the ``group_by``
    columns, then the ``measures``. ``update`` hands each batch the groups it changed, with
    their whole value so far: each sink must MERGE (or upsert) on those keys, so a group's
    row is replaced, never appended again. ``append`` hands on a window once, when the
    watermark has passed its end, and never changes it after: the sinks append.
    """

    group_by: tuple[str, ...] = ()
    """The columns that make a group (``[account]``); none for one group per window."""
    window: WindowSpec | None = None
    """The event-time window of each group; without it, a group covers all time."""
    measures: dict[str, str] = Field(min_length=1)
    """Each output column and the SQL aggregate it holds (``total: "sum(amount)"``)."""
    output: Literal["update", "append"] = "update"
    """``update``: each batch carries the groups it changed (the sinks MERGE on the keys);
    ``append``: each window once, final, after the watermark passed it (the sinks append)."""

    @field_validator("group_by")
    @classmethod
    def _distinct_groups(cls, columns: tuple[str, ...]) -> tuple[str, ...]:
        refuse_repeats(columns, "group_by columns must be distinct")
        return columns

    @property
    def keys(self) -> tuple[str, ...]:
        """The columns that identify an output row: the window's bounds, then the groups."""
        window = ("window_start", "window_end") if self.window is not None else ()
        return (*window, *self.group_by)
