"""The checkpoint lock: who may take it, and when an old holder counts as gone."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest
from pyspark.sql import SparkSession

from onceflow.errors import GuaranteeError
from onceflow.guarantees import CheckpointLock
from onceflow.guarantees.lock import STALE_AFTER_SECONDS

pytestmark = pytest.mark.spark


def plant(checkpoint: Path, **holder: object) -> Path:
    """Write a lock as another process would (and drop Hadoop's checksum of any old one)."""
    lock = checkpoint / "onceflow" / "lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    (lock.parent / ".lock.crc").unlink(missing_ok=True)
    record = {"job": "other", "token": "t", "host": socket.gethostname(), "pid": 1}
    lock.write_text(json.dumps(record | {"heartbeat": time.time()} | holder))
    return lock


def test_a_live_holder_on_this_host_refuses(spark: SparkSession, tmp_path: Path) -> None:
    sleeper = subprocess.Popen(["sleep", "30"])
    try:
        plant(tmp_path, pid=sleeper.pid)
        with pytest.raises(GuaranteeError) as caught:
            CheckpointLock(spark, str(tmp_path), "mine").acquire()
        assert caught.value.error_class == "GUARANTEE_CHECKPOINT_LOCKED"
        assert f"pid {sleeper.pid}" in str(caught.value) and str(tmp_path) in str(caught.value)
    finally:
        sleeper.kill()
        sleeper.wait()


def test_a_dead_holder_on_this_host_is_taken_over(spark: SparkSession, tmp_path: Path) -> None:
    dead = subprocess.Popen(["true"])
    dead.wait()
    lock_file = plant(tmp_path, pid=dead.pid)
    lock = CheckpointLock(spark, str(tmp_path), "mine")
    lock.acquire()
    assert json.loads(lock_file.read_text())["pid"] == os.getpid()
    lock.release()
    assert not lock_file.exists()


def test_another_host_counts_by_heartbeat(spark: SparkSession, tmp_path: Path) -> None:
    plant(tmp_path, host="elsewhere", heartbeat=time.time())
    with pytest.raises(GuaranteeError):
        CheckpointLock(spark, str(tmp_path), "mine").acquire()
    plant(tmp_path, host="elsewhere", heartbeat=time.time() - STALE_AFTER_SECONDS - 1)
    lock = CheckpointLock(spark, str(tmp_path), "mine")
    lock.acquire()
    lock.release()


def test_release_leaves_a_lock_someone_else_took(spark: SparkSession, tmp_path: Path) -> None:
    lock = CheckpointLock(spark, str(tmp_path), "mine")
    lock.acquire()
    theirs = "their-owner-token"
    lock_file = plant(tmp_path, host="elsewhere", token=theirs)
    lock.release()
    assert json.loads(lock_file.read_text())["token"] == theirs


def test_a_lock_caught_while_being_written_is_not_taken_for_a_dead_one(
    spark: SparkSession, tmp_path: Path
) -> None:
    """A lock is created (or rewritten by a heartbeat) and then filled: a reader in between
    sees it empty. The second instance must wait for the content, not take over."""
    sleeper = subprocess.Popen(["sleep", "30"])
    try:
        lock = plant(tmp_path)
        lock.write_text("")  # the holder has created it and not yet written its record
        writer = threading.Timer(0.5, lambda: plant(tmp_path, pid=sleeper.pid))
        writer.start()
        with pytest.raises(GuaranteeError, match="GUARANTEE_CHECKPOINT_LOCKED"):
            CheckpointLock(spark, str(tmp_path), "mine").acquire()
        writer.join()
    finally:
        sleeper.kill()
        sleeper.wait()


def test_a_lock_that_stays_empty_is_taken_over(spark: SparkSession, tmp_path: Path) -> None:
    plant(tmp_path).write_text("")  # a holder killed between creating and writing it
    lock = CheckpointLock(spark, str(tmp_path), "mine")
    lock.acquire()
    lock.release()
