"""The ledger of a CDC sink: a Delta table beside the target, one row per key, that keeps
the order of changes across batches without a column of the user's table.

Per key it holds the sequence of the last event applied (``__sequence``), whether that
event was a delete (``__deleted``), the sequence of the key's last delete
(``__deleted_sequence``), when the delete was applied (``__deleted_at``, for the
tombstone's retention) and, for SCD 2, every delete's sequence (``__deletes``): a delete
that closed no version at the time (the key was already gone) closes the version of a
later, older update, so the history keeps it.

The ledger is bound to its table by the table's Delta id (a table property): a ledger
whose table was deleted and created anew (``onceflow reset``, a drop by hand) describes
rows that are gone, and is replaced by an empty one rather than filtering the new table's
events by the old one's sequences.

It is written after the table, by one MERGE computed from the batch and the ledger alone
(never the table), so that a replay after a crash between the two computes the same one.
"""

from __future__ import annotations

from datetime import datetime

from delta.tables import DeltaTable
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from onceflow.contracts import BatchContext
from onceflow.sinks.delta import CdcSpec
from onceflow.sinks.delta.cdc_events import DELETE, SEQ, KeyRange, key_condition, quoted, within
from onceflow.sinks.delta.sink import dml_transaction

__all__ = ["Ledger", "SettingChanged"]

_BOUND_TO = "onceflow.cdc.target"


class SettingChanged(Exception):
    """The sink's ``cdc.<setting>`` is not the one its table and ledger were made with."""

    def __init__(self, setting: str, was: str, now: str) -> None:
        super().__init__(f"cdc.{setting}: was {was}, now {now}")
        self.setting = setting
        self.was = was
        self.now = now


class Ledger:
    """The ledger of one CDC sink at ``path``."""

    SEQUENCE = "__sequence"
    DELETED = "__deleted"
    DELETED_SEQUENCE = "__deleted_sequence"
    DELETED_AT = "__deleted_at"
    DELETES = "__deletes"

    def __init__(self, spark: SparkSession, path: str, cdc: CdcSpec) -> None:
        self._spark = spark
        self._path = path
        self._cdc = cdc

    def bind(self, events: DataFrame, target: str) -> None:
        """Make the ledger, empty, when there is none or it belongs to another table than
        ``target``'s (one commit, outside the guard: a replay finds it made).

        Raises:
            SettingChanged: the ledger is ``target``'s but was made under other keys, SCD
                type or sequence type than the sink's now (nothing is written then).
        """
        spark = self._spark
        table_id = DeltaTable.forPath(spark, target).detail().select("id").first()
        assert table_id is not None  # noqa: S101 - a table's detail has one row
        if DeltaTable.isDeltaTable(spark, self._path):
            ledger = DeltaTable.forPath(spark, self._path)
            detail = ledger.detail().first()
            assert detail is not None  # noqa: S101 - as above
            if (detail["properties"] or {}).get(_BOUND_TO) == table_id[0]:
                self._refuse_changed(ledger.toDF().schema, self._schema(events))
                return
        # two commits: a crash between them leaves an unbound ledger, made anew next time
        empty = spark.createDataFrame([], self._schema(events))
        empty.write.format("delta").mode("overwrite").option("overwriteSchema", "true").save(
            self._path
        )
        spark.sql(
            f"ALTER TABLE delta.`{self._path}` SET TBLPROPERTIES ('{_BOUND_TO}' = '{table_id[0]}')"
        )

    def _refuse_changed(self, have: T.StructType, want: T.StructType) -> None:
        """Its own columns say what a ledger was made for: its keys, ``__deletes`` for SCD 2,
        the type of ``__sequence``. Under other settings its rows would filter events by
        another order (or, SCD 2 to 1, leave the table a mix of both): refuse, naming the
        first setting that differs."""
        keys_had = [f.name for f in have.fields if not f.name.startswith("__")]
        if keys_had != list(self._cdc.keys):
            raise SettingChanged("keys", str(keys_had), str(list(self._cdc.keys)))
        scd_had = 2 if self.DELETES in have.fieldNames() else 1
        if scd_had != self._cdc.stored_as_scd_type:
            raise SettingChanged(
                "stored_as_scd_type", str(scd_had), str(self._cdc.stored_as_scd_type)
            )
        had, now = have[self.SEQUENCE].dataType, want[self.SEQUENCE].dataType
        if had != now:
            raise SettingChanged("sequence_by", had.simpleString(), now.simpleString())

    def _schema(self, events: DataFrame) -> T.StructType:
        types = {field.name: field.dataType for field in events.schema.fields}
        sequence = types[SEQ]
        fields = [T.StructField(key, types[key]) for key in self._cdc.keys]
        fields += [
            T.StructField(self.SEQUENCE, sequence),
            T.StructField(self.DELETED, T.BooleanType()),
            T.StructField(self.DELETED_SEQUENCE, sequence),
            T.StructField(self.DELETED_AT, T.TimestampType()),
        ]
        if self._cdc.stored_as_scd_type == 2:
            fields.append(T.StructField(self.DELETES, T.ArrayType(sequence)))
        return T.StructType(fields)

    def rows(self, ranges: KeyRange) -> DataFrame:
        """The ledger's rows within the batch's key range: a join with the batch's events
        picks those of its keys."""
        return within(self._spark.read.format("delta").load(self._path), ranges)

    def merge(
        self, applied: DataFrame, ranges: KeyRange, now: datetime, context: BatchContext
    ) -> None:
        """Record the ``applied`` events (SCD 1: those newer than the ledger; SCD 2: all
        of the batch): one MERGE, guarded by the batch's transaction id.

        A key's last sequence and deleted flag change only for an event newer than the
        ledger's; ``now`` is when its delete counts from. ``now`` is the one thing a replay
        computes differently, and only when this MERGE had not committed: the tombstone
        then lives from the replay on.
        """
        cdc = self._cdc
        aggregates = [
            F.max(SEQ).alias(SEQ),
            F.max_by(F.col(DELETE), F.col(SEQ)).alias(DELETE),
            F.max(F.when(F.col(DELETE), F.col(SEQ))).alias(self.DELETED_SEQUENCE),
        ]
        if cdc.stored_as_scd_type == 2:
            deletes = F.array_sort(F.collect_set(F.when(F.col(DELETE), F.col(SEQ))))
            aggregates.append(deletes.alias(self.DELETES))
        changes = applied.groupBy(*[quoted(k) for k in cdc.keys]).agg(*aggregates)
        newer = f"s.{SEQ} > t.{self.SEQUENCE}"
        deleted_at = f"CASE WHEN s.{DELETE} THEN {_timestamp(now)} END"
        updates: dict[str, str | Column] = {
            self.SEQUENCE: f"greatest(t.{self.SEQUENCE}, s.{SEQ})",
            self.DELETED: f"CASE WHEN {newer} THEN s.{DELETE} ELSE t.{self.DELETED} END",
            self.DELETED_SEQUENCE: f"greatest(t.{self.DELETED_SEQUENCE}, "
            f"s.{self.DELETED_SEQUENCE})",
            self.DELETED_AT: f"CASE WHEN {newer} THEN {deleted_at} ELSE t.{self.DELETED_AT} END",
        }
        inserts: dict[str, str | Column] = {f"`{k}`": f"s.`{k}`" for k in cdc.keys}
        inserts |= {
            self.SEQUENCE: f"s.{SEQ}",
            self.DELETED: f"s.{DELETE}",
            self.DELETED_SEQUENCE: f"s.{self.DELETED_SEQUENCE}",
            self.DELETED_AT: deleted_at,
        }
        if cdc.stored_as_scd_type == 2:
            updates[self.DELETES] = f"array_sort(array_union(t.{self.DELETES}, s.{self.DELETES}))"
            inserts[self.DELETES] = f"s.{self.DELETES}"
        builder = (
            DeltaTable.forPath(self._spark, self._path)
            .alias("t")
            .merge(changes.alias("s"), key_condition(cdc, ranges))
            .whenMatchedUpdate(set=updates)
            .whenNotMatchedInsert(values=inserts)
        )
        with dml_transaction(self._spark, context):
            builder.execute()

    def purge(self, now: datetime, context: BatchContext) -> None:
        """Delete the tombstones older than ``tombstone_retention``: keys whose last event
        is a delete applied that long before ``now``. Not guarded: the batch's transaction
        id is the ledger MERGE's already (Delta would skip this as its replay), and a
        delete of what is expired may run twice. The trade-off: an event older than a
        purged delete finds no trace of it, and can bring the key back."""
        expired = self.deleted_since(now - self._cdc.retention)
        table = DeltaTable.forPath(self._spark, self._path)
        with dml_transaction(self._spark, _unguarded(context)):
            table.delete(expired)

    @classmethod
    def deleted_since(cls, moment: datetime) -> Column:
        """True for a tombstone whose delete was applied at or before ``moment``."""
        return F.col(cls.DELETED) & (F.col(cls.DELETED_AT) <= F.lit(moment))


def _unguarded(context: BatchContext) -> BatchContext:
    """``context`` without the transaction id: the commit still carries the marker."""
    return BatchContext(context.app_id, context.batch_id, guarded=False)


def _timestamp(moment: datetime) -> str:
    """A SQL TIMESTAMP literal of the aware ``moment``: its offset is in the text, so the
    session's time zone is not read."""
    return f"TIMESTAMP '{moment.isoformat(sep=' ')}'"
