"""Aggregation in windows and groups (``aggregate``), exactly-once across crashes.

What each output must hold is computed here in plain Python from the JSON lines the
generator wrote, never by the job's code: per account and window, the number of payments
and their total; in append mode only the windows the final watermark closed.
"""

from __future__ import annotations

import json
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from onceflow.errors import ConfigError, GuaranteeError
from onceflow.prove.workload import write_payment_files
from tests.conftest import JobLoader
from tests.streaming import crash_at, run_to_end

pytestmark = [pytest.mark.spark]

JOB = "jobs/payments_windows.yaml"
RECORDS, FILES = 300, 3
TABLE = "data/tables/payments_windows/per_minute"
MINUTE = timedelta(minutes=1)
#: A window's key and its measures: (window_start, window_end, account) -> (payments, total)
Windows = dict[tuple[datetime, datetime, str], tuple[int, Decimal]]


def sent(tmp_path: Path) -> list[dict[str, object]]:
    """Write the payment files; return every record as the generator wrote it."""
    files = write_payment_files(tmp_path / "data/sample/payments-windows", RECORDS, FILES)
    return [json.loads(line) for path in files for line in path.read_text().splitlines()]


def time_of(record: dict[str, object]) -> datetime:
    return datetime.strptime(str(record["event_time"]), "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)


def expected(
    records: list[dict[str, object]], starts_of, closed_by: datetime | None = None
) -> Windows:
    """Count and sum per window and account; ``starts_of(t)`` gives the (start, end) of
    each window that holds time ``t``; with ``closed_by``, only windows ending by then."""
    found: dict[tuple[datetime, datetime, str], list[Decimal]] = defaultdict(list)
    for record in records:
        for start, end in starts_of(time_of(record)):
            found[(start, end, str(record["account"]))].append(Decimal(str(record["amount"])))
    return {
        key: (len(amounts), sum(amounts, Decimal(0)))
        for key, amounts in found.items()
        if closed_by is None or key[1] <= closed_by
    }


def tumbling(time: datetime) -> list[tuple[datetime, datetime]]:
    start = time.replace(second=0, microsecond=0)
    return [(start, start + MINUTE)]


def table(spark: SparkSession, tmp_path: Path, path: str = TABLE) -> Windows:
    """The output table as windows, each held once."""
    rows = table_rows(spark, tmp_path, path)
    keys = [key for key, _ in rows]
    assert len(keys) == len(set(keys)), "a window's row is in the table twice"
    return dict(rows)


def table_rows(spark: SparkSession, tmp_path: Path, path: str = TABLE) -> list:
    """Every row of the output table, its bounds read as UTC instants (not wall clocks)."""
    rows = (
        spark.read.format("delta")
        .load(f"{tmp_path}/{path}")
        .select(
            F.unix_micros("window_start").alias("start"),
            F.unix_micros("window_end").alias("end"),
            "account",
            "payments",
            "total",
        )
        .collect()
    )
    return [((_instant(r.start), _instant(r.end), r.account), (r.payments, r.total)) for r in rows]


def _instant(micros: int) -> datetime:
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=micros)


@pytest.mark.chaos
@pytest.mark.parametrize("point", ["mid_write", "after_write"])
def test_update_windows_equal_a_recomputation_after_a_crash(
    spark: SparkSession, job_in: JobLoader, tmp_path: Path, point: str
) -> None:
    """Batch 1 updates windows batch 0 began; it crashes, and its replay recomputes the
    same rows from the state batch 0 left; the MERGE replaces each window's row."""
    records = sent(tmp_path)
    spec = job_in(JOB).spec
    with pytest.raises(Exception, match="CRASH_INJECTED"):
        run_to_end(spark, spec, crash=crash_at(point, 1))
    run_to_end(spark, spec)
    assert table(spark, tmp_path) == expected(records, tumbling)


APPEND = ("aggregate.output=append", "strategy=transactional", "sinks.0.merge=null")


def closed_by(records: list[dict[str, object]], delay: timedelta) -> datetime:
    """The watermark once the job has seen every record: the latest event time - delay."""
    return max(time_of(r) for r in records) - delay


@pytest.mark.chaos
def test_append_writes_each_closed_window_once_after_a_crash(
    spark: SparkSession, job_in: JobLoader, tmp_path: Path
) -> None:
    """In append mode a window is written once, when the watermark passes its end; a
    crash after the write replays the batch, and the transaction id skips it."""
    records = sent(tmp_path)
    spec = job_in(JOB, *APPEND).spec
    with pytest.raises(Exception, match="CRASH_INJECTED"):
        run_to_end(spark, spec, crash=crash_at("after_write", 2))
    run_to_end(spark, spec)
    assert table(spark, tmp_path) == expected(records, tumbling, closed_by(records, MINUTE))


@pytest.mark.chaos
def test_at_least_once_append_writes_a_replayed_window_twice(
    spark: SparkSession, job_in: JobLoader, tmp_path: Path
) -> None:
    """The failure mode the guarantee is for: at-least-once appends the replayed
    batch's closed windows again."""
    records = sent(tmp_path)
    spec = job_in(JOB, *APPEND, "guarantee=at-least-once", "strategy=null").spec
    with pytest.raises(Exception, match="CRASH_INJECTED"):
        run_to_end(spark, spec, crash=crash_at("after_write", 2))
    run_to_end(spark, spec)
    rows = table_rows(spark, tmp_path)
    # batch 2 closed what the watermark of the first two files' records passed
    twice = expected(
        records[: 2 * RECORDS // FILES],
        tumbling,
        closed_by(records[: 2 * RECORDS // FILES], MINUTE),
    )
    assert sorted(rows) == sorted([*expected(records, tumbling, closed_by(records, MINUTE)).items(),
                                   *twice.items()])  # fmt: skip
    assert twice


def sliding(time: datetime) -> list[tuple[datetime, datetime]]:
    """The two 1-minute windows, starting every 30 seconds, that hold ``time``."""
    half = timedelta(seconds=30)
    latest = time.replace(second=30 if time.second >= 30 else 0, microsecond=0)
    return [(latest - half, latest + half), (latest, latest + MINUTE)]


def sessions(records: list[dict[str, object]], gap: timedelta, closed: datetime) -> Windows:
    """Per account, events less than ``gap`` apart share a session [first, last + gap)."""
    by_account: dict[str, list[dict[str, object]]] = defaultdict(list)
    for record in sorted(records, key=time_of):
        by_account[str(record["account"])].append(record)
    found: Windows = {}
    for account, events in by_account.items():
        start, end, amounts = None, None, []
        for event in [*events, None]:
            time = time_of(event) if event is not None else None
            if start is not None and (time is None or time >= end):
                if end <= closed:
                    found[(start, end, account)] = (len(amounts), sum(amounts, Decimal(0)))
                start = None
            if event is None:
                break
            if start is None:
                start, amounts = time, []
            end = time + gap
            amounts.append(Decimal(str(event["amount"])))
    return found


def test_sliding_and_session_windows_equal_a_recomputation(
    spark: SparkSession, job_in: JobLoader, tmp_path: Path
) -> None:
    """Sliding (1 minute every 30 seconds) and session (2-minute gap) windows, appended
    once each, as the final watermark closed them."""
    windows = {
        "sliding": "{type: sliding, duration: 1 minute, slide: 30 seconds}",
        "session": "{type: session, gap: 2 minutes}",
    }
    for name, window in windows.items():
        records = sent(tmp_path / name)
        overrides = (*APPEND, f"aggregate.window={window}", f"storage.root={tmp_path / name}")
        run_to_end(spark, job_in(JOB, *overrides).spec)
        closed = closed_by(records, MINUTE)
        wanted = (
            expected(records, sliding, closed)
            if name == "sliding"
            else sessions(records, 2 * MINUTE, closed)
        )
        assert table(spark, tmp_path / name) == wanted, name


def test_records_without_an_event_time_or_unparsed_are_quarantined_with_their_reason(
    spark: SparkSession, job_in: JobLoader, tmp_path: Path
) -> None:
    """A malformed line and a payment without an event time never reach a window; each
    is quarantined as it arrived, and the windows still equal the good records'."""
    records = sent(tmp_path)
    bad = ["not json", '{"id": 9001, "account": "acct-0001", "amount": "5.00"}']
    (tmp_path / "data/sample/payments-windows/payments-bad.json").write_text("\n".join(bad) + "\n")
    spec = job_in(JOB).spec
    run_to_end(spark, spec)
    assert table(spark, tmp_path) == expected(records, tumbling)
    quarantined = spark.read.format("delta").load(spec.quality.quarantine).collect()
    assert sorted((r.payload, r.reason) for r in quarantined) == [
        (bad[0], "parse: not valid JSON"),
        (bad[1], "parse: 'event_time' is NULL: no event-time window holds the record"),
    ]


def test_a_change_of_the_aggregate_is_refused_at_start(
    spark: SparkSession, job_in: JobLoader, tmp_path: Path
) -> None:
    """A new group, window or measure would read the state as something else."""
    sent(tmp_path)
    run_to_end(spark, job_in(JOB).spec)
    changes = [
        ("aggregate.group_by=[]", "sinks.0.merge.keys=[window_start, window_end]"),
        ("aggregate.window.duration=2 minutes",),
        ("aggregate.measures.largest=max(amount)",),
    ]
    for change in changes:
        with pytest.raises(GuaranteeError, match="GUARANTEE_STATE_INCOMPATIBLE"):
            run_to_end(spark, job_in(JOB, *change).spec)
    run_to_end(spark, job_in(JOB, "watermark.delay=2 minutes").spec)


@pytest.mark.parametrize(
    ("overrides", "key", "why"),
    [
        (
            ("strategy=transactional", "sinks.0.merge=null"),
            "sinks[0].mode",
            "append would keep every value as another row",
        ),
        (
            ("aggregate.window={type: session, gap: 1 minute}",),
            "aggregate.output",
            "a session's start moves",
        ),
        (
            (
                "aggregate.output=append",
                "strategy=transactional",
                "sinks.0.merge=null",
                "watermark=null",
            ),
            "aggregate.output",
            "add watermark",
        ),
        (
            (
                "aggregate.output=append",
                "strategy=transactional",
                "sinks.0.merge=null",
                "aggregate.window=null",
            ),
            "aggregate.output",
            "add a window",
        ),
        (("dedup={keys: [id]}",), "aggregate.output", "only in append mode"),
        (("sinks.0.merge.keys=[account]",), "sinks[0]", "this sink matches on [account]"),
        (("watermark=null",), "aggregate.window", "needs an event-time column"),
    ],
)
def test_aggregates_that_cannot_keep_their_promise_are_refused_before_spark(
    job_in: JobLoader, overrides: tuple[str, ...], key: str, why: str
) -> None:  # fmt: skip
    with pytest.raises(ConfigError, match="CONFIG_GUARANTEE_REFUSED") as refused:
        job_in(JOB, *overrides)
    everything = [refused.value, *refused.value.others]
    assert any(f"'{key}'" in str(e) and why in str(e) for e in everything), everything


@pytest.mark.parametrize(
    ("override", "error_class", "key"),
    [
        ("aggregate.group_by=[acount]", "CONFIG_BAD_SQL", "aggregate.group_by[0]"),
        ("aggregate.measures.total=sum(amout)", "CONFIG_BAD_SQL", "aggregate.measures.total"),
        ("aggregate.window.duration=a minute", "CONFIG_BAD_INTERVAL", "aggregate.window"),
        ("aggregate.window.column=account", "CONFIG_BAD_SQL", "aggregate.window.column"),
    ],
)
def test_deep_checks_name_the_aggregate_key(
    spark: SparkSession, job_in: JobLoader, tmp_path: Path, override: str, error_class: str,
    key: str,
) -> None:  # fmt: skip
    from onceflow.deep import check_job

    sent(tmp_path)
    # the sink's keys follow the groups, or the rules refuse the job before Spark
    keys = "sinks.0.merge.keys=[window_start, window_end, acount]" if "acount" in override else ""
    with pytest.raises(ConfigError) as found:
        check_job(job_in(JOB, override, *([keys] if keys else [])), spark)
    assert found.value.error_class == error_class, found.value
    assert f"'{key}'" in str(found.value), found.value
