"""The job's own SQL and Python (``transform.sql``, ``.python``, ``.batch_python``).

What the events table must hold is computed here in plain Python from the lines the
generator wrote: each payment once, its amount in cents, its size (large from 100 up),
and the batch that wrote it (one file per batch, in file order).
"""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest
from pyspark.sql import SparkSession

from onceflow.errors import ConfigError
from onceflow.prove.workload import write_payment_files
from tests.conftest import ROOT, JobLoader
from tests.streaming import crash_at, run_to_end

pytestmark = [pytest.mark.spark]

JOB = "jobs/payments_enriched.yaml"
RECORDS, FILES = 60, 3
#: id -> (cents, size, batch)
Rows = dict[int, tuple[int, str, int]]


def sent(tmp_path: Path) -> Rows:
    files = write_payment_files(tmp_path / "data/sample/payments", RECORDS, FILES)
    wanted: Rows = {}
    for batch, path in enumerate(files):
        for line in path.read_text().splitlines():
            record = json.loads(line)
            amount = Decimal(record["amount"])
            size = "large" if amount >= 100 else "small"
            wanted[record["id"]] = (int(amount * 100), size, batch)
    return wanted


def events(spark: SparkSession, tmp_path: Path) -> Rows:
    rows = spark.read.format("delta").load(f"{tmp_path}/data/tables/payments_enriched/events")
    found = rows.select("id", "cents", "size", "written_by_batch").collect()
    assert len(found) == len({r.id for r in found}), "a payment is in the table twice"
    return {r.id: (r.cents, r.size, r.written_by_batch) for r in found}


@pytest.mark.chaos
def test_sql_python_and_batch_python_shape_every_row_once_after_a_crash(
    spark: SparkSession, job_in: JobLoader, tmp_path: Path
) -> None:
    """The UDF in ``with_size`` runs in the Python workers, which import ``functions``
    from the zip onceflow shipped; batch 1's replay gets the same batch id."""
    wanted = sent(tmp_path)
    spec = job_in(JOB).spec
    with pytest.raises(Exception, match="CRASH_INJECTED"):
        run_to_end(spark, spec, crash=crash_at("after_write", 1))
    run_to_end(spark, spec)
    assert events(spark, tmp_path) == wanted


def test_records_that_did_not_parse_skip_the_functions_to_the_quarantine(
    spark: SparkSession, job_in: JobLoader, tmp_path: Path
) -> None:
    wanted = sent(tmp_path)
    bad = ["not json", '{"account": "acct-1", "amount": "1.00"}']
    (tmp_path / "data/sample/payments/payments-bad.json").write_text("\n".join(bad) + "\n")
    spec = job_in(JOB).spec
    run_to_end(spark, spec)
    assert events(spark, tmp_path) == wanted
    quarantined = spark.read.format("delta").load(spec.quality.quarantine).collect()
    assert sorted(r.reason for r in quarantined) == [
        "parse: missing required field 'id'",
        "parse: not valid JSON",
    ]


#: Job functions that fail on purpose (tests/resources/functions/failing.py).
FAILING = "tests.resources.functions.failing"


def test_a_batch_function_that_raises_names_itself_and_the_batch(
    spark: SparkSession, job_in: JobLoader, tmp_path: Path
) -> None:
    """Batch 1 stops before any of its writes; batch 0 stays written, once."""
    sent(tmp_path)
    spec = job_in(JOB, f"transform.batch_python={FAILING}:on_batch").spec
    with pytest.raises(Exception) as stopped:
        run_to_end(spark, spec)
    message = str(stopped.value)
    assert "TRANSFORM_FAILED" in message, message
    assert f"transform.batch_python {FAILING}:on_batch failed on batch 1" in message, message
    assert "ValueError: no rates for this day" in message, message
    rows = spark.read.format("delta").load(f"{tmp_path}/data/tables/payments_enriched/events")
    assert rows.count() == RECORDS // FILES


@pytest.mark.parametrize(
    ("function", "cause"),
    [("on_stream", "KeyError: 'rates'"), ("not_a_frame", "it returned a int, not a DataFrame")],
)
def test_a_stream_function_that_fails_stops_the_start_naming_itself(
    spark: SparkSession, job_in: JobLoader, tmp_path: Path, function: str,
    cause: str,
) -> None:  # fmt: skip
    from onceflow.errors import TransformError

    sent(tmp_path)
    spec = job_in(JOB, f"transform.python={FAILING}:{function}").spec
    with pytest.raises(TransformError) as stopped:
        run_to_end(spark, spec)
    assert f"{FAILING}:{function} failed building the stream: {cause}" in str(stopped.value)
    assert not Path(spec.checkpoint, "offsets").exists()


@pytest.mark.parametrize(
    ("reference", "reason"),
    [
        ("functions.nowhere:with_size", "no module functions.nowhere on the Python path"),
        ("functions.payments:without_size", "defines no 'without_size'"),
        ("functions.payments:with_batch", "it must take 1 positional argument(s)"),
    ],
)
def test_a_function_that_cannot_be_used_is_refused_when_the_job_loads(
    job_in: JobLoader, tmp_path: Path, reference: str, reason: str
) -> None:
    text = (ROOT / JOB).read_text()
    written = "  python: functions.payments:with_size"
    line = text.splitlines().index(written) + 1
    job = tmp_path / "payments_enriched.yaml"
    job.write_text(text.replace(written, f"  python: {reference}"))
    with pytest.raises(ConfigError, match="CONFIG_BAD_FUNCTION") as refused:
        job_in(job)
    message = str(refused.value)
    assert f"payments_enriched.yaml:{line}: 'transform.python' names {reference}" in message
    assert reason in message, message


def test_sql_spark_cannot_analyse_is_named_by_its_key(
    spark: SparkSession, job_in: JobLoader, tmp_path: Path
) -> None:
    from onceflow.deep import check_job

    sent(tmp_path)
    loaded = job_in(JOB, "transform.sql=SELECT *, amout * 100 AS cents FROM {stream}")
    with pytest.raises(ConfigError, match="CONFIG_BAD_SQL") as found:
        check_job(loaded, spark)
    assert "'transform.sql' fails in Spark" in str(found.value), found.value
