"""Kafka -> Delta against a real local broker: guarantees across crashes, partitions,
topic patterns, secured listeners, and data aged out of retention."""

from __future__ import annotations

import itertools
import json
import time
import uuid
from collections import Counter
from pathlib import Path

import pytest
from delta.tables import DeltaTable
from pyspark.sql import SparkSession

from onceflow.errors import SourceError
from onceflow.prove.produce import produce_payments
from onceflow.prove.verify import read_ids, tally
from onceflow.runner import start_query
from onceflow.status import job_status
from onceflow.testing.services import LocalKafka
from tests.conftest import KAFKA_USER, JobLoader
from tests.streaming import crash_at, run_to_end

pytestmark = [pytest.mark.spark, pytest.mark.kafka]

JOB = "jobs/payments_kafka.yaml"
_topics = itertools.count()


def new_topic(kafka: LocalKafka, partitions: int = 3, **config: str) -> str:
    name = f"payments-{next(_topics)}-{int(time.time())}"
    kafka.create_topic(name, partitions=partitions, config=config)
    return name


@pytest.fixture(autouse=True)
def bootstrap_env(kafka: LocalKafka, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP", kafka.bootstrap)


# (overrides, crash point) -> what the restart must show: (lost, duplicated) as "0", ">0"
CASES = {
    "at-least-once/after_write": (("guarantee=at-least-once", "strategy=null"), "after_write"),
    "at-most-once/mid_write": (("guarantee=at-most-once", "strategy=null"), "mid_write"),
    "exactly-once-transactional/after_write": ((), "after_write"),
    "exactly-once-transactional/mid_write": ((), "mid_write"),
    "exactly-once-merge/after_write": (
        ("strategy=merge", "sinks[0].merge.keys=[id]", "sinks[0].merge.order_by=event_time"),
        "after_write",
    ),
}


@pytest.mark.chaos
@pytest.mark.parametrize("case", sorted(CASES))
def test_kafka_to_delta_across_a_crash(
    spark: SparkSession, kafka: LocalKafka, job_in: JobLoader, case: str
) -> None:
    overrides, point = CASES[case]
    topic = new_topic(kafka)
    produce_payments(kafka.bootstrap, topic, 120)
    job = (JOB, f"source.subscribe={topic}", "source.maxOffsetsPerTrigger=40", *overrides)

    crashing = job_in(*job).spec
    with pytest.raises(Exception, match="CRASH_INJECTED"):
        run_to_end(spark, crashing, crash=crash_at(point, 1))
    lag_check = case == "exactly-once-transactional/mid_write"
    if lag_check:  # status asks the broker how far past batch 1 (in flight) the topic goes
        stalled = job_status(spark, crashing)
        assert stalled.in_flight == 1 and stalled.source_lag is not None, stalled
    run_to_end(spark, job_in(*job).spec)
    if lag_check:
        # the truth: 120 produced minus what batches 0 and 1 committed into the table
        history = DeltaTable.forPath(spark, crashing.sinks[0].path).history().collect()
        first_two = sum(
            int(row["operationMetrics"]["numOutputRows"])
            for row in history
            if json.loads(row["userMetadata"] or "{}").get("onceflow_batch_id") in (0, 1)
        )
        assert stalled.source_lag == {"offsets": 120 - first_two, "as_of": "now"}
        drained = job_status(spark, crashing)
        assert drained.healthy and drained.source_lag == {"offsets": 0, "as_of": "now"}

    table = crashing.sinks[0].path
    events = tally(read_ids(spark, "delta", table), range(1, 121))
    rows = spark.read.format("delta").load(table)
    per_record = Counter(
        (r["kafka_partition"], r["kafka_offset"])
        for r in rows.select("kafka_partition", "kafka_offset").collect()
    )
    if case.startswith("exactly-once"):
        assert (events.lost, events.duplicated) == (0, 0), events
    elif case.startswith("at-least-once"):
        # batch 1 (at most 40 records) written twice, nothing lost; each twice, not more
        assert events.lost == 0 and 0 < events.duplicated <= 40, events
        assert set(per_record.values()) == {1, 2}
    else:
        # batch 1 lost with the ledger already holding it; never a duplicate
        assert 0 < events.lost <= 40 and events.duplicated == 0, events
    # every row traces to one record: (partition, offset) -> one id, over all 3 partitions
    assert {p for p, _ in per_record} == {0, 1, 2}


def test_pattern_subscription_picks_up_a_new_topic(
    spark: SparkSession, kafka: LocalKafka, job_in: JobLoader, tmp_path: Path
) -> None:
    prefix = f"pattern{int(time.time())}"
    first = f"{prefix}-a"
    kafka.create_topic(first, partitions=2)
    produce_payments(kafka.bootstrap, first, 30)
    spec = job_in(
        JOB,
        "source.subscribe=null",
        f"source.subscribePattern={prefix}-.*",
        'source.options["kafka.metadata.max.age.ms"]=500',
        "trigger.available_now=false",
        "trigger.processing_time=1 second",
    ).spec
    query = start_query(spark, spec)
    try:
        query.processAllAvailable()
        second = f"{prefix}-b"
        kafka.create_topic(second, partitions=1)
        produce_payments(kafka.bootstrap, second, 20, first_id=31)
        table = spec.sinks[0].path
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            query.processAllAvailable()
            if spark.read.format("delta").load(table).count() >= 50:
                break
            time.sleep(1)
    finally:
        query.stop()
    rows = spark.read.format("delta").load(spec.sinks[0].path)
    topics = Counter(r["kafka_topic"] for r in rows.select("kafka_topic").collect())
    assert topics == {first: 30, second: 20}


def sasl_job(job_in: JobLoader, kafka: LocalKafka, topic: str, mechanism: str) -> JobLoader:
    module = {
        "PLAIN": "org.apache.kafka.common.security.plain.PlainLoginModule",
        "SCRAM-SHA-256": "org.apache.kafka.common.security.scram.ScramLoginModule",
    }[mechanism]
    jaas = f'{module} required username="{KAFKA_USER.name}" password="${{env:KAFKA_PASSWORD}}";'
    return job_in(  # type: ignore[no-any-return]
        JOB,
        f"source.subscribe={topic}",
        f'source.options["kafka.bootstrap.servers"]={kafka.sasl_bootstrap}',
        'source.options["kafka.security.protocol"]=SASL_PLAINTEXT',
        f'source.options["kafka.sasl.mechanism"]={mechanism}',
        f"source.options[\"kafka.sasl.jaas.config\"]='{jaas}'",
    )


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256"])
def test_secured_listener_with_the_right_password(
    spark: SparkSession,
    kafka: LocalKafka,
    job_in: JobLoader,
    monkeypatch: pytest.MonkeyPatch,
    mechanism: str,
) -> None:
    topic = new_topic(kafka, partitions=1)
    produce_payments(kafka.bootstrap, topic, 25)
    monkeypatch.setenv("KAFKA_PASSWORD", KAFKA_USER.password)
    spec = sasl_job(job_in, kafka, topic, mechanism).spec
    run_to_end(spark, spec)
    assert tally(read_ids(spark, "delta", spec.sinks[0].path), range(1, 26)).lost == 0


def test_wrong_password_fails_fast_with_a_clear_error(
    spark: SparkSession, kafka: LocalKafka, job_in: JobLoader, monkeypatch: pytest.MonkeyPatch
) -> None:
    from onceflow.runner import unwrap_streaming_error

    topic = new_topic(kafka, partitions=1)
    produce_payments(kafka.bootstrap, topic, 5)
    monkeypatch.setenv("KAFKA_PASSWORD", "not-the-password")
    spec = sasl_job(job_in, kafka, topic, "PLAIN").spec
    started = time.monotonic()
    with pytest.raises(Exception) as caught:
        run_to_end(spark, spec)
    error = unwrap_streaming_error(caught.value, spec)
    assert isinstance(error, SourceError), error
    assert error.error_class == "SOURCE_AUTH_FAILED"
    assert kafka.sasl_bootstrap in str(error)
    assert "not-the-password" not in str(error)
    assert time.monotonic() - started < 120  # fails, instead of retrying for minutes
    print(f"{time.monotonic() - started:.1f}s: {error}")


def age_out(kafka: LocalKafka, topic: str, first_id: int, count: int) -> int:
    """Shorten the topic's retention, produce ``count`` records (and one more), wait until
    retention has removed every
    record of the topic, and return the log start offset, which is then its end offset.

    The topic keeps data 1 s and rolls segments after 1 s; the broker checks every second
    and also rolls and deletes an expired active segment, so in the end nothing is left.
    Waiting for that end state keeps the expectations exact.
    """
    from confluent_kafka import Consumer, TopicPartition

    kafka.set_topic_config(topic, {"retention.ms": "1000", "segment.ms": "1000"})
    produce_payments(kafka.bootstrap, topic, count, first_id=first_id)
    time.sleep(2.5)
    produce_payments(kafka.bootstrap, topic, 1, first_id=first_id + count)
    consumer = Consumer({"bootstrap.servers": kafka.bootstrap, "group.id": "probe", "log_level": 3})
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=5)
            if low == high == first_id + count:
                return int(low)
            time.sleep(0.5)
    finally:
        consumer.close()
    raise AssertionError(f"{topic}: records did not age out within 60 s")


def test_aged_out_data_stops_the_query_naming_the_offsets(
    spark: SparkSession, kafka: LocalKafka, job_in: JobLoader
) -> None:
    from onceflow.runner import unwrap_streaming_error

    topic = new_topic(kafka, partitions=1)
    produce_payments(kafka.bootstrap, topic, 10)
    spec = job_in(JOB, f"source.subscribe={topic}").spec
    run_to_end(spark, spec)  # checkpoint now at offset 10
    start = age_out(kafka, topic, first_id=11, count=40)

    with pytest.raises(Exception) as caught:
        run_to_end(spark, spec)
    error = unwrap_streaming_error(caught.value, spec)
    assert isinstance(error, SourceError), caught.value
    assert error.error_class == "SOURCE_DATA_LOSS"
    expected = f"{topic}-0: offsets 10..{start - 1} (the earliest Kafka still has is {start})"
    assert expected in str(error), str(error)
    print(error)


def test_aged_out_data_is_skipped_and_counted_without_fail_on_data_loss(
    spark: SparkSession, kafka: LocalKafka, job_in: JobLoader
) -> None:
    from onceflow.contracts import BatchReports
    from onceflow.observe import MetricsFile, ProgressLogger, skipped_offsets
    from onceflow.status import render_status

    topic = new_topic(kafka, partitions=1)
    produce_payments(kafka.bootstrap, topic, 10)
    spec = job_in(
        JOB,
        f"source.subscribe={topic}",
        "source.failOnDataLoss=false",
        "source.accept_record_loss=true",
    ).spec
    run_to_end(spark, spec)
    start = age_out(kafka, topic, first_id=11, count=40)

    # the metrics file keeps each batch's count, which status sums
    listener = ProgressLogger(spec.name, BatchReports(), MetricsFile(spark, spec.checkpoint))
    spark.streams.addListener(listener)
    try:
        query = start_query(spark, spec)
        query.awaitTermination(300)
        assert listener.terminated.wait(30)
    finally:
        spark.streams.removeListener(listener)
    skipped = sum(skipped_offsets(progress.json) for progress in query.recentProgress)
    assert skipped == start - 10
    assert start == 51  # offsets 10..50 aged out unread
    assert spark.read.format("delta").load(spec.sinks[0].path).count() == 10
    status = job_status(spark, spec)
    assert status.skipped_offsets is not None and status.skipped_offsets["total"] == 41
    assert "41 Kafka offset(s) gone before they were read" in render_status(status)


@pytest.mark.slow
def test_the_password_appears_in_no_log_error_config_or_event_log(
    kafka: LocalKafka, tmp_path: Path
) -> None:
    """A real ``onceflow run`` reading through SASL with the canary password from
    ``${env:KAFKA_PASSWORD}``, with Spark's event log on: the canary appears nowhere."""
    import os
    import subprocess
    import sys

    from tests.conftest import ROOT

    topic = new_topic(kafka, partitions=1)
    produce_payments(kafka.bootstrap, topic, 20)
    events = tmp_path / "spark-events"
    events.mkdir()
    jaas = (
        "org.apache.kafka.common.security.plain.PlainLoginModule required "
        f'username="{KAFKA_USER.name}" password="${{env:KAFKA_PASSWORD}}";'
    )
    job_args = [
        JOB,
        "--env", "local",
        "--set", f"storage.root={tmp_path}",
        "--set", f"source.subscribe={topic}",
        "--set", f'source.options["kafka.bootstrap.servers"]={kafka.sasl_bootstrap}',
        "--set", 'source.options["kafka.security.protocol"]=SASL_PLAINTEXT',
        "--set", 'source.options["kafka.sasl.mechanism"]=PLAIN',
        "--set", f"source.options[\"kafka.sasl.jaas.config\"]='{jaas}'",
        "--set", 'spark.conf["spark.eventLog.enabled"]=true',
        "--set", f'spark.conf["spark.eventLog.dir"]={events}',
        "--set", 'spark.conf["spark.eventLog.compress"]=false',  # so it can be searched
        "--set", "spark.log_level=INFO",
    ]  # fmt: skip
    env = {**os.environ, "KAFKA_PASSWORD": KAFKA_USER.password, "SPARK_LOCAL_IP": "127.0.0.1"}
    onceflow = str(Path(sys.executable).with_name("onceflow"))
    run = subprocess.run(
        [onceflow, "run", *job_args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    printed = subprocess.run(
        [onceflow, "validate", *job_args, "--print"], cwd=ROOT, env=env, capture_output=True,
        text=True, timeout=60,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    assert "sink 'events': 20 row(s)" in run.stdout
    assert printed.returncode == 0 and "kafka.sasl.jaas.config: '***'" in printed.stdout
    event_logs = [path.read_text(errors="replace") for path in events.rglob("*") if path.is_file()]
    assert event_logs and any("SparkListenerApplicationStart" in text for text in event_logs)
    for where, text in [
        ("stdout", run.stdout),
        ("stderr (Spark and onceflow logs)", run.stderr),
        ("validate --print", printed.stdout),
        *(("event log", text) for text in event_logs),
    ]:
        assert KAFKA_USER.password not in text, f"the password leaked into {where}"


def test_string_format_with_headers_keeps_the_raw_value(
    spark: SparkSession, kafka: LocalKafka, job_in: JobLoader
) -> None:
    topic = new_topic(kafka, partitions=1)
    produce_payments(kafka.bootstrap, topic, 5)
    spec = job_in(
        JOB,
        f"source.subscribe={topic}",
        "source.format=string",
        "source.schema=null",
        "source.includeHeaders=true",
        "transform.select=[value, kafka_key, kafka_offset, kafka_headers]",
    ).spec
    run_to_end(spark, spec)
    rows = spark.read.format("delta").load(spec.sinks[0].path).orderBy("kafka_offset").collect()
    assert [row["kafka_offset"] for row in rows] == [0, 1, 2, 3, 4]
    assert rows[0]["value"].startswith('{"id": 1, "account": "acct-')
    assert rows[0]["kafka_key"] == rows[0]["value"].split('"account": "')[1].split('"')[0]


def test_produce_command_at_a_rate(kafka: LocalKafka, capsys: pytest.CaptureFixture[str]) -> None:
    from onceflow.cli import EXIT_OK, main

    topic = new_topic(kafka, partitions=2)
    started = time.monotonic()
    code = main(
        ["produce", "--bootstrap", kafka.bootstrap, "--topic", topic, "--records", "100",
         "--rate", "200"]
    )  # fmt: skip
    elapsed = time.monotonic() - started
    assert code == EXIT_OK
    assert f"produced 100 payment(s) to {topic}" in capsys.readouterr().out
    assert elapsed >= 0.45  # 100 records at 200/s cannot take less than ~0.5 s


def test_produce_creates_a_topic_the_broker_does_not_have(
    kafka: LocalKafka, capsys: pytest.CaptureFixture[str]
) -> None:
    """The README's block: a fresh broker creates no topic on first use, so `produce` does
    (3 partitions by default), once; a second produce appends to the same topic."""
    from onceflow.cli import EXIT_OK, main

    topic = f"fresh-{uuid.uuid4().hex[:8]}"
    command = ["produce", "--bootstrap", kafka.bootstrap, "--topic", topic, "--records", "12"]
    assert main(command) == EXIT_OK
    assert f"created topic {topic} (3 partition(s))" in capsys.readouterr().out
    assert main([*command, "--first-id", "13"]) == EXIT_OK
    assert "created topic" not in capsys.readouterr().out
    metadata = kafka.admin().list_topics(topic, timeout=30).topics[topic]
    assert len(metadata.partitions) == 3
    assert sum(high_watermarks(kafka, topic, 3)) == 24


def high_watermarks(kafka: LocalKafka, topic: str, partitions: int) -> list[int]:
    """Each partition's next offset: how many records it holds (none has aged out)."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": kafka.bootstrap, "group.id": "probe", "log_level": 3})
    try:
        return [
            consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
            for p in range(partitions)
        ]
    finally:
        consumer.close()


def test_a_broker_that_cannot_start_says_why(tmp_path: Path) -> None:
    from onceflow.errors import ServiceError

    with pytest.raises(ServiceError) as caught:
        LocalKafka(tmp_path / "k", jars=tmp_path / "no-jars").start()
    assert "make kafka-jars" in str(caught.value)


@pytest.mark.chaos
@pytest.mark.slow
def test_prove_feeds_a_kafka_job(kafka: LocalKafka, tmp_path: Path) -> None:
    import json

    from onceflow.cli import EXIT_OK, main
    from tests.conftest import ROOT

    report = tmp_path / "report.json"
    code = main(
        ["prove", str(ROOT / JOB), "--env", "test", "--records", "60", "--batches", "2",
         "--crash-batch", "0", "--crash-points", "after_write", "--work-dir",
         str(tmp_path / "work"), "--json", str(report)]
    )  # fmt: skip
    (row,) = json.loads(report.read_text())
    assert code == EXIT_OK, row
    assert (row["kills"], row["lost"], row["duplicated"], row["promise_held"]) == (1, 0, 0, True)


def test_a_failed_broker_start_shows_its_log_tail(tmp_path: Path) -> None:
    import socket

    from onceflow.errors import ServiceError
    from tests.conftest import ROOT

    broker = LocalKafka(tmp_path / "k", jars=ROOT / ".jars" / "kafka")
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", broker.ports.plaintext))
        squatter.listen()
        with pytest.raises(ServiceError) as caught:
            broker.start(timeout=60)
    message = str(caught.value)
    assert caught.value.error_class == "SERVICE_START_FAILED"
    assert str(broker.log) in message
    assert "Address already in use" in message or "BindException" in message


@pytest.mark.chaos
def test_a_cdc_feed_in_kafka_into_scd_1_and_2_exactly_once(
    spark: SparkSession, kafka: LocalKafka, job_in: JobLoader
) -> None:
    """jobs/customers_cdc_kafka.yaml on what ``onceflow produce --workload customers-cdc``
    sends (changes late, some twice, an update before a delete after it), its batch 1
    written and not committed when the job stops: after the restart the SCD 1 table holds
    each customer's final state and the SCD 2 table every version with its interval, once,
    as tests/test_cdc.py's plain-Python reference computes them from the generated
    changes."""
    from onceflow.cli import EXIT_OK, main
    from onceflow.prove.cdc_workload import customer_changes, delivered
    from tests.test_cdc import SCD2, as_event, exercised, final_state, history, table

    topic = new_topic(kafka)
    produce = ["produce", "--bootstrap", kafka.bootstrap, "--topic", topic]
    feed = ["--workload", "customers-cdc", "--records", "120", "--batches", "3", "--seed", "11"]
    assert main([*produce, *feed]) == EXIT_OK
    changes = customer_changes(120, seed=11)
    sent = [[as_event(c) for c in batch] for batch in delivered(changes, 3, seed=11)]
    assert min(exercised(sent).values()) > 0, exercised(sent)

    job = (
        "jobs/customers_cdc_kafka.yaml",
        f"source.subscribe={topic}",
        "source.maxOffsetsPerTrigger=50",
    )
    with pytest.raises(Exception, match="CRASH_INJECTED"):
        run_to_end(spark, job_in(*job).spec, crash=crash_at("after_write", 1))
    spec = job_in(*job).spec
    run_to_end(spark, spec)

    customers, customer_history = (sink.location for sink in spec.sinks)
    latest = table(spark, customers)
    assert {(row[0], *row[3:]) for row in latest} == final_state(changes)
    assert table(spark, customer_history) == history(sent, SCD2)
    rows = [spark.read.format("delta").load(path).count() for path in (customers, customer_history)]
    assert rows == [len(final_state(changes)), len(history(sent, SCD2))]  # each row once
