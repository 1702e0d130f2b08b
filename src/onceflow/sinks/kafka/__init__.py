"""The Kafka sink kind: records produced to a topic from ``foreachBatch`` (``sink``), under
exactly-once as one Kafka transaction per batch partition with a marker in a control topic
(``transactions``, ``markers``). This module is its declaration, and imports neither Spark
nor the Kafka client.

Under at-least-once (and at-most-once) it is Spark's own Kafka writer. Under exactly-once
the batch is cut into ``partitions`` (K) parts by a hash of the key; each part is produced
in one transaction together with a marker ``(app id, sink, part, batch id)`` in a compacted
control topic, by a producer whose ``transactional.id`` is fixed per (app id, sink, part).
A replay fences whatever the crashed attempt left open and skips a part whose marker is at
the batch already. A ``read_committed`` consumer sees each record once; a batch may become
visible one part at a time.

    sinks:
      - name: enriched
        kind: kafka
        topic: payments-enriched
        key: account
        value: struct(id, account, amount, event_time, fee)   # written as JSON
        headers: {origin: "'onceflow'"}
        partitions: 4
        options:
          kafka.bootstrap.servers: ${env:KAFKA_BOOTSTRAP}
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import TYPE_CHECKING, Literal

from pydantic import Field, field_validator, model_validator

from onceflow.config.common import as_str_map, kafka_client_options
from onceflow.config.kinds import Problem, SinkKind
from onceflow.config.modes import Guarantee, Strategy, WriteMode
from onceflow.config.specs import SinkSpec

if TYPE_CHECKING:
    from onceflow.config.job import JobSpec

__all__ = ["SINK", "KafkaSinkSpec", "KafkaValueFormat", "control_topic_of"]

#: Kafka's topic names: letters, digits, ``.``, ``_``, ``-``; at most 249 characters.
_TOPIC = r"^[A-Za-z0-9._-]{1,249}$"
#: What onceflow sets itself under exactly-once; a job setting them would break the guard.
_OWNED = ("kafka.transactional.id", "kafka.isolation.level")


class KafkaValueFormat(StrEnum):
    """How a record's value is serialized: ``json`` (``to_json`` of ``value``) or ``bytes``
    (``value`` is already BINARY or STRING, written as it is, a string in UTF-8)."""

    JSON = "json"
    BYTES = "bytes"


class KafkaSinkSpec(SinkSpec):
    """A Kafka topic written from ``foreachBatch``.

    Exactly one of ``topic`` and ``topic_column``. ``key``, ``value`` and each header are
    Spark SQL over the (shaped) batch. Client settings go in ``options`` with their
    ``kafka.`` prefix, as Spark's Kafka writer names them (``kafka.bootstrap.servers`` is
    required); under exactly-once the same settings configure the transactional producer.
    """

    kind: Literal["kafka"]
    topic: str | None = Field(default=None, pattern=_TOPIC)
    """The topic every record goes to."""
    topic_column: str | None = None
    """A column of the batch naming each record's topic, instead of ``topic``."""
    key: str | None = None
    """The record key, Spark SQL (``account``, ``CAST(id AS STRING)``); a string is written
    in UTF-8, BINARY as it is, anything else as its string. Default: no key."""
    value: str | None = None
    """The record value, Spark SQL. With ``format: json``, ``to_json`` of it (a struct,
    map or array; default: every column of the batch); with ``format: bytes``, a BINARY or
    STRING column written as it is."""
    format: KafkaValueFormat = KafkaValueFormat.JSON
    """How the value is serialized: ``json`` or ``bytes``."""
    headers: dict[str, str] = Field(default_factory=dict)
    """Record headers: name -> Spark SQL giving a STRING or BINARY value."""
    partitions: int | None = Field(default=None, ge=1, le=1000)
    """Exactly-once: how many transactions (parts) each batch is cut into, by a hash of the
    key. Recorded in the checkpoint at the first start and never changed after."""
    control_topic: str | None = Field(default=None, pattern=_TOPIC)
    """The compacted topic of the markers (one partition per part) of exactly-once writes
    and quarantine replays; default ``onceflow.markers.<job>.<sink>``. Created with
    ``partitions`` partitions when missing."""
    options: dict[str, str] = Field(default_factory=dict)
    """Kafka client settings, each with its ``kafka.`` prefix (``kafka.bootstrap.servers``
    is required): the producer's under exactly-once, Spark's Kafka writer's otherwise."""

    _strings = field_validator("options", "headers", mode="before")(as_str_map)

    @field_validator("options")
    @classmethod
    def _client_options_only(cls, options: dict[str, str]) -> dict[str, str]:
        return kafka_client_options(options, "topic, key, value, headers, partitions")

    @model_validator(mode="after")
    def _one_topic(self) -> KafkaSinkSpec:
        if (self.topic is None) == (self.topic_column is None):
            raise ValueError("set exactly one of topic and topic_column")
        if self.format is KafkaValueFormat.BYTES and self.value is None:
            raise ValueError("format: bytes needs value: the BINARY or STRING column to write")
        return self

    @property
    def location(self) -> str:
        """``kafka:<topic>``, or ``kafka:{<column>}`` for a topic per record."""
        return f"kafka:{self.topic}" if self.topic else f"kafka:{{{self.topic_column}}}"

    @property
    def bootstrap(self) -> str:
        return self.options["kafka.bootstrap.servers"]


def control_topic_of(spec: KafkaSinkSpec, job: str) -> str:
    """The sink's control topic: its own setting, else ``onceflow.markers.<job>.<sink>``."""
    return spec.control_topic or f"onceflow.markers.{job}.{spec.name}"[:249]


def _append(spec: KafkaSinkSpec, strategy: Strategy | None) -> WriteMode:
    """A Kafka topic is appended to; its exactly-once is transactional."""
    return WriteMode.APPEND


def _rules(spec: KafkaSinkSpec, job: JobSpec) -> list[Problem]:
    """Settings the guarantee cannot be kept with, before anything reaches a broker (the
    broker's own limits are checked when the job starts: ``sink.KafkaSink.check``)."""
    problems: list[Problem] = []
    options = {key: value.strip().lower() for key, value in spec.options.items()}
    promises_delivery = job.guarantee is not Guarantee.AT_MOST_ONCE
    acks = options.get("kafka.acks", "all")
    if promises_delivery and acks not in ("all", "-1"):
        problems.append(
            (("options", "kafka.acks"), f"acks={acks} lets the broker lose an acknowledged "
             f"record, which {job.guarantee.value} promises never to do: use acks=all")
        )  # fmt: skip
    if job.guarantee is not Guarantee.EXACTLY_ONCE:
        # (control_topic is read here too: a quarantine replay writes exactly once)
        if spec.partitions is not None:
            problems.append((("partitions",), "partitions is only read under exactly-once "
                             "(a quarantine replay of this job writes in one part)"))  # fmt: skip
        return problems
    if spec.partitions is None:
        problems.append(
            (("partitions",), "exactly-once into Kafka needs partitions: K, the number of "
             "transactions each batch is cut into (recorded in the checkpoint, never changed)")
        )  # fmt: skip
    for key in _OWNED:
        if key in options:
            problems.append(
                (("options", key), f"{key} is set by onceflow under exactly-once (one "
                 "transactional id per part, read_committed markers): remove it")
            )  # fmt: skip
    problems += [(("options", key), why) for key, why in _idempotence_breakers(options)]
    return problems


def _idempotence_breakers(options: dict[str, str]) -> list[tuple[str, str]]:
    """Producer settings under which a transaction's records could be doubled or reordered."""
    found: list[tuple[str, str]] = []
    if options.get("kafka.enable.idempotence", "true") != "true":
        found.append(("kafka.enable.idempotence", "a transactional producer is idempotent: "
                      "remove enable.idempotence=false"))  # fmt: skip
    in_flight = options.get("kafka.max.in.flight.requests.per.connection")
    if in_flight is not None and (not in_flight.isdigit() or int(in_flight) > 5):
        found.append(("kafka.max.in.flight.requests.per.connection",
                      "an idempotent producer keeps at most 5 requests in flight"))  # fmt: skip
    retries = options.get("kafka.retries")
    if retries is not None and re.fullmatch(r"0+", retries):
        found.append(("kafka.retries", "retries=0 turns idempotence off: remove it"))
    timeout = options.get("kafka.transaction.timeout.ms")
    if timeout is not None and (not timeout.isdigit() or int(timeout) < 1000):
        found.append(("kafka.transaction.timeout.ms", "must be a number of milliseconds, "
                      "at least 1000"))  # fmt: skip
    return found


SINK = SinkKind(
    name="kafka",
    title="Kafka",
    spec=KafkaSinkSpec,
    build="onceflow.sinks.kafka.sink:build",
    modes=frozenset({WriteMode.APPEND}),
    # each part's records and its marker commit in one Kafka transaction
    guarded_modes=frozenset({WriteMode.APPEND}),
    replayable_modes=frozenset({WriteMode.APPEND}),
    default_mode=_append,
    mode_hint="a Kafka topic is appended to",
    file_backed=False,
    rules=_rules,
    isolate="onceflow.sinks.kafka.sink:isolate",
    deep_check="onceflow.sinks.kafka.records:sql_problems",
)
