"""A PostgreSQL table written from ``foreachBatch``: staged in parallel, moved in one
transaction with the batch's ledger row.

What a replay of batch N does:

- guarded (exactly-once): the batch's rows and its ledger row ``(app id, table, N)``
  commit in one transaction; a replay finds the ledger row and writes nothing. A crash
  before that commit leaves at most a staging table, which the replay drops and refills.
- unguarded: ``append`` inserts the batch again (at-least-once may duplicate);
  ``upsert`` applies its ``SET`` again (idempotent for the default ``excluded`` values,
  not for ``t.x + excluded.x``). The ledger row is still recorded, once, as provenance.

How a batch travels: the JVM encodes each row as a CSV line; every Spark task COPYs its
partition into an UNLOGGED staging table ``_onceflow_stage_<digest>_<N>`` beside the target
(see ``staging``); then the driver, in one short transaction, inserts the ledger row, moves
the staged rows into the target (``INSERT ... SELECT``, ``ON CONFLICT`` for an upsert) and
drops the staging table. Nothing is collected through the driver. Staging tables a crash
left behind are dropped before the next batch of the same app and table is staged. How a
job names it: the declaration's example (``onceflow.sinks.postgres``).
"""

from __future__ import annotations

import logging
import re
import time
from typing import Any

import psycopg
from psycopg import sql
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from onceflow.config import JobSpec, PostgresConnection, WriteMode
from onceflow.contracts import BatchContext
from onceflow.errors import SinkError
from onceflow.sinks.base import BatchSink
from onceflow.sinks.postgres import PostgresSinkSpec
from onceflow.sinks.postgres import database as db
from onceflow.sinks.postgres.columns import PgColumn, UnsupportedType, csv_line, pg_columns
from onceflow.sinks.postgres.staging import STAGE_FAILURE_MARK, StageTask
from onceflow.sinks.shaping import latest_per_key

__all__ = ["PostgresSink", "build", "isolate"]

_log = logging.getLogger("onceflow.sinks")
_STAGE_FAILURE = re.compile(re.escape(STAGE_FAILURE_MARK) + r" ([^\n]*)")


def build(job: JobSpec, spec: PostgresSinkSpec, mode: WriteMode) -> PostgresSink:
    """The kind's factory (``onceflow.sinks.postgres.SINK.build``)."""
    return PostgresSink(job.name, spec, mode, job.connections[spec.connection])


class PostgresSink(BatchSink):
    """One PostgreSQL table; ``mode`` is ``append`` or ``upsert`` (see the module)."""

    _spec: PostgresSinkSpec

    def __init__(
        self, job: str, spec: PostgresSinkSpec, mode: WriteMode, connection: PostgresConnection
    ) -> None:
        super().__init__(job, spec, mode)
        self._connection = connection

    def check(self) -> None:
        """Log in once before the query starts: a wrong password or a server that is down
        stops the job here, with SINK_AUTH_FAILED or SINK_UNREACHABLE."""
        with self._connect() as conn:
            conn.execute("SELECT 1")

    def read(self, spark: SparkSession) -> DataFrame:
        """The table as a DataFrame, through Spark's JDBC reader (pgjdbc on ``spark.jars``)."""
        c = self._connection
        reader = (
            spark.read.format("jdbc")
            .option("url", f"jdbc:postgresql://{c.host}:{c.port}/{c.database}")
            .option("dbtable", self._spec.table)
            .option("user", c.user)
            .option("driver", "org.postgresql.Driver")
        )
        if c.password is not None:
            reader = reader.option("password", c.password.get_secret_value())
        return reader.load()

    def writers(self) -> set[str]:
        """The app ids the ledger records as having written this table."""
        return set(self._ledger_last_batches())

    def batch_marks(self, spark: SparkSession) -> dict[str, int]:
        """App id -> the last batch id the ledger records it moved into this table (a row
        is recorded under every guarantee; only exactly-once consults it before writing)."""
        return self._ledger_last_batches()

    def _ledger_last_batches(self) -> dict[str, int]:
        with self._connect() as conn:
            return db.ledger_last_batches(conn, self._spec.ledger_table, self._spec.table)

    def drop(self) -> None:
        """Drop the table, its ledger rows and any staging tables: a clean slate (the prove
        harness uses it before each scenario; a job never calls it)."""
        spec = self._spec
        with self._connect() as conn:
            for app_id in db.ledger_last_batches(conn, spec.ledger_table, spec.table):
                db.drop_stages(conn, spec.table, db.stage_prefix(app_id, spec.table))
                conn.execute(
                    sql.SQL("DELETE FROM {} WHERE target = %s").format(
                        db.qualified(spec.ledger_table)
                    ),
                    (spec.table,),
                )
            conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(db.qualified(spec.table)))

    def _connect(self) -> psycopg.Connection[Any]:
        return db.connect(self._connection, self._spec.connection, self._job, self.name)

    def _write(self, frame: DataFrame, context: BatchContext) -> None:
        spec = self._spec
        if self._mode is WriteMode.UPSERT:
            frame = latest_per_key(frame, spec.keys, spec.order_by)
        columns = self._columns(frame)
        prefix = db.stage_prefix(context.app_id, spec.table)
        stage = f"{prefix}{context.batch_id}"
        with self._connect() as conn:
            self._ensure_tables(conn, frame, columns)
            if context.guarded and db.ledger_has(
                conn, spec.ledger_table, context.app_id, spec.table, context.batch_id
            ):
                _log.info(
                    "job '%s' sink '%s': batch %d is in the ledger already: skipped",
                    self._job,
                    self.name,
                    context.batch_id,
                )
                return
            for leftover in db.drop_stages(conn, spec.table, prefix):
                _log.warning(
                    "job '%s' sink '%s': dropped staging table %s left by an earlier attempt",
                    self._job,
                    self.name,
                    leftover,
                )
            stage_columns = [*columns, PgColumn(db.PART_COLUMN, "integer", F.lit(None))]
            db.create_table(conn, db.beside(spec.table, stage), stage_columns, (), unlogged=True)
            conn.commit()
        started = time.perf_counter()
        staged = self._stage(frame, columns, stage, context)
        moving = time.perf_counter()
        with self._connect() as conn, conn.transaction():
            self._move(conn, columns, stage, staged, context)
        _log.info(
            "job '%s' sink '%s': batch %d: %d row(s) staged in %.0f ms, moved in %.0f ms",
            self._job,
            self.name,
            context.batch_id,
            staged,
            (moving - started) * 1000,
            (time.perf_counter() - moving) * 1000,
        )

    def _columns(self, frame: DataFrame) -> list[PgColumn]:
        try:
            return pg_columns(frame.schema)
        except UnsupportedType as exc:
            raise SinkError(
                "SINK_TYPE_UNSUPPORTED",
                job=self._job,
                sink=self.name,
                column=exc.column,
                spark_type=exc.spark_type,
            ) from exc

    def _ensure_tables(
        self, conn: psycopg.Connection[Any], frame: DataFrame, columns: list[PgColumn]
    ) -> None:
        spec = self._spec
        present = db.existing_columns(conn, spec.table)
        if present is None or db.existing_columns(conn, spec.ledger_table) is None:
            # CREATE TABLE IF NOT EXISTS is not safe against a concurrent twin (both pass the
            # check, one fails on pg_type's unique index): jobs sharing a database take turns
            db.lock_ddl(conn)
            db.create_ledger(conn, spec.ledger_table)
            present = db.existing_columns(conn, spec.table)
        if present is None:
            declared = columns
            if spec.schema_ddl:
                schema = frame.sparkSession.createDataFrame([], spec.schema_ddl).schema
                declared = self._columns(frame.sparkSession.createDataFrame([], schema))
            db.create_table(conn, spec.table, declared, spec.keys)
            present = [c.name for c in declared]
        missing = [c.name for c in columns if c.name not in present]
        if missing:
            raise SinkError(
                "SINK_TABLE_MISMATCH",
                job=self._job,
                sink=self.name,
                path=spec.location,
                problem=f"the batch has columns the table lacks: {', '.join(missing)} "
                f"(the table has {', '.join(present)})",
            )
        conn.commit()

    def _stage(
        self, frame: DataFrame, columns: list[PgColumn], stage: str, context: BatchContext
    ) -> int:
        task = StageTask(
            params=db.connection_params(self._connection),
            schema=db.schema_of(self._spec.table),
            stage=stage,
            columns=tuple(c.name for c in columns),
            part_column=db.PART_COLUMN,
        )
        lines = frame.select(csv_line(columns).alias("line"))
        try:
            return int(lines.rdd.mapPartitionsWithIndex(task).sum())
        except Exception as exc:
            found = _STAGE_FAILURE.search(str(exc))
            if found is None:
                raise
            raise self._write_failed(context, f"staging into {stage}: {found.group(1)}") from None

    def _move(
        self,
        conn: psycopg.Connection[Any],
        columns: list[PgColumn],
        stage: str,
        staged: int,
        context: BatchContext,
    ) -> None:
        spec = self._spec
        stage_table = db.beside(spec.table, stage)
        first = db.ledger_record(
            conn, spec.ledger_table, context.app_id, spec.table, context.batch_id, staged
        )
        if context.guarded and not first:
            conn.execute(sql.SQL("DROP TABLE {}").format(db.qualified(stage_table)))
            return  # a twin committed the batch meanwhile: its rows are the batch's
        (found,) = conn.execute(
            sql.SQL("SELECT count(*) FROM {}").format(db.qualified(stage_table))
        ).fetchone() or (0,)
        if found != staged:
            raise RuntimeError(
                f"staging table {stage_table} holds {found} rows, the tasks staged {staged}"
            )
        names = sql.SQL(", ").join(sql.Identifier(c.name) for c in columns)
        move = sql.SQL("INSERT INTO {} AS t ({}) SELECT {} FROM {}").format(
            db.qualified(spec.table), names, names, db.qualified(stage_table)
        )
        if self._mode is WriteMode.UPSERT:
            move += self._on_conflict(columns)
        conn.execute(move)
        conn.execute(sql.SQL("DROP TABLE {}").format(db.qualified(stage_table)))

    def _on_conflict(self, columns: list[PgColumn]) -> sql.Composed:
        spec = self._spec
        updates = dict(spec.update) or {
            c.name: f'excluded."{c.name}"' for c in columns if c.name not in spec.keys
        }
        keys = sql.SQL(", ").join(map(sql.Identifier, spec.keys))
        if not updates:
            return sql.SQL(" ON CONFLICT ({}) DO NOTHING").format(keys)
        sets = sql.SQL(", ").join(
            sql.SQL("{} = {}").format(sql.Identifier(name), sql.SQL(expression))
            for name, expression in updates.items()
        )
        return sql.SQL(" ON CONFLICT ({}) DO UPDATE SET {}").format(keys, sets)


def isolate(job: JobSpec, spec: PostgresSinkSpec, tag: str) -> list[str]:
    """For a prove scenario: the sink's table as ``<table>_p<tag>``, dropped first (with its
    ledger rows and staging tables), so scenarios side by side against one server, or a
    rerun, each start clean. Returns the override that points the job there."""
    index = next(i for i, sink in enumerate(job.sinks) if sink.name == spec.name)
    table = f"{spec.table[:50]}_p{tag}"
    mine = spec.model_copy(update={"table": table})
    build(job, mine, job.mode_of(spec)).drop()
    return [f"sinks[{index}].table={table}"]
