"""The mechanisms under the guarantees: app id, foreign sinks, txn isolation, the ledger,
the single-sink mid-write crash, a real Delta conflict retried, and a deliberately broken
writer the checks must catch."""

from __future__ import annotations

import threading
from decimal import Decimal
from pathlib import Path

import pytest
from pyspark.sql import SparkSession

from onceflow.config import Guarantee, WriteMode
from onceflow.contracts import BatchContext, BatchReports
from onceflow.errors import GuaranteeError
from onceflow.guarantees import (
    BatchClaims,
    policy_for,
    resolve_app_id,
    retry_conflicts,
)
from onceflow.pipeline import BatchPipeline
from onceflow.prove.verify import balance_drift, read_ids, tally
from onceflow.prove.workload import write_payment_files
from onceflow.quality import QualityStage
from onceflow.runner import build_outputs, start_query
from onceflow.sinks.delta import DeltaSinkSpec, MergeSpec
from onceflow.sinks.delta.marks import delta_app_ids, delta_batch_marks
from onceflow.sinks.delta.sink import (
    DML_TXN_APP_ID,
    DML_TXN_VERSION,
    DeltaSink,
    dml_transaction,
    is_delta_conflict,
)
from tests.conftest import JobLoader
from tests.streaming import crash_at, run_to_end

pytestmark = pytest.mark.spark

ONE_FILE_PER_BATCH = "source.max_files_per_trigger=1"
SPARK_PARSES = "quality.parser=spark"  # typed rows, a single output: no quarantine table


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


def _merge_sink(path: Path) -> DeltaSink:
    """A guarded MERGE sink on ``id`` whose update adds: applied twice, it shows."""
    spec = DeltaSinkSpec(
        kind="delta",
        name="counts",
        path=str(path),
        schema="id BIGINT, n BIGINT",
        merge=MergeSpec(
            keys=("id",),
            when_matched=({"action": "update", "set": {"n": "t.n + s.n"}},),  # type: ignore[arg-type]
        ),
    )
    return DeltaSink("job", spec, WriteMode.MERGE)


def test_two_guarded_merges_sharing_one_session_keep_their_txn_ids(
    spark: SparkSession, tmp_path: Path
) -> None:
    """Delta's DML transaction id is a setting of the session: two writers of one session
    (a notebook's replay beside its own writes, two threads of a driver) write at the same
    instant. Each table must record only its own app id, every batch once, and nothing of
    the settings may be left behind."""
    sinks = {app: _merge_sink(tmp_path / app) for app in ("app-left", "app-right")}
    batches, rows = 4, 25
    start = threading.Barrier(2)
    failures: list[BaseException] = []

    def write(app: str) -> None:
        try:
            for batch_id in range(batches):
                frame = spark.createDataFrame(
                    [(batch_id * rows + i, 1) for i in range(rows)], "id BIGINT, n BIGINT"
                )
                start.wait(60)
                sinks[app].write(frame, BatchContext(app, batch_id, guarded=True))
        except BaseException as exc:
            failures.append(exc)
            start.abort()

    threads = [threading.Thread(target=write, args=(app,)) for app in sinks]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(600)
    assert failures == []
    for app, sink in sinks.items():
        assert delta_batch_marks(spark, sink.path) == {app: batches - 1}
        table = spark.read.format("delta").load(sink.path)
        found = tally([row[0] for row in table.select("id").collect()], range(batches * rows))
        assert (found.lost, found.duplicated) == (0, 0), (app, found)
        assert table.where("n != 1").count() == 0  # no update applied twice
    assert spark.conf.get(DML_TXN_APP_ID, None) is None
    assert spark.conf.get(DML_TXN_VERSION, None) is None


def test_dml_guard_sections_never_overlap(spark: SparkSession) -> None:
    """While one writer is inside the guard, another waits outside it, and the first one's
    transaction id stays set until it leaves."""
    inside, leave, second_inside = threading.Event(), threading.Event(), threading.Event()

    def first() -> None:
        with dml_transaction(spark, BatchContext("first", 1, True)):
            inside.set()
            leave.wait(60)

    def second() -> None:
        with dml_transaction(spark, BatchContext("second", 1, True)):
            second_inside.set()

    one, two = threading.Thread(target=first), threading.Thread(target=second)
    one.start()
    assert inside.wait(30)
    two.start()
    try:
        assert not second_inside.wait(3), "the second writer entered while the first was in"
        assert spark.conf.get(DML_TXN_APP_ID) == "first"
    finally:
        leave.set()
        one.join(30)
    assert second_inside.wait(30)
    two.join(30)
    assert spark.conf.get(DML_TXN_APP_ID, None) is None


def test_a_real_delta_conflict_is_retried(spark: SparkSession, tmp_path: Path) -> None:
    """A sink's MERGE races another writer's UPDATEs of the same files until Delta refuses
    the MERGE's commit (a py4j exception turned into delta's typed one); the retry goes
    through, and every write is in the table exactly once."""
    from delta.tables import DeltaTable

    path = str(tmp_path / "contended")
    spark.createDataFrame([(i, 0) for i in range(20)], "id BIGINT, n BIGINT").write.format(
        "delta"
    ).save(path)
    sink = _merge_sink(Path(path))
    conflicts: list[BaseException] = []
    retries, updates = [], []

    def updater(start: threading.Barrier) -> None:
        table = DeltaTable.forPath(spark.newSession(), path)
        start.wait(60)
        for _ in range(3):
            table.update(set={"n": "n + 10"})
            updates.append(1)

    def race(batch_id: int) -> None:
        """One MERGE (+1 per id) under retry_conflicts while the updater runs."""
        start = threading.Barrier(2)
        frame = spark.createDataFrame([(i, 1) for i in range(20)], "id BIGINT, n BIGINT")
        attempts = []

        def attempt() -> None:
            attempts.append(1)
            if len(attempts) == 1:
                start.wait(60)  # both writers start together; a retry does not wait
            try:
                sink.write(frame, BatchContext("w", batch_id, guarded=False))
            except Exception as exc:
                if is_delta_conflict(exc):
                    conflicts.append(exc)
                raise

        other = threading.Thread(target=updater, args=(start,))
        other.start()
        retries.append(
            retry_conflicts(
                attempt,
                what="merge",
                retries=5,
                backoff_seconds=0.1,
                is_conflict=is_delta_conflict,
            )
        )
        other.join(300)

    merges = 0
    while not conflicts and merges < 6:
        race(merges)
        merges += 1
    assert conflicts, f"no Delta conflict in {merges} MERGEs racing UPDATEs"
    assert type(conflicts[0]).__module__.startswith("delta.exceptions")
    assert sum(retries) >= 1
    # every MERGE (+1) and every UPDATE (+10) applied once, retries or not
    values = {row["n"] for row in spark.read.format("delta").load(path).collect()}
    assert values == {merges + 10 * len(updates)}


def test_at_most_once_ledger_skips_a_replayed_batch(
    spark: SparkSession, job_in: JobLoader, tmp_path: Path
) -> None:
    """Single output (Spark parses the source: no quarantine), crash inside its write job:
    the ledger already holds batch 1, so the replay skips it and batch 1 is lost, while
    nothing is duplicated."""
    write_payment_files(tmp_path / "data/sample/payments", count=90, files=3)
    job = ("jobs/payments.yaml", ONE_FILE_PER_BATCH, SPARK_PARSES, "guarantee=at-most-once")
    spec = job_in(*job).spec
    with pytest.raises(Exception, match="CRASH_INJECTED"):
        run_to_end(spark, spec, crash=crash_at("mid_write", 1))
    assert BatchClaims(spark, spec.checkpoint).claimed() == [0, 1]

    reports = BatchReports()
    run_to_end(spark, job_in(*job).spec, reports=reports)
    events = tally(read_ids(spark, "delta", spec.sinks[0].path), range(1, 91))
    assert (events.lost, events.duplicated) == (30, 0)
    assert BatchClaims(spark, spec.checkpoint).claimed() == [0, 1, 2]
    # what the pipeline did with each batch, for the progress line
    skipped, written = (_guarantee_of(reports, batch_id) for batch_id in (1, 2))
    assert (skipped["action"], skipped["write_ms"]) == ("skipped_as_replay", {})
    assert written["action"] == "written" and written["retries"] == 0
    assert list(written["write_ms"]) == [spec.sinks[0].name]
    assert written["write_ms"][spec.sinks[0].name] > 0
    assert 0 < skipped["guard_ms"] < 10_000 and 0 < written["guard_ms"] < 10_000


def _guarantee_of(reports: BatchReports, batch_id: int) -> dict[str, object]:
    report = reports.take(batch_id)
    assert report is not None, f"no report of batch {batch_id}"
    guarantee: dict[str, object] = report.as_line()["guarantee"]
    return guarantee


def test_single_sink_mid_write_crash_under_exactly_once(
    spark: SparkSession, job_in: JobLoader, tmp_path: Path
) -> None:
    write_payment_files(tmp_path / "data/sample/payments", count=90, files=3)
    job = ("jobs/payments.yaml", ONE_FILE_PER_BATCH, SPARK_PARSES, "guarantee=exactly-once")
    spec = job_in(*job).spec
    with pytest.raises(Exception, match="CRASH_INJECTED"):
        run_to_end(spark, spec, crash=crash_at("mid_write", 1))
    run_to_end(spark, spec)
    events = tally(read_ids(spark, "delta", spec.sinks[0].path), range(1, 91))
    assert (events.lost, events.duplicated) == (0, 0)


def test_checks_catch_a_broken_exactly_once_writer(
    spark: SparkSession, job_in: JobLoader, tmp_path: Path
) -> None:
    """A writer that claims exactly-once but does not guard its writes (the policy is
    swapped for at-least-once) must be caught by the same checks the matrix uses."""
    write_payment_files(tmp_path / "data/sample/payments", count=90, files=3)
    spec = job_in(
        "jobs/payments_exactly_once_transactional.yaml", ONE_FILE_PER_BATCH, SPARK_PARSES
    ).spec
    app_id = resolve_app_id(spark, spec.checkpoint).app_id
    broken = BatchPipeline(
        job=spec.name,
        app_id=app_id,
        sinks=build_outputs(spec),
        policy=policy_for(Guarantee.AT_LEAST_ONCE),
        reports=BatchReports(),
    )
    query = start_query(spark, spec, crash_at("after_write", 1).wrap_writer(broken))
    with pytest.raises(Exception, match="CRASH_INJECTED"):
        query.awaitTermination(300)
    run_to_end(spark, spec, broken)

    events = tally(read_ids(spark, "delta", spec.sinks[0].path), range(1, 91))
    assert events.duplicated == 30
    assert balance_drift(spark, "delta", spec.sinks[1].path, 90, seed=7).total != Decimal(0)


def test_dml_txn_settings_are_reset_after_a_failed_merge(spark: SparkSession) -> None:
    session = spark.newSession()
    with pytest.raises(RuntimeError), dml_transaction(session, BatchContext("app", 7, True)):
        assert session.conf.get(DML_TXN_APP_ID) == "app"
        assert session.conf.get(DML_TXN_VERSION) == "7"
        raise RuntimeError("merge failed")
    assert session.conf.get(DML_TXN_APP_ID, None) is None


def test_a_batch_feeding_two_sinks_is_read_from_the_source_once(
    spark: SparkSession, job_in: JobLoader, tmp_path: Path
) -> None:
    """The batch is persisted for its two sinks, and the balances sink's SQL reads the
    cached batch: Spark's input metric counts every record once, not once per sink."""
    write_payment_files(tmp_path / "data/sample/payments", count=90, files=3)
    spec = job_in("jobs/payments_at_least_once.yaml", ONE_FILE_PER_BATCH, SPARK_PARSES).spec
    query = start_query(spark, spec)
    query.awaitTermination(300)
    assert [p.numInputRows for p in query.recentProgress] == [30, 30, 30]


def test_a_start_builds_each_output_and_the_quality_stage_once(
    spark: SparkSession, job_in: JobLoader, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two sinks and the quarantine are three Delta sinks, built once per start and then
    only called, batch after batch; so is the quality stage. The foreign-sink check, the
    pipeline and the replay report share what the start built."""
    built: dict[str, int] = {"sinks": 0, "stages": 0}

    def counting(cls: type, what: str) -> None:
        original = cls.__init__

        def init(self: object, *args: object, **kwargs: object) -> None:
            built[what] += 1
            original(self, *args, **kwargs)

        monkeypatch.setattr(cls, "__init__", init)

    counting(DeltaSink, "sinks")
    counting(QualityStage, "stages")
    write_payment_files(tmp_path / "data/sample/payments", count=60, files=3)
    spec = job_in("jobs/payments_at_least_once.yaml", ONE_FILE_PER_BATCH).spec
    assert len(spec.outputs) == 3  # events, balances and the quarantine
    query = start_query(spark, spec)
    query.awaitTermination(300)
    assert len(query.recentProgress) == 3
    assert built == {"sinks": 3, "stages": 1}
