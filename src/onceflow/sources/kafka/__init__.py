"""The Kafka source kind: topics read as a stream, every row traceable to its record
(``reader``; the broker's offsets: ``offsets``). This module is its declaration, and
imports no Spark.

Replayable: a batch is a range of offsets per partition, recorded in the checkpoint, so a
replay reads the same records (while Kafka still retains them: see ``failOnDataLoss``).

    source:
      kind: kafka
      subscribe: payments
      startingOffsets: earliest
      maxOffsetsPerTrigger: 10000
      format: json
      schema: "id BIGINT, account STRING, amount DECIMAL(18,2), event_time TIMESTAMP"
      options:
        kafka.bootstrap.servers: 127.0.0.1:9092
        kafka.security.protocol: SASL_PLAINTEXT
        kafka.sasl.mechanism: PLAIN
        kafka.sasl.jaas.config: >-
          org.apache.kafka.common.security.plain.PlainLoginModule required
          username="alice" password="${env:KAFKA_PASSWORD}";
"""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING, Literal

from pydantic import Field, field_validator, model_validator

from onceflow.config.common import as_str_map, kafka_client_options
from onceflow.config.kinds import Problem, RawFormat, SourceKind
from onceflow.config.modes import Guarantee
from onceflow.config.specs import SourceSpec

if TYPE_CHECKING:
    from onceflow.config.job import JobSpec

__all__ = ["KAFKA_COORDINATES", "SOURCE", "KafkaSourceSpec", "KafkaValueFormat"]

#: The columns every Kafka row keeps, whatever the value format.
KAFKA_COORDINATES = ("kafka_topic", "kafka_partition", "kafka_offset", "kafka_timestamp")


class KafkaValueFormat(StrEnum):
    JSON = "json"
    STRING = "string"
    BYTES = "bytes"


class KafkaSourceSpec(SourceSpec):
    """Kafka topics read as a stream. Spark's own option names, unchanged.

    Exactly one of ``subscribe``, ``subscribePattern``, ``assign``. Client settings go in
    ``options`` with their ``kafka.`` prefix (``kafka.bootstrap.servers`` is required).
    Every row keeps ``kafka_topic``, ``kafka_partition``, ``kafka_offset`` and
    ``kafka_timestamp`` so it can be traced to its record.
    """

    kind: Literal["kafka"]
    subscribe: str | None = None
    """The topics to read, separated by commas."""
    subscribePattern: str | None = None
    """A Java regular expression naming the topics to read."""
    assign: str | None = None
    """The topic partitions to read, as JSON (``{"payments": [0, 1]}``)."""
    startingOffsets: str | None = None
    """Where a new query starts: ``earliest``, ``latest`` (Spark's default) or JSON offsets per
    partition."""
    startingOffsetsByTimestamp: str | None = None
    """Where a new query starts, as JSON timestamps per partition."""
    maxOffsetsPerTrigger: int | None = Field(default=None, ge=1)
    """At most this many offsets per micro-batch, over all partitions."""
    minOffsetsPerTrigger: int | None = Field(default=None, ge=1)
    """At least this many offsets per micro-batch; a batch waits for them up to
    ``maxTriggerDelay``."""
    maxTriggerDelay: str | None = None
    """How long a batch waits for ``minOffsetsPerTrigger`` (``15m``)."""
    failOnDataLoss: bool = True
    """Stop when records the checkpoint still needs are gone from Kafka. ``false`` skips them:
    they are lost."""
    # failOnDataLoss: false loses records; a job that promises no loss must say it accepts that
    accept_record_loss: bool = False
    """Accept the loss ``failOnDataLoss: false`` brings under at-least-once or exactly-once."""
    minPartitions: int | None = Field(default=None, ge=1)
    """At least this many Spark partitions to read with."""
    includeHeaders: bool = False
    """Read the records' headers too."""
    groupIdPrefix: str | None = None
    """The prefix of the consumer group ids Spark makes."""
    format: KafkaValueFormat = KafkaValueFormat.JSON
    """What the record values hold: ``json`` (parsed by onceflow with ``schema``), ``string`` or
    ``bytes``."""
    schema_ddl: str | None = Field(default=None, alias="schema")
    """The JSON value's schema as Spark DDL; required with ``format: json``."""
    options: dict[str, str] = Field(default_factory=dict)
    """Kafka client settings, each with its ``kafka.`` prefix; ``kafka.bootstrap.servers`` is
    required."""

    _strings = field_validator("options", mode="before")(as_str_map)

    @field_validator("options")
    @classmethod
    def _client_options_only(cls, options: dict[str, str]) -> dict[str, str]:
        return kafka_client_options(options, "subscribe, startingOffsets")

    @model_validator(mode="after")
    def _one_subscription_and_a_schema(self) -> KafkaSourceSpec:
        chosen = [self.subscribe, self.subscribePattern, self.assign]
        if sum(value is not None for value in chosen) != 1:
            raise ValueError("set exactly one of subscribe, subscribePattern, assign")
        if self.format is KafkaValueFormat.JSON and not self.schema_ddl:
            raise ValueError("format: json needs a schema (Spark DDL) for the value")
        return self

    @property
    def location(self) -> str:
        chosen = {"subscribe": self.subscribe, "subscribePattern": self.subscribePattern,
                  "assign": self.assign}  # fmt: skip
        return next(f"{key}={value}" for key, value in chosen.items() if value is not None)

    def spark_options(self) -> dict[str, str]:
        """Every option for ``readStream.format("kafka")``, as Spark names them."""
        typed = self.model_dump(
            exclude={"kind", "format", "schema_ddl", "options", "accept_record_loss"},
            exclude_none=True,
        )
        return {
            name: str(value).lower() if isinstance(value, bool) else str(value)
            for name, value in typed.items()
        } | self.options


def _raw_format(spec: KafkaSourceSpec) -> RawFormat | None:
    """A JSON value is parsed by onceflow; a string or bytes value arrives as it is."""
    if spec.format is not KafkaValueFormat.JSON or spec.schema_ddl is None:
        return None
    return RawFormat("json", spec.schema_ddl)


def _rules(spec: KafkaSourceSpec, job: JobSpec) -> list[Problem]:
    """``failOnDataLoss: false`` lets Spark skip offsets that retention deleted before the
    job read them: those records are lost. Only at-most-once allows that without saying so."""
    if spec.accept_record_loss and spec.failOnDataLoss:
        return [
            (("accept_record_loss",), "accept_record_loss is only read with failOnDataLoss: false")
        ]
    if spec.failOnDataLoss or spec.accept_record_loss:
        return []
    if job.guarantee is Guarantee.AT_MOST_ONCE:
        return []
    return [
        (
            ("failOnDataLoss",),
            f"failOnDataLoss: false lets Spark skip records that Kafka's retention deleted "
            f"before the job read them, so they are lost, which {job.guarantee.value} "
            "promises never to do. Keep failOnDataLoss: true (the job stops and names the "
            "lost offsets), or set accept_record_loss: true beside it to accept the loss",
        )
    ]


SOURCE = SourceKind(
    name="kafka",
    title="Kafka",
    spec=KafkaSourceSpec,
    reader="onceflow.sources.kafka.reader:read_kafka_stream",
    raw_reader="onceflow.sources.kafka.reader:read_raw_kafka",
    raw_format=_raw_format,
    lag="onceflow.sources.kafka.offsets:offsets_behind",
    failure="onceflow.sources.kafka.offsets:explain_failure",
    replay_shape="onceflow.sources.kafka.reader:replay_shape",
    feed="onceflow.sources.kafka.feed:produce_batches",
    rules=_rules,
)
