"""The Delta sink kind: a Delta table written from ``foreachBatch`` by append, MERGE,
replace-batch or CDC apply, each guarded by Delta's own transaction ids under exactly-once
(``sink.py``, ``cdc.py``). This module is its declaration, and imports no Spark.

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
      - name: customers
        kind: delta
        path: tables/customers
        mode: cdc
        cdc: {keys: [customer_id], sequence_by: lsn, apply_as_deletes: "op = 'D'"}
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import Field, WithJsonSchema, field_validator, model_validator

from onceflow.config.common import Model
from onceflow.config.kinds import Problem, SinkKind
from onceflow.config.modes import MODE_OF_STRATEGY, Strategy, WriteMode
from onceflow.config.quality import RuleSpec
from onceflow.config.specs import FileSinkSpec

if TYPE_CHECKING:
    from onceflow.config.documents import KeyPath
    from onceflow.config.job import JobSpec

__all__ = [
    "SINK",
    "CdcSpec",
    "DeltaSinkSpec",
    "MatchedClause",
    "MergeSpec",
    "NotMatchedClause",
    "ledger_location",
]


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


#: ``sequence_by``'s shape for editors (``onceflow schema``): a column, or a list of them.
_ONE_OR_SEVERAL = WithJsonSchema(
    {
        "anyOf": [
            {"type": "string", "minLength": 1},
            {"type": "array", "items": {"type": "string"}, "minItems": 1},
        ]
    }
)
_INTERVAL = re.compile(r"^\s*(\d+)\s*(second|minute|hour|day|week)s?\s*$", re.IGNORECASE)


class CdcSpec(Model):
    """How ``mode: cdc`` applies a feed of changes: rows are events (an upsert, or a delete
    by ``apply_as_deletes``) of the row of ``keys``, ordered by ``sequence_by``.

    An event older than the one a key already holds never overwrites it, in a batch or
    across batches, and a delete followed by an older update does not bring the row back:
    a ledger table beside the target (``ledger``) keeps each key's last sequence and its
    deletes. With ``stored_as_scd_type: 1`` the table holds each key's latest row; with
    ``2`` every version of it, from ``start_column`` to ``end_column`` (NULL while
    current), and a late event is spliced into the history at its place. Every upsert opens
    a version, even one that changes no column: the history then holds every event, so a
    later, older event splices in exactly. A row with a NULL key or sequence has no place in
    the order: ``on_null_key`` stops the batch naming it (``fail``) or routes it to the
    quarantine (``quarantine``, which needs a sink without ``query``).
    """

    keys: tuple[str, ...] = Field(min_length=1)
    """The columns that identify a row of the table; each event changes one key's row."""
    sequence_by: Annotated[tuple[str, ...], _ONE_OR_SEVERAL] = Field(min_length=1)
    """The column (or columns, compared left to right) that orders a key's events; the
    greatest is the latest. Each event of a key needs its own sequence: of two with the
    same, the first applied wins."""
    apply_as_deletes: str | None = None
    """A SQL condition over the event: true makes it a delete of its key (``op = 'D'``).
    Without it every event is an upsert."""
    ignore_null_updates: bool = False
    """SCD 1 only: a NULL column of an update keeps the value the row had (the batch's
    earlier events of the key in sequence order, then the table's row); a delete in
    between starts the row afresh."""
    except_columns: tuple[str, ...] = ()
    """Columns of the event not stored in the table (``op``, ``lsn``); ``sequence_by`` and
    ``apply_as_deletes`` may still read them."""
    stored_as_scd_type: Literal[1, 2] = 1
    """``1``: the latest row per key, deleted keys absent. ``2``: every version of each
    key with its start and end sequence."""
    start_column: str = Field(default="__start_at", min_length=1)
    """SCD 2: the column holding the sequence at which a version starts: the value of
    ``sequence_by``, or a struct of its columns when it names several."""
    end_column: str = Field(default="__end_at", min_length=1)
    """SCD 2: the column holding the sequence at which a version ends (the next event of
    its key, an update or a delete); NULL while the version is current."""
    tombstone_retention: str = "7 days"
    """How long the ledger keeps a deleted key's tombstone (``7 days``, ``12 hours``,
    ``0 seconds``), counted from when the delete was applied. Tombstones are purged every
    10th batch; an event older than a purged tombstone's delete can bring the key back."""
    ledger: str | None = None
    """The ledger Delta table's folder: default ``<table folder>__cdc_ledger`` beside the
    table; a relative path is taken from the table's parent folder. Never inside the table."""
    on_null_key: Literal["quarantine", "fail"] = "quarantine"
    """A row with a NULL key or NULL sequence: send it to the quarantine, or stop the batch
    (``fail``) naming it."""

    @field_validator("sequence_by", mode="before")
    @classmethod
    def _one_or_several(cls, value: object) -> object:
        return [value] if isinstance(value, str) else value

    @field_validator("tombstone_retention")
    @classmethod
    def _an_interval(cls, value: str) -> str:
        if _INTERVAL.match(value) is None:
            raise ValueError(
                f"{value!r} is no interval: write a number and one of seconds, minutes, "
                "hours, days, weeks ('7 days')"
            )
        return value

    @property
    def retention(self) -> timedelta:
        """``tombstone_retention`` as a duration."""
        found = _INTERVAL.match(self.tombstone_retention)
        assert found is not None  # noqa: S101 - the validator ensures it
        return timedelta(**{found.group(2).lower() + "s": int(found.group(1))})


class DeltaSinkSpec(FileSinkSpec):
    """A Delta table written by ``foreachBatch``: append, MERGE, replace-batch or CDC apply.

    ``query`` (optional) shapes the batch first, in SQL over ``{batch}``, e.g. an aggregate
    per account. ``schema`` (DDL) creates the table when it does not exist yet.
    """

    kind: Literal["delta"]
    merge: MergeSpec | None = None
    """How ``mode: merge`` matches and applies a batch."""
    cdc: CdcSpec | None = None
    """How ``mode: cdc`` applies a batch of change events."""
    schema_ddl: str | None = Field(default=None, alias="schema")
    """Spark DDL to create the table with on the first batch, when it does not exist."""


def _default_mode(spec: DeltaSinkSpec, strategy: Strategy | None) -> WriteMode:
    if spec.cdc is not None and strategy in (None, Strategy.MERGE):
        return WriteMode.CDC  # a CDC apply is guarded as a MERGE is
    if strategy is not None:
        return MODE_OF_STRATEGY[strategy]
    return WriteMode.MERGE if spec.merge is not None else WriteMode.APPEND


def ledger_location(spec: DeltaSinkSpec) -> str:
    """The CDC ledger's folder: ``cdc.ledger``, else ``<table folder>__cdc_ledger``, both
    beside the table (a ledger inside it would be read as the table's own files, and
    deleted by a VACUUM or a replace)."""
    from onceflow.config import join_path

    parent, _, table = spec.path.rstrip("/").rpartition("/")
    ledger = spec.cdc.ledger if spec.cdc is not None else None
    return join_path(parent or "/", ledger or f"{table}__cdc_ledger")


def _rules(spec: DeltaSinkSpec, job: JobSpec) -> list[Problem]:
    mode = job.mode_of(spec)
    problems: list[Problem] = []
    if mode is WriteMode.MERGE and spec.merge is None:
        problems.append(
            ((), "a MERGE needs keys: add merge: {keys: [...]} to say which rows match")
        )
    if mode is not WriteMode.MERGE and spec.merge is not None:
        problems.append((("merge",), f"merge: is only read with mode: merge, not {mode}"))
    if mode is WriteMode.CDC and spec.cdc is None:
        problems.append(
            ((), "a CDC apply needs its keys and order: add cdc: {keys: [...], sequence_by: ...}")
        )
    if mode is not WriteMode.CDC and spec.cdc is not None:
        problems.append((("cdc",), f"cdc: is only read with mode: cdc, not {mode}"))
    merge = spec.merge
    if merge is not None and "quarantine" in (merge.on_null_key, merge.on_duplicate_key):
        problems += _quarantine_by_key(spec, ("merge",))
    if spec.cdc is not None:
        problems += _cdc_problems(spec, spec.cdc, job)
    return problems


def _quarantine_by_key(spec: DeltaSinkSpec, where: KeyPath) -> list[Problem]:
    if not spec.query:
        return []
    return [
        (
            where,
            "rows can be quarantined by key only when the sink has no query: the "
            "keys must be columns of the parsed record; use fail instead",
        )
    ]


def _cdc_problems(spec: DeltaSinkSpec, cdc: CdcSpec, job: JobSpec) -> list[Problem]:
    """What a CDC apply refuses: keys it would drop, SCD 2 columns that clash with the
    event's, settings SCD 2 cannot keep exact, a ledger that shares a place."""
    problems: list[Problem] = []
    if cdc.on_null_key == "quarantine":
        problems += _quarantine_by_key(spec, ("cdc", "on_null_key"))
    for index, column in enumerate(cdc.except_columns):
        if column in cdc.keys:
            problems.append(
                (("cdc", "except_columns", index), f"'{column}' is a key: the table needs it")
            )
    if cdc.stored_as_scd_type == 2:
        named = {"keys": cdc.keys, "sequence_by": cdc.sequence_by}
        for setting in ("start_column", "end_column"):
            column = getattr(cdc, setting)
            for other, columns in named.items():
                if column in columns and column not in cdc.except_columns:
                    problems.append(
                        (("cdc", setting), f"'{column}' is also in {other}: the history's "
                         "column would overwrite the event's; name it otherwise")
                    )  # fmt: skip
        if cdc.start_column == cdc.end_column:
            problems.append((("cdc", "end_column"), "the start and end columns need two names"))
        if cdc.ignore_null_updates:
            problems.append(
                (("cdc", "ignore_null_updates"), "SCD 2 cannot keep it exact: a late event "
                 "spliced before an update whose NULLs were filled from the version before "
                 "it would need the update's own NULLs, which the history no longer holds")
            )  # fmt: skip
    ledger = ledger_location(spec).rstrip("/")
    for place, folder in _places_beside(spec, job):
        folder = folder.rstrip("/")
        if ledger == folder or ledger.startswith(folder + "/") or folder.startswith(ledger + "/"):
            problems.append(
                (("cdc", "ledger"), f"the CDC ledger ({ledger}) shares a folder with "
                 f"{place} ({folder}); give it its own")
            )  # fmt: skip
    return problems


def _places_beside(spec: DeltaSinkSpec, job: JobSpec) -> list[tuple[str, str]]:
    """Every folder the job writes, the sink's own table included, and the ledgers of
    the CDC sinks before it (two that clash are named once, at the later one)."""
    places = [("the checkpoint", job.checkpoint)]
    places += [(f"sink '{sink.name}'", sink.location) for sink in job.outputs]
    for sink in job.sinks[: job.sinks.index(spec)]:
        if isinstance(sink, DeltaSinkSpec) and sink.cdc is not None:
            places.append((f"sink '{sink.name}''s ledger", ledger_location(sink)))
    return places


def _quality_rules(spec: DeltaSinkSpec, job: JobSpec) -> tuple[RuleSpec, ...]:
    """The rules a MERGE's ``on_null_key`` / ``on_duplicate_key: quarantine`` and a CDC
    apply's ``on_null_key: quarantine`` imply."""
    mode = job.mode_of(spec)
    if mode is WriteMode.CDC and spec.cdc is not None:
        return _cdc_quality_rules(spec, spec.cdc)
    merge = spec.merge
    if merge is None or mode is not WriteMode.MERGE:
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


def _cdc_quality_rules(spec: DeltaSinkSpec, cdc: CdcSpec) -> tuple[RuleSpec, ...]:
    """A CDC event with a NULL key or sequence to the quarantine, each by its own rule."""
    if cdc.on_null_key != "quarantine":
        return ()
    rules = []
    for what, columns in (("key", cdc.keys), ("sequence", cdc.sequence_by)):
        not_null = " AND ".join(f"`{column}` IS NOT NULL" for column in columns)
        rules.append(RuleSpec(name=f"{spec.name}_null_{what}", expect_or_quarantine=not_null))
    return tuple(rules)


SINK = SinkKind(
    name="delta",
    title="Delta",
    spec=DeltaSinkSpec,
    build="onceflow.sinks.delta.sink:build",
    modes=frozenset({WriteMode.APPEND, WriteMode.MERGE, WriteMode.REPLACE_BATCH, WriteMode.CDC}),
    guarded_modes=frozenset(
        {WriteMode.APPEND, WriteMode.MERGE, WriteMode.REPLACE_BATCH, WriteMode.CDC}
    ),
    # a CDC apply orders events by their sequence, not by batch ids: a quarantine replay's
    # fixed events land in their place, each MERGE guarded by the replay's own ids
    replayable_modes=frozenset({WriteMode.APPEND, WriteMode.MERGE, WriteMode.CDC}),
    default_mode=_default_mode,
    mode_hint="a database upserts; Delta's upsert is mode: merge",
    single_writer_on_s3=True,
    read_format="delta",
    rules=_rules,
    quality_rules=_quality_rules,
    deep_check="onceflow.sinks.delta.checks:merge_failures",
    match_keys=lambda spec: tuple(spec.merge.keys) if spec.merge is not None else (),
)
