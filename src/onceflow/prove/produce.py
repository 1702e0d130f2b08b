"""``onceflow produce``: the payments workload into a Kafka topic, at a rate or flat out.

Records are JSON, keyed by account (so one account's payments stay in one partition, in
order), with ids ``first_id..first_id+count-1``: the same seed gives the same records.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass

from onceflow.prove.workload import payments
from onceflow.sources.kafka.feed import ensure_topic, produce_values

__all__ = ["ProduceResult", "produce_payments"]


@dataclass(frozen=True)
class ProduceResult:
    """How many records the broker acknowledged, and how long it took."""

    records: int
    seconds: float
    created_topic: bool = False

    @property
    def records_per_second(self) -> float:
        return self.records / self.seconds if self.seconds > 0 else float("inf")


def produce_payments(
    bootstrap: str,
    topic: str,
    count: int,
    *,
    seed: int = 7,
    first_id: int = 1,
    accounts: int = 50,
    rate: float = 0.0,
    client: Mapping[str, str] | None = None,
    partitions: int | None = 3,
) -> ProduceResult:
    """Send ``count`` payments to ``topic`` and wait until every one is acknowledged.

    Args:
        rate: records per second; 0 sends as fast as the client allows.
        client: extra librdkafka settings (``security.protocol``, ``sasl.*``, ...).
        partitions: create the topic with this many partitions when the broker has none of
            that name (a broker need not create topics on first use, and onceflow's local
            one does not); None never creates it.

    Raises:
        SourceError: KAFKA_PRODUCE_FAILED naming the topic when it cannot be created or a
            record is refused.
    """
    created = partitions is not None and ensure_topic(bootstrap, topic, partitions, client)
    started = time.monotonic()
    sent = produce_values(
        bootstrap,
        topic,
        (
            (payment.account, payment.to_json())
            for payment in payments(count, seed=seed, accounts=accounts, first_id=first_id)
        ),
        rate=rate,
        client=client,
    )
    return ProduceResult(sent, time.monotonic() - started, created)
