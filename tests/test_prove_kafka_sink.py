"""``onceflow prove`` on jobs that write Kafka: each scenario's job SIGKILLed mid-write (in
the last part's open transaction; with two sinks, between them) and after the write, then
restarted, and each topic counted by prove's own plain read_committed consumer.

Exactly-once (jobs/payments_to_kafka.yaml): every payment once. The same job under
at-least-once (Spark's Kafka writer): nothing lost, the replayed batch there twice, which
prove reports and at-least-once allows. The fan-out job (jobs/payments_fan_out.yaml): a
Delta table and a Kafka topic, each holding every payment once. The expectation is this
file's own count of the payments generated."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from onceflow.cli import EXIT_OK, main
from onceflow.prove.workload import payments
from onceflow.testing.services import LocalKafka
from tests.conftest import ROOT

pytestmark = [pytest.mark.kafka, pytest.mark.spark, pytest.mark.chaos, pytest.mark.slow]

RECORDS, BATCHES = 60, 1
# one batch, crashed and replayed: the least work that still shows both crash points (a
# Kafka job is slow to start: its producers' transactions are probed and initialised)
SMALL = ["--records", str(RECORDS), "--batches", str(BATCHES), "--crash-batch", "0",
         "--parallel", "2", "--crash-points", "mid_write,after_write"]  # fmt: skip


@pytest.fixture(autouse=True)
def bootstrap_env(kafka: LocalKafka, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP", kafka.bootstrap)  # the job processes inherit it


def sent() -> int:
    """How many distinct payments prove feeds (ids 1..RECORDS of seed 7)."""
    return len({payment.id for payment in payments(RECORDS, seed=7)})


def prove(work: Path, job: str, *args: str) -> tuple[int, list[dict[str, Any]]]:
    report = work / "report.json"
    code = main(["prove", str(ROOT / "jobs" / job), "--env", "test", *SMALL,
                 "--work-dir", str(work / "work"), "--json", str(report), *args])  # fmt: skip
    rows = json.loads(report.read_text())
    # a partial report (an object) means a scenario's job process failed: its error
    # is on stderr, and its log under the work dir
    assert isinstance(rows, list), f"prove stopped early (exit {code}): {rows}"
    return code, rows


def counts(rows: list[dict[str, Any]]) -> list[tuple[object, ...]]:
    """(crash point, kills, expected, delivered, lost, duplicated) of each row."""
    fields = ("crash_point", "kills", "expected", "delivered", "lost", "duplicated")
    return [tuple(row[field] for field in fields) for row in rows]


def test_prove_a_kafka_sink_exactly_once(tmp_path: Path) -> None:
    """Killed with the last part's transaction open (the other parts committed), and after
    every part committed: the replay skips the marked parts, the open transaction is
    aborted, and a read_committed consumer sees each payment once."""
    code, rows = prove(tmp_path, "payments_to_kafka.yaml")
    n = sent()
    assert counts(rows) == [("mid_write", 1, n, n, 0, 0), ("after_write", 1, n, n, 0, 0)], rows
    assert code == EXIT_OK and all(row["promise_held"] for row in rows), rows


def test_prove_a_kafka_sink_at_least_once_shows_its_duplicates(tmp_path: Path) -> None:
    """Spark's Kafka writer under the same kills: nothing lost; after the write, the whole
    replayed batch (every payment) produced twice, which at-least-once allows; mid-write
    (the last task killed once it has handed its rows to the writer), whatever the tasks had
    sent before the kill, twice."""
    code, rows = prove(tmp_path, "payments_to_kafka.yaml", "--set", "guarantee=at-least-once",
                       "--set", "sinks[0].partitions=null")  # fmt: skip
    n = sent()
    assert [row["guarantee"] for row in rows] == ["at-least-once"] * 2
    assert [(r["expected"], r["delivered"], r["lost"]) for r in rows] == [(n, n, 0)] * 2, rows
    mid_write, after_write = rows
    assert after_write["duplicated"] == n, rows
    assert 0 <= mid_write["duplicated"] <= n, rows
    assert code == EXIT_OK and all(row["promise_held"] for row in rows), rows


def test_prove_a_fan_out_to_delta_and_kafka(tmp_path: Path) -> None:
    """The table and the topic written in one batch, killed between them and after both:
    each holds every payment once (the row sums the two sinks)."""
    code, rows = prove(tmp_path, "payments_fan_out.yaml")
    # every payment in each of the two sinks: as neither can hold more than all of them,
    # 2n delivered with nothing lost nor duplicated is each sink's every payment once
    n = 2 * sent()
    assert counts(rows) == [("mid_write", 1, n, n, 0, 0), ("after_write", 1, n, n, 0, 0)], rows
    assert code == EXIT_OK and all(row["promise_held"] for row in rows), rows
