"""A batch as Kafka records: topic, key, value and headers, each from the sink's SQL.

``kafka_records`` gives the columns Spark's Kafka writer takes (``topic``, ``key``,
``value``, ``headers``). ``in_parts`` cuts them into the K parts of the exactly-once path:
part ``pmod(hash(key, or value when there is none), K)``, which is also the Spark partition
the rows are moved to, sorted by key and value inside it. The same batch therefore gives
every part the same records in the same order, however often it is replayed.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import ArrayType, BinaryType, MapType, StringType, StructType

from onceflow.errors import first_line
from onceflow.sinks.kafka import KafkaSinkSpec, KafkaValueFormat

__all__ = ["PART_COLUMN", "in_parts", "kafka_records", "sql_problems"]

PART_COLUMN = "part"


def kafka_records(frame: DataFrame, spec: KafkaSinkSpec) -> DataFrame:
    """``topic`` (when the records carry theirs), ``key``, ``value``, ``headers``.

    Raises:
        ValueError: naming the setting whose SQL gives a type Kafka cannot take.
    """
    columns = [
        _key(frame, spec.key).alias("key"),
        _value(frame, spec).alias("value"),
        _headers(frame, spec.headers).alias("headers"),
    ]
    if spec.topic_column is not None:
        columns.insert(0, F.col(spec.topic_column).cast("string").alias("topic"))
    return frame.select(*columns)


def sql_problems(
    spark: SparkSession, spec: KafkaSinkSpec, target: object, batch: DataFrame
) -> list[tuple[tuple[str, ...], str]]:
    """Each of the sink's SQL settings Spark cannot analyse over the (shaped, empty) batch,
    or whose type Kafka cannot take: ``validate --deep`` and ``run`` before its query."""
    settings: list[tuple[tuple[str, ...], str | None]] = [
        (("topic_column",), spec.topic_column), (("key",), spec.key), (("value",), spec.value),
        *((("headers", name), sql) for name, sql in spec.headers.items()),
    ]  # fmt: skip
    problems = []
    for key, sql in settings:
        if sql is None:
            continue
        try:
            batch.select(F.expr(sql)).schema  # noqa: B018 - analysing it is the check
        except Exception as exc:
            problems.append((key, first_line(exc)))
    if not any(key == ("value",) for key, _ in problems):
        try:
            _value(batch, spec)  # its type: what it is serialized from
        except ValueError as exc:
            problems.append((("value",), str(exc).partition(": ")[2]))
    return problems


def in_parts(records: DataFrame, partitions: int) -> DataFrame:
    """``records`` with their ``part``, moved into Spark partition ``part`` and sorted."""
    spread = F.coalesce(F.col("key"), F.col("value"))
    # the expression repartition(K, spread) hashes by: the column says where a row must be
    with_part = records.withColumn(PART_COLUMN, F.pmod(F.hash(spread), F.lit(partitions)))
    return with_part.repartition(partitions, spread).sortWithinPartitions("key", "value")


def _key(frame: DataFrame, sql: str | None) -> Column:
    if sql is None:
        return F.lit(None).cast("binary")
    return _as_bytes(frame, F.expr(sql), "key", stringify=True)


def _value(frame: DataFrame, spec: KafkaSinkSpec) -> Column:
    if spec.format is KafkaValueFormat.BYTES:
        assert spec.value is not None  # noqa: S101 - the spec requires it
        return _as_bytes(frame, F.expr(spec.value), "value", stringify=False)
    value = F.expr(spec.value) if spec.value is not None else F.struct(*_every_column(frame))
    kind = frame.select(value).schema.fields[0].dataType
    if not isinstance(kind, StructType | MapType | ArrayType):
        raise ValueError(
            f"value: format json writes a struct, map or array as JSON, and {spec.value!r} "
            f"is {kind.simpleString()}; wrap it (struct(...)) or use format: bytes"
        )
    return F.to_json(value).cast("binary")


def _headers(frame: DataFrame, headers: dict[str, str]) -> Column:
    pairs = [
        F.struct(F.lit(name).alias("key"), _as_bytes(frame, F.expr(sql), f"headers.{name}",
                                                     stringify=True).alias("value"))
        for name, sql in headers.items()
    ]  # fmt: skip
    if not pairs:
        return F.lit(None).cast("array<struct<key:string,value:binary>>")
    return F.array(*pairs)


def _as_bytes(frame: DataFrame, column: Column, setting: str, stringify: bool) -> Column:
    """BINARY as it is, a STRING in UTF-8, and, when ``stringify``, anything else as its
    string."""
    kind = frame.select(column).schema.fields[0].dataType
    if isinstance(kind, BinaryType):
        return column
    if isinstance(kind, StringType) or stringify:
        return column.cast("string").cast("binary")
    raise ValueError(
        f"{setting}: format bytes writes a BINARY or STRING column, not {kind.simpleString()}"
    )


def _every_column(frame: DataFrame) -> list[Column]:
    return [F.col(f"`{name}`") for name in frame.columns]
