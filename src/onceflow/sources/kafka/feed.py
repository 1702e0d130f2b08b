"""Give a Kafka source records to read: a new topic, the records produced to it as JSON.

For the prove harness's workload and ``onceflow.testing.run_job``'s rows. Records are
keyed by their ``account`` (or ``key``) when they have one, so one key's records stay in
one partition, in order. Produced with the confluent-kafka client (librdkafka), idempotent,
every record acknowledged before it returns.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from onceflow.errors import SourceError
from onceflow.sources.kafka import KafkaSourceSpec

__all__ = ["ensure_topic", "produce_batches", "produce_values"]

PARTITIONS = 3


def produce_batches(
    spec: KafkaSourceSpec, batches: Sequence[Sequence[Mapping[str, Any]]], place: Path
) -> list[str]:
    """Produce every batch's records to a new topic; the overrides that subscribe the job
    to it from the start, about a batch's records per trigger."""
    bootstrap = spec.options["kafka.bootstrap.servers"]
    topic = f"onceflow-{place.name}-{int(time.time() * 1000)}".replace(":", "-")
    ensure_topic(bootstrap, topic, PARTITIONS)
    records = [record for batch in batches for record in batch]
    produce_values(
        bootstrap,
        topic,
        ((_key(record), json.dumps(dict(record), default=str)) for record in records),
    )
    per_batch = max(1, max((len(batch) for batch in batches), default=1))
    return [
        f"source.subscribe={topic}",
        "source.subscribePattern=null",
        "source.assign=null",
        "source.startingOffsets=earliest",
        f"source.maxOffsetsPerTrigger={per_batch}",
    ]


def ensure_topic(
    bootstrap: str, topic: str, partitions: int, client: Mapping[str, str] | None = None
) -> bool:
    """Create ``topic`` with ``partitions`` unless the broker has it already; whether it was
    created. A topic that exists is left as it is (its partitions are not changed).

    Raises:
        SourceError: KAFKA_PRODUCE_FAILED naming the topic when the broker cannot be
            reached or refuses the topic.
    """
    from confluent_kafka import KafkaError, KafkaException
    from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 3, **(client or {})})
    future = admin.create_topics(
        [NewTopic(topic, num_partitions=partitions, replication_factor=1)], request_timeout=30
    )[topic]
    try:
        future.result(40)
    except KafkaException as exc:
        error = exc.args[0]
        if error.code() == KafkaError.TOPIC_ALREADY_EXISTS:
            return False
        raise SourceError(
            "KAFKA_PRODUCE_FAILED", topic=topic, bootstrap=bootstrap, cause=error.str()
        ) from None
    return True


def produce_values(
    bootstrap: str,
    topic: str,
    messages: Iterable[tuple[str | None, str]],
    *,
    rate: float = 0.0,
    client: Mapping[str, str] | None = None,
) -> int:
    """Send ``(key, value)`` messages to ``topic`` and wait until every one is acknowledged;
    how many were sent. ``rate``: messages per second (0: as fast as the client allows);
    ``client``: extra librdkafka settings (``security.protocol``, ``sasl.*``, ...).

    Raises:
        SourceError: KAFKA_PRODUCE_FAILED naming the topic when a message is refused.
    """
    from confluent_kafka import Producer

    config: dict[str, Any] = {
        "bootstrap.servers": bootstrap,
        "linger.ms": 5,
        "enable.idempotence": True,
        "log_level": 3,
        **(client or {}),
    }
    producer = Producer(config)
    failures: list[str] = []

    def delivered(error: Any, _message: Any) -> None:
        if error is not None:
            failures.append(str(error))

    started = time.monotonic()
    sent = 0
    for key, value in messages:
        if rate > 0:
            ahead = started + sent / rate - time.monotonic()
            if ahead > 0:
                time.sleep(ahead)
        while True:
            try:
                producer.produce(topic, key=key, value=value, on_delivery=delivered)
                break
            except BufferError:  # the local queue is full: let deliveries drain it
                producer.poll(0.1)
        producer.poll(0)
        sent += 1
    remaining = producer.flush(120)
    if failures or remaining:
        raise SourceError(
            "KAFKA_PRODUCE_FAILED",
            topic=topic,
            bootstrap=bootstrap,
            cause=f"{len(failures)} record(s) refused, {remaining} unsent; first: "
            f"{failures[0] if failures else 'timeout'}",
        )
    return sent


def _key(record: Mapping[str, Any]) -> str | None:
    key = record.get("key", record.get("account"))
    return None if key is None else str(key)
