"""Kafka topics read as a stream, values parsed, every row traceable to its record.

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

import re
from typing import Any

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from onceflow.config import KafkaSourceSpec, KafkaValueFormat

__all__ = [
    "KAFKA_COORDINATES",
    "describe_lost_offsets",
    "kafka_coordinates",
    "latest_offsets",
    "read_kafka_stream",
]

#: The columns every Kafka row keeps, whatever the value format.
KAFKA_COORDINATES = ("kafka_topic", "kafka_partition", "kafka_offset", "kafka_timestamp")


def read_kafka_stream(spark: SparkSession, spec: KafkaSourceSpec) -> DataFrame:
    """Stream the subscribed topics; the value parsed per ``spec.format``.

    ``json``: the schema's fields as columns (``from_json``, PERMISSIVE); ``string``: a
    ``value`` string column; ``bytes``: the raw ``value``. Plus ``kafka_key`` (string),
    the coordinates, and ``kafka_headers`` when ``includeHeaders``.
    """
    raw = spark.readStream.format("kafka").options(**spec.spark_options()).load()
    coordinates = kafka_coordinates(spec)
    names = [column for column in ("kafka_key", *KAFKA_COORDINATES)]
    if spec.includeHeaders:
        names.append("kafka_headers")
    if spec.format is KafkaValueFormat.JSON:
        assert spec.schema_ddl is not None  # noqa: S101 - the model requires it for json
        parsed = F.from_json(F.col("value").cast("string"), spec.schema_ddl)
        return raw.select(parsed.alias("payload"), *coordinates).select("payload.*", *names)
    if spec.format is KafkaValueFormat.STRING:
        return raw.select(F.col("value").cast("string").alias("value"), *coordinates)
    return raw.select(F.col("value"), *coordinates)


def kafka_coordinates(spec: KafkaSourceSpec) -> list[Column]:
    """``kafka_key`` (string) and the coordinates of a raw Kafka row, plus
    ``kafka_headers`` when ``includeHeaders``."""
    coordinates: list[Column] = [
        F.col("key").cast("string").alias("kafka_key"),
        F.col("topic").alias("kafka_topic"),
        F.col("partition").alias("kafka_partition"),
        F.col("offset").alias("kafka_offset"),
        F.col("timestamp").alias("kafka_timestamp"),
    ]
    if spec.includeHeaders:
        coordinates.append(F.col("headers").alias("kafka_headers"))
    return coordinates


_OUT_OF_RANGE = re.compile(r"offset=(\d+)[^\n]*?out of range for partition (\S+)-(\d+)")


def describe_lost_offsets(spark: SparkSession, spec: KafkaSourceSpec, failure: str) -> str:
    """Which offsets of which partitions a data-loss failure lost, e.g.
    ``payments-0: offsets 10..49 (the earliest Kafka still has is 50)``.

    Spark's error names the partition and the offset it wanted; the earliest offset still
    retained is asked of the broker with the job's own client settings (through the Kafka
    client on Spark's classpath, so SASL settings apply as they do for the query).
    """
    wanted = {(topic, int(p)): int(offset) for offset, topic, p in _OUT_OF_RANGE.findall(failure)}
    if not wanted:
        return "Spark did not name the partitions"
    earliest = _list_offsets(spark, spec, list(wanted), "earliest")
    parts = []
    for (topic, partition), offset in sorted(wanted.items()):
        first = earliest.get((topic, partition))
        if first is None:
            parts.append(f"{topic}-{partition}: from offset {offset}")
        else:
            parts.append(
                f"{topic}-{partition}: offsets {offset}..{first - 1} "
                f"(the earliest Kafka still has is {first})"
            )
    return "; ".join(parts)


def latest_offsets(
    spark: SparkSession, spec: KafkaSourceSpec, partitions: list[tuple[str, int]]
) -> dict[tuple[str, int], int]:
    """The offset after the newest record of each partition, asked of the broker with the
    job's own client settings; empty when the broker does not answer."""
    return _list_offsets(spark, spec, partitions, "latest")


def _list_offsets(
    spark: SparkSession, spec: KafkaSourceSpec, partitions: list[tuple[str, int]], which: str
) -> dict[tuple[str, int], int]:
    jvm: Any = spark.sparkContext._jvm
    kafka = jvm.org.apache.kafka.clients.admin
    properties = jvm.java.util.Properties()
    for key, value in spec.options.items():
        properties.setProperty(key.removeprefix("kafka."), value)
    properties.setProperty("request.timeout.ms", "10000")
    properties.setProperty("default.api.timeout.ms", "15000")
    admin = kafka.Admin.create(properties)
    try:
        request = jvm.java.util.HashMap()
        for topic, partition in partitions:
            request.put(
                jvm.org.apache.kafka.common.TopicPartition(topic, partition),
                getattr(kafka.OffsetSpec, which)(),
            )
        answer = admin.listOffsets(request).all().get()
        return {
            (str(tp.topic()), int(tp.partition())): int(answer.get(tp).offset())
            for tp in answer.keySet().toArray()
        }
    except Exception:  # callers report "unknown"; on the error path it must not hide the cause
        return {}
    finally:
        admin.close()
