"""The mechanisms under the guarantees: app id, foreign sinks, txn isolation, the ledger,
the single-sink mid-write crash, and a deliberately broken writer the checks must catch."""

from __future__ import annotations

import threading
from decimal import Decimal
from pathlib import Path

import pytest
from pyspark.sql import SparkSession

from onceflow.config import Guarantee
from onceflow.contracts import pop_batch_notes
from onceflow.errors import GuaranteeError
from onceflow.guarantees import (
    BatchLedger,
    CrashPlan,
    CrashPoint,
    WriterSettings,
    delta_app_ids,
    guarded_writer,
    resolve_app_id,
)
from onceflow.prove.workload import write_payment_files
from onceflow.runner import start_query
from onceflow.sinks import build_sink
from onceflow.sinks.delta import DML_TXN_APP_ID, DML_TXN_VERSION
from tests.conftest import JobLoader
from tests.payments_check import balance_drift, events_delivery
from tests.streaming import run_to_end

pytestmark = pytest.mark.spark

ONE_FILE_PER_BATCH = "source.max_files_per_trigger=1"


def test_app_id_is_stored_in_the_checkpoint(
    spark: SparkSession, job_in: JobLoader, tmp_path: Path
) -> None:
    write_payment_files(tmp_path / "data/sample/payments", count=40, files=2)
    spec = job_in("jobs/payments_exactly_once_transactional.yaml").spec
    run_to_end(spark, spec)

    identity = resolve_app_id(spark, spec.checkpoint)
    stored = (Path(spec.checkpoint) / "onceflow" / "app_id").read_text().strip()
    assert identity.app_id == stored and not identity.is_new
    # the tables' transaction ids are exactly this checkpoint's app id
    for sink in spec.sinks:
        assert delta_app_ids(spark, sink.path) == {stored}


def test_fresh_checkpoint_against_existing_sink_is_caught(
    spark: SparkSession, job_in: JobLoader, tmp_path: Path
) -> None:
    write_payment_files(tmp_path / "data/sample/payments", count=40, files=2)
    job = "jobs/payments_exactly_once_transactional.yaml"
    run_to_end(spark, job_in(job).spec)

    fresh = job_in(job, "checkpoint=state/a-new-checkpoint").spec
    with pytest.raises(GuaranteeError) as caught:
        start_query(spark, fresh)
    message = str(caught.value)
    assert caught.value.error_class == "GUARANTEE_FOREIGN_SINK"
    assert "sink 'events'" in message and fresh.sinks[0].path in message
    assert "on_foreign_sink: continue" in message
    # refused again on a second try: "new" means no committed batch, not a new app id file
    with pytest.raises(GuaranteeError):
        start_query(spark, fresh)

    # the explicit opt-in writes, with the new checkpoint's own app id
    allowed = job_in(job, "checkpoint=state/a-new-checkpoint", "on_foreign_sink=continue").spec
    run_to_end(spark, allowed)
    assert len(delta_app_ids(spark, allowed.sinks[0].path)) == 2


def test_two_merge_queries_in_one_session_keep_their_txn_ids(
    spark: SparkSession, job_in: JobLoader, tmp_path: Path
) -> None:
    """Two exactly-once MERGE jobs run at once in one session; each table records only its
    own app id, no batch is skipped, and no DML txn setting is left behind."""
    specs = []
    for name in ("left", "right"):
        write_payment_files(tmp_path / name / "in", count=90, files=3)
        specs.append(
            job_in(
                "jobs/payments_exactly_once_merge.yaml",
                ONE_FILE_PER_BATCH,
                f"name={name}",
                f"source.path={tmp_path / name / 'in'}",
                f"sinks[0].path={tmp_path / name / 'events'}",
                f"sinks[1].path={tmp_path / name / 'balances'}",
                f"checkpoint={tmp_path / name / 'checkpoint'}",
            ).spec
        )
    queries = [start_query(spark, spec) for spec in specs]
    for query in queries:
        query.awaitTermination(300)
        assert query.exception() is None

    app_ids = [resolve_app_id(spark, spec.checkpoint).app_id for spec in specs]
    assert app_ids[0] != app_ids[1]
    for spec, app_id in zip(specs, app_ids, strict=True):
        for sink in spec.sinks:
            assert delta_app_ids(spark, sink.path) == {app_id}
        assert events_delivery(spark, spec.sinks[0].path, 90).lost == 0
        assert balance_drift(spark, spec.sinks[1].path, 90) == 0
    assert spark.conf.get(DML_TXN_APP_ID, None) is None
    assert spark.conf.get(DML_TXN_VERSION, None) is None


def test_at_most_once_ledger_skips_a_replayed_batch(
    spark: SparkSession, job_in: JobLoader, tmp_path: Path
) -> None:
    """Single sink, crash inside the write job: the ledger already holds batch 1, so the
    replay skips it and batch 1 is lost, while nothing is duplicated."""
    write_payment_files(tmp_path / "data/sample/payments", count=90, files=3)
    spec = job_in(
        "jobs/payments.yaml",
        ONE_FILE_PER_BATCH,
        "guarantee=at-most-once",
        "faults.crash_point=mid_write",
        "faults.batch_id=1",
    ).spec
    with pytest.raises(Exception, match="GUARANTEE_CRASH_INJECTED"):
        run_to_end(spark, spec)
    assert BatchLedger(spark, spec.checkpoint).recorded() == [0, 1]
    for batch_id in (0, 1, 2):  # notes of earlier tests' batches under the same job name
        pop_batch_notes(spec.name, batch_id)

    run_to_end(
        spark, job_in("jobs/payments.yaml", ONE_FILE_PER_BATCH, "guarantee=at-most-once").spec
    )
    events = events_delivery(spark, spec.sinks[0].path, 90)
    assert (events.lost, events.duplicated) == (30, 0)
    assert BatchLedger(spark, spec.checkpoint).recorded() == [0, 1, 2]
    # what the writer did with each batch, for the progress line
    skipped = pop_batch_notes(spec.name, 1)["guarantee"]
    written = pop_batch_notes(spec.name, 2)["guarantee"]
    assert (skipped["action"], skipped["write_ms"]) == ("skipped_as_replay", {})
    assert written["action"] == "written" and written["retries"] == 0
    assert list(written["write_ms"]) == [spec.sinks[0].name]
    assert written["write_ms"][spec.sinks[0].name] > 0
    assert 0 < skipped["guard_ms"] < 10_000 and 0 < written["guard_ms"] < 10_000


def test_single_sink_mid_write_crash_under_exactly_once(
    spark: SparkSession, job_in: JobLoader, tmp_path: Path
) -> None:
    write_payment_files(tmp_path / "data/sample/payments", count=90, files=3)
    job = ("jobs/payments.yaml", ONE_FILE_PER_BATCH, "guarantee=exactly-once")
    crashing = job_in(*job, "faults.crash_point=mid_write", "faults.batch_id=1").spec
    with pytest.raises(Exception, match="GUARANTEE_CRASH_INJECTED"):
        run_to_end(spark, crashing)
    run_to_end(spark, job_in(*job).spec)
    events = events_delivery(spark, crashing.sinks[0].path, 90)
    assert (events.lost, events.duplicated) == (0, 0)


def test_checks_catch_a_broken_exactly_once_writer(
    spark: SparkSession, job_in: JobLoader, tmp_path: Path
) -> None:
    """A writer that claims exactly-once but does not guard its writes (the policy is
    swapped for at-least-once) must be caught by the same checks the matrix uses."""
    write_payment_files(tmp_path / "data/sample/payments", count=90, files=3)
    spec = job_in("jobs/payments_exactly_once_transactional.yaml", ONE_FILE_PER_BATCH).spec
    app_id = resolve_app_id(spark, spec.checkpoint).app_id
    sinks = [build_sink(spec, sink) for sink in spec.sinks]

    def broken(crash: CrashPlan | None) -> object:
        settings = WriterSettings(spec.name, Guarantee.AT_LEAST_ONCE, app_id, crash=crash)
        return guarded_writer(sinks, settings)

    query = start_query(spark, spec, broken(CrashPlan(CrashPoint.AFTER_WRITE, 1)))  # type: ignore[arg-type]
    with pytest.raises(Exception, match="GUARANTEE_CRASH_INJECTED"):
        query.awaitTermination(300)
    run_to_end(spark, spec, broken(None))  # type: ignore[arg-type]

    events = events_delivery(spark, spec.sinks[0].path, 90)
    assert events.duplicated == 30
    assert balance_drift(spark, spec.sinks[1].path, 90) != Decimal(0)


def test_dml_txn_settings_are_reset_after_a_failed_merge(spark: SparkSession) -> None:
    from onceflow.contracts import BatchContext
    from onceflow.sinks import dml_transaction

    session = spark.newSession()
    with pytest.raises(RuntimeError), dml_transaction(session, BatchContext("app", 7, True)):
        assert session.conf.get(DML_TXN_APP_ID) == "app"
        assert session.conf.get(DML_TXN_VERSION) == "7"
        raise RuntimeError("merge failed")
    assert session.conf.get(DML_TXN_APP_ID, None) is None


def test_dml_lock_serialises_guard_sections(spark: SparkSession) -> None:
    """While one thread is inside the guard, another cannot enter it."""
    from onceflow.contracts import BatchContext
    from onceflow.sinks import dml_transaction

    inside = threading.Event()
    release = threading.Event()
    entered_second: list[bool] = []

    def first() -> None:
        with dml_transaction(spark.newSession(), BatchContext("a", 1, True)):
            inside.set()
            release.wait(10)

    def second() -> None:
        with dml_transaction(spark.newSession(), BatchContext("b", 1, True)):
            entered_second.append(release.is_set())

    one = threading.Thread(target=first)
    one.start()
    inside.wait(10)
    two = threading.Thread(target=second)
    two.start()
    two.join(0.5)
    release.set()
    one.join(10)
    two.join(10)
    assert entered_second == [True]


def test_a_batch_feeding_two_sinks_is_read_from_the_source_once(
    spark: SparkSession, job_in: JobLoader, tmp_path: Path
) -> None:
    """The batch is persisted for its two sinks, and the balances sink's SQL reads the
    cached batch: Spark's input metric counts every record once, not once per sink."""
    write_payment_files(tmp_path / "data/sample/payments", count=90, files=3)
    spec = job_in("jobs/payments_at_least_once.yaml", ONE_FILE_PER_BATCH).spec
    query = start_query(spark, spec)
    query.awaitTermination(300)
    assert [p.numInputRows for p in query.recentProgress] == [30, 30, 30]
