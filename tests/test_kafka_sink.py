"""The Kafka sink against the real local broker: exactly-once across crashes (counted by a
plain read_committed consumer), at-least-once's duplicates, the refusals, the checkpoint's
record of K, a lost control topic, and status from the markers."""

from __future__ import annotations

import itertools
import json
import os
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from pyspark.sql import SparkSession, Window

from onceflow.errors import ConfigError, SinkError
from onceflow.prove.produce import produce_payments
from onceflow.status import job_status, render_status
from onceflow.testing.services import LocalKafka
from tests.conftest import KAFKA_USER, ROOT, JobLoader
from tests.kafka_topics import topic_messages
from tests.streaming import crash_at, run_to_end

pytestmark = [pytest.mark.spark, pytest.mark.kafka]

JOB = "jobs/payments_to_kafka.yaml"
_names = itertools.count()


@pytest.fixture(autouse=True)
def bootstrap_env(kafka: LocalKafka, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP", kafka.bootstrap)


def topics(kafka: LocalKafka, records: int = 0) -> tuple[str, str]:
    """A new source topic holding payments 1..records, and a new name for the output."""
    stamp = f"{next(_names)}-{int(time.time() * 1000)}"
    source = f"sink-in-{stamp}"
    kafka.create_topic(source, partitions=3)
    if records:
        produce_payments(kafka.bootstrap, source, records)
    output = f"sink-out-{stamp}"
    kafka.create_topic(output, partitions=3)
    return source, output


def committed_values(kafka: LocalKafka, topic: str) -> list[dict[str, Any]]:
    """Every record value of ``topic`` as a read_committed consumer sees it: the plain
    client, not onceflow's code."""
    return [json.loads(message.value()) for message in topic_messages(kafka.bootstrap, topic)]


def job(source: str, output: str, *overrides: str) -> tuple[str, ...]:
    """The Kafka -> Kafka job from ``source`` to ``output``, its markers in ``<output>.markers``."""
    return (
        JOB,
        f"source.subscribe={source}",
        "source.maxOffsetsPerTrigger=40",
        f"sinks[0].topic={output}",
        f"sinks[0].control_topic={output}.markers",
        *overrides,
    )


# (overrides, crash point, action)
CASES = {
    "exactly-once/mid_write": ((), "mid_write"),
    "exactly-once/after_write": ((), "after_write"),
    "at-least-once/after_write": (
        ("guarantee=at-least-once", "sinks[0].partitions=null", "sinks[0].control_topic=null"),
        "after_write",
    ),
}


@pytest.mark.chaos
@pytest.mark.parametrize("case", sorted(CASES))
def test_kafka_to_kafka_across_a_crash(
    spark: SparkSession, kafka: LocalKafka, job_in: JobLoader, case: str
) -> None:
    overrides, point = CASES[case]
    source, output = topics(kafka, 120)
    crashing = job_in(*job(source, output, *overrides)).spec
    with pytest.raises(Exception, match="CRASH_INJECTED"):
        run_to_end(spark, crashing, crash=crash_at(point, 1))
    if case == "exactly-once/mid_write":  # the last part failed before its commit
        parts = job_status(spark, crashing).sinks[0].parts
        assert parts is not None and parts[3] == 0 and max(parts.values()) == 1, parts
        assert "behind the others" in render_status(job_status(spark, crashing))
    run_to_end(spark, job_in(*job(source, output, *overrides)).spec)
    if case.startswith("exactly-once"):
        drained = job_status(spark, crashing)
        last = drained.last_committed
        assert drained.healthy and drained.sinks[0].parts == dict.fromkeys(range(4), last)

    ids = Counter(value["id"] for value in committed_values(kafka, output))
    lost = set(range(1, 121)) - set(ids)
    duplicated = sum(count - 1 for count in ids.values())
    if case.startswith("exactly-once"):
        assert (len(lost), duplicated) == (0, 0), (lost, ids.most_common(3))
    else:  # batch 1 (at most 40 records) produced twice, nothing lost
        assert not lost and 0 < duplicated <= 40, (lost, duplicated)


def test_records_carry_the_key_value_and_headers_asked_for(
    spark: SparkSession, kafka: LocalKafka, job_in: JobLoader
) -> None:
    source, output = topics(kafka, 30)
    run_to_end(spark, job_in(*job(source, output)).spec)
    messages = topic_messages(kafka.bootstrap, output)
    assert len(messages) == 30
    for message in messages:
        value = json.loads(message.value())
        assert message.key().decode() == value["account"]
        assert set(value) == {"id", "account", "amount", "event_time", "cents", "size"}
        assert value["cents"] == round(float(value["amount"]) * 100)
        ((name, origin),) = message.headers()
        assert name == "source_offset" and origin.decode().count(":") == 1
    # Java's partitioner for keyed records (murmur2): one account, one partition
    partitions_of: dict[str, set[int]] = {}
    for message in messages:
        partitions_of.setdefault(message.key().decode(), set()).add(message.partition())
    assert all(len(found) == 1 for found in partitions_of.values())


REFUSED = {
    "acks": ('sinks[0].options["kafka.acks"]=1', "acks=1"),
    "transactional id": ('sinks[0].options["kafka.transactional.id"]=mine', "set by onceflow"),
    "idempotence off": ('sinks[0].options["kafka.enable.idempotence"]=false', "idempotent"),
    "in flight": ('sinks[0].options["kafka.max.in.flight.requests.per.connection"]=6', "at most 5"),
    "retries": ('sinks[0].options["kafka.retries"]=0', "retries=0"),
    "no partitions": ("sinks[0].partitions=null", "needs partitions"),
    "two topics": ("sinks[0].topic_column=topic", "exactly one of topic and topic_column"),
}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_settings_that_break_the_guarantee_are_refused(job_in: JobLoader, case: str) -> None:
    override, why = REFUSED[case]
    with pytest.raises(ConfigError, match=why) as caught:
        job_in(JOB, override)
    assert "'sinks[0]" in str(caught.value)  # the key it is about


def test_a_transaction_timeout_above_the_brokers_maximum_is_refused(
    spark: SparkSession, kafka: LocalKafka, job_in: JobLoader
) -> None:
    source, output = topics(kafka)
    # the broker's default maximum is 15 minutes
    spec = job_in(
        *job(source, output, 'sinks[0].options["kafka.transaction.timeout.ms"]=3600000')
    ).spec
    with pytest.raises(SinkError, match="KAFKA_SINK_TIMEOUT_TOO_LONG") as caught:
        run_to_end(spark, spec)
    assert "3600000" in str(caught.value) and "900000" in str(caught.value)


def test_changing_the_parts_of_a_checkpoint_is_refused(
    spark: SparkSession, kafka: LocalKafka, job_in: JobLoader
) -> None:
    source, output = topics(kafka, 40)
    run_to_end(spark, job_in(*job(source, output)).spec)
    with pytest.raises(SinkError, match="KAFKA_SINK_PARTITIONS_CHANGED") as caught:
        run_to_end(spark, job_in(*job(source, output, "sinks[0].partitions=2")).spec)
    assert "recorded 4" in str(caught.value)


@pytest.mark.parametrize("how", ["deleted", "truncated"])
def test_a_control_topic_that_lost_its_markers_stops_the_start(
    spark: SparkSession, kafka: LocalKafka, job_in: JobLoader, how: str
) -> None:
    from confluent_kafka import TopicPartition

    source, output = topics(kafka, 80)
    spec = job_in(*job(source, output)).spec
    run_to_end(spark, spec)
    control = f"{output}.markers"
    admin = kafka.admin()
    if how == "deleted":
        admin.delete_topics([control])[control].result(30)
    else:  # retention put on it, and every record before the end gone, as it would delete
        kafka.set_topic_config(control, {"cleanup.policy": "compact,delete"})
        ends = {p: admin_end(kafka, control, p) for p in range(4)}
        futures = admin.delete_records([TopicPartition(control, p, end) for p, end in ends.items()])
        for future in futures.values():
            future.result(30)
    produce_payments(kafka.bootstrap, source, 40, first_id=81)
    with pytest.raises(SinkError, match="KAFKA_SINK_MARKERS_LOST") as caught:
        run_to_end(spark, job_in(*job(source, output)).spec)
    assert control in str(caught.value)
    # nothing more was written
    assert len(committed_values(kafka, output)) == 80


def admin_end(kafka: LocalKafka, topic: str, partition: int) -> int:
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": kafka.bootstrap, "group.id": "ends"})
    try:
        return int(consumer.get_watermark_offsets(TopicPartition(topic, partition), 10)[1])
    finally:
        consumer.close()


def test_the_markers_say_how_far_each_part_got(
    spark: SparkSession, kafka: LocalKafka, job_in: JobLoader, tmp_path: Path
) -> None:
    from onceflow.sinks.base import build_sink

    source, output = topics(kafka, 120)
    spec = job_in(*job(source, output)).spec
    run_to_end(spark, spec)
    sink: Any = build_sink(spec, spec.sinks[0])
    app_id = (Path(spec.checkpoint) / "onceflow" / "app_id").read_text().strip()
    last = max(
        int(name) for name in os.listdir(Path(spec.checkpoint) / "commits") if name.isdigit()
    )
    assert last >= 2  # 120 records, 40 a batch
    assert sink.part_marks(spark) == {app_id: dict.fromkeys(range(4), last)}
    assert sink.batch_marks(spark) == {app_id: last}


def sasl_sink(kafka: LocalKafka, mechanism: str) -> tuple[str, ...]:
    """Overrides that make the sink log in on the SASL listener, its password from the
    environment, as Spark's writer takes it (a JAAS line)."""
    module = {
        "PLAIN": "org.apache.kafka.common.security.plain.PlainLoginModule",
        "SCRAM-SHA-256": "org.apache.kafka.common.security.scram.ScramLoginModule",
    }[mechanism]
    jaas = f'{module} required username="{KAFKA_USER.name}" password="${{env:KAFKA_PASSWORD}}";'
    return (
        f'sinks[0].options["kafka.bootstrap.servers"]={kafka.sasl_bootstrap}',
        'sinks[0].options["kafka.security.protocol"]=SASL_PLAINTEXT',
        f'sinks[0].options["kafka.sasl.mechanism"]={mechanism}',
        f"sinks[0].options[\"kafka.sasl.jaas.config\"]='{jaas}'",
    )


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256"])
def test_exactly_once_through_a_secured_listener(
    spark: SparkSession,
    kafka: LocalKafka,
    job_in: JobLoader,
    monkeypatch: pytest.MonkeyPatch,
    mechanism: str,
) -> None:
    """The JAAS login Spark's writer takes is the transactional producer's login too."""
    source, output = topics(kafka, 30)
    monkeypatch.setenv("KAFKA_PASSWORD", KAFKA_USER.password)
    run_to_end(spark, job_in(*job(source, output, *sasl_sink(kafka, mechanism))).spec)
    assert sorted(value["id"] for value in committed_values(kafka, output)) == list(range(1, 31))


def test_a_refused_login_stops_the_start_without_showing_the_password(
    spark: SparkSession, kafka: LocalKafka, job_in: JobLoader, monkeypatch: pytest.MonkeyPatch
) -> None:
    source, output = topics(kafka, 10)
    monkeypatch.setenv("KAFKA_PASSWORD", "not-the-password")
    spec = job_in(*job(source, output, *sasl_sink(kafka, "PLAIN"))).spec
    with pytest.raises(SinkError, match="KAFKA_SINK_NO_TRANSACTIONS") as caught:
        run_to_end(spark, spec)
    assert kafka.sasl_bootstrap in str(caught.value)
    assert "Authentication failed" in str(caught.value)
    assert "not-the-password" not in str(caught.value)
    assert committed_values(kafka, output) == []


QUARANTINING_JOB = """
name: to-kafka-quality
source:
  kind: files
  format: json
  path: {input}
  schema: "id BIGINT, account STRING, amount DECIMAL(18,2), event_time TIMESTAMP"
  max_files_per_trigger: 1
quality:
  required: [id, account, amount, event_time]
  quarantine: data/quarantine
guarantee: {guarantee}
sinks:
  - name: events
    kind: kafka
    topic: {topic}
    control_topic: {topic}.markers
    key: account
    {partitions}
    options:
      kafka.bootstrap.servers: {bootstrap}
checkpoint: state/checkpoint
"""


@pytest.mark.chaos
@pytest.mark.parametrize("guarantee", ["exactly-once", "at-least-once"])
def test_a_quarantine_replay_into_kafka_interrupted_and_rerun_writes_each_record_once(
    spark: SparkSession, kafka: LocalKafka, tmp_path: Path, guarantee: str
) -> None:
    """The replay is a side path into the topic: its own guard ids, markers like the
    stream's, exactly once even for an at-least-once job (a replay always is)."""
    from delta.tables import DeltaTable
    from pyspark.sql import functions as F

    from onceflow.config import load_job
    from onceflow.replay import replay_quarantine
    from tests.quality_corpus import BAD, write_corpus_files

    _, output = topics(kafka)
    write_corpus_files(tmp_path / "in", 30, 2)
    job_file = tmp_path / "job.yaml"
    job_file.write_text(QUARANTINING_JOB.format(
        input=tmp_path / "in", guarantee=guarantee, topic=output, bootstrap=kafka.bootstrap,
        partitions="partitions: 2" if guarantee == "exactly-once" else "",
    ))  # fmt: skip
    spec = load_job(job_file, env="local", conf_dir=ROOT / "conf",
                    overrides=[f"storage.root={tmp_path}"]).spec  # fmt: skip
    run_to_end(spark, spec)
    streamed = Counter(value["id"] for value in committed_values(kafka, output))
    assert set(range(1, 31)) <= set(streamed) and max(streamed.values()) == 1
    quarantine = DeltaTable.forPath(spark, str(tmp_path / "data" / "quarantine"))
    quarantined = quarantine.toDF().count()
    assert 0 < quarantined <= len(BAD)
    # every quarantined record fixed into a good one, ids 9001..
    good = '{"id": %d, "account": "acct-0001", "amount": "1.00", "event_time": "2026-02-01"}'
    fixed = F.format_string(
        good,
        F.lit(9000) + F.row_number().over(Window.orderBy("position", "source")),
    )
    rows = quarantine.toDF().withColumn("payload", fixed)
    rows.write.format("delta").mode("overwrite").save(str(tmp_path / "data" / "quarantine"))

    with pytest.raises(Exception, match="CRASH_INJECTED"):
        replay_quarantine(spark, spec, instrument=crash_at("after_write", 0))
    replay_quarantine(spark, spec)

    ids = Counter(value["id"] for value in committed_values(kafka, output))
    expected = {*streamed, *range(9001, 9001 + quarantined)}
    assert set(ids) == expected and max(ids.values()) == 1, ids.most_common(3)


def test_bytes_to_the_topic_each_record_names(
    spark: SparkSession, kafka: LocalKafka, job_in: JobLoader
) -> None:
    """``format: bytes`` writes a STRING value as it is; ``topic_column`` routes each
    record, under exactly-once too (a part's transaction spans both topics)."""
    source, even = topics(kafka, 30)
    odd = f"{even}-odd"
    kafka.create_topic(odd, partitions=1)
    route = f"CASE WHEN id % 2 = 0 THEN '{even}' ELSE '{odd}' END"
    spec = job_in(
        *job(source, even),
        "sinks[0].topic=null",
        "sinks[0].topic_column=target",
        f"sinks[0].query=SELECT *, {route} AS target FROM {{batch}}",  # noqa: S608
        "sinks[0].format=bytes",
        "sinks[0].value=CAST(id AS STRING)",
    ).spec
    run_to_end(spark, spec)
    for topic, parity in ((even, 0), (odd, 1)):
        values = topic_messages(kafka.bootstrap, topic)
        assert sorted(int(m.value()) for m in values) == list(range(2 - parity, 31, 2))


def test_a_java_only_producer_setting_is_refused_at_the_start(
    spark: SparkSession, kafka: LocalKafka, job_in: JobLoader
) -> None:
    source, output = topics(kafka, 10)
    spec = job_in(*job(source, output, 'sinks[0].options["kafka.buffer.memory"]=33554432')).spec
    with pytest.raises(SinkError, match="KAFKA_SINK_OPTION_REFUSED") as caught:
        run_to_end(spark, spec)
    assert "buffer.memory" in str(caught.value)
    assert committed_values(kafka, output) == []


def test_a_kept_producer_fenced_between_batches_is_replaced_and_writes_once(
    spark: SparkSession, kafka: LocalKafka, job_in: JobLoader
) -> None:
    """Each Python worker keeps a part's producer for the part's next batch. Between two
    runs of the job in one session, every part's transactional id is taken over from here
    (``init_transactions``, as a replacement attempt on another executor would): the kept
    producers are fenced, the broker refuses their first record, and each part is written
    by a new producer instead; the second run's records are then there once each, the
    first run's untouched."""
    from confluent_kafka import Producer

    from onceflow.guarantees.app_id import read_app_id

    source, output = topics(kafka, 80)
    spec = job_in(*job(source, output)).spec
    run_to_end(spark, spec)
    app_id = read_app_id(spark, spec.checkpoint)
    for part in range(4):
        transactional_id = f"onceflow.{app_id}.{spec.sinks[0].name}.{part}"
        fencer = Producer(
            {"bootstrap.servers": kafka.bootstrap, "transactional.id": transactional_id}
        )
        fencer.init_transactions(30)
        fencer.flush(5)
    produce_payments(kafka.bootstrap, source, 80, first_id=81, seed=8)
    run_to_end(spark, job_in(*job(source, output)).spec)

    ids = Counter(value["id"] for value in committed_values(kafka, output))
    assert set(ids) == set(range(1, 161)) and max(ids.values()) == 1, ids.most_common(3)
