"""One running instance per checkpoint, across processes and machines.

Spark refuses a second *active* query with the same checkpoint only inside one session.
Two processes (a retried ``spark-submit`` next to a live one) would both run, both write
sinks, and one would fail later on a clash in ``offsets/`` — after writing. So a job first
takes ``<checkpoint>/onceflow/lock``, created only-if-absent through Hadoop's FileSystem
(atomic on local disk, HDFS and S3), naming its owner; a heartbeat thread rewrites it every
``HEARTBEAT_SECONDS``.

The same lock guards a Delta table on S3, where Delta's S3SingleDriverLogStore allows one
writing driver per table: ``table_lock`` takes ``<table>._onceflow/lock``, a folder beside
the table (inside it, a folder would make the not-yet-created table's location non-empty,
and Delta then refuses to create it). On S3 the lock file is created with a conditional
PUT, so it is atomic there as well.

A lock is taken over when its owner is gone: the same host and its pid no longer runs (a
SIGKILLed job restarts at once), or, from another host, its heartbeat is older than
``STALE_AFTER_SECONDS``. A lock this process holds for a query that has stopped is reused.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field

from pyspark.sql import SparkSession

from onceflow.errors import GuaranteeError
from onceflow.guarantees.app_id import onceflow_state
from onceflow.storage import CheckpointFiles

__all__ = [
    "HEARTBEAT_SECONDS",
    "STALE_AFTER_SECONDS",
    "CheckpointLock",
    "table_lock",
    "table_lock_folder",
]

HEARTBEAT_SECONDS = 10.0
STALE_AFTER_SECONDS = 60.0
_LOCK = "lock"

_UNREADABLE_SECONDS = 2.0

# Acquire, heartbeat and release each read and then write the lock file. Within one
# process (a query restarted right after the last one ended, whose release still runs on
# another thread) they must not interleave, or a late release deletes the new owner's lock.
_IN_PROCESS = threading.Lock()


@dataclass
class CheckpointLock:
    """The lock on one checkpoint; ``acquire`` it before starting, ``release`` after.

    ``folder`` and ``refusal`` let the same lock guard something else (``table_lock``).
    """

    spark: SparkSession
    checkpoint: str
    job: str
    folder: str | None = None  # where the lock file lives; <checkpoint>/onceflow by default
    refusal: str = "GUARANTEE_CHECKPOINT_LOCKED"
    token: str = field(default_factory=lambda: uuid.uuid4().hex)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def _files(self) -> CheckpointFiles:
        return CheckpointFiles(self.spark, self.folder or onceflow_state(self.checkpoint))

    def _record(self) -> str:
        return json.dumps(
            {
                "job": self.job,
                "token": self.token,
                "host": socket.gethostname(),
                "pid": os.getpid(),
                "heartbeat": time.time(),
            }
        )

    def acquire(self) -> None:
        """Take the lock or raise ``refusal`` (GUARANTEE_CHECKPOINT_LOCKED) naming its holder."""
        with _IN_PROCESS:
            self._acquire()
        self._start_heartbeat()

    def _acquire(self) -> None:
        files = self._files()
        for _ in range(3):
            if files.create(_LOCK, self._record()):
                return
            holder = _read_holder(files)
            if holder is None or _is_stale(holder):
                files.delete(_LOCK)
                continue
            raise GuaranteeError(
                self.refusal,
                job=self.job,
                checkpoint=self.checkpoint,
                holder=f"job '{holder.get('job')}' on {holder.get('host')} pid {holder.get('pid')}",
                age=f"{_age(holder):.0f}",
            )
        raise GuaranteeError(
            self.refusal,
            job=self.job,
            checkpoint=self.checkpoint,
            holder="another process racing for it",
            age="0",
        )

    def _start_heartbeat(self) -> None:
        def beat() -> None:
            while not self._stop.wait(HEARTBEAT_SECONDS):
                try:
                    with _IN_PROCESS:
                        files = self._files()
                        holder = _parse(files.read(_LOCK))
                        if holder is None:
                            continue  # being written this instant, or gone: look again
                        if holder.get("token") != self.token:
                            return  # taken over: never write over the new owner
                        files.overwrite(_LOCK, self._record())
                except Exception:  # noqa: S112 - a missed beat is retried; the JVM may be gone
                    continue

        self._thread = threading.Thread(target=beat, name=f"onceflow-lock-{self.job}", daemon=True)
        self._thread.start()

    def release(self) -> None:
        """Stop the heartbeat and remove the lock if it is still ours."""
        self._stop.set()
        with _IN_PROCESS:
            files = self._files()
            holder = _parse(files.read(_LOCK))
            if holder is not None and holder.get("token") == self.token:
                files.delete(_LOCK)


def table_lock_folder(table: str) -> str:
    """Where the single-writer lock of the table at ``table`` lives: beside it."""
    return f"{table.rstrip('/')}._onceflow"


def table_lock(spark: SparkSession, table: str, job: str) -> CheckpointLock:
    """The single-writer lock of the Delta table at ``table`` (for tables on S3)."""
    return CheckpointLock(
        spark, table, job, folder=table_lock_folder(table), refusal="GUARANTEE_TABLE_LOCKED"
    )


def _parse(text: str | None) -> dict[str, object] | None:
    if not text:
        return None
    try:
        record = json.loads(text)
    except ValueError:
        return None
    return record if isinstance(record, dict) else None


def _read_holder(files: CheckpointFiles) -> dict[str, object] | None:
    """The lock's holder; None when the lock is gone, or has stayed unreadable for
    ``_UNREADABLE_SECONDS`` (a writer killed mid-write).

    A lock is created, and rewritten by each heartbeat, in two steps (create, then write), so
    a reader can catch it empty for an instant. Taking that for a dead holder let a second
    instance delete a live lock and run beside the first (CONCURRENT_STREAM_LOG_UPDATE).
    """
    deadline = time.monotonic() + _UNREADABLE_SECONDS
    while True:
        text = files.read(_LOCK)
        if text is None:
            return None
        holder = _parse(text)
        if holder is not None or time.monotonic() > deadline:
            return holder
        time.sleep(0.1)


def _is_stale(holder: dict[str, object]) -> bool:
    if holder.get("host") == socket.gethostname():
        pid = holder.get("pid")
        if not isinstance(pid, int):
            return True
        if pid == os.getpid():
            return True  # ours, from a query of this process that has ended
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        return False
    return _age(holder) > STALE_AFTER_SECONDS


def _age(holder: dict[str, object]) -> float:
    """Seconds since the holder's last heartbeat (infinite if it never wrote one)."""
    heartbeat = holder.get("heartbeat")
    return time.time() - heartbeat if isinstance(heartbeat, int | float) else float("inf")
