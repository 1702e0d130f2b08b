"""The Kafka sink: a batch produced to a topic, by Spark's writer or, under exactly-once,
one Kafka transaction per part with its marker (``transactions``).

- Unguarded (at-least-once, at-most-once): Spark's Kafka writer. A replayed batch is
  produced again.
- Guarded (exactly-once): the batch is cut into K parts (``records.in_parts``), each
  produced in one transaction with its marker by a producer fenced per (app id, sink,
  part). A replay skips the parts whose marker is at the batch: a ``read_committed``
  consumer sees each record once. A part becomes visible when its transaction commits, so
  a reader may see some parts of a batch before the others.

Before the first batch (``check``) the broker must run transactions with the job's
settings, within its maximum transaction timeout; the checkpoint records K and the control
topic (``<checkpoint>/onceflow/kafka/<sink>.json``), and a start with another K, or with a
control topic that lost the markers of committed batches, is refused
(``check_resume``).
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any

from pyspark.sql import DataFrame, SparkSession

from onceflow.config import Guarantee, JobSpec, WriteMode
from onceflow.contracts import BatchContext
from onceflow.errors import SinkError, first_line
from onceflow.files import CheckpointFiles
from onceflow.sinks.base import BatchSink
from onceflow.sinks.kafka import KafkaSinkSpec, control_topic_of
from onceflow.sinks.kafka.client import librdkafka_settings, transaction_timeout_ms
from onceflow.sinks.kafka.markers import ControlTopic, last_markers
from onceflow.sinks.kafka.records import in_parts, kafka_records
from onceflow.sinks.kafka.transactions import PART_REPORT, PartWriter
from onceflow.storage import onceflow_state

__all__ = ["KafkaSink", "build", "isolate"]

_log = logging.getLogger("onceflow.sinks")


def build(job: JobSpec, spec: KafkaSinkSpec, mode: WriteMode) -> KafkaSink:
    """The kind's factory (``onceflow.sinks.kafka.SINK.build``)."""
    return KafkaSink(job, spec, mode)


class KafkaSink(BatchSink):
    """A Kafka topic; see the module for what a replay does in each guarantee."""

    _spec: KafkaSinkSpec

    def __init__(self, job: JobSpec, spec: KafkaSinkSpec, mode: WriteMode) -> None:
        super().__init__(job.name, spec, mode)
        self._exactly_once = job.guarantee is Guarantee.EXACTLY_ONCE
        self._checkpoint = job.checkpoint
        self.control_topic = control_topic_of(spec, job.name)
        self.settings = librdkafka_settings(spec.options)
        self.timeout_s = transaction_timeout_ms(spec.options) / 1000
        #: crash injection (prove and tests only): see ``PartWriter.fault``
        self.part_fault: Any = None
        self._noted: set[str] = set()  # app ids whose first guarded batch is recorded
        self._cleared: set[str] = set()  # app ids whose unguarded writes cleared it
        self._control_ready = False  # the control topic checked (or created) in this run
        #: each part's report of the last exactly-once batch (``PART_REPORT``)
        self.last_parts: list[dict[str, Any]] = []

    @property
    def partitions(self) -> int:
        return self._spec.partitions or 1

    # -- before the query ---------------------------------------------------------------
    def check(self) -> None:
        """Under exactly-once: the broker runs a transaction with the job's settings within
        its maximum timeout, K is the one the checkpoint recorded, and a control topic that
        exists has K partitions and is compacted."""
        if not self._exactly_once:
            return
        from onceflow.sinks.kafka.broker import probe_transactions

        probe_transactions(self._job, self.name, self._spec, self.settings)
        recorded = self._recorded()
        if recorded is not None and recorded.get("partitions") != self.partitions:
            raise SinkError(
                "KAFKA_SINK_PARTITIONS_CHANGED", job=self._job, sink=self.name,
                now=self.partitions, recorded=recorded.get("partitions"),
                checkpoint=self._checkpoint,
            )  # fmt: skip
        if recorded is not None and recorded.get("control_topic") != self.control_topic:
            self._refuse_topic(f"the checkpoint's markers are in '{recorded.get('control_topic')}'")
        self._check_topic(ControlTopic(self.settings, self.control_topic))

    def _check_topic(self, topic: ControlTopic) -> bool:
        """Whether the control topic exists; refused when it is not fit to hold markers."""
        found = topic.partitions()
        if found is None:
            return False
        if found != self.partitions:
            self._refuse_topic(
                f"it has {found} partitions, the sink's parts are {self.partitions}; "
                "give each sink its own control topic"
            )
        if "compact" not in topic.cleanup_policy():
            self._refuse_topic(
                "its cleanup.policy is not compact, so retention would delete markers of "
                "committed batches; set cleanup.policy=compact"
            )
        return True

    def check_resume(self, spark: SparkSession, app_id: str, last_committed: int | None) -> None:
        """Before the first batch: refuse to start when the control topic lost markers of
        batches the checkpoint committed under exactly-once (deleted, or truncated), for
        the next replay would be written again; else create it when it is new, and record K
        and the control topic in the checkpoint."""
        if not self._exactly_once:
            return
        recorded = self._recorded()
        since = ((recorded or {}).get("guarded_since") or {}).get(app_id)
        committed = since is not None and last_committed is not None and since <= last_committed
        topic = ControlTopic(self.settings, self.control_topic)
        if not self._check_topic(topic):
            if committed:
                self._markers_lost("the topic is gone")
            topic.create(self.partitions)
            self._check_topic(topic)
        elif committed:
            assert last_committed is not None  # noqa: S101 - committed says so
            marked = last_markers(self.settings, self.control_topic, self.partitions)
            mine = marked.get(app_id, {})
            behind = [p for p in range(self.partitions) if mine.get(p, -1) < last_committed]
            if behind:
                parts = ", ".join(map(str, behind))
                self._markers_lost(f"batch {last_committed} of part(s) {parts}")
        if recorded is None:
            self._record({})
        self._control_ready = True

    def _markers_lost(self, missing: str) -> None:
        raise SinkError(
            "KAFKA_SINK_MARKERS_LOST", job=self._job, sink=self.name, topic=self.control_topic,
            missing=missing,
        )  # fmt: skip

    def _refuse_topic(self, problem: str) -> None:
        raise SinkError(
            "KAFKA_SINK_CONTROL_TOPIC", job=self._job, sink=self.name,
            topic=self.control_topic, problem=problem,
        )  # fmt: skip

    def _record_files(self) -> CheckpointFiles:
        from pyspark.sql import SparkSession as Session

        spark = Session.getActiveSession()
        assert spark is not None  # noqa: S101 - the job's session runs this
        return CheckpointFiles(spark, f"{onceflow_state(self._checkpoint)}/kafka")

    def _recorded(self) -> dict[str, Any] | None:
        text = self._record_files().read(f"{self.name}.json")
        recorded = json.loads(text) if text else None
        return recorded if isinstance(recorded, dict) else None

    def _record(self, guarded_since: dict[str, int]) -> None:
        record = {"partitions": self.partitions, "control_topic": self.control_topic,
                  "guarded_since": guarded_since}  # fmt: skip
        self._record_files().overwrite(f"{self.name}.json", json.dumps(record, indent=2) + "\n")

    # -- a batch ------------------------------------------------------------------------
    def _write(self, frame: DataFrame, context: BatchContext) -> None:
        records = kafka_records(frame, self._spec)
        if not context.guarded:
            self._note_unguarded(context.app_id)
            self._spark_writer(records)
            return
        self._note_guarded(context)
        if not self._control_ready:  # a replay's first write for a job that is not
            topic = ControlTopic(self.settings, self.control_topic)  # exactly-once
            if not self._check_topic(topic):
                topic.create(self.partitions)
                self._check_topic(topic)
            self._control_ready = True
        writer = PartWriter(
            settings=self.settings, app_id=context.app_id, sink=self.name,
            batch_id=context.batch_id, partitions=self.partitions,
            control_topic=self.control_topic, topic=self._spec.topic,
            timeout_s=self.timeout_s, fault=self.part_fault,
        )  # fmt: skip
        try:
            rows = in_parts(records, self.partitions).mapInArrow(writer, PART_REPORT).collect()
        except Exception as exc:
            raise self._write_failed(context, task_failure(exc)) from exc
        self.last_parts = sorted((row.asDict() for row in rows), key=lambda r: r["part"])
        if sorted(r["part"] for r in self.last_parts) != list(range(self.partitions)):
            raise self._write_failed(context, f"parts reported: {self.last_parts}")

    def _spark_writer(self, records: DataFrame) -> None:
        writer = records.write.format("kafka").options(**self._spec.options)
        if self._spec.topic is not None:
            writer = writer.option("topic", self._spec.topic)
        writer.save()

    def _note_guarded(self, context: BatchContext) -> None:
        """Record the first batch this app id wrote guarded (``check_resume`` counts on the
        markers of every committed batch from there)."""
        if not self._exactly_once or context.app_id in self._noted:
            return  # not recorded for a quarantine replay into an at-least-once job's sink
        recorded = self._recorded() or {}
        since = dict(recorded.get("guarded_since") or {})
        if context.app_id not in since:
            since[context.app_id] = context.batch_id
            self._record(since)
        self._noted.add(context.app_id)

    def _note_unguarded(self, app_id: str) -> None:
        """Forget the app's guarded start: its markers stop at this batch (a job switched
        to at-least-once), so a later exactly-once start must not count on them."""
        if app_id in self._cleared:
            return
        self._cleared.add(app_id)
        self._noted.discard(app_id)
        recorded = self._recorded()
        if recorded and app_id in (recorded.get("guarded_since") or {}):
            since = dict(recorded["guarded_since"])
            del since[app_id]
            self._record(since)

    # -- what the sink holds ------------------------------------------------------------
    def batch_marks(self, spark: SparkSession) -> dict[str, int] | None:
        """App id -> the last batch every part of it committed, from the markers."""
        if not self._exactly_once:
            return None
        if ControlTopic(self.settings, self.control_topic).partitions() is None:
            return {}
        marked = last_markers(self.settings, self.control_topic, self.partitions)
        return {
            app: min(parts.get(p, -1) for p in range(self.partitions))
            for app, parts in marked.items()
        }

    def part_marks(self, spark: SparkSession) -> dict[str, dict[int, int]] | None:
        """App id -> part -> the last batch marked (``onceflow status``)."""
        if not self._exactly_once:
            return None
        if ControlTopic(self.settings, self.control_topic).partitions() is None:
            return {}
        return last_markers(self.settings, self.control_topic, self.partitions)

    def read(self, spark: SparkSession) -> DataFrame:
        """The topic as a ``read_committed`` consumer sees it (Spark's batch Kafka reader)."""
        reader = spark.read.format("kafka").options(**self._spec.options)
        reader = reader.option("kafka.isolation.level", "read_committed")
        if self._spec.topic is None:
            raise NotImplementedError(f"sink '{self.name}' writes the topics its rows name")
        return reader.option("subscribe", self._spec.topic).load()


# the last "SomeError: what" line of a Python traceback (a task's, inside Spark's message)
_RAISED = re.compile(r"^(?:[\w.]+\.)?(\w*(?:Error|Exception)): (.+)$", re.M)


def task_failure(exc: BaseException) -> str:
    """What failed in a part's task: the exception its Python worker raised (Spark's own
    first line only says that one was raised), else the first line."""
    raised = [m for m in _RAISED.finditer(str(exc)) if m[1] not in _WRAPPERS]
    return f"{raised[-1][1]}: {raised[-1][2]}" if raised else first_line(exc)


# Spark's and py4j's exceptions around the task's own
_WRAPPERS = {"PythonException", "Py4JJavaError", "StreamingQueryException", "SparkException"}


def isolate(job: JobSpec, spec: KafkaSinkSpec, tag: str) -> list[str]:
    """For a prove scenario: a topic of its own, ``<topic>-p<tag>``, and a control topic of
    its own, ``<control topic>-p<tag>`` (exactly-once writes and any quarantine replay mark
    there); returns the overrides that point the job there.

    Both are deleted first, so that a rerun with the same tag starts clean (an old run's
    records would count as duplicates, its markers as another app's). The output topic is
    then created, with as many partitions as the job's own topic has on the broker (3 when
    it has none): the job never creates the topic it writes, and a broker need not create
    one on first use. The control topic is left to the sink, which creates it compacted
    with K partitions. A sink writing the topic each record names gets no copy (prove
    refuses it).
    """
    import time

    from confluent_kafka import KafkaError, KafkaException
    from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

    from onceflow.sinks.kafka.client import client_only

    index = next(i for i, sink in enumerate(job.sinks) if sink.name == spec.name)
    if spec.topic is None:
        return []
    topic = f"{spec.topic[:200]}-p{tag}"
    overrides = [f"sinks[{index}].topic={topic}"]
    control = f"{control_topic_of(spec, job.name)[:200]}-p{tag}"
    overrides.append(f"sinks[{index}].control_topic={control}")
    mine = [topic, control]
    admin = AdminClient(client_only(librdkafka_settings(spec.options)))
    listed = admin.list_topics(timeout=30).topics
    old = [name for name in mine if name in listed]
    if old:
        for deleted in admin.delete_topics(old, request_timeout=30).values():
            deleted.result(40)
    original = listed.get(spec.topic)
    partitions = len(original.partitions) if original is not None and original.partitions else 3
    deadline = time.monotonic() + 60
    while True:  # a topic just deleted may still be on its way out: try again
        future = admin.create_topics(
            [NewTopic(topic, num_partitions=partitions, replication_factor=-1)],
            request_timeout=30,
        )[topic]
        try:
            future.result(40)
            break
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)
    return overrides
