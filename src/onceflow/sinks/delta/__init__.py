"""The Delta sink kind: a Delta table written from ``foreachBatch`` by append, MERGE or
replace-batch, each guarded by Delta's own transaction ids under exactly-once
(``sink.py``). This module is its declaration, and imports no Spark.

    sinks:
      - name: balances
        kind: delta
        path: tables/balances
        mode: merge
        schema: "account STRING, balance DECIMAL(38,2)"
        query: "SELECT account, SUM(amount) AS amount FROM {batch} GROUP BY account"
        merge:
          keys: [account]
          when_matched: [{action: update, set: {balance: "t.balance + s.amount"}}]
          when_not_matched: [{action: insert, values: {account: s.account, balance: s.amount}}]
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import Field, model_validator

from onceflow.config.common import Model
from onceflow.config.kinds import Problem, SinkKind
from onceflow.config.modes import MODE_OF_STRATEGY, Strategy, WriteMode
from onceflow.config.quality import RuleSpec
from onceflow.config.specs import FileSinkSpec

if TYPE_CHECKING:
    from onceflow.config.job import JobSpec

__all__ = ["SINK", "DeltaSinkSpec", "MatchedClause", "MergeSpec", "NotMatchedClause"]


class MatchedClause(Model):
    """``WHEN MATCHED [AND condition] THEN UPDATE SET ... | UPDATE SET * | DELETE``."""

    action: Literal["update_all", "update", "delete"]
    """``update_all`` (every column from the batch), ``update`` (with ``set``) or ``delete``."""
    condition: str | None = None
    """A further SQL condition for this clause; the target is ``t``, the batch ``s``."""
    set: dict[str, str] = Field(default_factory=dict)
    """With ``update``: each target column and the SQL expression it takes."""

    @model_validator(mode="after")
    def _set_only_for_update(self) -> MatchedClause:
        if (self.action == "update") != bool(self.set):
            raise ValueError("'set' is required with action: update and allowed only there")
        return self


class NotMatchedClause(Model):
    """``WHEN NOT MATCHED [AND condition] THEN INSERT (...) VALUES (...) | INSERT *``."""

    action: Literal["insert_all", "insert"]
    """``insert_all`` (every column of the batch) or ``insert`` (with ``values``)."""
    condition: str | None = None
    """A further SQL condition for this clause; the batch is ``s``."""
    values: dict[str, str] = Field(default_factory=dict)
    """With ``insert``: each target column and the SQL expression it takes."""

    @model_validator(mode="after")
    def _values_only_for_insert(self) -> NotMatchedClause:
        if (self.action == "insert") != bool(self.values):
            raise ValueError("'values' is required with action: insert and allowed only there")
        return self


class MergeSpec(Model):
    """How a batch is merged into the target: on ``keys``, latest row per key by ``order_by``.

    In the clauses the target is ``t`` and the (deduplicated) batch is ``s``. A row with a
    NULL key would match nothing and be inserted on every run; several rows of one key would
    make Delta fail with "multiple source rows matched". So, by rule: ``on_null_key`` stops
    the batch naming a sample row (``fail``) or routes such rows to the quarantine
    (``quarantine``); ``on_duplicate_key`` keeps the ``latest`` row per key, or routes every
    row of a repeated key to the quarantine, or stops the batch. Quarantining needs the job's
    ``quality`` block and a sink without ``query`` (the keys are columns of the parsed record).
    """

    keys: tuple[str, ...] = Field(min_length=1)
    """The columns on which a batch row matches a table row."""
    order_by: str | None = None
    """The column whose greatest value wins among a batch's rows of one key (ties broken by the
    whole row)."""
    on_null_key: Literal["fail", "quarantine"] = "fail"
    """A row with a NULL key: stop the batch (``fail``) or send it to the quarantine."""
    on_duplicate_key: Literal["latest", "quarantine", "fail"] = "latest"
    """Several rows of one key in a batch: keep the ``latest`` by ``order_by``, quarantine them
    all, or stop the batch (``fail``)."""
    when_matched: tuple[MatchedClause, ...] = (MatchedClause(action="update_all"),)
    """What a matched table row gets; the first clause that applies wins."""
    when_not_matched: tuple[NotMatchedClause, ...] = (NotMatchedClause(action="insert_all"),)
    """What a batch row that matches nothing does; the first clause that applies wins."""
    schema_evolution: bool = False
    """Let the MERGE add the batch's new columns to the table."""
    # add the batch's key range to the condition, so Delta skips target files outside it
    prune: bool = True
    """Add the batch's key range to the MERGE condition, so Delta skips the table's files
    outside it."""


class DeltaSinkSpec(FileSinkSpec):
    """A Delta table written by ``foreachBatch``: append, MERGE or replace-batch.

    ``query`` (optional) shapes the batch first, in SQL over ``{batch}``, e.g. an aggregate
    per account. ``schema`` (DDL) creates the table when it does not exist yet.
    """

    kind: Literal["delta"]
    merge: MergeSpec | None = None
    """How ``mode: merge`` matches and applies a batch."""
    schema_ddl: str | None = Field(default=None, alias="schema")
    """Spark DDL to create the table with on the first batch, when it does not exist."""


def _default_mode(spec: DeltaSinkSpec, strategy: Strategy | None) -> WriteMode:
    if strategy is not None:
        return MODE_OF_STRATEGY[strategy]
    return WriteMode.MERGE if spec.merge is not None else WriteMode.APPEND


def _rules(spec: DeltaSinkSpec, job: JobSpec) -> list[Problem]:
    mode = job.mode_of(spec)
    problems: list[Problem] = []
    if mode is WriteMode.MERGE and spec.merge is None:
        problems.append(
            ((), "a MERGE needs keys: add merge: {keys: [...]} to say which rows match")
        )
    if mode is not WriteMode.MERGE and spec.merge is not None:
        problems.append((("merge",), f"merge: is only read with mode: merge, not {mode}"))
    merge = spec.merge
    if merge is not None and "quarantine" in (merge.on_null_key, merge.on_duplicate_key):
        if spec.query:
            problems.append(
                (
                    ("merge",),
                    "rows can be quarantined by key only when the sink has no query: the "
                    "keys must be columns of the parsed record; use fail instead",
                )
            )
    return problems


def _quality_rules(spec: DeltaSinkSpec, job: JobSpec) -> tuple[RuleSpec, ...]:
    """The rules a MERGE's ``on_null_key`` / ``on_duplicate_key: quarantine`` imply."""
    merge = spec.merge
    if merge is None or job.mode_of(spec) is not WriteMode.MERGE:
        return ()
    keys = [f"`{key}`" for key in merge.keys]
    rules: list[RuleSpec] = []
    if merge.on_null_key == "quarantine":
        not_null = " AND ".join(f"{key} IS NOT NULL" for key in keys)
        rules.append(RuleSpec(name=f"{spec.name}_null_key", expect_or_quarantine=not_null))
    if merge.on_duplicate_key == "quarantine":
        unique = f"count(1) OVER (PARTITION BY {', '.join(keys)}) = 1"
        rules.append(RuleSpec(name=f"{spec.name}_duplicate_key", expect_or_quarantine=unique))
    return tuple(rules)


SINK = SinkKind(
    name="delta",
    title="Delta",
    spec=DeltaSinkSpec,
    build="onceflow.sinks.delta.sink:build",
    modes=frozenset({WriteMode.APPEND, WriteMode.MERGE, WriteMode.REPLACE_BATCH}),
    guarded_modes=frozenset({WriteMode.APPEND, WriteMode.MERGE, WriteMode.REPLACE_BATCH}),
    replayable_modes=frozenset({WriteMode.APPEND, WriteMode.MERGE}),
    default_mode=_default_mode,
    mode_hint="a database upserts; Delta's upsert is mode: merge",
    single_writer_on_s3=True,
    read_format="delta",
    rules=_rules,
    quality_rules=_quality_rules,
    deep_check="onceflow.sinks.delta.checks:merge_failures",
)
