"""What a job's Kafka sinks hold, as a plain ``read_committed`` consumer sees it.

``verify`` counts a Kafka sink's records with this module, never with onceflow's sink code:
a confluent-kafka consumer (librdkafka) with ``isolation.level=read_committed``, assigned
every partition of the sink's topic from offset 0 and read until each partition reports
its end. That is what a downstream application sees: records of committed transactions
once, of aborted ones (a killed attempt's) never, and Spark's non-transactional writes
(at-least-once) as they were sent, a replayed batch twice. Spark's batch Kafka reader
would not do: its default isolation, ``read_uncommitted``, shows aborted records too.

A record is identified by the ``id`` of its JSON value (the payments' ids); a value that is
not a JSON object with an integer ``id`` is a row holding no record (``None``).

The consumer connects with the sink's ``kafka.bootstrap.servers`` alone, as prove's feed
produces to a Kafka source: a broker that needs a login is not one prove runs against.
"""

from __future__ import annotations

import json
import uuid
from typing import Any, cast

from onceflow.config import JobSpec, SinkSpec
from onceflow.errors import ConfigError

__all__ = ["KAFKA", "check_kafka_sinks", "committed_ids", "is_kafka_sink"]

#: the sink kind this module reads
KAFKA = "kafka"
# how long one poll waits for the next record or a partition's end before giving up
_POLL_S = 30.0


def is_kafka_sink(sink: SinkSpec) -> bool:
    """True for a sink of kind ``kafka``."""
    return sink.kind == KAFKA


def check_kafka_sinks(spec: JobSpec, job_file: str) -> None:
    """Refuse a Kafka sink prove cannot count: one writing the topic each record names
    (``topic_column``: which topics to read is a guess), or one in a windowed job (its
    records are windows, not payments with an ``id``).

    Raises:
        ConfigError: CONFIG_UNSUPPORTED naming the sink.
    """
    for sink in spec.sinks:
        if not is_kafka_sink(sink):
            continue
        problem = None
        if _topic_of(sink) is None:
            problem = "it writes the topic each record names (topic_column)"
        elif spec.windows:
            problem = "its records are windows, which prove counts in a table only"
        if problem is not None:
            raise ConfigError(
                "CONFIG_UNSUPPORTED",
                file=job_file,
                problem=f"onceflow prove cannot count Kafka sink '{sink.name}': {problem}; "
                "it reads one topic per Kafka sink, its records' JSON values by id",
            )


def _topic_of(sink: SinkSpec) -> str | None:
    topic = sink.model_dump().get("topic")
    return topic if isinstance(topic, str) else None


def committed_ids(sink: SinkSpec, timeout: float = _POLL_S) -> list[int | None]:
    """The ``id`` of every record of ``sink``'s topic a ``read_committed`` consumer reads,
    one per record, in no particular order (``None`` for a value without one).

    Raises:
        RuntimeError: the topic is missing, a partition reports an error, or no record
            nor partition end came within ``timeout`` seconds.
    """
    from confluent_kafka import Consumer, KafkaError, TopicPartition

    topic = _topic_of(sink)
    if topic is None:
        raise RuntimeError(f"prove: sink '{sink.name}' names no topic (check_kafka_sinks)")
    options = sink.model_dump().get("options") or {}
    consumer = Consumer(
        {
            "bootstrap.servers": options["kafka.bootstrap.servers"],
            "group.id": f"onceflow-prove-{uuid.uuid4()}",  # assigned, never committed
            "isolation.level": "read_committed",
            "enable.partition.eof": True,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "log_level": 3,
        }
    )
    try:
        found = consumer.list_topics(topic, timeout=timeout).topics.get(topic)
        if found is None or found.error is not None or not found.partitions:
            raise RuntimeError(f"prove: topic '{topic}' of sink '{sink.name}' is not there")
        consumer.assign([TopicPartition(topic, p, 0) for p in found.partitions])
        ids: list[int | None] = []
        ended: set[int] = set()
        while len(ended) < len(found.partitions):
            message = consumer.poll(timeout)
            if message is None:
                raise RuntimeError(
                    f"prove: no record nor end of topic '{topic}' within {timeout:.0f}s "
                    f"({len(ended)} of {len(found.partitions)} partitions read)"
                )
            error = message.error()
            if error is not None:
                if error.code() != KafkaError._PARTITION_EOF:
                    raise RuntimeError(f"prove: reading topic '{topic}': {error}")
                # read_committed stops at the last stable offset: a transaction still
                # open there hides what follows, as it does from any such reader
                ended.add(cast(int, message.partition()))  # an end names its partition
                continue
            ids.append(_id_of(message.value()))
        return ids
    finally:
        consumer.close()


def _id_of(value: bytes | None) -> int | None:
    """The ``id`` of a JSON object value; None for anything else."""
    try:
        record: Any = json.loads(value or b"")
    except ValueError:
        return None
    found = record.get("id") if isinstance(record, dict) else None
    return found if isinstance(found, int) and not isinstance(found, bool) else None
