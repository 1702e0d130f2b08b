"""PostgreSQL sinks: a batch staged by the executors, moved with its ledger row in one
transaction by the driver (see ``sink``)."""

from __future__ import annotations

from onceflow.sinks.postgres.sink import PostgresSink

__all__ = ["PostgresSink"]
