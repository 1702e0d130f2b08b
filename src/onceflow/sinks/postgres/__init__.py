"""The PostgreSQL sink kind: a table written from ``foreachBatch``, staged in parallel by
the executors and moved with its ledger row in one transaction by the driver (``sink``).
This module is its declaration, and imports neither Spark nor psycopg.

    connections:
      warehouse:
        host: ${env:ONCEFLOW_PG_HOST}
        port: ${env:ONCEFLOW_PG_PORT}
        database: ${env:ONCEFLOW_PG_DATABASE}
        user: ${env:ONCEFLOW_PG_USER}
        password: ${env:ONCEFLOW_PG_PASSWORD}
    sinks:
      - name: balances
        kind: postgres
        connection: warehouse
        table: public.balances
        mode: upsert
        keys: [account]
        update: {balance: "t.balance + excluded.balance"}
"""

from __future__ import annotations

from difflib import get_close_matches
from typing import TYPE_CHECKING, Literal

from pydantic import Field

from onceflow.config.common import SQL_NAME
from onceflow.config.kinds import Problem, SinkKind
from onceflow.config.modes import Strategy, WriteMode
from onceflow.config.specs import SinkSpec

if TYPE_CHECKING:
    from onceflow.config.job import JobSpec

__all__ = ["SINK", "PostgresSinkSpec"]

_TABLE = rf"^({SQL_NAME}\.)?{SQL_NAME}$"


class PostgresSinkSpec(SinkSpec):
    """A PostgreSQL table written from ``foreachBatch``: ``append`` (INSERT) or ``upsert``
    (``INSERT ... ON CONFLICT (keys) DO UPDATE``), staged in parallel by the executors and
    moved into ``table`` together with a ledger row ``(app id, table, batch id)`` in one
    transaction on the driver.

    ``keys`` are the conflict target of an upsert, and the primary key of a table onceflow
    creates; an upsert keeps one row per key of each batch, the greatest ``order_by``.
    ``update`` gives the ``SET`` expressions of an upsert in PostgreSQL SQL (``t``
    is the target row, ``excluded`` the incoming one); by default every non-key column takes
    the incoming value. ``schema`` (Spark DDL) creates the table when it does not exist;
    without it the batch's own schema does. ``ledger_table`` is where the ledger lives.
    """

    kind: Literal["postgres"]
    connection: str = Field(min_length=1)
    """A name under the job's ``connections``."""
    table: str = Field(pattern=_TABLE)
    """The target table, ``[schema.]table``."""
    keys: tuple[str, ...] = ()
    """The upsert's ``ON CONFLICT`` columns, and the primary key of a table onceflow creates."""
    order_by: str | None = None
    """The column whose greatest value wins among a batch's rows of one key."""
    update: dict[str, str] = Field(default_factory=dict)
    """The upsert's ``SET`` expressions per column (``t`` the stored row, ``excluded`` the
    incoming); default: every non-key column takes the incoming value."""
    schema_ddl: str | None = Field(default=None, alias="schema")
    """Spark DDL to create the table with when it does not exist; default: the batch's own
    schema."""
    ledger_table: str = Field(default="onceflow_batches", pattern=_TABLE)
    """Where the batch ledger lives, ``[schema.]table``."""

    @property
    def location(self) -> str:
        """Where the sink writes, for messages: ``postgres:<connection>/<table>``."""
        return f"postgres:{self.connection}/{self.table}"


def _append(spec: PostgresSinkSpec, strategy: Strategy | None) -> WriteMode:
    """Append unless told: its exactly-once is transactional whatever the job's strategy."""
    return WriteMode.APPEND


def _rules(spec: PostgresSinkSpec, job: JobSpec) -> list[Problem]:
    problems: list[Problem] = []
    mode = job.mode_of(spec)
    if spec.connection not in job.connections:
        known = sorted(job.connections)
        near = get_close_matches(spec.connection, known, n=1)
        hint = f"did you mean '{near[0]}'?" if near else f"known: {', '.join(known) or 'none'}"
        problems.append(
            (("connection",), f"no connection '{spec.connection}' under connections: {hint}")
        )
    if mode is WriteMode.UPSERT and not spec.keys:
        problems.append(((), "an upsert needs keys: add keys: [...] (its ON CONFLICT target)"))
    if spec.update and mode is not WriteMode.UPSERT:
        problems.append((("update",), f"update: is only read with mode: upsert, not {mode}"))
    clashing = sorted(set(spec.update) & set(spec.keys))
    if clashing:
        problems.append((("update",), f"keys cannot be updated: {', '.join(clashing)}"))
    return problems


SINK = SinkKind(
    name="postgres",
    title="PostgreSQL",
    spec=PostgresSinkSpec,
    build="onceflow.sinks.postgres.sink:build",
    modes=frozenset({WriteMode.APPEND, WriteMode.UPSERT}),
    # the batch's rows and its ledger row commit in one database transaction
    guarded_modes=frozenset({WriteMode.APPEND, WriteMode.UPSERT}),
    replayable_modes=frozenset({WriteMode.APPEND, WriteMode.UPSERT}),
    default_mode=_append,
    match_keys=lambda spec: tuple(spec.keys),
    mode_hint="a table keyed by columns takes mode: upsert (INSERT ... ON CONFLICT)",
    file_backed=False,
    rules=_rules,
    isolate="onceflow.sinks.postgres.sink:isolate",
)
