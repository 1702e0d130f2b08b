"""The sink's ``kafka.*`` options (Spark's Java client names) as librdkafka settings, for
the confluent-kafka clients the exactly-once path runs on the executors.

Most names are the same in both clients. A JAAS login (``kafka.sasl.jaas.config``) is Java
only: librdkafka takes the user and password as ``sasl.username`` / ``sasl.password``, so
the PLAIN and SCRAM logins are read out of it. Settings onceflow must own for the
guarantee are set last (idempotence, acks, the key partitioner Java uses).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

__all__ = ["client_only", "librdkafka_settings", "transaction_timeout_ms"]

_LOGIN = re.compile(r"""\b(username|password)\s*=\s*(?:"([^"]*)"|'([^']*)')""")
#: librdkafka's default ``transaction.timeout.ms``
DEFAULT_TRANSACTION_TIMEOUT_MS = 60_000
# what the guarantee needs, whatever the job says (the rules refused anything else)
_OWNED = {
    "enable.idempotence": "true",
    "acks": "all",
    # Java's default partitioner for keyed records: a key lands where Spark's writer puts it
    "partitioner": "murmur2_random",
    "log_level": "3",
}
# a consumer or an admin client warns about these
_PRODUCER_ONLY = {
    "enable.idempotence", "acks", "partitioner", "transaction.timeout.ms", "linger.ms",
    "batch.size", "compression.type", "retries", "max.in.flight.requests.per.connection",
    "transactional.id",
}  # fmt: skip


def librdkafka_settings(options: Mapping[str, str]) -> dict[str, str]:
    """The producer and consumer settings for a sink's ``options``."""
    settings: dict[str, str] = {}
    for name, value in options.items():
        key = name.removeprefix("kafka.")
        if key == "sasl.jaas.config":
            for field, double, single in _LOGIN.findall(value):
                settings[f"sasl.{field}"] = double or single
        else:
            settings[key] = value
    return settings | _OWNED


def transaction_timeout_ms(options: Mapping[str, str]) -> int:
    """The transaction timeout the producer asks the broker for."""
    return int(options.get("kafka.transaction.timeout.ms", DEFAULT_TRANSACTION_TIMEOUT_MS))


def client_only(settings: Mapping[str, str]) -> dict[str, Any]:
    """``settings`` without the producer's own, for a consumer or an admin client."""
    return {key: value for key, value in settings.items() if key not in _PRODUCER_ONLY}
