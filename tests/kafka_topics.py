"""What a plain confluent-kafka consumer reads from a topic, for the tests' own counts:
never onceflow's code, so a test's expectation does not lean on what it tests."""

from __future__ import annotations

from typing import Any


def topic_messages(bootstrap: str, topic: str, isolation: str = "read_committed") -> list[Any]:
    """Every message of ``topic``, each partition read to its end, as a consumer with
    ``isolation`` sees them (``read_uncommitted`` includes aborted transactions' records)."""
    from confluent_kafka import Consumer, KafkaError, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"check-{topic}",
                         "isolation.level": isolation, "enable.partition.eof": True,
                         "auto.offset.reset": "earliest", "enable.auto.commit": False,
                         "log_level": 3})  # fmt: skip
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
        messages, ended = [], 0
        while ended < len(partitions):
            message = consumer.poll(10)
            assert message is not None, f"no end of {topic} in sight"
            if message.error():
                assert message.error().code() == KafkaError._PARTITION_EOF, message.error()
                ended += 1
                continue
            messages.append(message)
        return messages
    finally:
        consumer.close()
