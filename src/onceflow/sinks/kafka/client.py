"""The sink's ``kafka.*`` options (Spark's Java client names) as librdkafka settings, for
the confluent-kafka clients the exactly-once path runs on the executors.

Most names are the same in both clients. A JAAS login (``kafka.sasl.jaas.config``) is Java
only: librdkafka takes the user and password as ``sasl.username`` / ``sasl.password``, so
the PLAIN and SCRAM logins are read out of it. Settings onceflow must own for the
guarantee are set last (idempotence, acks, the key partitioner Java uses).

``KeptClients`` holds the clients a Python worker keeps from one task to its next: a
client's start (connections, metadata, a producer's ``init_transactions``) costs more than
a small part's records, every batch. What a kept client may be trusted with is its user's
to say (``transactions``, ``markers``).
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Callable, Hashable, Mapping
from typing import Any, Generic, TypeVar

__all__ = ["KeptClients", "client_only", "librdkafka_settings", "settings_key",
           "transaction_timeout_ms"]  # fmt: skip

T = TypeVar("T")

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


def settings_key(settings: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    """``settings`` as a dict key: a client is kept for exactly the settings it was made with."""
    return tuple(sorted(settings.items()))


class KeptClients(Generic[T]):
    """The clients of one kind a process keeps between tasks, by key; past ``limit``, the
    least recently used is closed (a long-lived worker serves many jobs' sinks, and each
    client holds threads and connections).

    Not thread-safe: a Python worker runs one task at a time. A client is ``take``-n while a
    task uses it and ``keep``-t again only when that task left it fit for the next; one that
    failed is dropped (``discard``), so a kept client never carries a failure over.
    """

    def __init__(self, close: Callable[[T], None], limit: int = 8) -> None:
        self._close = close
        self._limit = limit
        self._clients: OrderedDict[Hashable, T] = OrderedDict()

    def take(self, key: Hashable) -> T | None:
        """The client kept under ``key``, no longer kept; None when there is none."""
        return self._clients.pop(key, None)

    def keep(self, key: Hashable, client: T) -> None:
        """Keep ``client`` under ``key`` (closing the one it replaces, and the least recently
        used past the limit)."""
        replaced = self._clients.pop(key, None)
        if replaced is not None and replaced is not client:
            self.discard(replaced)
        self._clients[key] = client
        while len(self._clients) > self._limit:
            _, oldest = self._clients.popitem(last=False)
            self.discard(oldest)

    def discard(self, client: T) -> None:
        """Close a client that is not kept; a failure to close is the client's last word."""
        try:
            self._close(client)
        except Exception:  # noqa: S110 - a broken client is being dropped anyway
            pass
