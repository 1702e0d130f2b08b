"""What a checkpoint records about its job: the app id its guarded writes carry, and which
job it belongs to. A wrong or half-written record is refused before anything is written."""

from __future__ import annotations

import threading
import uuid
from pathlib import Path

import pytest
from pyspark.sql import SparkSession

from onceflow.errors import GuaranteeError
from onceflow.guarantees import resolve_app_id
from onceflow.prove.workload import write_payment_files
from tests.conftest import JobLoader
from tests.streaming import run_to_end

pytestmark = pytest.mark.spark


def test_a_checkpoint_of_another_job_is_refused_and_adopted_only_on_purpose(
    spark: SparkSession, job_in: JobLoader, tmp_path: Path
) -> None:
    """The README's default job ran on its checkpoint; another job pointed at it would plan
    no batch (the files are already in its source log), take over its query id and never
    deliver its own records."""
    write_payment_files(tmp_path / "data/sample/payments", count=60, files=2)
    payments = job_in("jobs/payments.yaml").spec
    run_to_end(spark, payments)

    other = job_in("jobs/payments_at_least_once.yaml", f"checkpoint={payments.checkpoint}").spec
    with pytest.raises(GuaranteeError) as caught:
        run_to_end(spark, other)
    message = str(caught.value)
    assert caught.value.error_class == "GUARANTEE_CHECKPOINT_MISMATCH"
    assert payments.checkpoint in message
    assert "job 'payments'" in message and "'payments-at-least-once'" in message
    assert "adopt" in message
    assert not Path(other.sinks[0].path).exists()  # nothing of the other job was written

    run_to_end(spark, other, adopt_checkpoint=True)
    run_to_end(spark, other)  # adopted: the checkpoint is the other job's now
    with pytest.raises(GuaranteeError, match="GUARANTEE_CHECKPOINT_MISMATCH"):
        run_to_end(spark, payments)


def test_moving_a_sink_under_a_checkpoint_is_refused(
    spark: SparkSession, job_in: JobLoader, tmp_path: Path
) -> None:
    """A sink moved under a running checkpoint never gets the batches before the move."""
    write_payment_files(tmp_path / "data/sample/payments", count=40, files=1)
    run_to_end(spark, job_in("jobs/payments.yaml").spec)
    moved = job_in("jobs/payments.yaml", "sinks[0].path=data/tables/elsewhere").spec
    with pytest.raises(GuaranteeError) as caught:
        run_to_end(spark, moved)
    assert caught.value.error_class == "GUARANTEE_CHECKPOINT_MISMATCH"
    assert "sink 'events'" in str(caught.value)
    # a setting that does not change what the checkpoint means is no mismatch
    run_to_end(spark, job_in("jobs/payments.yaml", "source.max_files_per_trigger=1").spec)


@pytest.mark.parametrize("content", ["", "\n", "not-a-uuid\n"], ids=["empty", "newline", "junk"])
def test_an_empty_or_malformed_app_id_is_refused(
    spark: SparkSession, job_in: JobLoader, tmp_path: Path, content: str
) -> None:
    """An app id file a kill left empty would key every guarded write by "": Delta then
    skips them for any other checkpoint that also lost its id."""
    write_payment_files(tmp_path / "data/sample/payments", count=20, files=1)
    spec = job_in("jobs/payments_exactly_once_transactional.yaml").spec
    app_id = Path(spec.checkpoint) / "onceflow" / "app_id"
    app_id.parent.mkdir(parents=True)
    app_id.write_text(content)
    with pytest.raises(GuaranteeError) as caught:
        run_to_end(spark, spec)
    assert caught.value.error_class == "GUARANTEE_APP_ID_INVALID"
    assert str(app_id) in str(caught.value)
    assert not Path(spec.sinks[0].path).exists()


def test_the_app_id_file_is_never_seen_empty(spark: SparkSession, tmp_path: Path) -> None:
    """The id appears whole or not at all: a reader racing its creation never finds the
    file empty (a kill at that instant would leave it so)."""
    checkpoints = [tmp_path / f"cp{i}" for i in range(150)]
    seen_empty: list[Path] = []
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            for checkpoint in checkpoints:
                path = checkpoint / "onceflow" / "app_id"
                try:
                    if path.read_text() == "":
                        seen_empty.append(path)
                except OSError:
                    pass

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        for checkpoint in checkpoints:
            identity = resolve_app_id(spark, str(checkpoint))
            assert uuid.UUID(identity.app_id)
    finally:
        done.set()
        watcher.join()
    assert seen_empty == []
