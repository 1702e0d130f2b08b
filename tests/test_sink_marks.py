"""The marks a sink keeps of the batches written into it, read back: Delta's commit
markers (an app id may hold ':'), and Parquet's marks file, which the foreign-sink check,
``status`` and a replay's outcome read as they read Delta's."""

from __future__ import annotations

from pathlib import Path

import pytest
from pyspark.sql import SparkSession

from onceflow.config import WriteMode
from onceflow.contracts import BatchContext, BatchReports
from onceflow.errors import GuaranteeError
from onceflow.prove.verify import read_ids, tally
from onceflow.prove.workload import write_payment_files
from onceflow.sinks.delta import DeltaSinkSpec
from onceflow.sinks.delta.marks import delta_batch_marks
from onceflow.sinks.delta.sink import DeltaSink
from onceflow.status import job_status
from tests.conftest import JobLoader
from tests.streaming import crash_at, run_to_end

pytestmark = pytest.mark.spark

ONE_FILE_PER_BATCH = "source.max_files_per_trigger=1"
PARQUET_REPLACE = (
    "sinks=[{name: events_parquet, kind: parquet, path: data/tables/events_parquet, "
    "mode: replace-batch}]"
)
PARQUET_APPEND = (
    "sinks=[{name: events_parquet, kind: parquet, path: data/tables/events_parquet, mode: append}]"
)


def test_a_commit_marker_names_an_app_id_with_colons(spark: SparkSession, tmp_path: Path) -> None:
    """A replay's app id is ``<app id>:replay``: its marks must read back as written."""
    spec = DeltaSinkSpec(kind="delta", name="events", path=str(tmp_path / "events"))
    sink = DeltaSink("job", spec, WriteMode.APPEND)
    frame = spark.createDataFrame([(1,)], "id BIGINT")
    sink.write(frame, BatchContext("4b1f:replay", 3, guarded=False))  # the marker alone
    sink.write(frame, BatchContext("4b1f", 7, guarded=True))  # the marker and Delta's txn
    assert delta_batch_marks(spark, spec.path) == {"4b1f:replay": 3, "4b1f": 7}


def test_a_fresh_checkpoint_against_replace_batch_parquet_is_refused(
    spark: SparkSession, job_in: JobLoader, tmp_path: Path
) -> None:
    """Replace-batch Parquet lives in ``_batch_id=N`` folders: a fresh checkpoint's batch
    0 would overwrite another run's batch 0 without a word."""
    write_payment_files(tmp_path / "data/sample/payments", count=60, files=2)
    job = ("jobs/payments_exactly_once_replace_batch.yaml", ONE_FILE_PER_BATCH, PARQUET_REPLACE)
    first = job_in(*job).spec
    run_to_end(spark, first)

    sink = job_status(spark, first).sinks[0]
    assert (sink.name, sink.marks_kept, sink.last_batch, sink.problem) == (
        "events_parquet",
        True,
        1,
        False,
    )

    fresh = job_in(*job, "checkpoint=state/a-fresh-checkpoint").spec
    with pytest.raises(GuaranteeError) as caught:
        run_to_end(spark, fresh)
    assert caught.value.error_class == "GUARANTEE_FOREIGN_SINK"
    assert "sink 'events_parquet'" in str(caught.value)
    delivered = tally(read_ids(spark, "parquet", first.sinks[0].path), range(1, 61))
    assert (delivered.lost, delivered.duplicated) == (0, 0)


def test_a_parquet_append_killed_in_its_first_batch_restarts(
    spark: SparkSession, job_in: JobLoader, tmp_path: Path
) -> None:
    """Batch 0 written, Spark's commit not: the restart replays batch 0 into the sink that
    holds it (at-least-once: duplicates), it is not refused as another run's data."""
    write_payment_files(tmp_path / "data/sample/payments", count=40, files=2)
    spec = job_in("jobs/payments_at_least_once.yaml", ONE_FILE_PER_BATCH, PARQUET_APPEND).spec
    with pytest.raises(Exception, match="CRASH_INJECTED"):
        run_to_end(spark, spec, crash=crash_at("after_write", 0))
    reports = BatchReports()
    run_to_end(spark, spec, reports=reports)
    delivered = tally(read_ids(spark, "parquet", spec.sinks[0].path), range(1, 41))
    assert (delivered.lost, delivered.duplicated) == (0, 20)
    # the replay's outcome, read from the marks: the sink held batch 0 and got it again
    report = reports.take(0)
    assert report is not None
    replayed = report.as_line()["guarantee"]
    assert replayed["sinks"] == {"events_parquet": "written_again"}
