"""``onceflow produce``: the payments workload into a Kafka topic, at a rate or flat out.

Records are JSON, keyed by account (so one account's payments stay in one partition, in
order), with ids ``first_id..first_id+count-1``: the same seed gives the same records.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass

from onceflow.prove.workload import payments
from onceflow.sources.kafka.feed import produce_values

__all__ = ["ProduceResult", "produce_payments"]


@dataclass(frozen=True)
class ProduceResult:
    """How many records the broker acknowledged, and how long it took."""

    records: int
    seconds: float

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
) -> ProduceResult:
    """Send ``count`` payments to ``topic`` and wait until every one is acknowledged.

    Args:
        rate: records per second; 0 sends as fast as the client allows.
        client: extra librdkafka settings (``security.protocol``, ``sasl.*``, ...).

    Raises:
        SourceError: SOURCE_START_FAILED naming the topic when a record is refused.
    """
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
    return ProduceResult(sent, time.monotonic() - started)
