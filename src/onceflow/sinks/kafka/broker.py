"""What the broker must allow before a Kafka sink writes exactly once: a transaction with
the job's own settings, within the broker's maximum transaction timeout."""

from __future__ import annotations

from typing import Any

from onceflow.errors import SinkError
from onceflow.sinks.kafka import KafkaSinkSpec
from onceflow.sinks.kafka.client import client_only, transaction_timeout_ms

__all__ = ["broker_max_transaction_timeout_ms", "probe_transactions"]

# how long the probe waits for the transaction coordinator
_PROBE_TIMEOUT_S = 20.0


def probe_transactions(job: str, sink: str, spec: KafkaSinkSpec, settings: dict[str, str]) -> None:
    """Run ``init_transactions`` for ``onceflow.probe.<job>.<sink>`` with the job's settings.

    Raises:
        SinkError: KAFKA_SINK_TIMEOUT_TOO_LONG when the job's transaction timeout is above
            the broker's maximum; KAFKA_SINK_NO_TRANSACTIONS naming the broker's answer when
            the probe cannot start a transaction (no transaction log, refused credentials
            or ACL); KAFKA_SINK_OPTION_REFUSED for a setting librdkafka does not know.
    """
    from confluent_kafka import KafkaException, Producer

    def refused(cause: str) -> SinkError:
        return SinkError(
            "KAFKA_SINK_NO_TRANSACTIONS", job=job, sink=sink, bootstrap=spec.bootstrap,
            cause=cause,
        )  # fmt: skip

    heard: list[Any] = []  # what the client reports while connecting (a refused login)
    try:
        producer = Producer(
            settings
            | {"transactional.id": f"onceflow.probe.{job}.{sink}", "error_cb": heard.append}
        )
    except KafkaException as exc:  # a setting librdkafka does not know, or a bad value
        raise SinkError("KAFKA_SINK_OPTION_REFUSED", job=job, sink=sink, cause=_said(exc)) from None
    try:
        # librdkafka retries a refused login until init_transactions times out: ask for
        # metadata first, which fails as soon as the login does
        producer.list_topics(timeout=_PROBE_TIMEOUT_S)
    except KafkaException as exc:
        producer.poll(0)  # serves the error callbacks: the login's own error
        raise refused(_said(heard[-1]) if heard else _said(exc)) from None
    timeout = transaction_timeout_ms(spec.options)
    maximum = broker_max_transaction_timeout_ms(settings)
    if maximum is not None and timeout > maximum:
        raise SinkError(
            "KAFKA_SINK_TIMEOUT_TOO_LONG", job=job, sink=sink, timeout=timeout, maximum=maximum
        )
    try:
        producer.init_transactions(_PROBE_TIMEOUT_S)
    except KafkaException as exc:
        raise refused(_said(exc)) from None


def broker_max_transaction_timeout_ms(settings: dict[str, str]) -> int | None:
    """``transaction.max.timeout.ms`` of a broker of the cluster; None when it will not say
    (the producer's ``init_transactions`` then refuses a timeout above it)."""
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient, ConfigResource, ResourceType  # type: ignore[attr-defined]

    admin = AdminClient(client_only(settings))
    try:
        brokers = admin.list_topics(timeout=20).brokers
        resource = ConfigResource(ResourceType.BROKER, str(next(iter(brokers))))
        entries = admin.describe_configs([resource])[resource].result(20)
        return int(entries["transaction.max.timeout.ms"].value)
    except (KafkaException, KeyError, StopIteration, ValueError):
        return None


def _said(exc: Any) -> str:
    """librdkafka's own words for a KafkaException or a KafkaError."""
    error = exc.args[0] if isinstance(exc, Exception) and exc.args else exc
    return str(error.str()) if hasattr(error, "str") else str(error)
