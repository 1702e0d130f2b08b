"""The stream-static ``join``: each batch joined with a Delta table at one version, the
same one on a replay.

The balances each payment must carry are computed here in plain Python: the balance the
test wrote for its account in the table version the payment's batch first ran against.
"""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest
from pyspark.sql import SparkSession

from onceflow.prove.workload import write_payment_files
from tests.conftest import JobLoader
from tests.streaming import crash_at, run_to_end

pytestmark = [pytest.mark.spark]

JOB = "jobs/payments_with_balances.yaml"
RECORDS, FILES = 60, 3
BALANCES = "data/tables/payments_exactly_once_merge/balances"
TWO_SINKS = (
    "source.max_files_per_trigger=1",
    "sinks=[{name: events, kind: delta, path: data/tables/j/events},"
    " {name: copies, kind: delta, path: data/tables/j/copies}]",
)


def write_balances(spark: SparkSession, tmp_path: Path, accounts: list[str], base: int) -> dict:
    """A new version of the balances table: account i holds ``base + i``."""
    balances = {account: Decimal(base + i) for i, account in enumerate(accounts)}
    rows = [(account, balance, 1) for account, balance in balances.items()]
    frame = spark.createDataFrame(rows, "account STRING, balance DECIMAL(38,2), payments BIGINT")
    frame.write.format("delta").mode("overwrite").save(f"{tmp_path}/{BALANCES}")
    return balances


def test_a_replay_joins_the_version_its_first_run_read(
    spark: SparkSession, job_in: JobLoader, tmp_path: Path
) -> None:
    """Batch 1 writes its first sink with version 0's balances and crashes; version 1 is
    committed before the restart. Its replay joins version 0 again, so the second sink
    gets what the first got; batch 2, new, joins version 1."""
    files = write_payment_files(tmp_path / "data/sample/payments", RECORDS, FILES)
    sent = [[json.loads(line) for line in f.read_text().splitlines()] for f in files]
    accounts = sorted({r["account"] for batch in sent for r in batch})
    first = write_balances(spark, tmp_path, accounts, 100)
    spec = job_in(JOB, *TWO_SINKS).spec
    with pytest.raises(Exception, match="CRASH_INJECTED"):
        run_to_end(spark, spec, crash=crash_at("mid_write", 1))
    second = write_balances(spark, tmp_path, accounts, 500)
    run_to_end(spark, spec)
    wanted = {
        r["id"]: (first if batch < 2 else second)[r["account"]]
        for batch, records in enumerate(sent)
        for r in records
    }
    for sink in ("events", "copies"):
        rows = spark.read.format("delta").load(f"{tmp_path}/data/tables/j/{sink}")
        found = {r.id: r.balance for r in rows.select("id", "balance").collect()}
        assert rows.count() == len(found) == RECORDS, sink
        assert found == wanted, sink


def test_a_row_without_a_match_keeps_nulls_and_is_not_lost(
    spark: SparkSession, job_in: JobLoader, tmp_path: Path
) -> None:
    write_payment_files(tmp_path / "data/sample/payments", RECORDS, FILES)
    write_balances(spark, tmp_path, ["acct-none"], 1)
    spec = job_in(JOB).spec
    run_to_end(spark, spec)
    rows = spark.read.format("delta").load(f"{tmp_path}/data/tables/payments_with_balances/events")
    assert rows.count() == RECORDS
    assert rows.where("balance IS NULL AND account_payments IS NULL").count() == RECORDS
    assert set(rows.columns) == {"id", "account", "amount", "event_time", "balance",
                                 "account_payments"}  # fmt: skip


@pytest.mark.parametrize(
    ("override", "error_class", "key"),
    [
        ("join.table=data/tables/nowhere", "CONFIG_INPUT_MISSING", "join.table"),
        ("join.keys=[acount]", "CONFIG_BAD_SQL", "join"),
        ('join.columns=["balanse"]', "CONFIG_BAD_SQL", "join"),
    ],
)
def test_deep_checks_name_the_join_key(
    spark: SparkSession, job_in: JobLoader, tmp_path: Path, override: str, error_class: str,
    key: str,
) -> None:  # fmt: skip
    from onceflow.deep import check_job
    from onceflow.errors import ConfigError

    write_payment_files(tmp_path / "data/sample/payments", RECORDS, FILES)
    write_balances(spark, tmp_path, ["acct-0001"], 1)
    with pytest.raises(ConfigError) as found:
        check_job(job_in(JOB, override), spark)
    assert found.value.error_class == error_class, found.value
    assert f"'{key}'" in str(found.value), found.value
