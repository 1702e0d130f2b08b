"""Local services for development and tests, started as real processes on loopback.

Each service runs from jars or packages the project installs (never Docker), on free ports,
with its data and logs in a folder of its own; start-up waits until the service answers and
a failed start raises SERVICE_START_FAILED with the tail of its log.
"""

from __future__ import annotations

from onceflow.testing.services.kafka import KafkaUser, LocalKafka
from onceflow.testing.services.postgres import LocalPostgres
from onceflow.testing.services.process import ManagedProcess, free_port

__all__ = ["KafkaUser", "LocalKafka", "LocalPostgres", "ManagedProcess", "free_port"]
