"""The checkpoint lock: who may take it, and when an old holder counts as gone."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from pathlib import Path

import pytest
from pyspark.sql import SparkSession

import onceflow.guarantees.lock as lock_module
from onceflow.config import LockSettings
from onceflow.errors import GuaranteeError
from onceflow.guarantees import CheckpointLock

pytestmark = pytest.mark.spark

STALE = LockSettings().stale_after_seconds


def plant(checkpoint: Path, **holder: object) -> Path:
    """Write a lock as another process would (and drop Hadoop's checksum of any old one)."""
    lock = checkpoint / "onceflow" / "lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    (lock.parent / ".lock.crc").unlink(missing_ok=True)
    record = {"job": "other", "token": "t", "host": socket.gethostname(), "pid": 1}
    lock.write_text(json.dumps(record | {"heartbeat": time.time()} | holder))
    return lock


def start_ticks(pid: int) -> int:
    """When ``pid`` started, in clock ticks since boot (/proc/<pid>/stat field 22), read
    here rather than through the lock's own helper."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat[stat.rindex(")") + 2 :].split()[19])


def holder_of(lock_file: Path) -> dict[str, object]:
    record: dict[str, object] = json.loads(lock_file.read_text())
    return record


@pytest.fixture
def sleeper() -> subprocess.Popen[bytes]:
    process = subprocess.Popen(["sleep", "60"])
    yield process  # type: ignore[misc]
    process.kill()
    process.wait()


def test_a_live_holder_on_this_host_refuses(
    spark: SparkSession, tmp_path: Path, sleeper: subprocess.Popen[bytes]
) -> None:
    plant(tmp_path, pid=sleeper.pid, start=start_ticks(sleeper.pid))
    with pytest.raises(GuaranteeError) as caught:
        CheckpointLock(spark, str(tmp_path), "mine").acquire()
    assert caught.value.error_class == "GUARANTEE_CHECKPOINT_LOCKED"
    assert f"pid {sleeper.pid}" in str(caught.value) and str(tmp_path) in str(caught.value)


def test_a_dead_holder_on_this_host_is_taken_over(spark: SparkSession, tmp_path: Path) -> None:
    dead = subprocess.Popen(["true"])
    dead.wait()
    lock_file = plant(tmp_path, pid=dead.pid)
    lock = CheckpointLock(spark, str(tmp_path), "mine")
    lock.acquire()
    taken = holder_of(lock_file)
    assert (taken["pid"], taken["token"], taken["job"]) == (os.getpid(), lock.token, "mine")
    lock.release()
    assert not lock_file.exists()


def test_a_live_pid_with_an_old_heartbeat_is_stale_on_this_host_too(
    spark: SparkSession, tmp_path: Path, sleeper: subprocess.Popen[bytes]
) -> None:
    """A holder that stopped beating (SIGSTOPped, hung) is gone, whatever its pid says."""
    lock_file = plant(
        tmp_path, pid=sleeper.pid, start=start_ticks(sleeper.pid), heartbeat=time.time() - 3612
    )
    lock = CheckpointLock(spark, str(tmp_path), "mine")
    lock.acquire()
    assert holder_of(lock_file)["token"] == lock.token
    lock.release()


def test_a_reused_pid_is_not_taken_for_the_holder(
    spark: SparkSession, tmp_path: Path, sleeper: subprocess.Popen[bytes]
) -> None:
    """pids wrap: a live process under the holder's pid that started at another time is
    some other process, and the holder is gone."""
    lock_file = plant(tmp_path, pid=sleeper.pid, start=start_ticks(sleeper.pid) - 1)
    lock = CheckpointLock(spark, str(tmp_path), "mine")
    lock.acquire()
    assert holder_of(lock_file)["token"] == lock.token
    lock.release()


def test_another_host_counts_by_heartbeat(spark: SparkSession, tmp_path: Path) -> None:
    plant(tmp_path, host="elsewhere", heartbeat=time.time())
    with pytest.raises(GuaranteeError):
        CheckpointLock(spark, str(tmp_path), "mine").acquire()
    lock_file = plant(tmp_path, host="elsewhere", heartbeat=time.time() - STALE - 1)
    lock = CheckpointLock(spark, str(tmp_path), "mine")
    lock.acquire()
    taken = holder_of(lock_file)
    assert (taken["host"], taken["token"]) == (socket.gethostname(), lock.token)
    lock.release()


def test_release_leaves_a_lock_someone_else_took(spark: SparkSession, tmp_path: Path) -> None:
    lock = CheckpointLock(spark, str(tmp_path), "mine")
    lock.acquire()
    theirs = "their-owner-token"
    lock_file = plant(tmp_path, host="elsewhere", token=theirs)
    lock.release()
    assert holder_of(lock_file)["token"] == theirs


def test_a_lock_caught_while_being_written_is_not_taken_for_a_dead_one(
    spark: SparkSession,
    tmp_path: Path,
    sleeper: subprocess.Popen[bytes],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A lock is created (or rewritten by a heartbeat) and then filled: a reader in between
    sees it empty. The second instance must wait for the content, not take over. The
    holder's write lands during the reader's first wait, whatever the machine's speed."""
    lock = plant(tmp_path)
    lock.write_text("")  # the holder has created it and not yet written its record
    waits: list[float] = []

    def holder_finishes_writing(seconds: float) -> None:
        waits.append(seconds)
        if len(waits) == 1:
            plant(tmp_path, pid=sleeper.pid, start=start_ticks(sleeper.pid))

    monkeypatch.setattr(lock_module, "_pause", holder_finishes_writing)
    with pytest.raises(GuaranteeError, match="GUARANTEE_CHECKPOINT_LOCKED"):
        CheckpointLock(spark, str(tmp_path), "mine").acquire()
    assert waits, "the reader never waited for the lock's content"
    assert holder_of(lock)["pid"] == sleeper.pid


def test_a_lock_that_stays_empty_is_taken_over(spark: SparkSession, tmp_path: Path) -> None:
    lock_file = plant(tmp_path)
    lock_file.write_text("")  # a holder killed between creating and writing it
    lock = CheckpointLock(spark, str(tmp_path), "mine")
    lock.acquire()
    assert holder_of(lock_file)["token"] == lock.token
    lock.release()
