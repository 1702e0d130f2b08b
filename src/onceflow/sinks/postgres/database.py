"""The driver's side of a PostgreSQL sink: connecting, the target and ledger tables, the
staging tables. Statements are composed with ``psycopg.sql`` so every name is quoted.

The ledger holds one row per batch written to a table, ``(app_id, target, batch_id)``,
inserted in the same transaction as the batch's rows: a replayed batch finds its row.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import psycopg
from psycopg import sql

from onceflow.config import PostgresConnection
from onceflow.errors import SinkError, first_line
from onceflow.sinks.postgres.columns import PgColumn

__all__ = [
    "PART_COLUMN",
    "STAGE_PREFIX",
    "connect",
    "connection_params",
    "qualified",
    "stage_prefix",
]

#: Staging tables are ``_onceflow_stage_<digest of app id and target>_<batch id>``.
STAGE_PREFIX = "_onceflow_stage_"
#: The staging column that holds the Spark partition a row came from.
PART_COLUMN = "_onceflow_part"

_AUTH_SQLSTATES = {"28P01", "28000"}
_AUTH_WORDS = ("password authentication failed", "no password supplied", "authentication")


def connection_params(connection: PostgresConnection) -> dict[str, Any]:
    """libpq keywords for ``psycopg.connect``, the password included (keep it off logs)."""
    params: dict[str, Any] = {
        "host": connection.host,
        "port": connection.port,
        "dbname": connection.database,
        "user": connection.user,
        "connect_timeout": connection.connect_timeout,
        "application_name": "onceflow",
    } | dict(connection.options)
    if connection.password is not None:
        params["password"] = connection.password.get_secret_value()
    return params


def connect(
    connection: PostgresConnection, connection_name: str, job: str, sink: str
) -> psycopg.Connection[Any]:
    """An open connection; a refused login or an unreachable server is a SinkError that
    says which, naming the address and the user (never the password)."""
    try:
        return psycopg.connect(**connection_params(connection))
    except psycopg.OperationalError as exc:
        text = first_line(exc)
        if exc.sqlstate in _AUTH_SQLSTATES or any(w in text for w in _AUTH_WORDS):
            raise SinkError(
                "SINK_AUTH_FAILED",
                job=job,
                sink=sink,
                address=connection.address,
                user=connection.user,
                connection=connection_name,
                cause=_after_fatal(text),
            ) from exc
        raise SinkError(
            "SINK_UNREACHABLE", job=job, sink=sink, address=connection.address, cause=text
        ) from exc


def _after_fatal(text: str) -> str:
    """libpq's ``connection to server at ... failed: FATAL:  x`` -> ``x``."""
    return text.split("FATAL:", 1)[-1].strip()


def qualified(name: str) -> sql.Identifier:
    """``schema.table`` or ``table`` as a quoted identifier."""
    return sql.Identifier(*name.split("."))


def stage_prefix(app_id: str, table: str) -> str:
    """The name prefix of every staging table of one app writing one target table."""
    digest = hashlib.sha256(f"{app_id}/{table}".encode()).hexdigest()[:16]
    return f"{STAGE_PREFIX}{digest}_"


def schema_of(table: str) -> str | None:
    """The schema part of ``schema.table``; None when unqualified (the search path's)."""
    return table.split(".")[0] if "." in table else None


def beside(table: str, name: str) -> str:
    """``name`` in the same schema as ``table`` (``schema.name`` or ``name``)."""
    schema = schema_of(table)
    return f"{schema}.{name}" if schema else name


def existing_columns(conn: psycopg.Connection[Any], table: str) -> list[str] | None:
    """The columns of ``table`` in order, or None when it does not exist."""
    row = conn.execute("SELECT to_regclass(%s)::oid", (_regclass_text(table),)).fetchone()
    if row is None or row[0] is None:
        return None
    names = conn.execute(
        "SELECT attname FROM pg_attribute WHERE attrelid = %s AND attnum > 0 "
        "AND NOT attisdropped ORDER BY attnum",
        (row[0],),
    ).fetchall()
    return [name for (name,) in names]


def _regclass_text(table: str) -> str:
    return ".".join(f'"{part}"' for part in table.split("."))


def lock_ddl(conn: psycopg.Connection[Any]) -> None:
    """Hold, until the transaction ends, the lock under which onceflow creates tables."""
    conn.execute("SELECT pg_advisory_xact_lock(hashtext('onceflow: create tables'))")


def create_table(
    conn: psycopg.Connection[Any],
    table: str,
    columns: Sequence[PgColumn],
    primary_key: Sequence[str],
    unlogged: bool = False,
) -> None:
    """``CREATE TABLE IF NOT EXISTS`` with the mapped types (and a primary key if given)."""
    definitions = [
        sql.SQL("{} {}").format(sql.Identifier(c.name), sql.SQL(c.pg_type)) for c in columns
    ]
    if primary_key:
        definitions.append(
            sql.SQL("PRIMARY KEY ({})").format(sql.SQL(", ").join(map(sql.Identifier, primary_key)))
        )
    conn.execute(
        sql.SQL("CREATE {}TABLE IF NOT EXISTS {} ({})").format(
            sql.SQL("UNLOGGED " if unlogged else ""),
            qualified(table),
            sql.SQL(", ").join(definitions),
        )
    )


def create_ledger(conn: psycopg.Connection[Any], ledger: str) -> None:
    """The ledger table, if missing: one row per batch written to a target."""
    conn.execute(
        sql.SQL(
            "CREATE TABLE IF NOT EXISTS {} (app_id text NOT NULL, target text NOT NULL, "
            "batch_id bigint NOT NULL, row_count bigint NOT NULL, "
            "written_at timestamptz NOT NULL DEFAULT now(), "
            "PRIMARY KEY (app_id, target, batch_id))"
        ).format(qualified(ledger))
    )


def ledger_has(
    conn: psycopg.Connection[Any], ledger: str, app_id: str, target: str, batch_id: int
) -> bool:
    """True when the ledger records ``batch_id`` of ``app_id`` for ``target``."""
    row = conn.execute(
        sql.SQL("SELECT 1 FROM {} WHERE app_id = %s AND target = %s AND batch_id = %s").format(
            qualified(ledger)
        ),
        (app_id, target, batch_id),
    ).fetchone()
    return row is not None


def ledger_record(
    conn: psycopg.Connection[Any],
    ledger: str,
    app_id: str,
    target: str,
    batch_id: int,
    row_count: int,
) -> bool:
    """Insert the batch's ledger row; False when it was there already (a replay)."""
    row = conn.execute(
        sql.SQL(
            "INSERT INTO {} (app_id, target, batch_id, row_count) VALUES (%s, %s, %s, %s) "
            "ON CONFLICT DO NOTHING RETURNING 1"
        ).format(qualified(ledger)),
        (app_id, target, batch_id, row_count),
    ).fetchone()
    return row is not None


def ledger_last_batches(conn: psycopg.Connection[Any], ledger: str, target: str) -> dict[str, int]:
    """App id -> the highest batch id the ledger records it wrote into ``target`` (empty if
    there is no ledger)."""
    if existing_columns(conn, ledger) is None:
        return {}
    rows = conn.execute(
        sql.SQL("SELECT app_id, max(batch_id) FROM {} WHERE target = %s GROUP BY app_id").format(
            qualified(ledger)
        ),
        (target,),
    ).fetchall()
    return {app_id: int(batch_id) for (app_id, batch_id) in rows}


def drop_stages(conn: psycopg.Connection[Any], table: str, prefix: str) -> list[str]:
    """Drop every staging table named ``prefix*`` beside ``table``; their names."""
    schema = schema_of(table)
    rows = conn.execute(
        "SELECT tablename FROM pg_tables WHERE schemaname = coalesce(%s, current_schema()) "
        "AND starts_with(tablename, %s)",
        (schema, prefix),
    ).fetchall()
    names = [name for (name,) in rows]
    for name in names:
        conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(qualified(beside(table, name))))
    return names
