"""A sink kind from outside onceflow: JSON lines files, appended or replaced by batch.

One module is the whole kind: its spec, its declaration (what it can do) and its writer.
Installed, it registers itself through the ``onceflow.sinks`` entry point, and a job names
``kind: jsonl``. Like onceflow's own kinds it imports no Spark until a job runs, so that
validating a job never loads Spark.

    sinks:
      - name: events
        kind: jsonl
        path: tables/events_jsonl
        mode: replace-batch

``replace-batch`` keeps exactly-once: each batch's rows go to ``<path>/_batch_id=N/``, which a
replay overwrites whole. Its marks, a file per app id in ``<path>/_marks/``, are rewritten
after every batch.
"""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING, Any, Literal

from onceflow.config import FileSinkSpec, JobSpec, SinkKind, WriteMode
from onceflow.contracts import BatchContext
from onceflow.files import CheckpointFiles

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession


class JsonLinesSinkSpec(FileSinkSpec):
    """JSON lines files in a folder."""

    kind: Literal["jsonl"]


class JsonLinesSink:
    """A folder of JSON lines files (``onceflow.contracts.Sink``)."""

    def __init__(self, job: JobSpec, spec: JsonLinesSinkSpec, mode: WriteMode) -> None:
        self.name, self.path, self.mode = spec.name, spec.path, mode
        self._column = spec.batch_id_column

    def write(self, batch: DataFrame, context: BatchContext) -> None:
        from pyspark.sql import functions as F

        writer = batch.withColumn(self._column, F.lit(context.batch_id).cast("bigint")).write
        if self.mode is WriteMode.REPLACE_BATCH:
            writer = writer.mode("overwrite").option("partitionOverwriteMode", "dynamic")
        else:
            writer = writer.mode("append")
        writer.partitionBy(self._column).json(self.path)
        mark = {"app_id": context.app_id, "last_batch": context.batch_id}
        self._marks(batch.sparkSession).overwrite(_file_of(context.app_id), json.dumps(mark))

    def batch_marks(self, spark: SparkSession) -> dict[str, int]:
        marks = self._marks(spark)
        records = [json.loads(marks.read(n) or "{}") for n in marks.names() if n[0] != "."]
        return {r["app_id"]: r["last_batch"] for r in records if "app_id" in r}

    def foreign_writers(self, spark: SparkSession, app_id: str) -> set[str]:
        return set(self.batch_marks(spark)) - {app_id}

    def is_conflict(self, exc: BaseException) -> bool:
        return False  # files have no concurrent commit to lose to

    def check(self) -> None:
        pass  # its folder is checked with the job's storage

    def read(self, spark: SparkSession) -> DataFrame:
        return spark.read.json(self.path)

    def _marks(self, spark: Any) -> CheckpointFiles:
        return CheckpointFiles(spark, f"{self.path.rstrip('/')}/_marks")


def _file_of(app_id: str) -> str:
    return hashlib.sha256(app_id.encode()).hexdigest()[:24] + ".json"


def _no_query(spec: JsonLinesSinkSpec, job: JobSpec) -> list[tuple[tuple[str, ...], str]]:
    return [(("query",), "a jsonl sink writes the batch as it comes")] if spec.query else []


SINK = SinkKind(
    name="jsonl",
    title="JSON lines",
    spec=JsonLinesSinkSpec,
    build="onceflow_jsonl_sink:JsonLinesSink",
    modes=frozenset({WriteMode.APPEND, WriteMode.REPLACE_BATCH}),
    guarded_modes=frozenset({WriteMode.REPLACE_BATCH}),
    guard_hint="files have no transaction to carry the batch id; use mode: replace-batch",
    read_format="json",
    rules=_no_query,
)
