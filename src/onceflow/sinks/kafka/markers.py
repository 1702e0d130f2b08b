"""The markers of a Kafka sink under exactly-once, in its compacted control topic.

A marker says that part ``part`` of batch ``batch_id`` of app ``app_id`` committed to sink
``sink``; it is produced in the same transaction as the part's records, to partition
``part`` of the control topic, keyed by ``(app id, sink, part)`` so that compaction keeps
the last one of each. Only the transactional producer of ``(app id, sink, part)`` writes
that key, and after its ``init_transactions`` no transaction of an earlier attempt is open.

Reading a part's marker is ``read_committed``, to the partition's end: when another writer's
transaction is open in the partition (a second job given the same control topic), its last
stable offset stops short of records committed after it, so the reader waits until every
transaction that was open when it looked has ended, and fails rather than guess.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from onceflow.sinks.kafka.client import KeptClients, client_only, settings_key

__all__ = [
    "ControlTopic",
    "Marker",
    "last_markers",
    "marker_key",
    "marker_value",
    "read_part_marker",
]

# how far back from the end a part's reader looks first; it doubles until it finds the key
_FIRST_WINDOW = 64


@dataclass(frozen=True)
class Marker:
    """One committed part of one batch."""

    app_id: str
    sink: str
    part: int
    batch_id: int
    partitions: int


def marker_key(app_id: str, sink: str, part: int) -> bytes:
    """The key compaction keeps one record of: the part of one app's sink."""
    return json.dumps([app_id, sink, part]).encode()


def marker_value(marker: Marker, records: int) -> bytes:
    return json.dumps(
        {"app_id": marker.app_id, "sink": marker.sink, "part": marker.part,
         "batch_id": marker.batch_id, "partitions": marker.partitions, "records": records}
    ).encode()  # fmt: skip


def _parse(value: bytes | None) -> Marker | None:
    """A marker, or None for anything else (a tombstone, another tool's record)."""
    try:
        data = json.loads(value or b"")
        return Marker(
            str(data["app_id"]), str(data["sink"]), int(data["part"]), int(data["batch_id"]),
            int(data["partitions"]),
        )  # fmt: skip
    except (ValueError, KeyError, TypeError):
        return None


class ControlTopic:
    """A sink's control topic on one broker, with the librdkafka ``settings`` of the job."""

    def __init__(self, settings: dict[str, str], topic: str) -> None:
        self.settings = settings
        self.topic = topic

    def _admin(self) -> Any:
        from confluent_kafka.admin import AdminClient

        return AdminClient(client_only(self.settings))

    def partitions(self) -> int | None:
        """How many partitions the topic has; None when it does not exist."""
        metadata = self._admin().list_topics(topic=self.topic, timeout=30)
        found = metadata.topics.get(self.topic)
        if found is None or found.error is not None:
            return None
        return len(found.partitions)

    def cleanup_policy(self) -> str:
        from confluent_kafka.admin import ConfigResource, ResourceType  # type: ignore[attr-defined]

        admin = self._admin()
        resource = ConfigResource(ResourceType.TOPIC, self.topic)
        entries = admin.describe_configs([resource])[resource].result(30)
        return str(entries["cleanup.policy"].value)

    def create(self, partitions: int) -> None:
        """Create the topic compacted, with ``partitions`` partitions; one that appeared
        meanwhile is left as it is (the caller checks it)."""
        from confluent_kafka import KafkaError, KafkaException
        from confluent_kafka.admin import NewTopic  # type: ignore[attr-defined]

        admin = self._admin()
        topic = NewTopic(
            self.topic,
            num_partitions=partitions,
            replication_factor=-1,  # the broker's default
            config={"cleanup.policy": "compact", "min.compaction.lag.ms": "60000"},
        )
        try:
            admin.create_topics([topic], request_timeout=30)[self.topic].result(40)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise
        deadline = time.monotonic() + 30
        while self.partitions() != partitions and time.monotonic() < deadline:
            time.sleep(0.2)


def last_markers(
    settings: dict[str, str], topic: str, partitions: int
) -> dict[str, dict[int, int]]:
    """App id -> part -> the last batch marked, over the whole control topic (driver side:
    ``onceflow status``, the foreign-writer check, the start's check for lost markers)."""
    from confluent_kafka import TopicPartition

    found: dict[str, dict[int, int]] = {}
    consumer = _consumer(settings)
    try:
        ends = {}
        for part in range(partitions):
            low, high = consumer.get_watermark_offsets(
                TopicPartition(topic, part), timeout=30, cached=False
            )
            if high > low:
                ends[part] = (low, high)
        for part, (low, high) in ends.items():
            for marker in _read(consumer, topic, part, low, high):
                found.setdefault(marker.app_id, {})[marker.part] = marker.batch_id
    finally:
        consumer.close()
    return found


def read_part_marker(
    settings: dict[str, str], topic: str, part: int, key: bytes, wait_s: float
) -> int | None:
    """The last batch id marked under ``key`` in partition ``part`` (committed records
    only), or None. Waits up to ``wait_s`` for another writer's open transaction to end.

    Its two consumers are kept for the process's next read (``KeptClients``): a consumer
    holds no state a later read trusts, every offset is asked of the broker again.

    Raises:
        TimeoutError: when a transaction stays open in the partition past ``wait_s``.
    """
    from confluent_kafka import TopicPartition

    partition = TopicPartition(topic, part)
    with _kept(settings, "read_uncommitted") as peek:
        _, high = peek.get_watermark_offsets(partition, timeout=30, cached=False)
    with _kept(settings, "read_committed") as consumer:
        stable = _stable_end(consumer, partition, high, wait_s)
        low, _ = consumer.get_watermark_offsets(partition, timeout=30, cached=False)
        window = _FIRST_WINDOW
        while True:
            start = max(low, stable - window)
            mine = [m.batch_id for m in _read(consumer, topic, part, start, stable, key=key)]
            if mine:
                return mine[-1]
            if start == low:
                return None
            window *= 4


# a Python worker's marker readers, kept between its tasks
_READERS: KeptClients[Any] = KeptClients(close=lambda consumer: consumer.close(), limit=8)


@contextmanager
def _kept(settings: dict[str, str], isolation: str) -> Iterator[Any]:
    """A consumer of ``isolation`` for ``settings``, kept after use unless the use failed
    (then closed: a failed read's fetches may still be in flight)."""
    key = (isolation, settings_key(settings))
    consumer = _READERS.take(key)
    if consumer is None:
        consumer = _consumer(settings, isolation)
    try:
        yield consumer
        consumer.unassign()  # no fetching between reads
    except BaseException:
        _READERS.discard(consumer)
        raise
    _READERS.keep(key, consumer)


def _stable_end(consumer: Any, partition: Any, high: int, wait_s: float) -> int:
    """The partition's last stable offset once it has reached ``high``, its high watermark
    seen by a read_uncommitted consumer before: every transaction open in it then has ended."""
    deadline = time.monotonic() + wait_s
    while True:
        _, stable = consumer.get_watermark_offsets(partition, timeout=30, cached=False)
        if stable >= high:
            return int(stable)
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"a transaction of another writer stayed open in partition "
                f"{partition.partition} of control topic {partition.topic} for {wait_s:.0f} s "
                f"(committed to offset {stable}, written to {high}); is another job "
                "writing this control topic?"
            )
        time.sleep(0.1)


def _read(
    consumer: Any, topic: str, part: int, start: int, end: int, key: bytes | None = None
) -> list[Marker]:
    """The markers (with ``key``, when given) in ``[start, end)`` of one partition, in order."""
    from confluent_kafka import KafkaError, TopicPartition

    found: list[Marker] = []
    if end <= start:
        return found
    consumer.assign([TopicPartition(topic, part, start)])
    while True:
        message = consumer.poll(10)
        if message is None:
            position = consumer.position([TopicPartition(topic, part)])[0].offset
            if position >= end:
                break
            continue
        if message.error():
            if message.error().code() != KafkaError._PARTITION_EOF:
                raise RuntimeError(f"reading control topic {topic}: {message.error().str()}")
            if _ours(message, topic, part, end):
                break
            continue  # an end an earlier read of this consumer reached: not this read's
        if not _ours(message, topic, part, start):
            continue
        if key is None or message.key() == key:
            marker = _parse(message.value())
            if marker is not None:
                found.append(marker)
        if message.offset() >= end - 1:
            break
    return found


def _ours(message: Any, topic: str, part: int, offset: int) -> bool:
    """Whether ``message`` is of this read: its partition, at ``offset`` or past it (a kept
    consumer's read must not end at, or keep, what an earlier assignment fetched)."""
    return bool(
        message.topic() == topic and message.partition() == part and message.offset() >= offset
    )


def _consumer(settings: dict[str, str], isolation: str = "read_committed") -> Any:
    from confluent_kafka import Consumer

    # A part's tail ends with its transaction's commit marker, a control record no consumer
    # is handed: the reader learns it is at the end from the partition EOF, which comes with
    # the next fetch's answer, and the broker holds a fetch at the end for fetch.wait.max.ms
    # (librdkafka's 500 ms by default: half a second a part, every batch)
    return Consumer(
        client_only(settings)
        | {"group.id": "onceflow-markers", "isolation.level": isolation,
           "enable.auto.commit": "false", "enable.partition.eof": "true",
           "auto.offset.reset": "earliest", "fetch.wait.max.ms": "10"}
    )  # fmt: skip
