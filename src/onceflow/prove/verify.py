"""The one definition of delivery: what reached a sink, against what was sent.

Every guarantee test and ``onceflow prove`` count with it. It reads each output the way any
reader would, never through onceflow's sink code: with plain ``spark.read`` of the data
source the sink's kind names (Delta, Parquet), a database table through Spark's JDBC
reader with the job's connection settings, a Kafka topic with a plain ``read_committed``
consumer (``onceflow.prove.kafka_sinks``: each record by the ``id`` of its JSON value).
The expectation comes from the workload generator in plain Python.

- ``lost`` = expected ids that are not there;
- ``duplicated`` = rows - distinct ids (a row per extra copy of any id);
- ``unexpected`` = distinct ids that were never sent;
- for a stream-joined job (``onceflow.prove.joins``), the payments with a settlement in
  range (``how: inner``) are the expected ids, and an id joined without one is ``wrong``;
- for a CDC sink (``onceflow.prove.cdc_expect``), rows as records: its SCD 1 rows or SCD 2
  versions lost, repeated, and ``wrong`` (present, but not as the changes imply);
- for an aggregate sink (``account``, ``balance``, optionally a ``payments`` count): the
  absolute drift of every balance from the exact sum, and payments missing from or counted
  twice in the counts.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal

from pyspark.sql import DataFrame, SparkSession

from onceflow.config import JobSpec, PostgresConnection, SinkSpec, kinds
from onceflow.prove.cdc_expect import cdc_sinks, measure_cdc
from onceflow.prove.joins import joined_ids
from onceflow.prove.kafka_sinks import committed_ids, is_kafka_sink
from onceflow.prove.windows import measure_windows
from onceflow.prove.workload import payments

__all__ = [
    "Delivery",
    "Drift",
    "Tally",
    "balance_drift",
    "expected_balances",
    "measure_delivery",
    "read_ids",
    "read_output",
    "read_sink",
    "tally",
]


@dataclass(frozen=True)
class Tally:
    """Ids found in one output against the ids sent."""

    expected: int
    delivered: int  # distinct expected ids present
    rows: int  # rows holding an id
    distinct: int  # distinct ids present, expected or not

    @property
    def lost(self) -> int:
        return self.expected - self.delivered

    @property
    def duplicated(self) -> int:
        return self.rows - self.distinct

    @property
    def unexpected(self) -> int:
        return self.distinct - self.delivered


def tally(ids: Iterable[int | None], expected: Iterable[int]) -> Tally:
    """Count ``ids`` (one per row; a NULL id counts as a row that is no record) against
    the ``expected`` ones."""
    rows = list(ids)
    present = {i for i in rows if i is not None}
    wanted = set(expected)
    return Tally(len(wanted), len(present & wanted), len(rows), len(present) + (None in rows))


@dataclass(frozen=True)
class Drift:
    """An aggregate sink against the exact per-account sums."""

    total: Decimal  # sum over accounts of |actual - expected| balance
    under_applied: int  # payments missing from the counts
    over_applied: int  # payments counted twice


@dataclass(frozen=True)
class Delivery:
    """What a job's sinks hold, summed over record sinks and over aggregate sinks."""

    expected: int
    delivered: int
    lost: int
    duplicated: int
    balance_drift: Decimal | None
    under_applied: int
    over_applied: int
    wrong: int | None = None  # CDC sinks only: rows present but not as the changes imply


def read_output(
    spark: SparkSession, kind: str, location: str, connection: PostgresConnection | None = None
) -> DataFrame:
    """An output as any reader sees it: through the Spark data source its kind names
    (``delta``, ``parquet``, whose ``_``-folders Spark skips), or a database table
    (``location`` is its name) through Spark's JDBC reader with ``connection``."""
    if connection is not None:
        reader = (
            spark.read.format("jdbc")
            .option("url", f"jdbc:postgresql://{connection.host}:{connection.port}/"
                           f"{connection.database}")
            .option("dbtable", location)
            .option("user", connection.user)
            .option("driver", "org.postgresql.Driver")
        )  # fmt: skip
        if connection.password is not None:
            reader = reader.option("password", connection.password.get_secret_value())
        return reader.load()
    fmt = kinds().sink(kind).read_format if kind in kinds().sinks else kind
    if fmt is None:
        raise ValueError(f"a {kind} output names no Spark data source to read it with")
    return spark.read.format(fmt).load(location)


def read_sink(spark: SparkSession, spec: JobSpec, sink: SinkSpec) -> DataFrame:
    """One of ``spec``'s sinks as any reader sees it (``read_output``): a database table by
    the job's connection it names, anything else by its location."""
    fields = sink.model_dump()  # a database sink names its connection and table
    name, table = fields.get("connection"), fields.get("table")
    if isinstance(name, str) and name in spec.connections and isinstance(table, str):
        return read_output(spark, sink.kind, table, spec.connections[name])
    return read_output(spark, sink.kind, sink.location)


def read_ids(spark: SparkSession, kind: str, location: str) -> list[int | None]:
    """The ``id`` of every row of a Delta or Parquet output."""
    return [row[0] for row in read_output(spark, kind, location).select("id").collect()]


def expected_balances(count: int, seed: int) -> dict[str, tuple[Decimal, int]]:
    """account -> (exact balance, number of payments) for the first ``count`` payments."""
    totals: dict[str, Decimal] = {}
    counts: Counter[str] = Counter()
    for payment in payments(count, seed=seed):
        totals[payment.account] = totals.get(payment.account, Decimal(0)) + payment.amount
        counts[payment.account] += 1
    return {account: (totals[account], counts[account]) for account in totals}


def drift_of(frame: DataFrame, expected: dict[str, tuple[Decimal, int]]) -> Drift:
    """How far an aggregate frame (``account``, ``balance``[, ``payments``]) is from
    ``expected``."""
    has_count = "payments" in frame.columns
    columns = ["account", "balance", *(["payments"] if has_count else [])]
    actual = {row["account"]: row for row in frame.select(*columns).collect()}
    total, under, over = Decimal(0), 0, 0
    for account in expected.keys() | actual.keys():
        want_balance, want_count = expected.get(account, (Decimal(0), 0))
        row = actual.get(account)
        have_balance = (row["balance"] if row is not None else None) or Decimal(0)
        total += abs(have_balance - want_balance)
        if has_count:
            have_count = int(row["payments"] or 0) if row is not None else 0
            under += max(0, want_count - have_count)
            over += max(0, have_count - want_count)
    return Drift(total, under, over)


def balance_drift(spark: SparkSession, kind: str, location: str, count: int, seed: int) -> Drift:
    """The drift of the aggregate output at ``location`` after payments ``1..count``."""
    return drift_of(read_output(spark, kind, location), expected_balances(count, seed))


def measure_delivery(spark: SparkSession, spec: JobSpec, count: int, seed: int) -> Delivery:
    """Read every sink of ``spec`` and compare it with payments ``1..count`` of ``seed``,
    or, for a CDC sink, with changes ``1..count`` of the customers feed of ``seed``."""
    # every payment, or for a stream join those joined (all of them in a left join)
    wanted = joined_ids(spec, count, seed)
    delivered = lost = duplicated = under = over = 0
    drift: Decimal | None = None
    wrong: int | None = None
    record_sinks = expected_rows = 0
    cdc = cdc_sinks(spec)
    for sink in spec.sinks:
        # a topic's records are counted from a consumer, not a frame: Spark's Kafka
        # reader is read_uncommitted, and would show a killed transaction's records
        frame = None if is_kafka_sink(sink) else read_sink(spark, spec, sink)
        if frame is not None and sink.name in cdc:
            rows = measure_cdc(frame, cdc[sink.name], count, seed)
            record_sinks += 1
            expected_rows += rows.expected
            delivered += rows.delivered
            lost += rows.lost
            duplicated += rows.duplicated
            wrong = (wrong or 0) + rows.wrong
        elif frame is not None and spec.windows and "window_start" in frame.columns:
            windows = measure_windows(frame, spec, count, seed)
            record_sinks += 1
            expected_rows += windows.expected
            delivered += windows.delivered
            lost += windows.lost
            duplicated += windows.duplicated
            drift = (drift or Decimal(0)) + windows.drift
            under += windows.under_applied
            over += windows.over_applied
        elif frame is None or "id" in frame.columns:
            if frame is None:
                ids = committed_ids(sink)
            else:
                ids = [row[0] for row in frame.select("id").collect()]
            found = tally(ids, wanted)
            record_sinks += 1
            expected_rows += len(wanted)
            delivered += found.delivered
            lost += found.lost
            duplicated += found.duplicated
            if spec.stream_join is not None:
                # a payment joined that had no settlement in range: a wrong pair
                wrong = (wrong or 0) + found.unexpected
        elif {"account", "balance"} <= set(frame.columns):
            aggregate = drift_of(frame, expected_balances(count, seed))
            drift = (drift or Decimal(0)) + aggregate.total
            under += aggregate.under_applied
            over += aggregate.over_applied
    # each record sink expects every payment, a window sink every window, a CDC sink
    # every row (SCD 1) or version (SCD 2)
    expected_total = expected_rows if record_sinks else count
    return Delivery(expected_total, delivered, lost, duplicated, drift, under, over, wrong)
