"""Bad records never stop a stream and never vanish: parsing, expectations, quarantine.

A corpus of every kind of bad record (tests/quality_corpus.py) is mixed into good payments,
from files and from Kafka; every record must end up in exactly one place, the query must
keep running, and the quarantine must be exactly-once across a crash.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections import Counter
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from onceflow.config import JobSpec
from onceflow.contracts import BatchReports
from onceflow.errors import QualityError
from onceflow.observe import ProgressLogger
from onceflow.prove.verify import measure_delivery
from onceflow.prove.workload import payments
from onceflow.quality import parse_json
from onceflow.quality.parsing import ERROR, schema_of
from onceflow.sources.raw import PAYLOAD
from onceflow.testing.services import LocalKafka
from tests.conftest import JobLoader
from tests.quality_corpus import BAD, DROPPED, good_payloads, write_corpus_files
from tests.streaming import crash_at, run_to_end

pytestmark = pytest.mark.spark

JOB = "jobs/payments_quality.yaml"
GOOD, FILES = 60, 2
# the events sink alone: the MERGE of the balances adds time, not coverage, to most tests
EVENTS_ONLY = "sinks=[{name: events, kind: delta, path: data/tables/events}]"
SCHEMA = "id BIGINT, account STRING, amount DECIMAL(18,2), event_time TIMESTAMP"


def quarantine_rows(spark: SparkSession, spec: JobSpec) -> list[dict[str, object]]:
    assert spec.quality is not None and spec.quality.quarantine is not None
    return [
        row.asDict() for row in spark.read.format("delta").load(spec.quality.quarantine).collect()
    ]


def quality_lines(caplog: pytest.LogCaptureFixture) -> list[dict[str, int]]:
    return [
        json.loads(record.getMessage())
        for record in caplog.records
        if record.name == "onceflow.quality"
    ]


def _progress_lines(caplog: pytest.LogCaptureFixture, batches: int) -> list[dict[str, Any]]:
    """The progress lines of the batches that read rows; the listener hears of a batch
    shortly after it ends, so wait a little for the last."""
    deadline = time.monotonic() + 20
    while True:
        lines = [
            json.loads(record.getMessage())
            for record in caplog.records
            if record.name == "onceflow.progress"
        ]
        lines = [line for line in lines if line["input_rows"]]
        if len(lines) >= batches or time.monotonic() > deadline:
            return lines
        time.sleep(0.2)


def test_the_parser_names_what_is_wrong_with_each_record(spark: SparkSession) -> None:
    payloads = [bad.payload for bad in BAD[:-1]] + good_payloads(3)  # the last BAD is a rule
    raw = spark.createDataFrame([(bytearray(p),) for p in payloads], "raw BINARY")
    frame = raw.selectExpr(f"CAST(raw AS STRING) AS {PAYLOAD}")
    parsed = parse_json(frame, schema_of(frame, SCHEMA), ("id", "account", "amount"), 4096)
    rows = parsed.select(ERROR, "id", "account", "amount").collect()
    for bad, row in zip(BAD[:-1], rows, strict=False):
        assert row[ERROR] is not None and bad.reason.removeprefix("parse: ") in row[ERROR], (
            bad,
            row,
        )
    good = rows[len(BAD) - 1 :]
    expected = list(payments(3))
    assert [(r["id"], r["account"], r["amount"], r[ERROR]) for r in good] == [
        (p.id, p.account, p.amount, None) for p in expected
    ]


def test_every_bad_record_from_files_is_accounted_for(
    spark: SparkSession, job_in: JobLoader, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    files = write_corpus_files(tmp_path / "data/sample/payments", GOOD, FILES)
    spec = job_in(JOB, "source.max_files_per_trigger=1").spec
    reports = BatchReports()
    listener = ProgressLogger(spec.name, reports)
    spark.streams.addListener(listener)
    try:
        with caplog.at_level(logging.DEBUG, logger="onceflow"):
            run_to_end(spark, spec, reports=reports)
            progress = _progress_lines(caplog, FILES)
    finally:
        spark.streams.removeListener(listener)
    # the progress line of every batch carries its quality counts
    assert [line["quality"] for line in progress] == [
        {k: v for k, v in batch.items() if k not in ("job", "batch_id")}
        for batch in quality_lines(caplog)
    ]
    # the line counts records as the stage counted them (Spark counts a file read whole)
    assert [line["input_rows"] for line in progress] == [
        line["quality"]["input"] for line in progress
    ]

    # the good payments reached both sinks exactly
    delivery = measure_delivery(spark, spec, GOOD, seed=7)
    assert (delivery.lost, delivery.duplicated, delivery.balance_drift) == (0, 0, 0), delivery
    # every bad one is in quarantine once, with its file, line, batch and reason
    quarantined = quarantine_rows(spark, spec)
    assert sorted(bytes(row["raw"]) for row in quarantined) == sorted(b.payload for b in BAD)
    for bad in BAD:
        (row,) = [r for r in quarantined if bytes(r["raw"]) == bad.payload]
        assert bad.reason in row["reason"], row["reason"]
        source, line = str(row["source"]), int(row["position"])
        lines = files[int(source.rsplit("-", 1)[1].split(".")[0])]
        assert lines[line - 1] == bad.payload
        assert row["batch_id"] in (0, 1) and row["partition"] is None
    # per batch: input = good + dropped + quarantined, and the totals cover every line
    counts = quality_lines(caplog)
    assert len(counts) == FILES
    for batch in counts:
        assert batch["input"] == batch["good"] + batch["dropped"] + batch["quarantined"]
    assert sum(b["input"] for b in counts) == GOOD + len(BAD) + len(DROPPED)
    assert sum(b["dropped"] for b in counts) == len(DROPPED)
    assert sum(b["quarantined"] for b in counts) == len(BAD)
    large = sum(1 for p in payments(GOOD) if p.amount >= 150)
    assert sum(b["violations"]["large_payment"] for b in counts) == large
    assert sum(b["violations"]["known_account"] for b in counts) == len(DROPPED)


def test_the_quarantine_is_exactly_once_across_a_crash(
    spark: SparkSession, job_in: JobLoader, tmp_path: Path
) -> None:
    write_corpus_files(tmp_path / "data/sample/payments", GOOD, FILES)
    common = ("source.max_files_per_trigger=1", EVENTS_ONLY)
    crashing = job_in(JOB, *common).spec
    with pytest.raises(Exception, match="CRASH_INJECTED"):
        run_to_end(spark, crashing, crash=crash_at("after_write", 0))
    spec = job_in(JOB, *common).spec
    run_to_end(spark, spec)
    quarantined = quarantine_rows(spark, spec)
    places = Counter((row["source"], row["position"]) for row in quarantined)
    assert len(quarantined) == len(BAD) and set(places.values()) == {1}, places
    delivery = measure_delivery(spark, spec, GOOD, seed=7)
    assert (delivery.lost, delivery.duplicated) == (0, 0)


def test_expect_or_fail_stops_the_query_with_the_rule_and_a_sample(
    spark: SparkSession, job_in: JobLoader, tmp_path: Path
) -> None:
    folder = tmp_path / "data/sample/payments"
    write_corpus_files(folder, GOOD, 1)
    second = folder / "payments-00001.json"
    second.write_bytes(
        b'{"id": -4, "account": "acct-0002", "amount": "3.00", '
        b'"event_time": "2026-01-01T00:00:00Z"}\n'
    )
    later = second.stat().st_mtime + 60  # the file source takes files oldest first
    os.utime(second, (later, later))
    spec = job_in(JOB, "source.max_files_per_trigger=1", EVENTS_ONLY).spec
    with pytest.raises(Exception, match="QUALITY_EXPECTATION_FAILED") as failure:
        run_to_end(spark, spec)
    text = str(failure.value)
    assert "batch 1: 1 row(s) break rule positive_id (expect_or_fail: id > 0)" in text
    assert '"id": -4' in text
    # batch 0 was written; nothing of batch 1, in the sinks or the quarantine
    delivery = measure_delivery(spark, spec, GOOD, seed=7)
    assert (delivery.lost, delivery.duplicated) == (0, 0)
    assert {row["batch_id"] for row in quarantine_rows(spark, spec)} == {0}


def test_a_rule_on_an_unknown_column_stops_before_the_query_starts(
    spark: SparkSession, job_in: JobLoader, tmp_path: Path
) -> None:
    write_corpus_files(tmp_path / "data/sample/payments", 4, 1)
    spec = job_in(JOB, 'quality.rules=[{name: r, expect: "amout > 0"}]', EVENTS_ONLY).spec
    with pytest.raises(QualityError, match="QUALITY_RULE_INVALID") as refused:
        run_to_end(spark, spec)
    assert "rule 'r' (amout > 0)" in str(refused.value)
    assert not spark.streams.active


def test_csv_records_are_parsed_and_judged_the_same_way(
    spark: SparkSession, job_in: JobLoader, tmp_path: Path
) -> None:
    folder = tmp_path / "data/sample/payments"
    folder.mkdir(parents=True)
    (folder / "payments.csv").write_bytes(
        b"id,account,amount,event_time\n"
        b"1,acct-0001,10.50,2026-01-01T00:00:01Z\n"
        b"2,acct-0002,ten,2026-01-01T00:00:02Z\n"
        b"3,acct-0003,1.00,2026-01-01T00:00:03Z,surplus\n"
        b",acct-0004,1.00,2026-01-01T00:00:04Z\n"
        b'5,"acct-0005, with a comma",2.00,2026-01-01T00:00:05Z\n'
    )
    spec = job_in(
        JOB,
        "source.format=csv",
        "source.options={header: true}",
        "quality.rules=[]",
        "sinks=[{name: events, kind: delta, path: data/tables/csv_events}]",
    ).spec
    run_to_end(spark, spec)
    events = spark.read.format("delta").load(spec.sinks[0].path).orderBy("id").collect()
    assert [(r["id"], r["account"], r["amount"]) for r in events] == [
        (1, "acct-0001", Decimal("10.50")),
        (5, "acct-0005, with a comma", Decimal("2.00")),
    ]
    reasons = {int(str(r["position"])): str(r["reason"]) for r in quarantine_rows(spark, spec)}
    assert reasons == {
        3: "parse: field 'amount': not a decimal(18,2): ten",
        4: "parse: more columns than the schema's 4",
        5: "parse: missing required field 'id'",
    }


@pytest.mark.kafka
def test_every_bad_record_from_kafka_is_accounted_for(
    spark: SparkSession, kafka: LocalKafka, job_in: JobLoader, monkeypatch: pytest.MonkeyPatch
) -> None:
    from confluent_kafka import Producer

    topic = f"quality-{id(spark)}-{len(BAD)}"
    kafka.create_topic(topic, partitions=2)
    producer = Producer({"bootstrap.servers": kafka.bootstrap})
    values = good_payloads(GOOD) + [bad.payload for bad in BAD] + DROPPED
    for index, value in enumerate(values):
        producer.produce(topic, value=value, partition=index % 2)
    producer.flush(30)
    monkeypatch.setenv("KAFKA_BOOTSTRAP", kafka.bootstrap)
    kafka_source = (
        "source={kind: kafka, subscribe: " + topic + ", startingOffsets: earliest, "
        "maxOffsetsPerTrigger: 40, format: json, schema: '" + SCHEMA + "', "
        "options: {kafka.bootstrap.servers: '" + kafka.bootstrap + "'}}"
    )
    spec = job_in(JOB, kafka_source, EVENTS_ONLY).spec
    run_to_end(spark, spec)

    delivery = measure_delivery(spark, spec, GOOD, seed=7)
    assert (delivery.lost, delivery.duplicated) == (0, 0), delivery
    quarantined = quarantine_rows(spark, spec)
    assert sorted(bytes(r["raw"]) for r in quarantined) == sorted(b.payload for b in BAD)
    for row in quarantined:
        index = values.index(bytes(row["raw"]))
        assert (row["source"], row["partition"]) == (topic, index % 2)
        assert row["position"] == index // 2  # the record's offset in its partition


def test_fixed_quarantined_records_are_replayed_exactly_once(
    spark: SparkSession, job_in: JobLoader, tmp_path: Path
) -> None:
    from delta.tables import DeltaTable

    from onceflow.replay import replay_quarantine

    write_corpus_files(tmp_path / "data/sample/payments", GOOD, 1)
    spec = job_in(JOB, EVENTS_ONLY).spec
    run_to_end(spark, spec)
    assert spec.quality is not None and spec.quality.quarantine is not None
    # fix two records in place, as a user would with an UPDATE
    fixed = {
        "parse: not valid JSON": 95001,
        "parse: missing required field 'amount'": 95002,
    }
    table = DeltaTable.forPath(spark, spec.quality.quarantine)
    for reason, new_id in fixed.items():
        payload = (
            f'{{"id": {new_id}, "account": "acct-0007", "amount": "2.50", '
            '"event_time": "2026-02-01T00:00:00Z"}'
        )
        table.update(
            f"reason = '{reason.replace(chr(39), chr(39) * 2)}'", {"payload": F.lit(payload)}
        )

    # the first replay dies after writing the sinks, before the quarantine forgets the rows;
    # the next one finishes it first (tests/test_replay_quarantine.py kills a real process)
    with pytest.raises(Exception, match="CRASH_INJECTED"):
        replay_quarantine(spark, spec, instrument=crash_at("after_write", 0))
    result = replay_quarantine(spark, spec)
    assert (result.resumed, result.replayed, result.still_failing) == (2, 0, len(BAD) - 2)
    again = replay_quarantine(spark, spec)
    assert (again.resumed, again.replayed, again.still_failing) == (0, 0, len(BAD) - 2)

    ids = [row["id"] for row in spark.read.format("delta").load(spec.sinks[0].path).collect()]
    assert sorted(i for i in ids if i > GOOD) == [95001, 95002]  # once each, not twice
    assert len(quarantine_rows(spark, spec)) == len(BAD) - 2


def _merge_sink(on_null_key: str, on_duplicate_key: str) -> str:
    return (
        "sinks=[{name: latest, kind: delta, path: data/tables/latest, mode: merge, "
        f"merge: {{keys: [account], on_null_key: {on_null_key}, "
        f"on_duplicate_key: {on_duplicate_key}}}}}]"
    )


def _by_account(folder: Path) -> None:
    folder.mkdir(parents=True)
    rows = [(1, "acct-a"), (2, "acct-a"), (3, "acct-b"), (4, None)]
    (folder / "payments.json").write_text(
        "".join(
            json.dumps(
                {"id": i, "account": a, "amount": "1.00", "event_time": "2026-01-01T00:00:00Z"}
            )
            + "\n"
            for i, a in rows
        )
    )


def test_null_and_repeated_merge_keys_go_to_quarantine_by_rule(
    spark: SparkSession, job_in: JobLoader, tmp_path: Path
) -> None:
    _by_account(tmp_path / "data/sample/payments")
    spec = job_in(
        JOB, "quality.required=[id]", "quality.rules=[]", _merge_sink("quarantine", "quarantine")
    ).spec
    run_to_end(spark, spec)
    merged = spark.read.format("delta").load(spec.sinks[0].path).collect()
    assert [(row["id"], row["account"]) for row in merged] == [(3, "acct-b")]
    reasons = sorted((row["position"], row["reason"]) for row in quarantine_rows(spark, spec))
    assert [(p, r.split(" (")[0]) for p, r in reasons] == [
        (1, "rule latest_duplicate_key"),
        (2, "rule latest_duplicate_key"),
        (4, "rule latest_null_key"),
    ]


def test_a_repeated_merge_key_stops_the_batch_when_the_rule_says_fail(
    spark: SparkSession, job_in: JobLoader, tmp_path: Path
) -> None:
    _by_account(tmp_path / "data/sample/payments")
    spec = job_in(
        JOB, "quality.required=[id, account]", "quality.rules=[]", _merge_sink("fail", "fail")
    ).spec
    with pytest.raises(Exception, match="SINK_MERGE_KEY_REFUSED") as failure:
        run_to_end(spark, spec)
    assert "a key that several rows of the batch share" in str(failure.value)
    assert '"account":"acct-a"' in str(failure.value)
