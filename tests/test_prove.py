"""``onceflow prove``: checkpoint faults, a broken writer the harness must catch, and a
PostgreSQL job. The reduced matrix in real processes runs in the guarantees notebook
(tests/test_notebooks.py), its report's assertions with it."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from onceflow.cli import EXIT_FAILED, EXIT_OK, main
from onceflow.testing.services import LocalPostgres
from tests.conftest import PG_PASSWORD, ROOT

pytestmark = [pytest.mark.chaos, pytest.mark.slow]

JOB = str(ROOT / "jobs" / "payments_exactly_once_transactional.yaml")
# two batches, the crash in the first: the least work that still shows every crash point
# (after_commit of batch 0 fires as batch 1 begins)
SMALL = ["--records", "60", "--batches", "2", "--crash-batch", "0", "--parallel", "2"]


def prove(tmp_path: Path, *args: str, job: str = JOB) -> tuple[int, list[dict[str, object]], str]:
    report = tmp_path / "report.json"
    markdown = tmp_path / "report.md"
    code = main(
        [
            "prove",
            job,
            "--env",
            "test",
            *SMALL,
            "--work-dir",
            str(tmp_path / "work"),
            "--json",
            str(report),
            "--markdown",
            str(markdown),
            *args,
        ]
    )
    return code, json.loads(report.read_text()), markdown.read_text()


def test_checkpoint_faults(tmp_path: Path) -> None:
    # fresh_checkpoint is caught in process (test_guarantee_mechanics.py); these two need
    # a real second process and a real restart
    code, rows, _ = prove(tmp_path, "--crash-points", "deleted_commit,second_instance")
    assert code == EXIT_OK, rows
    assert [row["crash_point"] for row in rows] == ["deleted_commit", "second_instance"]
    assert all(row["promise_held"] and row["lost"] == 0 for row in rows)
    # the CLI plots the report next to its JSON
    assert (tmp_path / "report.png").read_bytes().startswith(b"\x89PNG\r\n\x1a\n")


def test_the_harness_catches_an_unguarded_exactly_once_writer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    broken = str(ROOT / "tests" / "broken_writer")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([broken, os.environ.get("PYTHONPATH", "")]))
    code, rows, _ = prove(tmp_path, "--crash-points", "after_write")
    assert code == EXIT_FAILED
    (row,) = rows
    assert row["guarantee"] == "exactly-once"
    assert row["promise_held"] is False
    assert row["duplicated"] == 30  # batch 0 written twice


@pytest.mark.postgres
def test_prove_a_postgres_job(tmp_path: Path, postgres: LocalPostgres) -> None:
    """Killed while staging and after both tables committed: still every payment once.
    The role's password (a canary) is in no job process's output nor Spark's event log."""
    job = str(ROOT / "jobs" / "payments_postgres.yaml")
    events = tmp_path / "events"
    events.mkdir()
    code, rows, _ = prove(
        tmp_path,
        "--crash-points", "mid_write,after_write",
        "--set", 'spark.conf["spark.eventLog.enabled"]=true',
        "--set", f'spark.conf["spark.eventLog.dir"]={events}',
        "--set", 'spark.conf["spark.eventLog.compress"]=false',  # so it can be searched
        job=job,
    )  # fmt: skip
    assert code == EXIT_OK, rows
    event_logs = [path for path in events.rglob("*") if path.is_file()]
    logs = [*(tmp_path / "work").rglob("run-*.log"), *event_logs]
    assert len(logs) >= 6, logs  # two runs per scenario, and their event logs
    assert not [log for log in logs if PG_PASSWORD.encode() in log.read_bytes()]
    for row in rows:
        assert (row["kills"], row["lost"], row["duplicated"], row["balance_drift"]) == (
            1,
            0,
            0,
            0.0,
        ), row
        assert row["delivered"] == 60
