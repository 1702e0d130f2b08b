"""One part of a batch into Kafka in one transaction, in the executor task that holds it.

Runs inside ``mapInArrow`` over the batch's records cut into K parts (``records``); task
``p`` holds part ``p``:

1. a producer with ``transactional.id`` ``onceflow.<app id>.<sink>.<p>`` calls
   ``init_transactions``: an earlier attempt at this part (a crashed job's, a task still
   running somewhere) is fenced, and a transaction it left open is aborted;
2. the part's last marker is read ``read_committed`` (``markers.read_part_marker``); at or
   past this batch, the part was committed before and is skipped;
3. otherwise the part's records and its marker are produced in one transaction, committed.

A failure aborts the transaction (when Kafka still allows it) and fails the task; whatever
attempt comes next does the three steps again. Yields one row per part: what it did and
where its time went.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from onceflow.sinks.kafka.markers import Marker, marker_key, marker_value, read_part_marker

__all__ = ["PART_REPORT", "PartWriter"]

#: What each part's task reports back to the driver.
PART_REPORT = (
    "part BIGINT, records BIGINT, skipped BOOLEAN, init_ms DOUBLE, marker_ms DOUBLE, "
    "produce_ms DOUBLE, commit_ms DOUBLE"
)


@dataclass(frozen=True)
class PartWriter:
    """The task function of one batch (pickled to the executors).

    Attributes:
        settings: the producer's librdkafka settings (``client.librdkafka_settings``).
        app_id, sink, batch_id: whose batch this is.
        partitions: K, the parts of every batch.
        control_topic: where the markers go (partition ``p`` for part ``p``).
        topic: every record's topic, or None when the records carry theirs.
        timeout_s: how long a transaction step (init, commit) may take.
        fault: crash injection, prove and tests only: called in each part's task with
            ``(part, partitions)`` once its records and marker are produced, before commit.
    """

    settings: dict[str, str]
    app_id: str
    sink: str
    batch_id: int
    partitions: int
    control_topic: str
    topic: str | None
    timeout_s: float
    fault: Callable[[int, int], None] | None = field(default=None, compare=False)

    def transactional_id(self, part: int) -> str:
        return f"onceflow.{self.app_id}.{self.sink}.{part}"

    def __call__(self, batches: Iterator[Any]) -> Iterator[Any]:
        import pyarrow as pa  # type: ignore[import-untyped]
        from pyspark import TaskContext

        context = TaskContext.get()
        part = context.partitionId() if context is not None else 0
        report = self._write_part(part, batches)
        yield pa.RecordBatch.from_pylist([report])

    def _write_part(self, part: int, batches: Iterator[Any]) -> dict[str, Any]:
        from confluent_kafka import Producer

        clock = time.perf_counter()
        producer = Producer(self.settings | {"transactional.id": self.transactional_id(part)})
        producer.init_transactions(self.timeout_s)
        init_ms = _since(clock)
        clock = time.perf_counter()
        key = marker_key(self.app_id, self.sink, part)
        marked = read_part_marker(self.settings, self.control_topic, part, key, self.timeout_s)
        marker_ms = _since(clock)
        report = {"part": part, "records": 0, "skipped": False, "init_ms": init_ms,
                  "marker_ms": marker_ms, "produce_ms": 0.0, "commit_ms": 0.0}  # fmt: skip
        if marked is not None and marked >= self.batch_id:
            report["skipped"] = True
            return report
        clock = time.perf_counter()
        producer.begin_transaction()
        try:
            records = self._produce(producer, part, batches)
            marker = Marker(self.app_id, self.sink, part, self.batch_id, self.partitions)
            producer.produce(self.control_topic, marker_value(marker, records), key, partition=part)
            report["records"] = records
            report["produce_ms"] = _since(clock)
            if self.fault is not None:
                self.fault(part, self.partitions)
            clock = time.perf_counter()
            producer.commit_transaction(self.timeout_s)
            report["commit_ms"] = _since(clock)
        except BaseException:
            _abort(producer, self.timeout_s)
            raise
        return report

    def _produce(self, producer: Any, part: int, batches: Iterator[Any]) -> int:
        """Produce every record of the part; how many."""
        count = 0
        for batch in batches:
            columns = batch.to_pydict()
            parts = columns["part"]
            if parts and (min(parts) != part or max(parts) != part):
                raise RuntimeError(
                    f"task {part} was given records of parts {sorted(set(parts))}: the batch "
                    "was not cut as planned"
                )
            keys, values, headers = columns["key"], columns["value"], columns["headers"]
            topics = columns["topic"] if self.topic is None else None
            for row in range(len(values)):
                topic = self.topic if topics is None else topics[row]
                if topic is None:
                    raise ValueError("a record's topic column is NULL: every record needs one")
                header = [(h["key"], h["value"]) for h in headers[row]] if headers[row] else None
                _produce_one(producer, topic, keys[row], values[row], header)
            count += len(values)
            producer.poll(0)
        return count


def _produce_one(producer: Any, topic: str, key: Any, value: Any, headers: Any) -> None:
    """Produce one record, waiting for room in the client's queue when it is full."""
    while True:
        try:
            producer.produce(topic, value, key, headers=headers)
            return
        except BufferError:
            producer.poll(0.05)


def _abort(producer: Any, timeout_s: float) -> None:
    """Abort the open transaction when Kafka allows it; a fenced producer cannot, and its
    transaction is aborted by the attempt that fenced it."""
    try:
        producer.abort_transaction(timeout_s)
    except Exception:  # noqa: S110 - the original failure is what the task reports
        pass


def _since(clock: float) -> float:
    return (time.perf_counter() - clock) * 1000
