"""Deduplication across batches, restarts and crashes (``watermark`` + ``dedup``).

The producer retries: every 4th payment is sent twice (``duplicate_every``), the second
copy in the next file (the next batch) or, from the last file, in the same batch. What the
events table must hold is computed from the generator in plain Python: each id 1..80 once.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pyspark.sql import SparkSession

from onceflow.errors import ConfigError, GuaranteeError
from onceflow.guarantees.state import PROVIDERS
from onceflow.prove.verify import read_ids, tally
from onceflow.prove.workload import write_payment_files
from tests.conftest import ROOT, JobLoader
from tests.streaming import crash_at, run_to_end

pytestmark = [pytest.mark.spark]

RECORDS, FILES, EVERY = 80, 2, 4
SENT = range(1, RECORDS + 1)
RESENT = RECORDS // EVERY
JOB = "jobs/payments_dedup.yaml"
ONE_FILE_A_BATCH = "source.max_files_per_trigger=1"
AT_LEAST_ONCE = ("guarantee=at-least-once", "strategy=null")


def producer_retries(tmp_path: Path, files: int = FILES) -> list[Path]:
    return write_payment_files(
        tmp_path / "data/sample/payments-retried", RECORDS, files, duplicate_every=EVERY
    )


def events(spark: SparkSession, tmp_path: Path) -> tuple[int, int, int]:
    found = tally(read_ids(spark, "delta", f"{tmp_path}/data/tables/payments_dedup/events"), SENT)
    return found.lost, found.duplicated, found.unexpected


@pytest.mark.chaos
@pytest.mark.parametrize("point", ["before_write", "mid_write", "after_write", "after_commit"])
def test_each_id_once_after_a_crash_in_the_batch_with_duplicates(
    spark: SparkSession, job_in: JobLoader, tmp_path: Path, point: str
) -> None:
    """Batch 1 holds copies of batch 0's records and of its own; it crashes, and its
    replay recomputes the deduplication from the state batch 0 left."""
    producer_retries(tmp_path)
    spec = job_in(JOB, ONE_FILE_A_BATCH).spec
    with pytest.raises(Exception, match="CRASH_INJECTED"):
        run_to_end(spark, spec, crash=crash_at(point, 1))
    run_to_end(spark, spec)
    assert events(spark, tmp_path) == (0, 0, 0)


@pytest.mark.chaos
def test_at_least_once_dedup_still_doubles_a_replayed_batch(
    spark: SparkSession, job_in: JobLoader, tmp_path: Path
) -> None:
    """Deduplication is not delivery: under at-least-once, batch 1 written and then
    replayed appends its (deduplicated) rows twice. 40 ids in batch 1 are new."""
    producer_retries(tmp_path)
    spec = job_in(JOB, ONE_FILE_A_BATCH, *AT_LEAST_ONCE).spec
    with pytest.raises(Exception, match="CRASH_INJECTED"):
        run_to_end(spark, spec, crash=crash_at("after_write", 1))
    run_to_end(spark, spec)
    assert events(spark, tmp_path) == (0, RECORDS - RECORDS // FILES, 0)


def test_without_dedup_the_retries_arrive_twice(
    spark: SparkSession, job_in: JobLoader, tmp_path: Path
) -> None:
    """The control: the same input through the same job without its stateful keys."""
    producer_retries(tmp_path)
    spec = job_in(JOB, "dedup=null", "watermark=null").spec
    run_to_end(spark, spec)
    assert events(spark, tmp_path) == (0, RESENT, 0)


def test_state_survives_a_restart_on_new_input(
    spark: SparkSession, job_in: JobLoader, tmp_path: Path
) -> None:
    """A file that arrives after the job stopped, with copies of what it saw before the
    stop: the ids seen come back from the checkpoint's state, not from memory."""
    first, second = producer_retries(tmp_path)
    aside = tmp_path / "later.json"
    second.rename(aside)
    spec = job_in(JOB).spec
    run_to_end(spark, spec)
    aside.rename(second)
    run_to_end(spark, spec)
    assert events(spark, tmp_path) == (0, 0, 0)
    assert first.exists()


def test_state_lives_in_the_checkpoint_in_the_store_chosen(
    spark: SparkSession, job_in: JobLoader, tmp_path: Path
) -> None:
    """RocksDB by default, with changelog checkpointing: each batch uploads its changes as
    ``N.changelog`` (Spark's own store writes ``N.delta`` files). The checkpoint records
    the provider, and the session's setting is left as it was."""
    key = "spark.sql.streaming.stateStore.providerClass"
    for store, files in (("rocksdb", ".changelog"), ("hdfs", ".delta")):
        producer_retries(tmp_path / store)
        spec = job_in(JOB, f"storage.root={tmp_path / store}", f"state.store={store}").spec
        before = spark.conf.get(key, None)
        run_to_end(spark, spec)
        assert spark.conf.get(key, None) == before
        written = [p.name for p in (Path(spec.checkpoint) / "state").rglob("*") if p.is_file()]
        assert any(name.endswith(files) for name in written), (store, written)
        offsets = (Path(spec.checkpoint) / "offsets/0").read_text().splitlines()
        assert json.loads(offsets[1])["conf"][key] == PROVIDERS[store]


def test_records_that_cannot_be_compared_reach_the_quarantine_one_by_one(
    spark: SparkSession, job_in: JobLoader, tmp_path: Path
) -> None:
    """Malformed lines and records without an id or time skip the deduplication (their
    NULLs would make them one record) and are quarantined, each with its reason."""
    folder = tmp_path / "data/sample/payments-retried"
    producer_retries(tmp_path, files=1)
    bad = ["not json", "not json", '{"account": "acct-1"}', '{"account": "acct-1"}',
           '{"id": 9001, "account": "acct-1", "amount": "1.00"}']  # fmt: skip
    (folder / "payments-bad.json").write_text("\n".join(bad) + "\n")
    spec = job_in(JOB).spec
    run_to_end(spark, spec)
    assert events(spark, tmp_path) == (0, 0, 0)
    reasons = sorted(
        row.reason for row in spark.read.format("delta").load(spec.quality.quarantine).collect()
    )
    assert len(reasons) == len(bad), reasons
    assert reasons.count("parse: not valid JSON") == 2, reasons
    assert reasons.count("parse: missing required field 'id'") == 2, reasons
    assert reasons.count("parse: missing required field 'event_time'") == 1, reasons


#: Changes of the stateful keys, and how the refusal names what the job has now.
BREAKING_CHANGES = {
    "keys": (("dedup.keys=[id, account]",), "dedup_within_watermark on keys id, account"),
    "removed": (("dedup=null", "watermark=null"), "no stateful operator"),
    "operator": (("dedup.within_watermark=false",), "dedup on keys id with event time event_time"),
}


def test_a_change_that_breaks_the_state_is_refused_at_start(
    spark: SparkSession, job_in: JobLoader, tmp_path: Path
) -> None:
    """Keys changed, the operator removed or changed: each refused, naming the state the
    checkpoint holds and what the job has now. The watermark's delay may change."""
    producer_retries(tmp_path)
    run_to_end(spark, job_in(JOB).spec)
    for name, (change, now) in BREAKING_CHANGES.items():
        with pytest.raises(GuaranteeError, match="GUARANTEE_STATE_INCOMPATIBLE") as refused:
            run_to_end(spark, job_in(JOB, *change).spec)
        message = str(refused.value)
        assert now in message, (name, message)
        assert "dedup_within_watermark on keys id with event time event_time" in message
    run_to_end(spark, job_in(JOB, "watermark.delay=2 hours").spec)


def test_a_stateful_key_added_to_a_checkpoint_without_state_is_refused(
    spark: SparkSession, job_in: JobLoader, tmp_path: Path
) -> None:
    producer_retries(tmp_path)
    run_to_end(spark, job_in(JOB, "dedup=null", "watermark=null").spec)
    with pytest.raises(GuaranteeError, match=r"GUARANTEE_STATE_INCOMPATIBLE.*no stateful"):
        run_to_end(spark, job_in(JOB).spec)


@pytest.mark.parametrize(
    ("written", "instead", "error_class", "key"),
    [
        ("column: event_time", "column: event_tme", "CONFIG_BAD_SQL", "watermark.column"),
        ("column: event_time", "column: account", "CONFIG_BAD_SQL", "watermark.column"),
        ("delay: 1 hour", "delay: an hour", "CONFIG_BAD_INTERVAL", "watermark.delay"),
        ("keys: [id]", "keys: [id, acount]", "CONFIG_BAD_SQL", "dedup.keys[1]"),
    ],
)
def test_deep_checks_name_the_file_line_and_stateful_key(
    spark: SparkSession, job_in: JobLoader, tmp_path: Path, written: str, instead: str,
    error_class: str, key: str,
) -> None:  # fmt: skip
    """A mistake only Spark can see (a column the stream lacks, an interval it cannot
    read) is named by file, line and key before the query starts."""
    from onceflow.deep import check_job

    producer_retries(tmp_path)
    text = (ROOT / JOB).read_text()
    line = next(n for n, t in enumerate(text.splitlines(), 1) if t.strip() == written)
    job = tmp_path / "payments_dedup.yaml"
    job.write_text(text.replace(written, instead))
    with pytest.raises(ConfigError) as found:
        check_job(job_in(job), spark)
    assert found.value.error_class == error_class, found.value
    assert f"payments_dedup.yaml:{line}: '{key}'" in str(found.value), found.value


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        (("dedup=null",), "watermark"),
        (("watermark=null", "dedup.within_watermark=true"), "dedup.within_watermark"),
    ],
)
def test_stateful_keys_that_cannot_work_are_refused_before_spark(
    job_in: JobLoader, overrides: tuple[str, ...], key: str
) -> None:
    with pytest.raises(ConfigError, match="CONFIG_GUARANTEE_REFUSED") as refused:
        job_in(JOB, *overrides)
    assert f"'{key}'" in str(refused.value)


def test_the_run_summary_and_status_count_what_dedup_removed_and_keeps(
    spark: SparkSession, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Every record read is accounted for: 80 ids good, 20 copies removed by dedup; status
    shows the operator, the rows its state holds, its store and where it lives."""
    from onceflow.cli import EXIT_OK, main

    producer_retries(tmp_path)
    job = [str(ROOT / JOB), "--env", "local", "--set", f"storage.root={tmp_path}"]
    code = main(["run", *job])
    out = capsys.readouterr().out.splitlines()
    assert code == EXIT_OK
    assert f" {RECORDS + RESENT} input row(s)" in out[0], out
    assert out[1] == (
        f"records: {RECORDS} good, 0 dropped, 0 quarantined, {RESENT} duplicate(s) and 0 late "
        "record(s) removed by dedup"
    ), out
    assert main(["status", *job]) == EXIT_OK
    state = [line for line in capsys.readouterr().out.splitlines() if "state " in line]
    checkpoint = tmp_path / "state/payments_dedup/checkpoint"
    assert len(state) == 1, state
    assert state[0].startswith(
        f"  state           dedupeWithinWatermark (operator 0): {RECORDS} rows, "
    )
    assert state[0].endswith(
        f" MiB in memory, 4 partitions, batches 0-1, rocksdb at {checkpoint}/state/0"
    )
