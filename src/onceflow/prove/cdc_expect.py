"""What a CDC sink fed the customers change feed must hold, computed in plain Python from
the generated changes (``onceflow.prove.cdc_workload``), never by the sink's code.

- SCD 1: each customer's row as the source database left it: its last change by ``lsn``,
  absent when that is a delete.
- SCD 2: every insert or update is a version, from its sequence to the customer's next
  change (an update or a delete), the end NULL while it is current.

Both hold in whatever order and however often the feed delivered the changes, provided it
delivered each one at least once (CDC apply orders by sequence, and a repeat changes
nothing) and no tombstone expired meanwhile (``tombstone_retention``). Prove checks sinks
keyed by ``customer_id``, ordered by ``lsn`` (alone, or after ``commit_ts``, which never
disagrees with it), whose ``apply_as_deletes`` means ``op = 'D'``, without
``ignore_null_updates`` (whose result depends on how late each change came).

A row's identity is its key (SCD 1) or its key and start (SCD 2). ``lost`` = expected
identities absent; ``duplicated`` = rows - distinct identities; ``wrong`` = identities
present whose row is not the expected one (a stale value, a wrong interval), or that should
not be there at all (a deleted customer back, a version that never was).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pyspark.sql import DataFrame

from onceflow.config import JobSpec, SinkSpec, WriteMode
from onceflow.prove.cdc_workload import CUSTOMER_CHANGES_SCHEMA, Change, customer_changes
from onceflow.sinks.delta import CdcSpec

__all__ = ["CdcDelivery", "cdc_sinks", "expected_table", "measure_cdc"]

Identity = tuple[Any, ...]
Row = dict[str, Any]
_COLUMNS = tuple(part.split()[0] for part in CUSTOMER_CHANGES_SCHEMA.split(", "))


@dataclass(frozen=True)
class CdcDelivery:
    """A CDC sink against what the changes imply, row by row (see the module)."""

    expected: int
    delivered: int  # expected identities present with the expected row
    lost: int
    duplicated: int
    wrong: int


def cdc_sinks(spec: JobSpec) -> dict[str, CdcSpec]:
    """Sink name -> its ``cdc`` settings, for each of ``spec``'s sinks in mode cdc."""
    found = {}
    for sink in spec.sinks:
        cdc = _cdc_of(sink)
        if cdc is not None and spec.mode_of(sink) is WriteMode.CDC:
            found[sink.name] = cdc
    return found


def _cdc_of(sink: SinkSpec) -> CdcSpec | None:
    cdc = getattr(sink, "cdc", None)  # the Delta kind's; a kind of its own may say it too
    return cdc if isinstance(cdc, CdcSpec) else None


def _checkable(cdc: CdcSpec) -> None:
    """Raise ValueError when the sink's settings are not ones prove can recompute."""
    if (
        cdc.keys != ("customer_id",)
        or cdc.sequence_by[-1] != "lsn"
        or not set(cdc.sequence_by) <= {"commit_ts", "lsn"}
        or cdc.apply_as_deletes is None
        or cdc.ignore_null_updates
    ):
        raise ValueError(
            "prove checks a CDC sink of the customers feed keyed by customer_id, ordered by "
            "lsn (or [commit_ts, lsn]), with apply_as_deletes (op = 'D') and without "
            "ignore_null_updates"
        )


def _value(change: Change, column: str) -> Any:
    """A change's column as Spark hands a row back: a timestamp naive, in local time."""
    if column == "commit_ts":
        return datetime.fromtimestamp(change.commit_ts.timestamp())  # naive local, as Spark
    return getattr(change, column)


def _sequence(change: Change, cdc: CdcSpec) -> Any:
    values = tuple(_value(change, column) for column in cdc.sequence_by)
    return values[0] if len(values) == 1 else values


def expected_table(cdc: CdcSpec, changes: list[Change]) -> dict[Identity, Row]:
    """Identity -> the row a sink with ``cdc`` must hold after ``changes`` (each applied
    at least once, in any order)."""
    _checkable(cdc)
    stored = [c for c in _COLUMNS if c not in cdc.except_columns]
    per_key: dict[int, list[Change]] = defaultdict(list)
    for change in sorted(changes, key=lambda c: c.lsn):
        per_key[change.customer_id].append(change)
    table: dict[Identity, Row] = {}
    for key, history in per_key.items():
        if cdc.stored_as_scd_type == 1:
            if history[-1].op != "D":
                table[(key,)] = {c: _value(history[-1], c) for c in stored}
            continue
        for index, change in enumerate(history):
            if change.op == "D":
                continue
            following = history[index + 1] if index + 1 < len(history) else None
            start = _sequence(change, cdc)
            row = {c: _value(change, c) for c in stored}
            row[cdc.start_column] = start
            row[cdc.end_column] = _sequence(following, cdc) if following else None
            table[(key, start)] = row
    return table


def _plain(value: Any) -> Any:
    """A struct (several sequence columns) as a tuple, as ``expected_table`` has it."""
    return tuple(value) if hasattr(value, "__fields__") else value


def measure_cdc(frame: DataFrame, cdc: CdcSpec, count: int, seed: int) -> CdcDelivery:
    """Compare the CDC sink ``frame`` with ``expected_table`` of changes ``1..count`` of
    ``seed`` (the workload's default number of customers)."""
    wanted = expected_table(cdc, customer_changes(count, seed=seed))
    rows = [{k: _plain(v) for k, v in row.asDict().items()} for row in frame.collect()]
    have: dict[Identity, list[Row]] = defaultdict(list)
    for row in rows:
        key = tuple(row.get(k) for k in cdc.keys)
        have[key + ((row.get(cdc.start_column),) if cdc.stored_as_scd_type == 2 else ())].append(
            row
        )
    right = sum(1 for identity, found in have.items() if wanted.get(identity) in found)
    return CdcDelivery(
        expected=len(wanted),
        delivered=right,
        lost=len(wanted.keys() - have.keys()),
        duplicated=len(rows) - len(have),
        wrong=len(have) - right,
    )
