"""``onceflow produce``: a workload into a Kafka topic, at a rate or flat out.

- payments: JSON, keyed by account (so one account's payments stay in one partition, in
  order), with ids ``first_id..first_id+count-1``: the same seed gives the same records.
- the customers' change feed (``--workload customers-cdc``): JSON changes keyed by
  ``customer_id``, as a CDC tool keys them, in the order ``cdc_workload.delivered`` sends
  them (late ones, some twice, the update before a delete after it): what
  ``jobs/customers_cdc_kafka.yaml`` reads.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from onceflow.prove.cdc_workload import customer_changes, delivered
from onceflow.prove.workload import payments
from onceflow.sources.kafka.feed import ensure_topic, produce_values

__all__ = ["ProduceResult", "produce_changes", "produce_payments"]


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
    messages = (
        (payment.account, payment.to_json())
        for payment in payments(count, seed=seed, accounts=accounts, first_id=first_id)
    )
    return _produce(bootstrap, topic, messages, rate, client, partitions)


def produce_changes(
    bootstrap: str,
    topic: str,
    count: int,
    *,
    seed: int = 7,
    customers: int = 20,
    batches: int = 10,
    rate: float = 0.0,
    client: Mapping[str, str] | None = None,
    partitions: int | None = 3,
) -> ProduceResult:
    """Send the customers' change feed: changes ``1..count`` of ``customers`` customers
    as ``delivered`` spreads them over ``batches`` batches' worth, in that order, and wait
    until every message is acknowledged. The result counts messages (repeats included).

    Arguments and errors as ``produce_payments``'s.
    """
    sent = delivered(customer_changes(count, customers, seed), batches, seed)
    messages = ((str(change.customer_id), change.to_json()) for batch in sent for change in batch)
    return _produce(bootstrap, topic, messages, rate, client, partitions)


def _produce(
    bootstrap: str,
    topic: str,
    messages: Iterable[tuple[str | None, str]],
    rate: float,
    client: Mapping[str, str] | None,
    partitions: int | None,
) -> ProduceResult:
    """The topic made when asked and missing, then every message sent and acknowledged."""
    created = partitions is not None and ensure_topic(bootstrap, topic, partitions, client)
    started = time.monotonic()
    sent = produce_values(bootstrap, topic, messages, rate=rate, client=client)
    return ProduceResult(sent, time.monotonic() - started, created)
