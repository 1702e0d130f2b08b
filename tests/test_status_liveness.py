"""``onceflow status`` says whether the job runs now, from its checkpoint lock: held by a
live process (a real child that took the lock through ``CheckpointLock`` and sleeps), left
by a process that was killed (which the next start takes over), or absent."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pyspark.sql import SparkSession

from onceflow.cli import EXIT_OK, main
from onceflow.guarantees import CheckpointLock
from tests.conftest import ROOT

pytestmark = pytest.mark.spark

JOB = str(ROOT / "jobs" / "payments_exactly_once_transactional.yaml")
NAME = "payments-exactly-once-transactional"

# A holder as the runner makes one: CheckpointLock on the job's checkpoint, heartbeat and
# all. A local checkpoint needs no Spark to lock, so the child starts in a moment.
HOLDER = """
import sys, time
from onceflow.guarantees import CheckpointLock
CheckpointLock(None, sys.argv[1], sys.argv[2]).acquire()
print("locked", flush=True)
time.sleep(600)
"""


def _settings(tmp_path: Path) -> list[str]:
    return [
        "--env", "test",
        "--set", f"source.path={tmp_path / 'in'}",
        "--set", f"sinks.0.path={tmp_path / 'events'}",
        "--set", f"sinks.1.path={tmp_path / 'balances'}",
        "--set", f"checkpoint={tmp_path / 'checkpoint'}",
        "--set", f"quality.quarantine={tmp_path / 'quarantine'}",
    ]  # fmt: skip


def _status(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> tuple[dict[str, Any], str | None]:
    """The status as JSON, and the terminal's ``running`` line (None: it shows none)."""
    (tmp_path / "in").mkdir(exist_ok=True)
    capsys.readouterr()
    assert main(["status", JOB, *_settings(tmp_path), "--json"]) == EXIT_OK
    as_json = json.loads(capsys.readouterr().out)
    assert main(["status", JOB, *_settings(tmp_path)]) == EXIT_OK
    shown = capsys.readouterr().out.splitlines()
    lines = [line.split(maxsplit=1)[1] for line in shown if line.startswith("  running ")]
    return as_json, lines[0] if lines else None


@pytest.fixture
def holder(tmp_path: Path) -> Iterator[subprocess.Popen[str]]:
    """A real process holding the job's checkpoint lock until it is killed."""
    process = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(tmp_path / "checkpoint"), NAME],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        assert process.stdout.readline().strip() == "locked"
        yield process
    finally:
        process.kill()
        process.wait()


def test_a_live_holder_is_running(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], holder: subprocess.Popen[str]
) -> None:
    status, line = _status(tmp_path, capsys)
    assert status["running"] is True
    lock = status["lock"]
    assert (lock["pid"], lock["host"], lock["job"]) == (holder.pid, socket.gethostname(), NAME)
    assert (lock["alive"], lock["stale"]) == (True, None)
    assert lock["since"] and lock["heartbeat_age_seconds"] < 60
    assert line and line.startswith(f"yes (pid {holder.pid} on {socket.gethostname()}, since 20")


def test_a_lock_left_by_a_killed_process_is_named_and_taken_over(
    spark: SparkSession,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    holder: subprocess.Popen[str],
) -> None:
    holder.send_signal(signal.SIGKILL)  # no release: the lock file stays behind
    holder.wait()
    lock_file = tmp_path / "checkpoint" / "onceflow" / "lock"
    assert json.loads(lock_file.read_text())["pid"] == holder.pid
    status, line = _status(tmp_path, capsys)
    assert status["running"] is False
    assert (status["lock"]["pid"], status["lock"]["alive"]) == (holder.pid, False)
    assert status["lock"]["stale"] == f"pid {holder.pid} is gone"
    assert line == (
        f"no — a lock was left by pid {holder.pid}, which is gone; the next run takes it over"
    )
    # what the line promises is what the lock does: the next start takes it, unrefused
    lock = CheckpointLock(spark, str(tmp_path / "checkpoint"), NAME)
    lock.acquire()
    try:
        assert json.loads(lock_file.read_text())["token"] == lock.token
    finally:
        lock.release()


def test_no_lock_is_not_running(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, line = _status(tmp_path, capsys)
    assert (status["running"], status["lock"], line) == (False, None, "no")
