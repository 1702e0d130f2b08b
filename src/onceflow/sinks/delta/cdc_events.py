"""A CDC batch as change events, for ``cdc.py`` and its two halves (``cdc_history.py``,
``cdc_ledger.py``): each row's sequence and whether it is a delete, one event per key and
sequence, and the batch's summary (its NULLs and its key range)."""

from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from onceflow.sinks.delta import CdcSpec
from onceflow.sinks.delta.key_range import KeyRange, key_ranges
from onceflow.sinks.shaping import latest_per_key

__all__ = [
    "DELETE",
    "SEQ",
    "KeyRange",
    "any_null",
    "change_events",
    "key_condition",
    "quoted",
    "summary",
    "within",
]

#: The event's sequence (``sequence_by``: its value, or a struct of its columns).
SEQ = "__onceflow_seq"
#: True for a delete (``apply_as_deletes``).
DELETE = "__onceflow_delete"


def quoted(column: str) -> Column:
    """The column named ``column``, whatever characters its name holds."""
    return F.col(f"`{column}`")


def change_events(frame: DataFrame, cdc: CdcSpec, data: list[str]) -> DataFrame:
    """The batch as events: the keys, the ``data`` columns, ``SEQ`` and ``DELETE`` (a NULL
    from ``apply_as_deletes`` is an upsert). One event per key and sequence: the same change
    delivered twice is one change (of two that differ, the first by the row's JSON)."""
    columns = [quoted(c) for c in cdc.sequence_by]
    sequence = columns[0] if len(columns) == 1 else F.struct(*columns)
    delete = F.lit(False)
    if cdc.apply_as_deletes:
        delete = F.coalesce(F.expr(cdc.apply_as_deletes), F.lit(False))
    marked = frame.withColumns({SEQ: sequence, DELETE: delete})
    unique = latest_per_key(marked, (*cdc.keys, SEQ), None)
    return unique.select(*[quoted(c) for c in (*cdc.keys, *data)], SEQ, DELETE)


def any_null(cdc: CdcSpec) -> Column:
    """True for a row with a NULL key or a NULL sequence column."""
    found = F.lit(False)
    for column in (*cdc.keys, *cdc.sequence_by):
        found = found | quoted(column).isNull()
    return found


def summary(frame: DataFrame, cdc: CdcSpec) -> tuple[int, int, KeyRange]:
    """The batch's rows, how many have a NULL key or sequence, and its key range, in one
    aggregate (``key_range``): the range prunes the reads and MERGEs of the table and the
    ledger."""
    counts = {"rows": F.count(F.lit(1)), "nulls": F.count_if(any_null(cdc))}
    found, ranges = key_ranges(frame, cdc.keys, counts)
    return found["rows"], found["nulls"], ranges


def key_condition(cdc: CdcSpec, ranges: KeyRange, extra: tuple[str, ...] = ()) -> str:
    """A MERGE condition: ``t`` and ``s`` equal on the keys (and on ``extra`` columns),
    and ``t`` within the batch's key range."""
    equal = [f"t.`{c}` = s.`{c}`" for c in (*cdc.keys, *extra)]
    within = []
    for key, low, high in ranges:
        within += [f"t.`{key}` >= {low}", f"t.`{key}` <= {high}"]
    return " AND ".join(equal + within)


def within(frame: DataFrame, ranges: KeyRange) -> DataFrame:
    """``frame``'s rows within the batch's key range (Delta skips the files outside it)."""
    for key, low, high in ranges:
        frame = frame.where(f"`{key}` >= {low} AND `{key}` <= {high}")
    return frame
