"""SCD type 2 for a CDC sink: the history of every key a batch touches, rebuilt from its
events and the versions the table holds, and written as one MERGE of what differs.

A version is a row of the key from ``start_column`` (the sequence of the upsert that
opened it) to ``end_column`` (the sequence of the key's next event, an upsert or a delete;
NULL while current). Every upsert opens a version, also one that changes no column: the
history then holds every event, and an event arriving late (older than the key's current
version) is spliced in exactly, closing the version before it and closed by the one after
it. DLT opens a version only when a tracked column changes; that loses the event, and a
later event spliced before it would then extend the wrong version.

To rebuild, each key's events are put in sequence order, from (first wins on a sequence):

1. the table's versions, turned back into events: each an upsert at its start, and each
   end at which no version starts a delete at that end;
2. the ledger's deletes (``__deletes``): those that closed no version when they came (the
   key was gone already) close the version of a later, older update, so that a delete
   followed by an older update never brings the key back;
3. the batch's events.

An applied event always wins its sequence, so a version never disappears: the MERGE only
moves ends (``end_column``) and inserts new versions.
"""

from __future__ import annotations

from delta.tables import DeltaMergeBuilder, DeltaTable
from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from onceflow.sinks.delta import CdcSpec
from onceflow.sinks.delta.cdc_events import DELETE, SEQ, KeyRange, key_condition, quoted, within
from onceflow.sinks.delta.cdc_ledger import Ledger

__all__ = ["history_merge"]

_END = "__onceflow_end"
_NEXT = "__onceflow_next"
_KNOWN_END = "__onceflow_known_end"
_KNOWN = "__onceflow_known"
_SOURCE = "__onceflow_source"
_FIRST = "__onceflow_first"


def history_merge(
    target: DeltaTable,
    events: DataFrame,
    ledger_rows: DataFrame,
    cdc: CdcSpec,
    data: list[str],
    ranges: KeyRange,
) -> DeltaMergeBuilder:
    """The MERGE that makes the table hold the history of ``events``' keys: each version
    matched on the keys and its start; a matched one gets its new end, a new one is
    inserted. Versions the rebuild leaves as they are stay out of the MERGE."""
    keys = [quoted(k) for k in cdc.keys]
    start, end = cdc.start_column, cdc.end_column
    versions = within(target.toDF(), ranges).join(events.select(*keys), list(cdc.keys), "semi")
    versions = versions.select(
        *keys, *[quoted(c) for c in data], quoted(start).alias(SEQ), quoted(end).alias(_END)
    )
    rebuilt = _rebuilt(versions, ledger_rows, events, cdc, data)
    known = F.coalesce(F.col(_KNOWN), F.lit(False))
    differs = ~known | ~F.col(_END).eqNullSafe(F.col(_KNOWN_END))
    changes = rebuilt.where(differs).select(
        *keys, *[quoted(c) for c in data], F.col(SEQ).alias(start), F.col(_END).alias(end)
    )
    inserts: dict[str, str | Column] = {
        f"`{c}`": f"s.`{c}`" for c in (*cdc.keys, *data, start, end)
    }
    moved: dict[str, str | Column] = {f"`{end}`": f"s.`{end}`"}
    return (
        target.alias("t")
        .merge(changes.alias("s"), key_condition(cdc, ranges, extra=(start,)))
        .whenMatchedUpdate(set=moved)
        .whenNotMatchedInsert(values=inserts)
    )


def _rebuilt(
    versions: DataFrame, ledger_rows: DataFrame, events: DataFrame, cdc: CdcSpec, data: list[str]
) -> DataFrame:
    """Every version of the keys: each upsert, open until the key's next event; a version
    the table holds already keeps its end as ``_KNOWN_END`` (``_KNOWN`` true)."""
    keys = [quoted(k) for k in cdc.keys]
    per_key = Window.partitionBy(*keys).orderBy(F.col(SEQ))
    upserts = versions.select(
        *keys,
        *[quoted(c) for c in data],
        SEQ,
        F.lit(False).alias(DELETE),
        F.col(_END).alias(_KNOWN_END),
        F.lit(True).alias(_KNOWN),
    )
    # an end where the key's next version does not start is a delete's
    next_start = F.lead(F.col(SEQ)).over(per_key)
    closing = (
        versions.withColumn(_NEXT, next_start)
        .where(F.col(_END).isNotNull() & ~F.col(_END).eqNullSafe(F.col(_NEXT)))
        .select(*keys, F.col(_END).alias(SEQ), F.lit(True).alias(DELETE))
    )
    deletes = ledger_rows.select(*keys, F.explode(Ledger.DELETES).alias(SEQ)).withColumn(
        DELETE, F.lit(True)
    )
    ranked = [
        (0, upserts),
        (0, closing),
        (1, deletes),
        (2, events.select(*keys, *[quoted(c) for c in data], SEQ, DELETE)),
    ]
    every = None
    for rank, frame in ranked:
        frame = frame.withColumn(_SOURCE, F.lit(rank))
        every = frame if every is None else every.unionByName(frame, allowMissingColumns=True)
    assert every is not None  # noqa: S101 - four frames above
    # one event per key and sequence: the one applied first (the table, then the ledger)
    first = Window.partitionBy(*keys, F.col(SEQ)).orderBy(F.col(_SOURCE))
    return (
        every.withColumn(_FIRST, F.row_number().over(first))
        .where(F.col(_FIRST) == 1)
        .withColumn(_END, F.lead(F.col(SEQ)).over(per_key))
        .where(~F.col(DELETE))
        .drop(_FIRST, _SOURCE)
    )
