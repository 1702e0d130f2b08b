"""The stream-stream join (``join.stream``), exactly-once across crashes and restarts.

What the output must hold is computed here in plain Python from the lines the generators
wrote, never by the job's code: each payment paired with the settlement of its id whose
time falls within the range after the payment's; for a left join also each payment left
without one, once the final watermark (the smaller of the two streams' latest event time
less its delay) has passed its range.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from pathlib import Path

import pytest
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from onceflow.config import LoadedJob, load_job
from onceflow.errors import ConfigError, GuaranteeError
from onceflow.prove.settlements import write_settlement_files
from onceflow.prove.workload import write_payment_files
from tests.conftest import ROOT, JobLoader
from tests.streaming import crash_at, run_to_end

pytestmark = [pytest.mark.spark]

JOB = "jobs/payments_settled.yaml"
RECORDS, FILES = 200, 2
RANGE, DELAY = timedelta(seconds=30), timedelta(seconds=10)
#: The example job's hour and minutes, shortened so that 200 payments a second apart
#: outlive the range: the left join's unmatched rows come out before the input ends.
SHORT = (
    "join.within=settled_at BETWEEN event_time AND event_time + INTERVAL 30 SECONDS",
    "watermark.delay=10 seconds",
    "join.stream.watermark.delay=10 seconds",
)
LEFT = ("join.how=left", "strategy=transactional", "sinks.0.merge=null")
TABLE = "data/tables/payments_settled/settled"
#: A row of the output: payment id -> (settled_at, fee), both None for an unmatched payment.
Row = tuple[int, datetime | None, Decimal | None]


def write_input(root: Path) -> None:
    write_payment_files(root / "data/sample/payments", RECORDS, FILES)
    write_settlement_files(root / "data/sample/settlements", RECORDS, FILES, within=RANGE,
                           delay=DELAY)  # fmt: skip


def time_of(text: object) -> datetime:
    return datetime.strptime(str(text), "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)


def lines(folder: Path) -> Iterator[tuple[str, str]]:
    """Every line of the folder's files, with its file's name, in file order."""
    for path in sorted(folder.glob("*.json")):
        for line in path.read_text().splitlines():
            yield path.name, line


def settlement(line: str) -> tuple[int, datetime, Decimal] | None:
    """The line as (payment id, settled at, fee), or None when it cannot join."""
    try:
        record = json.loads(line)
        at = time_of(record["settled_at"])
        fee = Decimal(str(record.get("fee")))
    except (ValueError, KeyError, TypeError, InvalidOperation):
        return None
    key = record.get("payment_id")
    return (key, at, fee) if isinstance(key, int) else None


class Input:
    """The generated input, read back: payments, settlements and the lines that cannot join."""

    def __init__(self, root: Path) -> None:
        self.payments = {}  # id -> (event time, file)
        for name, line in lines(root / "data/sample/payments"):
            record = json.loads(line)
            self.payments[record["id"]] = (time_of(record["event_time"]), name)
        self.settlements, self.bad = [], []
        for name, line in lines(root / "data/sample/settlements"):
            parsed = settlement(line)
            if parsed is None:
                self.bad.append(line)
            else:
                self.settlements.append((*parsed, name))

    def pairs(self) -> dict[int, list[tuple[datetime, Decimal, str]]]:
        """Each payment's settlements within the range: (settled at, fee, file)."""
        found: dict[int, list[tuple[datetime, Decimal, str]]] = {}
        for key, at, fee, name in self.settlements:
            paid = self.payments.get(key)
            if paid is not None and paid[0] <= at <= paid[0] + RANGE:
                found.setdefault(key, []).append((at, fee, name))
        return found

    def inner(self) -> list[Row]:
        return sorted((key, at, fee) for key, got in self.pairs().items() for at, fee, _ in got)

    def left(self) -> list[Row]:
        """The inner rows, and each unmatched payment whose range the final watermark passed."""
        latest = min(
            max(t for t, _ in self.payments.values()) - DELAY,
            max(at for _, at, _, _ in self.settlements) - DELAY,
        )
        matched = self.pairs()
        unmatched = [
            (key, None, None)
            for key, (time, _) in self.payments.items()
            if key not in matched and time + RANGE < latest
        ]
        return sorted([*self.inner(), *unmatched], key=lambda row: row[0])


def output(spark: SparkSession, root: Path) -> list[Row]:
    """The output table's rows, times read as UTC instants."""
    rows = (
        spark.read.format("delta")
        .load(str(root / TABLE))
        .select("id", F.unix_micros("settled_at").alias("at"), "fee")
        .collect()
    )
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    return sorted(
        ((r.id, None if r.at is None else epoch + timedelta(microseconds=r.at), r.fee)
         for r in rows),
        key=lambda row: row[0],
    )  # fmt: skip


def test_the_workload_crosses_batches() -> None:
    """Not a test of the join: the generated input has what the tests below rely on."""
    # runs without Spark: the files are written to a throwaway folder
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        write_input(Path(folder))
        given = Input(Path(folder))
    pairs = given.pairs()
    later = [k for k, got in pairs.items()
             if any(name[-10:] != given.payments[k][1][-10:] for _, _, name in got)]  # fmt: skip
    never = [k for k in given.payments if k not in pairs]
    assert later and never and len(given.bad) == 3 and len(pairs) > RECORDS // 2


@pytest.mark.chaos
def test_pairs_equal_a_recomputation_after_crashes(
    spark: SparkSession, job_in: JobLoader, tmp_path: Path
) -> None:
    """Batch 1 crashes with some of its writes done, batch 2 after its writes (before
    Spark's commit). Each replay recomputes the same pairs from the state the batch before
    left: batch 2 joins payments kept since batch 1 with the settlements of a later file."""
    write_input(tmp_path)
    spec = job_in(JOB, *SHORT).spec
    for point, batch in (("mid_write", 1), ("after_write", 2)):
        with pytest.raises(Exception, match="CRASH_INJECTED"):
            run_to_end(spark, spec, crash=crash_at(point, batch))
    run_to_end(spark, spec)
    assert output(spark, tmp_path) == Input(tmp_path).inner()


@pytest.fixture(scope="module")
def left_run(
    spark: SparkSession, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, LoadedJob]:
    """A left join into an append table (where a row emitted twice would show), run
    twice: on the first files of each stream, then, restarted, on the rest. Payments of
    the first file wait in the state for their settlements in the second."""
    root = tmp_path_factory.mktemp("left")
    staged = root / "staged"
    write_input(staged)
    given = Input(staged)

    def arrive(first: bool) -> None:
        for name in ("payments", "settlements"):
            target = root / "data/sample" / name
            target.mkdir(parents=True, exist_ok=True)
            for path in sorted((staged / "data/sample" / name).glob("*.json")):
                if first == path.name.endswith("-00000.json"):
                    os.replace(path, target / path.name)  # keeps its time: read in order

    loaded = load_job(ROOT / JOB, env="local", conf_dir=ROOT / "conf",
                      overrides=[f"storage.root={root}", *SHORT, *LEFT])  # fmt: skip
    arrive(first=True)
    run_to_end(spark, loaded.spec)
    arrive(first=False)
    run_to_end(spark, loaded.spec)
    (root / "expected.json").write_text(json.dumps({"bad": given.bad}))
    return root, loaded


def test_a_left_join_emits_each_payment_once_across_a_restart(
    spark: SparkSession, left_run: tuple[Path, LoadedJob]
) -> None:
    """Every pair once, and every payment the watermark says has no match, once, with NULLs."""
    root, _ = left_run
    wanted = Input(root).left()
    assert output(spark, root) == wanted
    assert any(at is None for _, at, _ in wanted), "no unmatched payment came out"


def test_settlement_lines_that_cannot_join_are_quarantined_with_their_reason(
    spark: SparkSession, left_run: tuple[Path, LoadedJob]
) -> None:
    root, loaded = left_run
    bad = json.loads((root / "expected.json").read_text())["bad"]
    rows = spark.read.format("delta").load(loaded.spec.quality.quarantine).collect()
    assert sorted((r.payload, r.reason) for r in rows) == sorted([
        (bad[0], "parse: not valid JSON"),
        (bad[1], "parse: field 'settled_at': not a timestamp: \"soon\""),
        (bad[2], "parse: missing required field 'payment_id'"),
    ])  # fmt: skip
    assert all(r.source.endswith("settlements-00001.json") for r in rows)


@pytest.mark.parametrize(
    "change",
    [
        "join.within=settled_at BETWEEN event_time AND event_time + INTERVAL 40 SECONDS",
        "join.how=inner",
        "join.keys=[account = payment_id]",
    ],
)
def test_a_change_of_the_join_is_refused_at_start(
    spark: SparkSession, left_run: tuple[Path, LoadedJob], change: str
) -> None:
    """Other keys, another range or join type would read the state as something else."""
    root, _ = left_run
    changed = load_job(ROOT / JOB, env="local", conf_dir=ROOT / "conf",
                       overrides=[f"storage.root={root}", *SHORT, *LEFT, change])  # fmt: skip
    with pytest.raises(GuaranteeError, match="GUARANTEE_STATE_INCOMPATIBLE"):
        run_to_end(spark, changed.spec)


@pytest.mark.parametrize(
    ("overrides", "key", "why"),
    [
        (("watermark=null",), "watermark", "a stream join keeps this stream's rows"),
        (("join.stream.watermark=null",), "join.stream.watermark", "add watermark"),
        (("join.within=null",), "join.within", "without a time range"),
        (
            ("aggregate={group_by: [account], measures: {n: count(*)}}",),
            "aggregate.output",
            "only in append mode",
        ),
        (("join.stream=null", "join.table=data/t"), "join.within", "read only by a stream join"),
        (
            ("join.stream=null", "join.table=data/t", "join.within=null", "join.how=null"),
            "join.keys[0]",
            "name one column",
        ),
    ],
)
def test_stream_joins_that_cannot_keep_their_promise_are_refused_before_spark(
    job_in: JobLoader, overrides: tuple[str, ...], key: str, why: str
) -> None:
    with pytest.raises(ConfigError, match="CONFIG_GUARANTEE_REFUSED") as refused:
        job_in(JOB, *overrides)
    everything = [refused.value, *refused.value.others]
    assert any(f"'{key}'" in str(e) and why in str(e) for e in everything), everything


@pytest.mark.parametrize(
    "overrides",
    [("join.stream=null",), ("join.table=data/t",)],
    ids=["neither", "both"],
)
def test_a_join_takes_a_table_or_a_stream(job_in: JobLoader, overrides: tuple[str, ...]) -> None:
    with pytest.raises(ConfigError, match="CONFIG_INVALID_VALUE") as refused:
        job_in(JOB, *overrides)
    assert "'join'" in str(refused.value) and "exactly one of table" in str(refused.value)
    assert "payments_settled.yaml:" in str(refused.value)


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("join.keys=[id = paymentid]", "join.keys[0]"),
        (
            "join.within=setled_at BETWEEN event_time AND event_time + INTERVAL 1 HOUR",
            "join.within",
        ),
        ("join.columns=[settled_at, fees]", "join.columns[1]"),
        ("join.stream.watermark.column=fee", "join.stream.watermark.column"),
    ],
)
def test_deep_checks_name_the_join_key(
    spark: SparkSession, job_in: JobLoader, tmp_path: Path, override: str, key: str
) -> None:
    from onceflow.deep import check_job

    write_input(tmp_path)
    with pytest.raises(ConfigError, match="CONFIG_BAD_SQL") as found:
        check_job(job_in(JOB, override), spark)
    assert f"'{key}'" in str(found.value), found.value
