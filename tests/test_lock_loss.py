"""A job that lost its checkpoint lock stops before its next sink write.

Two real drivers on one checkpoint of an at-least-once job (nothing but the lock keeps a
second writer from writing a batch twice there). The first freezes itself (SIGSTOP, Python
and JVM) inside batch 1, before writing it, and stays frozen past the lock's stale window;
the second takes the lock over and drains the source; then the first is resumed. It must
write nothing more and stop saying why; the output holds every record once and every
balance exactly.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from pyspark.sql import SparkSession

from onceflow.prove.verify import balance_drift, read_ids, tally
from onceflow.prove.workload import write_payment_files
from tests.conftest import ROOT

pytestmark = [pytest.mark.spark, pytest.mark.chaos, pytest.mark.slow]

ONCEFLOW = str(Path(sys.executable).with_name("onceflow"))
JOB = str(ROOT / "jobs" / "payments_at_least_once.yaml")
RECORDS, FILES = 60, 3
HEARTBEAT, STALE = 1, 6


def _latest_version(table: Path) -> int:
    log = table / "_delta_log"
    return max(int(p.stem) for p in log.glob("*.json") if p.stem.isdigit())


def _stopped(pid: int) -> bool:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat[stat.rindex(")") + 2] == "T"


def test_a_driver_resumed_after_losing_its_lock_writes_nothing(
    spark: SparkSession, tmp_path: Path
) -> None:
    write_payment_files(tmp_path / "in", count=RECORDS, files=FILES)
    settings = [
        "--env", "test",
        "--set", f"storage.root={tmp_path}",
        "--set", f"source.path={tmp_path / 'in'}",
        "--set", "source.max_files_per_trigger=1",
        "--set", f"locks.heartbeat_seconds={HEARTBEAT}",
        "--set", f"locks.stale_after_seconds={STALE}",
    ]  # fmt: skip
    tables = tmp_path / "data/tables/payments_at_least_once"
    first_log = (tmp_path / "first.log").open("wb")
    first = subprocess.Popen(
        [sys.executable, "-m", "onceflow.prove.child", "run", JOB, *settings,
         "--crash", "before_write@1:stop"],
        stdout=first_log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 300
        while not _stopped(first.pid):
            assert first.poll() is None, (tmp_path / "first.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "the first driver never reached batch 1"
            time.sleep(0.2)
        time.sleep(STALE + 2)  # frozen past the stale window, its lock still on file

        second = subprocess.run([ONCEFLOW, "run", JOB, *settings], capture_output=True, timeout=600)
        assert second.returncode == 0, second.stderr.decode(errors="replace")[-3000:]
        versions = {name: _latest_version(tables / name) for name in ("events", "balances")}

        os.killpg(first.pid, signal.SIGCONT)
        code = first.wait(timeout=180)
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
            first.wait()
        first_log.close()

    log = (tmp_path / "first.log").read_text(errors="replace")
    assert code == 1, log[-3000:]
    assert "GUARANTEE_LOCK_LOST" in log, log[-3000:]
    # not one commit after the first driver was resumed
    assert {name: _latest_version(tables / name) for name in versions} == versions
    delivered = tally(read_ids(spark, "delta", str(tables / "events")), range(1, RECORDS + 1))
    assert (delivered.lost, delivered.duplicated) == (0, 0)
    drift = balance_drift(spark, "delta", str(tables / "balances"), RECORDS, seed=7)
    assert (drift.total, drift.under_applied, drift.over_applied) == (0, 0, 0)
