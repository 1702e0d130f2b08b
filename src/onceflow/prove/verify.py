"""Count what reached a job's sinks, reading them as any reader would.

Independent of the job's code path: plain ``spark.read`` of each sink's files (or of its
table, through Spark's JDBC reader), compared
with the workload generated in Python. Record sinks (with an ``id`` column) give lost and
duplicated records; aggregate sinks (``account``, ``balance``, optionally ``payments``)
give the drift of every balance against the exact sums.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from decimal import Decimal

from pyspark.sql import SparkSession

from onceflow.config import JobSpec
from onceflow.prove.workload import payments
from onceflow.sinks import build_sink

__all__ = ["Delivery", "expected_balances", "measure_delivery"]


@dataclass(frozen=True)
class Delivery:
    """What the sinks hold, summed over record sinks and over aggregate sinks.

    ``under_applied`` / ``over_applied``: payments missing from / counted twice in the
    aggregate sinks (from their ``payments`` count column; 0 when there is none).
    """

    expected: int
    delivered: int
    lost: int
    duplicated: int
    balance_drift: Decimal | None
    under_applied: int
    over_applied: int


def expected_balances(count: int, seed: int) -> dict[str, tuple[Decimal, int]]:
    """account -> (exact balance, number of payments) for the first ``count`` payments."""
    totals: dict[str, Decimal] = {}
    counts: Counter[str] = Counter()
    for payment in payments(count, seed=seed):
        totals[payment.account] = totals.get(payment.account, Decimal(0)) + payment.amount
        counts[payment.account] += 1
    return {account: (totals[account], counts[account]) for account in totals}


def measure_delivery(spark: SparkSession, spec: JobSpec, count: int, seed: int) -> Delivery:
    """Read every sink of ``spec`` and compare it with payments ``1..count`` of ``seed``."""
    wanted = set(range(1, count + 1))
    delivered = lost = duplicated = under = over = 0
    drift: Decimal | None = None
    record_sinks = 0
    for sink in spec.sinks:
        frame = build_sink(spec, sink).read(spark)
        if "id" in frame.columns:
            ids = [row[0] for row in frame.select("id").collect()]
            present = set(ids) & wanted
            record_sinks += 1
            delivered += len(present)
            lost += len(wanted - present)
            duplicated += len(ids) - len(set(ids))
        elif {"account", "balance"} <= set(frame.columns):
            expected = expected_balances(count, seed)
            has_count = "payments" in frame.columns
            columns = ["account", "balance", *(["payments"] if has_count else [])]
            actual = {row["account"]: row for row in frame.select(*columns).collect()}
            drift = drift or Decimal(0)
            for account in expected.keys() | actual.keys():
                want_balance, want_count = expected.get(account, (Decimal(0), 0))
                row = actual.get(account)
                have_balance = row["balance"] if row is not None else Decimal(0)
                drift += abs((have_balance or Decimal(0)) - want_balance)
                if has_count:
                    have_count = int(row["payments"] or 0) if row is not None else 0
                    under += max(0, want_count - have_count)
                    over += max(0, have_count - want_count)
    expected_total = count * max(record_sinks, 1)
    return Delivery(expected_total, delivered, lost, duplicated, drift, under, over)
