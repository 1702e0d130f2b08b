"""``onceflow replay-quarantine`` keeps the job's promise on its side path, in real
processes: a replay SIGKILLed after its sink writes and before its delete, rerun after the
quarantine gained a commit, writes every replayed record once and every balance exactly;
and a replay never runs beside its job.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path

import pytest
from delta.tables import DeltaTable
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from onceflow.config import load_job
from onceflow.errors import GuaranteeError
from onceflow.prove.verify import drift_of, expected_balances, read_ids, read_output, tally
from onceflow.replay import replay_quarantine
from onceflow.sinks.delta.marks import delta_batch_marks
from tests.conftest import ROOT
from tests.quality_corpus import BAD, write_corpus_files
from tests.streaming import run_to_end

pytestmark = [pytest.mark.spark, pytest.mark.chaos, pytest.mark.slow]

JOB = str(ROOT / "jobs" / "payments_quality.yaml")
GOOD = 60
# reason of a quarantined corpus record -> the record a user fixes it into
FIXES = {
    "parse: not valid JSON": (95001, "acct-0007", "2.50"),
    "parse: missing required field 'amount'": (95002, "acct-0007", "2.50"),
    "parse: not a JSON object": (95003, "acct-0008", "4.00"),
}


def fix(spark: SparkSession, quarantine: Path, reason: str) -> None:
    """Fix one quarantined record in place, as the README shows (a Delta UPDATE)."""
    record_id, account, amount = FIXES[reason]
    payload = json.dumps(
        {"id": record_id, "account": account, "amount": amount,
         "event_time": "2026-02-01T00:00:00Z"}
    )  # fmt: skip
    DeltaTable.forPath(spark, str(quarantine)).update(
        F.col("reason") == reason, {"payload": F.lit(payload)}
    )


def replay(settings: list[str], *crash: str) -> subprocess.CompletedProcess[bytes]:
    """The replay as its own process (crash injection through the prove harness's child)."""
    return subprocess.run(
        [sys.executable, "-m", "onceflow.prove.child", "replay-quarantine", JOB, *settings,
         *crash],
        capture_output=True,
        start_new_session=True,  # a kill takes this group, not pytest
        timeout=600,
    )  # fmt: skip


def start_ticks(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat[stat.rindex(")") + 2 :].split()[19])


def test_a_replay_killed_before_its_delete_and_rerun_later_writes_each_record_once(
    spark: SparkSession, tmp_path: Path
) -> None:
    write_corpus_files(tmp_path / "in", GOOD, 2)
    overrides = [f"storage.root={tmp_path}", f"source.path={tmp_path / 'in'}"]
    settings = ["--env", "test", *(arg for o in overrides for arg in ("--set", o))]
    spec = load_job(JOB, env="test", overrides=overrides).spec
    run_to_end(spark, spec)  # the job itself, in this process
    tables = tmp_path / "data/tables"
    quarantine = tables / "quarantine/payments-quality"
    events, balances = tables / "payments_quality/events", tables / "payments_quality/balances"
    checkpoint = tmp_path / "state/payments_quality/checkpoint"
    lock = checkpoint / "onceflow" / "lock"
    deadline = time.monotonic() + 30
    while lock.exists():  # released by the query's own thread once it ended
        assert time.monotonic() < deadline, "the job's lock was never released"
        time.sleep(0.1)
    first_two = list(FIXES)[:2]
    for reason in first_two:
        fix(spark, quarantine, reason)

    killed = replay(settings, "--crash", "after_write@0:kill")
    assert killed.returncode == -9, killed.stderr.decode(errors="replace")[-3000:]
    # killed after the sinks, before the delete: the two records are in both places
    written = tally(read_ids(spark, "delta", str(events)), [FIXES[r][0] for r in first_two])
    assert (written.lost, written.duplicated) == (0, 0)
    assert read_output(spark, "delta", str(quarantine)).count() == len(BAD)

    # meanwhile the quarantine moves on: another record is fixed (a new version)
    fix(spark, quarantine, list(FIXES)[2])

    # a replay beside a live job (its checkpoint lock held) is refused
    sleeper = subprocess.Popen(["sleep", "120"])
    lock.write_text(json.dumps({"job": "payments-quality", "token": "live", "pid": sleeper.pid,
                                "host": socket.gethostname(), "start": start_ticks(sleeper.pid),
                                "heartbeat": time.time()}))  # fmt: skip
    try:
        with pytest.raises(GuaranteeError, match="GUARANTEE_CHECKPOINT_LOCKED"):
            replay_quarantine(spark, spec)
    finally:
        sleeper.kill()
        sleeper.wait()
        lock.unlink()

    rerun = replay(settings)
    assert rerun.returncode == 0, rerun.stderr.decode(errors="replace")[-3000:]
    fixed_ids = [record_id for record_id, _, _ in FIXES.values()]
    delivered = tally(read_ids(spark, "delta", str(events)), [*range(1, GOOD + 1), *fixed_ids])
    assert (delivered.lost, delivered.duplicated, delivered.unexpected) == (0, 0, 0), delivered
    expected = expected_balances(GOOD, seed=7)
    for _, account, amount in FIXES.values():
        balance, count = expected.get(account, (Decimal(0), 0))
        expected[account] = (balance + Decimal(amount), count + 1)
    drift = drift_of(read_output(spark, "delta", str(balances)), expected)
    assert (drift.total, drift.under_applied, drift.over_applied) == (0, 0, 0), drift
    left = read_output(spark, "delta", str(quarantine)).select("reason").collect()
    assert len(left) == len(BAD) - len(FIXES)
    assert not {row["reason"] for row in left} & set(FIXES)
    # the replays' own marks read back: app id "<app id>:replay", intent 1 the last
    app_id = (checkpoint / "onceflow" / "app_id").read_text().strip()
    marks = delta_batch_marks(spark, str(events))
    assert set(marks) == {app_id, f"{app_id}:replay"} and marks[f"{app_id}:replay"] == 1
    intents = sorted(p.name for p in (checkpoint / "onceflow" / "replay").glob("*.done"))
    assert intents == ["0.done", "1.done"]  # the killed replay finished, then a new one
    assert os.path.isdir(checkpoint / "onceflow" / "replay" / "1.records")
