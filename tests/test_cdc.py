"""CDC apply (``mode: cdc``): SCD 1 and 2 from a change feed, exactly-once.

The feed (``onceflow.prove.cdc_workload``) arrives as feeds do: out of order across
batches, changes twice, several changes of a customer in one batch, the update before a
delete after it. What the tables must hold is computed here, in plain Python, from the
changes as delivered, without onceflow: ``latest_rows`` (SCD 1) and ``history`` (SCD 2).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from delta.tables import DeltaTable
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from onceflow.config import JobSpec, WriteMode
from onceflow.contracts import BatchContext
from onceflow.errors import ConfigError, SinkError
from onceflow.prove.cdc_workload import (
    CUSTOMER_CHANGES_SCHEMA,
    Change,
    customer_changes,
    delivered,
    write_cdc_files,
)
from onceflow.sinks.base import BatchSink, build_sink
from onceflow.sinks.delta import DeltaSinkSpec, ledger_location
from onceflow.sinks.delta.cdc import PURGE_EVERY
from onceflow.sinks.delta.sink import DeltaSink
from tests.conftest import ROOT, JobLoader
from tests.streaming import crash_at, run_to_end

pytestmark = [pytest.mark.spark]

JOB = "jobs/customers_cdc.yaml"
FEED = "data/sample/customers-cdc"
KEY = "customer_id"
Event = dict[str, Any]
Row = tuple[Any, ...]


# --- the reference: plain Python over the changes as delivered -----------------------------


def as_event(change: Change) -> Event:
    """A change as Spark hands its row back: ``commit_ts`` naive, in local time."""
    return change.as_record() | {"commit_ts": datetime.fromtimestamp(change.commit_ts.timestamp())}


def sequence(event: Event, by: tuple[str, ...]) -> Any:
    return event[by[0]] if len(by) == 1 else tuple(event[c] for c in by)


def valid(batch: Iterable[Event], by: tuple[str, ...]) -> list[Event]:
    return [e for e in batch if e[KEY] is not None and all(e[c] is not None for c in by)]


def latest_rows(
    batches: list[list[Event]],
    stored: tuple[str, ...],
    by: tuple[str, ...] = ("lsn",),
    ignore_null_updates: bool = False,
) -> set[Row]:
    """SCD 1: batch by batch, each key's events newer than the last one applied to it, in
    sequence order: an upsert replaces the row (with ignore_null_updates, a NULL keeps the
    row's value), a delete removes it."""
    table: dict[Any, Event] = {}
    applied: dict[Any, Any] = {}
    for batch in batches:
        first: dict[tuple[Any, Any], Event] = {}
        for event in valid(batch, by):
            first.setdefault((event[KEY], sequence(event, by)), event)
        fresh: dict[Any, list[Event]] = defaultdict(list)
        for (key, seq), event in first.items():
            if key not in applied or seq > applied[key]:
                fresh[key].append(event)
        for key, events in fresh.items():
            events.sort(key=lambda e: sequence(e, by))
            row = table.get(key)
            for event in events:
                if event["op"] == "D":
                    row = None
                    continue
                new = {c: event[c] for c in stored}
                if ignore_null_updates and row is not None:
                    new = {c: row[c] if new[c] is None else new[c] for c in stored}
                row = new
            applied[key] = sequence(events[-1], by)
            if row is None:
                table.pop(key, None)
            else:
                table[key] = row
    return {tuple(row[c] for c in stored) for row in table.values()}


def history(
    batches: list[list[Event]], stored: tuple[str, ...], by: tuple[str, ...] = ("lsn",)
) -> set[Row]:
    """SCD 2: every key's events (the first delivered of each sequence) in sequence order;
    each upsert is a version from its sequence to the key's next event (None: current)."""
    first: dict[tuple[Any, Any], Event] = {}
    for batch in batches:
        for event in valid(batch, by):
            first.setdefault((event[KEY], sequence(event, by)), event)
    per_key: dict[Any, list[tuple[Any, Event]]] = defaultdict(list)
    for (key, seq), event in first.items():
        per_key[key].append((seq, event))
    versions = set()
    for events in per_key.values():
        events.sort(key=lambda pair: pair[0])
        for index, (seq, event) in enumerate(events):
            if event["op"] != "D":
                end = events[index + 1][0] if index + 1 < len(events) else None
                versions.add((*[event[c] for c in stored], seq, end))
    return versions


def final_state(changes: list[Change]) -> set[Row]:
    """The state the source database ended in: each customer's last change, unless a delete."""
    last = {c.customer_id: c for c in sorted(changes, key=lambda c: c.lsn)}
    return {(c.customer_id, c.name, c.email, c.tier) for c in last.values() if c.op != "D"}


# --- helpers -----------------------------------------------------------------------------------

SCD1 = ("customer_id", "lsn", "commit_ts", "name", "email", "tier")  # the job's, except op
SCD2 = ("customer_id", "name", "email", "tier")  # except op, lsn, commit_ts


def table(spark: SparkSession, path: str) -> set[Row]:
    """A table's rows as tuples; a struct (several sequence columns) as a tuple too."""
    return {
        tuple(tuple(v) if hasattr(v, "__fields__") else v for v in row)
        for row in spark.read.format("delta").load(path).collect()
    }


COLUMNS = ("customer_id", "op", "lsn", "commit_ts", "name", "email", "tier")


def frame(spark: SparkSession, events: list[Event]) -> DataFrame:
    """A batch of events as the job's source types them."""
    rows = [tuple(event.get(c) for c in COLUMNS) for event in events]
    return spark.createDataFrame(rows, CUSTOMER_CHANGES_SCHEMA)


def sinks(spec: JobSpec) -> list[BatchSink]:
    return [build_sink(spec, sink) for sink in spec.sinks]


def write_all(
    spark: SparkSession,
    spec: JobSpec,
    batches: list[list[Event]],
    first: int = 0,
    guarded: bool = True,
) -> None:
    """Each batch through each of the job's sinks (new ones: a restart), as the pipeline
    writes them under exactly-once (at-least-once: not ``guarded``), batch ids from
    ``first``."""
    built = sinks(spec)
    for number, batch in enumerate(batches, start=first):
        batch_frame = frame(spark, batch)
        for sink in built:
            sink.write(batch_frame, BatchContext("app", number, guarded=guarded))


def delta_sinks(spec: JobSpec) -> list[DeltaSinkSpec]:
    return [sink for sink in spec.sinks if isinstance(sink, DeltaSinkSpec)]


def version(spark: SparkSession, path: str) -> int:
    return int(DeltaTable.forPath(spark, path).history(1).collect()[0]["version"])


def feed(count: int, batches: int, seed: int, customers: int = 8) -> list[list[Event]]:
    """``count`` changes of ``customers`` customers as ``batches`` batches deliver them."""
    changes = customer_changes(count, customers, seed)
    return [[as_event(c) for c in batch] for batch in delivered(changes, batches, seed)]


def exercised(batches: list[list[Event]], by: tuple[str, ...] = ("lsn",)) -> dict[str, int]:
    """How often the feed does what makes CDC hard: a change delivered again, one older
    than a change of its key delivered before it, an upsert older than a delete delivered
    before it, a key changed several times in one batch."""
    found = {"again": 0, "late": 0, "after_delete": 0, "several": 0}
    seen: set[tuple[Any, Any]] = set()
    newest: dict[Any, Any] = {}
    deleted: dict[Any, Any] = {}
    for batch in batches:
        events = valid(batch, by)
        per_key: dict[Any, int] = defaultdict(int)
        for event in events:
            key, seq = event[KEY], sequence(event, by)
            per_key[key] += 1
            found["again"] += (key, seq) in seen
            seen.add((key, seq))
            found["late"] += key in newest and seq < newest[key]
            found["after_delete"] += event["op"] != "D" and key in deleted and seq < deleted[key]
        found["several"] += sum(count > 1 for count in per_key.values())
        for event in events:
            key, seq = event[KEY], sequence(event, by)
            newest[key] = max(newest.get(key, seq), seq)
            if event["op"] == "D":
                deleted[key] = max(deleted.get(key, seq), seq)
    return found


def read_feed(folder: Path) -> list[list[Event]]:
    """The files ``onceflow sample --workload customers-cdc`` wrote, one batch each."""
    batches = []
    for path in sorted(folder.glob("changes-*.json")):
        lines = path.read_text().splitlines()
        batches.append([as_event(Change(**_fields(json.loads(line)))) for line in lines])
    return batches


def _fields(record: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in record.items() if k != "commit_ts"}


# --- the tests ------------------------------------------------------------------------------


def test_the_job_holds_the_latest_rows_and_the_history_the_feed_implies(
    spark: SparkSession, job_in: JobLoader, tmp_path: Path
) -> None:
    """jobs/customers_cdc.yaml, run as it is on what ``onceflow sample`` writes, one file a
    batch: the SCD 1 table equals each key's latest row (and so the source's final state),
    the SCD 2 table every version; rows without a key or a sequence are quarantined."""
    from onceflow.cli import EXIT_OK, main

    folder = tmp_path / FEED
    sample = ["sample", "--workload", "customers-cdc", "--out", str(folder)]
    assert main([*sample, "--records", "120", "--files", "2", "--seed", "11"]) == EXIT_OK
    batches = read_feed(folder)
    assert min(exercised(batches).values()) > 0, exercised(batches)
    second = sorted(folder.glob("changes-*.json"))[1]
    times = second.stat()
    with second.open("a") as lines:  # no order can place these
        lines.write(json.dumps({"customer_id": None, "op": "U", "lsn": 9001}) + "\n")
        lines.write(json.dumps({"customer_id": 3, "op": "U", "lsn": None}) + "\n")
    os.utime(second, (times.st_atime, times.st_mtime))

    spec = job_in(JOB).spec
    run_to_end(spark, spec)

    customers, customer_history = (sink.location for sink in spec.sinks)
    expected = latest_rows(batches, SCD1)
    assert table(spark, customers) == expected
    changes = [Change(**_fields(e)) for batch in batches for e in batch]
    assert {(r[0], *r[3:]) for r in expected} == final_state(changes)
    assert table(spark, customer_history) == history(batches, SCD2)
    reasons = sorted(
        r.reason for r in spark.read.format("delta").load(spec.quality.quarantine).collect()
    )
    assert reasons == [
        "rule customers_null_key (expect_or_quarantine: `customer_id` IS NOT NULL)",
        "rule customers_null_sequence (expect_or_quarantine: `lsn` IS NOT NULL)",
    ]


def test_a_crash_between_the_table_and_its_ledger_is_replayed_exactly(
    spark: SparkSession, job_in: JobLoader, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each sink's batch 1 crashes between its two guarded MERGEs (the table's, then the
    ledger's): one of the two is committed. The restarted job replays batch 1: Delta skips
    the committed MERGE by its transaction id (no new version), the other runs, and both
    tables are exact. A replay of batch 1 once more, written whole now, changes nothing."""
    batches = feed(80, 2, seed=5)
    assert min(exercised(batches).values()) > 0, exercised(batches)
    spec = job_in(JOB).spec
    places = [(sink.location, ledger_location(sink)) for sink in delta_sinks(spec)]
    write_all(spark, spec, batches[:1])
    before = versions(spark, places)
    crash_between_merges(monkeypatch, {sink.name for sink in spec.sinks})
    for sink in sinks(spec):  # each sink crashes once, as a job killed there would
        with pytest.raises(SinkError, match="CRASH between"):
            sink.write(frame(spark, batches[1]), BatchContext("app", 1, guarded=True))
    assert [sum(pair) for pair in moved(before, versions(spark, places))] == [1, 1]
    monkeypatch.undo()

    write_all(spark, spec, batches[1:], first=1)  # the restart: batch 1 again
    assert moved(before, versions(spark, places)) == [(1, 1), (1, 1)]
    assert table(spark, places[0][0]) == latest_rows(batches, SCD1)
    assert table(spark, places[1][0]) == history(batches, SCD2)
    write_all(spark, spec, batches[1:], first=1)
    assert moved(before, versions(spark, places)) == [(1, 1), (1, 1)]


def crash_between_merges(monkeypatch: pytest.MonkeyPatch, crashing: set[str]) -> None:
    """The next write of each sink in ``crashing`` raises when it enters its second guarded
    MERGE, whichever it is: the first is committed, the second never starts."""
    from onceflow.sinks.delta import cdc, cdc_ledger
    from onceflow.sinks.delta.sink import dml_transaction as guarded

    write = DeltaSink.write
    entered: list[str] = []

    def counting_write(self: DeltaSink, batch: DataFrame, context: BatchContext) -> None:
        entered.clear()
        entered.append(self.name)
        write(self, batch, context)

    def crashing_transaction(spark: SparkSession, context: BatchContext) -> Any:
        entered.append("merge")
        if entered.count("merge") == 2 and entered[0] in crashing:  # no purge in batch 1
            crashing.discard(entered[0])
            raise RuntimeError("CRASH between the two MERGEs of a batch")
        return guarded(spark, context)

    monkeypatch.setattr(DeltaSink, "write", counting_write)
    for module in (cdc, cdc_ledger):
        monkeypatch.setattr(module, "dml_transaction", crashing_transaction)


def versions(spark: SparkSession, places: list[tuple[str, str]]) -> list[tuple[int, int]]:
    """Each sink's table and ledger versions."""
    return [(version(spark, table), version(spark, ledger)) for table, ledger in places]


def moved(before: list[tuple[int, int]], after: list[tuple[int, int]]) -> list[tuple[int, int]]:
    return [(a[0] - b[0], a[1] - b[1]) for a, b in zip(after, before, strict=True)]


def test_ignore_null_updates_except_columns_and_two_sequence_columns(
    spark: SparkSession, job_in: JobLoader
) -> None:
    """Partial updates (NULL where a column did not change) keep the row's values with
    ignore_null_updates; except_columns stay out of the table; ordered by [commit_ts, lsn]
    (three changes a second), SCD 2's bounds are structs of both."""
    by = ("commit_ts", "lsn")
    spec = job_in(
        JOB,
        "sinks[0].cdc.ignore_null_updates=true",
        "sinks[0].cdc.except_columns=[op, lsn]",
        "sinks[0].cdc.sequence_by=[commit_ts, lsn]",
        "sinks[1].cdc.sequence_by=[commit_ts, lsn]",
    ).spec
    batches = feed(80, 2, seed=3)
    write_all(spark, spec, batches)
    customers, customer_history = (sink.location for sink in spec.sinks)
    stored = ("customer_id", "commit_ts", "name", "email", "tier")
    expected = latest_rows(batches, stored, by, ignore_null_updates=True)
    assert expected != latest_rows(batches, stored, by), "the feed has no partial update"
    assert table(spark, customers) == expected
    assert spark.read.format("delta").load(customers).columns == list(stored)
    assert table(spark, customer_history) == history(batches, SCD2, by)
    bounds = spark.read.format("delta").load(customer_history).schema["__start_at"]
    assert bounds.dataType.simpleString() == "struct<commit_ts:timestamp,lsn:bigint>"


def event(key: int, op: str, lsn: int) -> Event:
    return dict.fromkeys(COLUMNS) | {"customer_id": key, "op": op, "lsn": lsn, "name": f"n{lsn}"}


#: 1 inserted at 1 and updated at 5, then a late update at 3 comes alone for its key in
#: batch 1: a replay that ignored the ledger's order would bring the row of 3 back
LATE_ALONE = [
    [event(1, "I", 1), event(1, "U", 5)],
    [event(1, "U", 3), event(2, "I", 2)],
]


def test_an_unguarded_replay_changes_no_row(spark: SparkSession, job_in: JobLoader) -> None:
    """At-least-once replays batch 1 without the transaction id: it commits again, and
    changes no row (SCD 1 skips what is no newer than its key's last change, SCD 2 finds
    each version in place), so a CDC sink is exact under at-least-once too."""
    spec = job_in(JOB).spec
    write_all(spark, spec, LATE_ALONE)
    write_all(spark, spec, LATE_ALONE[1:], first=1, guarded=False)
    customers, customer_history = (sink.location for sink in spec.sinks)
    assert {row[0]: row[1] for row in table(spark, customers)} == {1: 5, 2: 2}
    assert table(spark, customers) == latest_rows(LATE_ALONE, SCD1)
    assert table(spark, customer_history) == history(LATE_ALONE, SCD2)
    versions = {(row[0], row[-2], row[-1]) for row in table(spark, customer_history)}
    assert versions == {(1, 1, 3), (1, 3, 5), (1, 5, None), (2, 2, None)}


#: 1 is deleted at 5, then an update at 3 arrives; 3 is deleted at 6 before it ever existed,
#: then its insert at 4 arrives; 2 is never deleted.
TOMBSTONED = [
    [event(1, "I", 1), event(1, "D", 5), event(3, "D", 6), event(2, "I", 2)],
    [event(1, "U", 3), event(3, "I", 4), event(2, "U", 7)],
]


@pytest.mark.parametrize(
    ("retention", "customers", "customer_history"),
    [
        # kept: no older event brings a deleted key back; the history closes at the deletes
        ("7 days", {2: 7}, {(1, 1, 3), (1, 3, 5), (3, 4, 6), (2, 2, 7), (2, 7, None)}),
        # purged after the first batch (0 seconds): the older events bring 1 and 3 back. The
        # history still closes 1 at 5 (a version ends there), not 3 at 6 (nothing did)
        (
            "0 seconds",
            {1: 3, 2: 7, 3: 4},
            {(1, 1, 3), (1, 3, 5), (3, 4, None), (2, 2, 7), (2, 7, None)},
        ),
    ],
)
def test_a_delete_then_an_older_update_stays_deleted_while_the_tombstone_is_kept(
    spark: SparkSession,
    job_in: JobLoader,
    retention: str,
    customers: dict[int, int],
    customer_history: set[Row],
) -> None:
    spec = job_in(JOB, *[f"sinks[{i}].cdc.tombstone_retention={retention}" for i in (0, 1)]).spec
    write_all(spark, spec, TOMBSTONED, first=PURGE_EVERY)  # expired tombstones go after it
    latest, versions = (sink.location for sink in spec.sinks)
    assert {row[0]: row[1] for row in table(spark, latest)} == customers
    assert {(row[0], row[-2], row[-1]) for row in table(spark, versions)} == customer_history
    if retention == "7 days":
        assert {row[0] for row in latest_rows(TOMBSTONED, SCD1)} == set(customers)
        assert {(r[0], r[-2], r[-1]) for r in history(TOMBSTONED, SCD2)} == customer_history


def test_a_table_made_anew_gets_a_ledger_anew(
    spark: SparkSession, job_in: JobLoader, tmp_path: Path
) -> None:
    """``onceflow reset`` deletes the table but knows no ledger: the old ledger (customer 1
    at lsn 5) must not filter the new table's events (customer 1 at lsn 3)."""
    spec = job_in(JOB).spec
    sink = spec.sinks[0]
    build_sink(spec, sink).write(frame(spark, [event(1, "I", 5)]), BatchContext("a", 0, True))
    shutil.rmtree(sink.location)
    build_sink(spec, sink).write(frame(spark, [event(1, "I", 3)]), BatchContext("b", 0, True))
    assert {(row[0], row[1]) for row in table(spark, sink.location)} == {(1, 3)}


def test_a_null_key_stops_the_batch_when_not_quarantined(
    spark: SparkSession, job_in: JobLoader
) -> None:
    spec = job_in(JOB, "sinks[0].cdc.on_null_key=fail").spec
    batch = frame(spark, [event(1, "I", 1), {"customer_id": None, "op": "U", "lsn": 2}])
    with pytest.raises(SinkError, match="SINK_MERGE_KEY_REFUSED") as refused:
        build_sink(spec, spec.sinks[0]).write(batch, BatchContext("a", 0, True))
    assert '"op":"U","lsn":2' in str(refused.value)
    assert not Path(spec.sinks[0].location).exists()


def test_a_cdc_sink_takes_mode_cdc_from_a_merge_strategy(job_in: JobLoader) -> None:
    spec = job_in(JOB, "sinks[0].mode=null", "sinks[1].mode=null").spec
    assert [spec.mode_of(sink) for sink in spec.sinks] == [WriteMode.CDC, WriteMode.CDC]


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        (("sinks[0].cdc=null",), "sinks[0]"),
        (("sinks[0].mode=merge", "sinks[0].merge={keys: [customer_id]}"), "sinks[0].cdc"),
        (("sinks[0].cdc.keys=[]",), "sinks[0].cdc.keys"),
        (("sinks[1].cdc.start_column=customer_id",), "sinks[1].cdc.start_column"),
        (("sinks[1].cdc.end_column=__start_at",), "sinks[1].cdc.end_column"),
        (("sinks[1].cdc.ignore_null_updates=true",), "sinks[1].cdc.ignore_null_updates"),
        (("sinks[0].cdc.except_columns=[op, customer_id]",), "sinks[0].cdc.except_columns[1]"),
        (("sinks[0].cdc.ledger=customers/ledger",), "sinks[0].cdc.ledger"),
        (("sinks[1].cdc.ledger=customers__cdc_ledger",), "sinks[1].cdc.ledger"),
        (("sinks[0].cdc.tombstone_retention=a week",), "sinks[0].cdc.tombstone_retention"),
        (("sinks[0].query=SELECT * FROM {batch}",), "sinks[0].cdc.on_null_key"),
    ],
)
def test_what_cdc_cannot_keep_is_refused_before_spark_naming_the_key(
    job_in: JobLoader, overrides: tuple[str, ...], key: str
) -> None:
    with pytest.raises(ConfigError) as refused:
        job_in(JOB, *overrides)
    assert f"'{key}'" in str(refused.value), refused.value


@pytest.mark.parametrize(
    ("written", "instead", "key"),
    [
        ("      start_column: __start_at", "      start_column: name", "sinks[1].cdc.start_column"),
        (
            "      sequence_by: [lsn]\n      apply",
            "      sequence_by: lsm\n      apply",
            "sinks[0].cdc.sequence_by",
        ),
        (
            "\"op = 'D'\"\n      except_columns: [op]",
            '"op"\n      except_columns: [op]',
            "sinks[0].cdc.apply_as_deletes",
        ),
    ],
)
def test_deep_checks_name_a_cdc_setting_the_batch_cannot_serve(
    spark: SparkSession, job_in: JobLoader, tmp_path: Path, written: str, instead: str, key: str
) -> None:
    """Only Spark knows the batch's columns: an SCD 2 column the events have already, a
    sequence column they lack, a delete condition that is no boolean."""
    from onceflow.deep import check_job

    write_cdc_files(tmp_path / FEED, 10, 1)
    text = (ROOT / JOB).read_text()
    assert written in text, written
    job = tmp_path / "customers_cdc.yaml"
    job.write_text(text.replace(written, instead, 1))  # the first sink's, unless sinks[1]
    with pytest.raises(ConfigError, match="CONFIG_BAD_SQL") as refused:
        check_job(job_in(job), spark)
    assert f"'{key}'" in str(refused.value), refused.value


def test_a_changed_setting_is_refused_on_a_table_that_has_a_ledger(
    spark: SparkSession, job_in: JobLoader
) -> None:
    """The ledger holds each key's order as the table's settings made it: a table of one
    SCD type, or keyed otherwise, cannot go on under another. Refused before any write,
    naming the sink and the setting, never a bare SINK_WRITE_FAILED (nor, from SCD 2 to 1,
    a silent mix of both)."""
    spec = job_in(JOB).spec
    mail = {"email": "c1@example.com"}  # a key column once keys take it
    write_all(spark, spec, [[event(1, "I", 1) | mail]])
    paths = [sink.location for sink in spec.sinks]
    before = [(version(spark, path), table(spark, path)) for path in paths]
    for sink, override, setting in [
        (0, "sinks[0].cdc.stored_as_scd_type=2", "stored_as_scd_type"),
        (1, "sinks[1].cdc.stored_as_scd_type=1", "stored_as_scd_type"),
        (0, "sinks[0].cdc.keys=[customer_id, email]", "keys"),
    ]:
        changed = job_in(JOB, override).spec
        with pytest.raises(SinkError, match="SINK_TABLE_MISMATCH") as refused:
            build_sink(changed, changed.sinks[sink]).write(
                frame(spark, [event(1, "U", 2) | mail]), BatchContext("a", 1, True)
            )
        message = str(refused.value)
        assert f"sink '{spec.sinks[sink].name}'" in message, message
        assert f"cdc.{setting}" in message, message
    assert [(version(spark, path), table(spark, path)) for path in paths] == before


def test_a_quarantine_replay_into_the_cdc_tables_is_exactly_once(
    spark: SparkSession, job_in: JobLoader, tmp_path: Path
) -> None:
    """A change that came without its key is quarantined; fixed in the quarantine, with a
    newer change beside it, it is replayed: killed after the SCD 1 table and before the SCD
    2 one, then run again. Both tables equal the reference of the feed with the two fixed
    changes delivered last (the late one spliced into the history), each row once."""
    from onceflow.replay import replay_quarantine

    folder = tmp_path / FEED
    write_cdc_files(folder, 40, 1, customers=6, seed=5)  # one batch: the least to replay into
    first = sorted(folder.glob("changes-*.json"))[0]
    lines = first.read_text().splitlines()
    late = next(i for i, line in enumerate(lines) if json.loads(line)["op"] == "U")
    fixed = [Change(**_fields(json.loads(lines[late]))), Change(3, "U", 9001, "n", "e", "gold")]
    times = first.stat()
    broken = json.loads(lines[late]) | {"customer_id": None}
    first.write_text("\n".join([*lines[:late], json.dumps(broken), *lines[late + 1 :]]) + "\n")
    with first.open("a") as more:
        more.write(json.dumps(fixed[1].as_record() | {"customer_id": None}) + "\n")
    os.utime(first, (times.st_atime, times.st_mtime))
    spec = job_in(JOB, f"source.path={folder}").spec
    run_to_end(spark, spec)
    lock = Path(spec.checkpoint) / "onceflow" / "lock"
    for _ in range(300):  # released by the query's own thread once it ended
        if not lock.exists():
            break
        time.sleep(0.1)
    quarantine = DeltaTable.forPath(spark, spec.quality.quarantine)
    for change in fixed:
        at = F.get_json_object("payload", "$.lsn") == str(change.lsn)
        quarantine.update(at, {"payload": F.lit(change.to_json())})

    with pytest.raises(Exception, match="CRASH_INJECTED"):
        replay_quarantine(spark, spec, instrument=crash_at("mid_write", 0))
    customers, customer_history = (sink.location for sink in spec.sinks)
    assert (3, 9001) in {(row[0], row[1]) for row in table(spark, customers)}
    assert 9001 not in {row[-2] for row in table(spark, customer_history)}
    rerun = replay_quarantine(spark, spec)

    batches = [*read_feed(folder), [as_event(change) for change in fixed]]
    for path, expected in ((customers, latest_rows(batches, SCD1)),
                           (customer_history, history(batches, SCD2))):  # fmt: skip
        assert table(spark, path) == expected
        assert spark.read.format("delta").load(path).count() == len(expected)
    assert spark.read.format("delta").load(spec.quality.quarantine).count() == 0
    assert (rerun.resumed, rerun.replayed) == (2, 0), rerun  # the killed replay, finished
