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
where its time went (``PART_REPORT``).

The Python worker keeps the producer for the part's next batch (``client.KeptClients``),
with the marker it knows: the batch it committed, or the marker it read in step 2. Steps 1
and 2 cost more than a small part's records, and a kept producer may skip them: until
another producer of its transactional id calls ``init_transactions``, it is the only one
that can commit a marker of the part, so the marker it knows is the part's last; and that
other producer fences it. A marker only moves forward, so a kept producer

- skips a batch at or below the marker it knows, without asking the broker;
- otherwise produces the part, keeping the Arrow batches it read until the broker has
  accepted the transaction's first record under its epoch (a fenced producer's is
  refused). Refused, or failing in any other Kafka way before that, it is dropped and the
  task does steps 1 to 3 with a new producer over the same records; once accepted, a
  failure fails the task as above (another attempt at the part is running).
"""

from __future__ import annotations

import itertools
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from onceflow.sinks.kafka.client import KeptClients, settings_key
from onceflow.sinks.kafka.markers import Marker, marker_key, marker_value, read_part_marker

__all__ = ["PART_REPORT", "PartWriter"]

#: What each part's task reports back to the driver: ``init_ms`` (producer and
#: ``init_transactions``), ``marker_ms`` (the marker read), ``produce_ms`` (records and marker
#: produced, of which ``input_ms`` waiting for Spark's next Arrow batch: the shuffle read,
#: the sort and the transfer to Python), ``commit_ms``; ``started_ms`` and ``ended_ms`` are
#: the task's wall clock (ms since the epoch) to line the parts up against the driver's;
#: ``kept``: the producer was kept from an earlier batch, ``replaced``: it was refused and a
#: new one did the three steps.
PART_REPORT = (
    "part BIGINT, records BIGINT, skipped BOOLEAN, init_ms DOUBLE, marker_ms DOUBLE, "
    "produce_ms DOUBLE, input_ms DOUBLE, commit_ms DOUBLE, started_ms DOUBLE, ended_ms DOUBLE, "
    "kept BOOLEAN, replaced BOOLEAN"
)
_REPORT_FIELDS = [column.split()[0] for column in PART_REPORT.split(", ")]
# how many Arrow batches a kept producer reads before the broker accepted its first record;
# past it, the task waits for the answer (at most this many batches are held to redo)
_UNACCEPTED_BATCHES = 4


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
        started_ms = time.time() * 1000
        report = self._write_part(part, batches)
        report |= {"started_ms": started_ms, "ended_ms": time.time() * 1000}
        # Spark takes the columns by position: in PART_REPORT's order, whatever the dict's
        yield pa.RecordBatch.from_pylist([{name: report[name] for name in _REPORT_FIELDS}])

    def _write_part(self, part: int, batches: Iterator[Any]) -> dict[str, Any]:
        report = {"part": part, "records": 0, "skipped": False, "init_ms": 0.0,
                  "marker_ms": 0.0, "produce_ms": 0.0, "input_ms": 0.0, "commit_ms": 0.0,
                  "kept": False, "replaced": False}  # fmt: skip
        key = (self.transactional_id(part), self.control_topic, settings_key(self.settings))
        kept = _PRODUCERS.take(key)
        if kept is not None:
            report["kept"] = True
            if kept.marked is not None and kept.marked >= self.batch_id:
                report["skipped"] = True
                _PRODUCERS.keep(key, kept)
                return report
            unaccepted = _Unaccepted(batches)
            try:
                self._transaction(kept.producer, part, unaccepted, report, unaccepted)
            except _Refused:
                _PRODUCERS.discard(kept)
                report["replaced"] = True
                batches = unaccepted.again()
            except BaseException:
                _PRODUCERS.discard(kept)
                raise
            else:
                kept.marked = self.batch_id
                _PRODUCERS.keep(key, kept)
                return report
        kept = self._new_producer(part, report)
        if kept.marked is not None and kept.marked >= self.batch_id:
            report["skipped"] = True
        else:
            self._transaction(kept.producer, part, batches, report, None)
            kept.marked = self.batch_id
        _PRODUCERS.keep(key, kept)
        return report

    def _new_producer(self, part: int, report: dict[str, Any]) -> _Kept:
        """Steps 1 and 2: a producer that fenced every earlier one of the part, and the
        part's last marker read after that."""
        from confluent_kafka import Producer

        clock = time.perf_counter()
        producer = Producer(self.settings | {"transactional.id": self.transactional_id(part)})
        # connected first: librdkafka's init_transactions, started before a connection to
        # a broker it learned from the metadata is up, tries again on a 500 ms timer. The
        # first metadata request is answered over the bootstrap connection; the second goes
        # to a learned broker, so it waits for one (~60 ms a producer here, where every
        # second one took 500 ms more on a busy machine). The control topic exists by now
        # (check_resume): the requests cannot create it
        for _ in range(2):
            producer.list_topics(self.control_topic, timeout=self.timeout_s)
        producer.init_transactions(self.timeout_s)
        report["init_ms"] = _since(clock)
        clock = time.perf_counter()
        key = marker_key(self.app_id, self.sink, part)
        marked = read_part_marker(self.settings, self.control_topic, part, key, self.timeout_s)
        report["marker_ms"] = _since(clock)
        return _Kept(producer, marked)

    def _transaction(
        self,
        producer: Any,
        part: int,
        batches: Iterator[Any],
        report: dict[str, Any],
        unaccepted: _Unaccepted | None,
    ) -> None:
        """Step 3: the part's records and marker in one transaction, committed. With
        ``unaccepted`` (a kept producer), a Kafka failure before the broker accepted the
        first record raises ``_Refused``, the transaction aborted if it can be."""
        from confluent_kafka import KafkaException

        clock = time.perf_counter()
        producer.begin_transaction()
        try:
            records, report["input_ms"] = self._produce(producer, part, batches, unaccepted)
            marker = Marker(self.app_id, self.sink, part, self.batch_id, self.partitions)
            value, key = marker_value(marker, records), marker_key(self.app_id, self.sink, part)
            first = unaccepted.callback() if unaccepted is not None else None
            _produce_one(producer, self.control_topic, key, value, None, part, first)
            if unaccepted is not None:
                unaccepted.wait(producer, self.timeout_s)
            report["records"] = records
            report["produce_ms"] = _since(clock)
            if self.fault is not None:
                self.fault(part, self.partitions)
            clock = time.perf_counter()
            producer.commit_transaction(self.timeout_s)
            report["commit_ms"] = _since(clock)
        except BaseException as exc:
            _abort(producer, self.timeout_s)
            if unaccepted is not None and not unaccepted.accepted:
                if isinstance(exc, _Refused | KafkaException):
                    raise _Refused(str(exc)) from exc
            raise

    def _produce(
        self, producer: Any, part: int, batches: Iterator[Any], unaccepted: _Unaccepted | None
    ) -> tuple[int, float]:
        """Produce every record of the part; how many, and the ms spent waiting for them."""
        count, waited = 0, 0.0
        while True:
            clock = time.perf_counter()
            batch = next(batches, None)
            waited += _since(clock)
            if batch is None:
                return count, waited
            columns = batch.to_pydict()
            parts = columns["part"]
            if parts and (min(parts) != part or max(parts) != part):
                raise RuntimeError(
                    f"task {part} was given records of parts {sorted(set(parts))}: the batch "
                    "was not cut as planned"
                )
            keys, values, headers = columns["key"], columns["value"], columns["headers"]
            topics = columns["topic"] if self.topic is None else None
            # the transaction's first record carries the callback that says whether the
            # broker took it (a kept producer's); the others none, which is cheaper
            first = unaccepted.callback() if unaccepted is not None and values else None
            for row in range(len(values)):
                topic = self.topic if topics is None else topics[row]
                if topic is None:
                    raise ValueError("a record's topic column is NULL: every record needs one")
                header = [(h["key"], h["value"]) for h in headers[row]] if headers[row] else None
                _produce_one(producer, topic, keys[row], values[row], header, first=first)
                first = None
            count += len(values)
            producer.poll(0)
            if unaccepted is not None and unaccepted.held() >= _UNACCEPTED_BATCHES:
                unaccepted.wait(producer, self.timeout_s)


@dataclass
class _Kept:
    """A producer of one part and the part's last marker as it knows it."""

    producer: Any
    marked: int | None


def _close(kept: _Kept) -> None:
    """Drop what a producer still holds (a refused transaction's records) and close it."""
    with warnings.catch_warnings():
        # a fenced producer's close says that it could not abort: the new one did
        warnings.simplefilter("ignore", RuntimeWarning)
        try:
            kept.producer.purge()
        finally:
            kept.producer.close()


# The producers this Python worker keeps between its tasks, by transactional id, control
# topic and settings. Process state, on purpose: a task is pickled afresh every batch, and
# only the worker process outlives it.
_PRODUCERS: KeptClients[_Kept] = KeptClients(close=_close, limit=8)


class _Refused(Exception):
    """A kept producer's transaction failed before the broker accepted its first record."""


class _Unaccepted:
    """The records of a kept producer's transaction until the broker accepts the first one
    under the producer's epoch: the Arrow batches read so far, to produce again with a new
    producer if it is refused."""

    def __init__(self, batches: Iterator[Any]) -> None:
        self._batches = batches
        self._read: list[Any] = []
        self._armed = True
        self.accepted = False
        self.refusal: str | None = None

    def __iter__(self) -> Iterator[Any]:
        return self

    def __next__(self) -> Any:
        batch = next(self._batches)
        if not self.accepted:
            self._read.append(batch)
        return batch

    def held(self) -> int:
        return len(self._read)

    def callback(self) -> Callable[[Any, Any], None] | None:
        """The delivery callback for the transaction's first record; None after it."""
        if not self._armed:
            return None
        self._armed = False
        return self._delivered

    def _delivered(self, error: Any, _message: Any) -> None:
        if error is not None:
            self.refusal = str(error)
        else:
            self.accepted = True
            self._read.clear()

    def wait(self, producer: Any, timeout_s: float) -> None:
        """Until the first record is accepted; ``_Refused`` when it is not, in time."""
        deadline = time.monotonic() + timeout_s
        while not self.accepted:
            if self.refusal is not None or time.monotonic() > deadline:
                raise _Refused(self.refusal or f"no answer in {timeout_s:.0f} s")
            producer.poll(0.01)

    def again(self) -> Iterator[Any]:
        """Every record of the part, the ones read before first."""
        return itertools.chain(self._read, self._batches)


def _produce_one(
    producer: Any,
    topic: str,
    key: Any,
    value: Any,
    headers: Any,
    partition: int | None = None,
    first: Callable[[Any, Any], None] | None = None,
) -> None:
    """Produce one record, waiting for room in the client's queue when it is full; ``first``
    is the delivery callback of a kept producer's first record (``_Unaccepted``)."""
    extra: dict[str, Any] = {}
    if partition is not None:
        extra["partition"] = partition
    if first is not None:
        extra["on_delivery"] = first
    while True:
        try:
            producer.produce(topic, value, key, headers=headers, **extra)
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
