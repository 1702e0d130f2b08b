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
    condition: str | None = None
    set: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _set_only_for_update(self) -> MatchedClause:
        if (self.action == "update") != bool(self.set):
            raise ValueError("'set' is required with action: update and allowed only there")
        return self


class NotMatchedClause(Model):
    """``WHEN NOT MATCHED [AND condition] THEN INSERT (...) VALUES (...) | INSERT *``."""

    action: Literal["insert_all", "insert"]
    condition: str | None = None
    values: dict[str, str] = Field(default_factory=dict)

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
    order_by: str | None = None
    on_null_key: Literal["fail", "quarantine"] = "fail"
    on_duplicate_key: Literal["latest", "quarantine", "fail"] = "latest"
    when_matched: tuple[MatchedClause, ...] = (MatchedClause(action="update_all"),)
    when_not_matched: tuple[NotMatchedClause, ...] = (NotMatchedClause(action="insert_all"),)
    schema_evolution: bool = False
    # add the batch's key range to the condition, so Delta skips target files outside it
    prune: bool = True


class DeltaSinkSpec(FileSinkSpec):
    """A Delta table written by ``foreachBatch``: append, MERGE or replace-batch.

    ``query`` (optional) shapes the batch first, in SQL over ``{batch}``, e.g. an aggregate
    per account. ``schema`` (DDL) creates the table when it does not exist yet.
    """

    kind: Literal["delta"]
    merge: MergeSpec | None = None
    schema_ddl: str | None = Field(default=None, alias="schema")


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
)
