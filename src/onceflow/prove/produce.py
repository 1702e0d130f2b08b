"""``onceflow produce``: the payments workload into a Kafka topic, at a rate or flat out.

Records are JSON, keyed by account (so one account's payments stay in one partition, in
order), with ids ``first_id..first_id+count-1``: the same seed gives the same records.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from onceflow.errors import SourceError
from onceflow.prove.workload import payments

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
    for sent, payment in enumerate(
        payments(count, seed=seed, accounts=accounts, first_id=first_id)
    ):
        if rate > 0:
            ahead = started + sent / rate - time.monotonic()
            if ahead > 0:
                time.sleep(ahead)
        while True:
            try:
                producer.produce(
                    topic, key=payment.account, value=payment.to_json(), on_delivery=delivered
                )
                break
            except BufferError:  # the local queue is full: let deliveries drain it
                producer.poll(0.1)
        producer.poll(0)
    remaining = producer.flush(120)
    seconds = time.monotonic() - started
    if failures or remaining:
        raise SourceError(
            "SOURCE_START_FAILED",
            job="produce",
            source=f"kafka topic {topic}",
            cause=f"{len(failures)} record(s) refused, {remaining} unsent; first: "
            f"{failures[0] if failures else 'timeout'}",
        )
    return ProduceResult(count, seconds)
