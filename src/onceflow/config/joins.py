"""The job's ``join``: with a Delta table (stream-static) or with a second stream.

join:                            # stream-static: each batch, at one version of the table
  table: data/tables/accounts    # a Delta table, under storage.root when relative
  keys: [account]
  columns: ["balance", "payments AS account_payments"]

join:                            # stream-stream: both sides kept as state until matched
  stream:
    source: {kind: files, format: json, path: data/sample/settlements, schema: "..."}
    watermark: {column: settled_at, delay: 10 minutes}
  keys: ["id = payment_id"]      # or [payment_id], a column both sides have
  within: "settled_at BETWEEN event_time AND event_time + INTERVAL 1 HOUR"
  how: inner                     # or left
  columns: [settled_at, fee]
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator, model_validator

from onceflow.config.common import Model, refuse_repeats
from onceflow.config.specs import SourceSpec
from onceflow.config.stateful import WatermarkSpec

__all__ = ["JOIN_KEY_PATTERN", "JoinSpec", "JoinStreamSpec"]

#: A join key: a column both sides have, or ``<this stream's column> = <the other's>``.
JOIN_KEY_PATTERN = r"^\s*[A-Za-z_][\w]*\s*(=\s*[A-Za-z_][\w]*\s*)?$"


class JoinStreamSpec(Model):
    """The second stream of a stream-stream join: a source of any registered kind,
    parsed with its own schema, and its event-time watermark.

    Its records that do not parse, or lack a key or the watermark's column (such a record
    could never join), are set apart and quarantined with their reason, as the job's own.
    """

    source: SourceSpec
    """What the second stream reads; its ``kind`` picks which other keys are allowed, as
    the job's ``source``."""
    watermark: WatermarkSpec | None = None
    """The second stream's event-time column and how late its events may arrive: the join
    keeps its rows as state until the watermark passes them (required)."""


class JoinSpec(Model):
    """Enrich the stream by keys: from a Delta ``table`` (stream-static) or from a second
    ``stream`` (stream-stream). Exactly one of the two.

    **With a table**, each batch's good rows are left-joined, in the writer, with the table
    read at one version. The version a batch joined with is recorded in the checkpoint
    before the batch writes anything, so a replay of that batch joins the same version and
    computes the same rows, whatever was committed to the table meanwhile. A row without a
    match keeps NULLs, and no row is lost uncounted. It runs after the quality stage and any
    ``aggregate``, before ``transform.batch_python``.

    **With a stream**, the two streams are joined as both arrive (Spark's stream-stream
    join), after the job's ``dedup`` and before ``transform.sql``: each side's rows are
    state in the checkpoint until the watermarks say no row of the other side can match
    them any more, which ``within`` (a time range over both sides' event times) bounds.
    ``how: inner`` emits each matching pair once; ``how: left`` also emits each row of the
    job's stream that found no match, with NULLs, once the watermark has passed its range
    (never before: a match may still arrive). A replayed batch recomputes the same rows from
    the same state version, so the job's guarantee covers them as any other output. A row of
    the job's stream with a NULL key or event time can match nothing: ``inner`` leaves it
    out, ``left`` emits it at once with NULLs. A row of either side that arrives later than
    the watermark may miss its match (Spark drops it from the join): set the delays to how
    late events really are.
    """

    table: str | None = Field(default=None, min_length=1)
    """A Delta table's path (under ``storage.root`` when relative): a stream-static join."""
    stream: JoinStreamSpec | None = None
    """A second stream, joined as both sides arrive: a stream-stream join."""
    keys: tuple[str, ...] = Field(min_length=1)
    """The columns whose values both sides must share (not ``on``, which YAML reads as
    ``true``): a column both sides have (``account``), or, with a stream,
    ``<this stream's column> = <the other's>`` (``id = payment_id``)."""
    within: str | None = Field(default=None, min_length=1)
    """Stream joins only, required there: the time range a match must fall in, SQL over
    both sides' columns (``settled_at BETWEEN event_time AND event_time + INTERVAL 1
    HOUR``). A name both sides have is qualified: ``this.<column>`` (the job's stream),
    ``other.<column>``."""
    how: Literal["inner", "left"] | None = None
    """Stream joins only: ``inner`` (the default; matching pairs) or ``left`` (also each
    row without a match, with NULLs, once the watermark passed its range)."""
    columns: tuple[str, ...] = ()
    """SQL expressions over the other side's row that the stream gains (``payments AS
    account_payments``); every other column of the other side (but its keys) when empty."""

    @field_validator("keys")
    @classmethod
    def _keys(cls, keys: tuple[str, ...]) -> tuple[str, ...]:
        for key in keys:
            if not re.fullmatch(JOIN_KEY_PATTERN, key):
                raise ValueError(
                    f"a join key is a column both sides have, or '<this column> = <other "
                    f"column>'; got {key!r}"
                )
        refuse_repeats(keys, "join keys must be distinct")
        return keys

    @model_validator(mode="after")
    def _table_or_stream(self) -> JoinSpec:
        if (self.table is None) == (self.stream is None):
            raise ValueError(
                "set exactly one of table (a Delta table: a stream-static join) or stream "
                "(a second source: a stream-stream join)"
            )
        return self

    @property
    def key_pairs(self) -> tuple[tuple[str, str], ...]:
        """Each key as (this stream's column, the other side's column)."""
        pairs = []
        for key in self.keys:
            this, _, other = key.partition("=")
            pairs.append((this.strip(), (other or this).strip()))
        return tuple(pairs)

    @property
    def join_type(self) -> Literal["inner", "left"]:
        """How a stream join joins (``inner`` unless ``how`` says ``left``); a table join
        is always ``left``."""
        if self.table is not None:
            return "left"
        return self.how or "inner"
