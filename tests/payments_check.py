"""Independent verification of the payments workload in a sink: lost, duplicated, drift.

Reads tables with plain Spark reads and computes the expectation from the workload
generator in Python, never through the job's own code path.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from decimal import Decimal

from pyspark.sql import SparkSession

from onceflow.prove.workload import payments


@dataclass(frozen=True)
class Delivery:
    expected: int
    delivered: int
    rows: int

    @property
    def lost(self) -> int:
        return self.expected - self.delivered

    @property
    def duplicated(self) -> int:
        return self.rows - self.delivered


def events_delivery(spark: SparkSession, path: str, count: int, fmt: str = "delta") -> Delivery:
    """How many of ids 1..count reached the events table at ``path``, and how many twice."""
    ids = [row["id"] for row in spark.read.format(fmt).load(path).select("id").collect()]
    wanted = set(range(1, count + 1))
    return Delivery(expected=count, delivered=len(set(ids) & wanted), rows=len(ids))


def expected_balances(count: int, seed: int = 7) -> dict[str, tuple[Decimal, int]]:
    totals: dict[str, Decimal] = Counter()  # type: ignore[assignment]
    counts: Counter[str] = Counter()
    for payment in payments(count, seed=seed):
        totals[payment.account] += payment.amount
        counts[payment.account] += 1
    return {account: (totals[account], counts[account]) for account in totals}


def balance_drift(spark: SparkSession, path: str, count: int) -> Decimal:
    """Sum over accounts of |actual - expected| balance; 0 when every balance is exact."""
    expected = expected_balances(count)
    actual = {
        row["account"]: (row["balance"], row["payments"])
        for row in spark.read.format("delta").load(path).collect()
    }
    drift = Decimal(0)
    for account in expected.keys() | actual.keys():
        want = expected.get(account, (Decimal(0), 0))[0]
        have = actual.get(account, (Decimal(0), 0))[0]
        drift += abs(have - want)
    return drift
