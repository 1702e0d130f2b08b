"""CDC apply (``mode: cdc``): a batch of change events applied to a Delta table in the
order of their sequence, as SCD type 1 (the latest row per key) or 2 (every version).

    sinks:
      - name: customers
        kind: delta
        path: tables/customers
        mode: cdc
        cdc:
          keys: [customer_id]
          sequence_by: lsn                # or [commit_ts, lsn]
          apply_as_deletes: "op = 'D'"
          except_columns: [op]
          stored_as_scd_type: 1           # or 2: __start_at, __end_at

The promise, under exactly-once, after a crash anywhere: the table is as if each batch
had been applied once. SCD 1 holds each key's row as its events leave it, in sequence
order, skipping any event no newer than the last one applied to the key (so an older event
never overwrites a newer one, nor brings back a deleted row): without
``ignore_null_updates``, that is the row of the key's latest event, or none when that is a
delete. SCD 2 holds every version of each key, a late event spliced in at its place. It
assumes what ``foreachBatch`` promises: a replay of batch N has N's rows. Unguarded
(at-least-once), a replay recomputes the batch against what the first run left: SCD 1
finds its events applied already, SCD 2 finds each event's version in place (by
construction; the tests cover the guarded replay).

Each batch, deterministically (a replay computes the same changes):

1. events: rows with ``__onceflow_seq`` (``sequence_by``) and ``__onceflow_delete``
   (``apply_as_deletes``); of several with one key and sequence, one (the first by the
   row's JSON). A NULL key or sequence stops the batch: the job's quarantine rules
   (``on_null_key: quarantine``) keep such rows from getting here.
2. the ledger (``cdc_ledger.py``) of the batch's keys: each key's last sequence and its
   deletes, kept beside the table so that ordering survives across batches without a
   column of the user's table.
3. ONE MERGE into the table: SCD 1 (below) or SCD 2 (``cdc_history.py``), then ONE MERGE
   into the ledger, each in its own ``dml_transaction``, so Delta skips either on a
   replay of the same (app id, batch id).
4. every 10th batch, the ledger's tombstones older than ``tombstone_retention`` go.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from delta.tables import DeltaMergeBuilder, DeltaTable
from pyspark.sql import Column, DataFrame, SparkSession, Window
from pyspark.sql import functions as F
from pyspark.sql.window import WindowSpec

from onceflow.contracts import BatchContext
from onceflow.errors import SinkError
from onceflow.sinks.delta import CdcSpec, DeltaSinkSpec, ledger_location
from onceflow.sinks.delta.cdc_events import (
    DELETE,
    SEQ,
    KeyRange,
    any_null,
    change_events,
    key_condition,
    quoted,
    summary,
)
from onceflow.sinks.delta.cdc_history import history_merge
from onceflow.sinks.delta.cdc_ledger import Ledger, SettingChanged
from onceflow.sinks.delta.sink import dml_transaction

__all__ = ["PURGE_EVERY", "CdcApply"]

#: How often, in batches, the ledger's expired tombstones are purged (batch ids 10, 20, ...:
#: at batch 0 a checkpoint's ledger holds none of its own yet).
PURGE_EVERY = 10
_RESET = "__onceflow_reset"
_LAST_DELETE = "__onceflow_last_delete"


class CdcApply:
    """The CDC apply of one sink, for the life of its query: it remembers that its ledger
    belongs to its table, which needs asking only once, or when the table is created."""

    def __init__(
        self,
        job: str,
        spec: DeltaSinkSpec,
        create_target: Callable[[SparkSession, DataFrame], None],
    ) -> None:
        """``create_target(spark, frame)`` commits the table's first version (``frame``'s
        columns, no rows) unless it has one."""
        assert spec.cdc is not None  # noqa: S101 - config rules ensure it
        self._job = job
        self._spec = spec
        self._cdc: CdcSpec = spec.cdc
        self._create_target = create_target
        self._bound = False

    def write(self, frame: DataFrame, context: BatchContext) -> None:
        """Apply the batch ``frame`` of change events to the table and its ledger.

        Raises SinkError when a row has a NULL key or sequence, or when an SCD 2 column is
        also a column of the events.
        """
        cdc, spark = self._cdc, frame.sparkSession
        rows, nulls, ranges = summary(frame, cdc)
        if nulls:
            raise self._refused(frame, context)
        if not rows:
            return  # nothing changes: no commit to make, none to guard
        stored = [c for c in frame.columns if c not in cdc.except_columns]
        data = [c for c in stored if c not in cdc.keys]
        self._refuse_clashes(stored, context)
        events = change_events(frame, cdc, data).persist()
        applied = events
        try:
            ledger = Ledger(spark, ledger_location(self._spec), cdc)
            self._prepare(spark, ledger, events, data)
            target = DeltaTable.forPath(spark, self._spec.path)
            if cdc.stored_as_scd_type == 1:
                # both MERGEs read it: persisted, it is computed once
                applied = _newer_than_ledger(events, ledger.rows(ranges), cdc).persist()
                builder = _latest_rows_merge(target, applied, cdc, data, ranges)
            else:
                keys = events.select(*[quoted(k) for k in cdc.keys])
                ledger_rows = ledger.rows(ranges).join(keys, list(cdc.keys), "semi")
                builder = history_merge(target, events, ledger_rows, cdc, data, ranges)
            # The table first, then the ledger. The ledger decides which events a replay
            # applies: had it gone first, a crash between the two would leave it saying
            # "applied", and the replay would filter out the very events the table never
            # got. This way a replay skips the table's MERGE by its transaction id, and
            # computes the ledger's from the same ledger rows, still as they were. (The
            # table's MERGE reads the ledger as it runs, so it must run before the ledger's
            # changes in any case.)
            with dml_transaction(spark, context):
                builder.execute()
            now = datetime.now(UTC)
            ledger.merge(applied, ranges, now, context)
            if context.batch_id and context.batch_id % PURGE_EVERY == 0:
                ledger.purge(now, context)
        finally:
            applied.unpersist()
            events.unpersist()

    def _prepare(
        self, spark: SparkSession, ledger: Ledger, events: DataFrame, data: list[str]
    ) -> None:
        """Create the table and the ledger when missing, and bind the ledger to the table:
        their own commits, outside the guard (a replay finds them made)."""
        created = not DeltaTable.isDeltaTable(spark, self._spec.path)
        self._create_target(spark, _table_shape(events, self._cdc, data))
        if created or not self._bound:
            try:
                ledger.bind(events, self._spec.path)
            except SettingChanged as changed:
                raise self._changed(changed) from None
            self._bound = True

    def _changed(self, changed: SettingChanged) -> SinkError:
        """SINK_TABLE_MISMATCH naming the ``cdc`` setting that differs from the one the
        table and its ledger were made with."""
        return SinkError(
            "SINK_TABLE_MISMATCH",
            job=self._job,
            sink=self._spec.name,
            path=self._spec.path,
            problem=f"cdc.{changed.setting} is {changed.now}, but this table and its ledger "
            f"({ledger_location(self._spec)}) were made with {changed.was}, and the ledger "
            "orders each key's changes as those settings did. Keep "
            f"cdc.{changed.setting}, or apply the feed anew: another path (or the table and "
            "its ledger deleted) and a fresh checkpoint",
        )

    def _refused(self, frame: DataFrame, context: BatchContext) -> SinkError:
        """SINK_MERGE_KEY_REFUSED naming a row with a NULL key or sequence."""
        sample = frame.where(any_null(self._cdc)).limit(1).toJSON().collect()
        return SinkError(
            "SINK_MERGE_KEY_REFUSED",
            job=self._job,
            sink=self._spec.name,
            batch_id=context.batch_id,
            keys=", ".join(self._cdc.keys),
            problem=f"a NULL key or sequence ({', '.join(self._cdc.sequence_by)}), which "
            "has no place in the order of changes",
            sample=sample[0][:500] if sample else "",
        )

    def _refuse_clashes(self, stored: list[str], context: BatchContext) -> None:
        """SCD 2's start and end columns may not be stored columns of the events too
        (``validate --deep`` says so before a run; this is for a batch whose columns
        changed since)."""
        cdc = self._cdc
        if cdc.stored_as_scd_type != 2:
            return
        clashes = [c for c in (cdc.start_column, cdc.end_column) if c in stored]
        if clashes:
            raise SinkError(
                "SINK_TABLE_MISMATCH",
                job=self._job,
                sink=self._spec.name,
                path=self._spec.path,
                problem=f"batch {context.batch_id}: the events have a column named like "
                f"the history's {', '.join(clashes)}: leave it out (cdc.except_columns) or "
                "name the history's otherwise (cdc.start_column, cdc.end_column)",
            )


def _table_shape(events: DataFrame, cdc: CdcSpec, data: list[str]) -> DataFrame:
    """An empty frame with the table's columns: the stored ones, then SCD 2's two."""
    columns = [quoted(c) for c in (*cdc.keys, *data)]
    if cdc.stored_as_scd_type == 2:
        columns += [F.col(SEQ).alias(cdc.start_column), F.col(SEQ).alias(cdc.end_column)]
    return events.select(*columns).limit(0)


def _newer_than_ledger(events: DataFrame, ledger_rows: DataFrame, cdc: CdcSpec) -> DataFrame:
    """SCD 1: the events newer than their key's last applied one (the ledger's): an older
    one, or a repeat, would overwrite a newer row, or bring back a deleted one."""
    last = ledger_rows.select(*[quoted(k) for k in cdc.keys], F.col(Ledger.SEQUENCE))
    joined = events.join(last, list(cdc.keys), "left")
    newer = F.col(Ledger.SEQUENCE).isNull() | (F.col(SEQ) > F.col(Ledger.SEQUENCE))
    return joined.where(newer).drop(Ledger.SEQUENCE)


def _latest_rows_merge(
    target: DeltaTable,
    applied: DataFrame,
    cdc: CdcSpec,
    data: list[str],
    ranges: KeyRange,
) -> DeltaMergeBuilder:
    """SCD 1: each key's last event in sequence order, as one MERGE: a delete deletes the
    row, an upsert updates or inserts it.

    With ``ignore_null_updates`` a column takes its last non-NULL value among the key's
    upserts after its last delete in the batch; without such a delete, a column all NULL
    there keeps the table's value (``_RESET`` is false). Without it, the last event's."""
    after_delete = F.col(_LAST_DELETE).isNull() | (F.col(SEQ) > F.col(_LAST_DELETE))
    marked = applied.withColumn(
        _LAST_DELETE, F.max(F.when(F.col(DELETE), F.col(SEQ))).over(_per_key(cdc))
    )

    def value(column: str) -> Column:
        order = F.col(SEQ)
        if cdc.ignore_null_updates:
            usable = ~F.col(DELETE) & after_delete & quoted(column).isNotNull()
            order = F.when(usable, F.col(SEQ))  # max_by skips a NULL order
        return F.max_by(quoted(column), order).alias(column)

    latest = marked.groupBy(*[quoted(k) for k in cdc.keys]).agg(
        *[value(c) for c in data],
        F.max_by(F.col(DELETE), F.col(SEQ)).alias(DELETE),
        F.max(F.col(_LAST_DELETE)).isNotNull().alias(_RESET),
    )
    condition = key_condition(cdc, ranges)
    updates: dict[str, str | Column] = {
        f"`{c}`": (
            f"CASE WHEN s.{_RESET} THEN s.`{c}` ELSE coalesce(s.`{c}`, t.`{c}`) END"
            if cdc.ignore_null_updates
            else f"s.`{c}`"
        )
        for c in data
    }
    inserts: dict[str, str | Column] = {f"`{c}`": f"s.`{c}`" for c in (*cdc.keys, *data)}
    return (
        target.alias("t")
        .merge(latest.alias("s"), condition)
        .whenMatchedDelete(condition=f"s.{DELETE}")
        .whenMatchedUpdate(set=updates)
        .whenNotMatchedInsert(condition=f"NOT s.{DELETE}", values=inserts)
    )


def _per_key(cdc: CdcSpec) -> WindowSpec:
    return Window.partitionBy(*[quoted(k) for k in cdc.keys])
