"""Reading a Kafka source: typed (the value parsed by Spark per ``format``), or raw for
onceflow to parse; either way every row keeps its record's coordinates.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from onceflow.sources.kafka import KAFKA_COORDINATES, KafkaSourceSpec, KafkaValueFormat
from onceflow.sources.raw import PARTITION, PAYLOAD, POSITION, SOURCE

__all__ = ["kafka_coordinates", "read_kafka_stream", "read_raw_kafka", "replay_shape"]


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


def read_raw_kafka(spark: SparkSession, spec: KafkaSourceSpec) -> DataFrame:
    """The records' values unparsed, with their coordinates (``onceflow.sources.raw``)."""
    raw = spark.readStream.format("kafka").options(**spec.spark_options()).load()
    return raw.select(
        F.col("value").cast("string").alias(PAYLOAD),
        F.col("topic").alias(SOURCE),
        F.col("partition").alias(PARTITION),
        F.col("offset").alias(POSITION),
        *kafka_coordinates(spec),
    )


def replay_shape(frame: DataFrame, spec: KafkaSourceSpec) -> DataFrame:
    """Quarantined records (the raw columns) as the raw stream has them: with the Kafka
    coordinates the parsed rows keep (the key and timestamp are not kept in quarantine)."""
    return frame.select(
        "*",
        F.lit(None).cast("string").alias("kafka_key"),
        F.col(SOURCE).alias("kafka_topic"),
        F.col(PARTITION).alias("kafka_partition"),
        F.col(POSITION).alias("kafka_offset"),
        F.lit(None).cast("timestamp").alias("kafka_timestamp"),
    )
