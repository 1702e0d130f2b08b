"""Every guarantee under every crash point: crash a batch, restart on the same checkpoint,
drain, and count what reached the sinks.

The workload is 2 files of 40 payments; one file per batch gives batches 0 and 1, and the
crash hits batch 0 (its after_commit fires as batch 1 begins), the least work that still
shows every crash point. Each weaker guarantee's failure is demonstrated, not assumed: the
expected counts below include the duplicates at-least-once produces and the losses
at-most-once produces.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest
from pyspark.sql import SparkSession

from onceflow.config import JobSpec
from onceflow.prove.verify import balance_drift, read_ids, tally
from onceflow.prove.workload import write_payment_files
from tests.conftest import JobLoader
from tests.streaming import crash_at, run_to_end

pytestmark = [pytest.mark.spark, pytest.mark.chaos]

RECORDS, FILES, CRASH_BATCH = 80, 2, 0
PER_BATCH = RECORDS // FILES
POINTS = ["before_write", "mid_write", "after_write", "after_commit"]

# (job file, crash point) -> (events lost, events duplicated, balances exact)
EXPECTED: dict[tuple[str, str], tuple[int, int, bool]] = {
    # at-least-once: never a loss; a replay after the events were written appends them twice,
    # and after both sinks were written the non-idempotent balance MERGE applies twice.
    ("payments_at_least_once", "before_write"): (0, 0, True),
    ("payments_at_least_once", "mid_write"): (0, PER_BATCH, True),
    ("payments_at_least_once", "after_write"): (0, PER_BATCH, False),
    ("payments_at_least_once", "after_commit"): (0, 0, True),
    # at-most-once: never a duplicate; the ledger marks batch 0 before writing, so a crash
    # between the two sinks loses batch 0 from balances (events were written first).
    ("payments_at_most_once", "before_write"): (0, 0, True),
    ("payments_at_most_once", "mid_write"): (0, 0, False),
    ("payments_at_most_once", "after_write"): (0, 0, True),
    ("payments_at_most_once", "after_commit"): (0, 0, True),
}
for _job in (
    "payments_exactly_once_merge",
    "payments_exactly_once_transactional",
    "payments_exactly_once_replace_batch",
):
    for _point in POINTS:
        EXPECTED[(_job, _point)] = (0, 0, True)


def crash_then_drain(
    spark: SparkSession,
    job_in: JobLoader,
    tmp_path: Path,
    job: str,
    point: str,
    action: str = "raise",
) -> JobSpec:
    """Run ``job`` with a crash at ``point`` of batch 0, restart without it, drain."""
    write_payment_files(tmp_path / "data/sample/payments", count=RECORDS, files=FILES)
    spec = job_in(f"jobs/{job}.yaml", "source.max_files_per_trigger=1").spec
    with pytest.raises(Exception, match="CRASH_INJECTED"):
        run_to_end(spark, spec, crash=crash_at(point, CRASH_BATCH, action))
    run_to_end(spark, spec)
    return spec


@pytest.mark.parametrize(("job", "point"), sorted(EXPECTED))
def test_crash_and_restart(
    spark: SparkSession, job_in: JobLoader, tmp_path: Path, job: str, point: str
) -> None:
    spec = crash_then_drain(spark, job_in, tmp_path, job, point)
    lost, duplicated, balances_exact = EXPECTED[(job, point)]

    sinks = {sink.name: sink for sink in spec.sinks}
    sent = range(1, RECORDS + 1)
    events = tally(read_ids(spark, "delta", sinks["events"].path), sent)
    assert (events.lost, events.duplicated, events.unexpected) == (lost, duplicated, 0), events
    if "events_parquet" in sinks:
        parquet = tally(read_ids(spark, "parquet", sinks["events_parquet"].path), sent)
        assert (parquet.lost, parquet.duplicated) == (0, 0), parquet
    if "balances" in sinks:
        drift = balance_drift(spark, "delta", sinks["balances"].path, RECORDS, seed=7)
        assert (drift.total == Decimal(0)) is balances_exact, drift
