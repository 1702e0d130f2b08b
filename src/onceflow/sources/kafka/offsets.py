"""What a Kafka source's broker says: the offsets a job has not read yet
(``onceflow status``), and a query failure named better (a refused login, records gone
before the job read them).

The broker is asked through the Kafka client on Spark's classpath with the job's own client
settings, so SASL applies as it does for the query.
"""

from __future__ import annotations

import json
import re
from typing import Any

from pyspark.sql import SparkSession

from onceflow.errors import OnceflowError, SourceError
from onceflow.files import CheckpointFiles
from onceflow.sources.kafka import KafkaSourceSpec

__all__ = ["describe_lost_offsets", "explain_failure", "latest_offsets", "offsets_behind"]

_AUTH_FAILURE = re.compile(r"Authentication failed[^\n]*?(?= SQLSTATE|\s+at |\n|$)")


def explain_failure(
    spark: SparkSession | None, spec: KafkaSourceSpec, job: str, text: str
) -> OnceflowError | None:
    """SOURCE_AUTH_FAILED naming the listener, or SOURCE_DATA_LOSS with the partitions and
    offsets Spark reported gone; None for any other failure."""
    source = f"kafka at {spec.options['kafka.bootstrap.servers']}"
    auth = _AUTH_FAILURE.search(text)
    if auth is not None:
        return SourceError("SOURCE_AUTH_FAILED", job=job, source=source, cause=auth[0])
    if "failOnDataLoss" in text or "data may have been lost" in text:
        spark = spark or SparkSession.getActiveSession()
        lost = (
            describe_lost_offsets(spark, spec, text)
            if spark is not None
            else "Spark did not name the partitions"
        )
        return SourceError("SOURCE_DATA_LOSS", job=job, source=source, lost=lost)
    return None


def offsets_behind(
    spark: SparkSession, spec: KafkaSourceSpec, checkpoint: str, last_planned: int | None
) -> dict[str, object] | None:
    """The broker's latest offsets minus the end offsets Spark planned for the last batch
    (``offsets/<batch>``: a version line, a metadata line, then one line per source); None
    before the first batch or when the broker does not answer."""
    if last_planned is None:
        return None
    text = CheckpointFiles(spark, checkpoint.rstrip("/") + "/offsets").read(str(last_planned))
    lines = (text or "").splitlines()
    if len(lines) < 3 or not lines[2].startswith("{"):
        return None
    planned = {
        (topic, int(partition)): int(offset)
        for topic, partitions in json.loads(lines[2]).items()
        for partition, offset in partitions.items()
    }
    latest = latest_offsets(spark, spec, list(planned))
    if not latest:
        return None
    behind = sum(max(0, latest[key] - planned[key]) for key in planned if key in latest)
    return {"offsets": behind, "as_of": "now"}


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
