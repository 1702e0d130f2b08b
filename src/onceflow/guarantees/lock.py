"""One running instance per checkpoint, across processes and machines.

Spark refuses a second *active* query with the same checkpoint only inside one session.
Two processes (a retried ``spark-submit`` next to a live one) would both run, both write
sinks, and one would fail later on a clash in ``offsets/`` — after writing. So a job first
takes ``<checkpoint>/onceflow/lock``, created only-if-absent (``onceflow.files``: atomic on
local disk, HDFS and S3), naming its owner: job, host, pid and the pid's start time; a
heartbeat thread rewrites it every ``heartbeat_seconds``.

The same lock guards a Delta table on S3, where Delta's S3SingleDriverLogStore allows one
writing driver per table: ``table_lock`` takes ``<table>._onceflow/lock``, a folder beside
the table (inside it, a folder would make the not-yet-created table's location non-empty,
and Delta then refuses to create it).

A lock is taken over when its owner is gone: its heartbeat is older than
``stale_after_seconds`` (on any host: a live but frozen or hung owner is gone too), or, on
the same host, its process no longer runs or the pid now belongs to a process that started
at another time (pids are reused). A lock this process holds for a query that has stopped
is reused.

An owner that finds its lock taken over, or could not renew it within the stale window,
has lost it: ``check`` raises GUARANTEE_LOCK_LOST from then on (the batch writer asks before
every sink write), and ``on_lost`` is called once, from the heartbeat, so that an idle query
stops too.

``inspect_lock`` reads a lock without touching it (``onceflow status``): who holds it,
whether that process still runs, and why the next start would take it over, judged by the
same rules as ``acquire``.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from pyspark.sql import SparkSession

from onceflow.config import LockSettings
from onceflow.errors import GuaranteeError, first_line
from onceflow.files import CheckpointFiles
from onceflow.storage import onceflow_state

__all__ = [
    "CheckpointLock",
    "LockHolder",
    "inspect_lock",
    "process_start",
    "table_lock",
    "table_lock_folder",
]

_LOCK = "lock"
_UNREADABLE_SECONDS = 2.0
_log = logging.getLogger("onceflow.guarantees")

# Acquire, heartbeat and release each read and then write the lock file. Within one
# process (a query restarted right after the last one ended, whose release still runs on
# another thread) they must not interleave, or a late release deletes the new owner's lock.
_IN_PROCESS = threading.Lock()


def process_start(pid: int) -> int | None:
    """When process ``pid`` started, in clock ticks since boot (Linux ``/proc``); None when
    it is not running or the system does not say."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # the command name (field 2) may hold spaces and parentheses: count from its end
    return int(stat[stat.rindex(")") + 2 :].split()[19])


@dataclass
class CheckpointLock:
    """The lock on one checkpoint; ``acquire`` it before starting, ``release`` after.

    ``folder`` and ``refusal`` let the same lock guard something else (``table_lock``);
    ``on_lost`` hears once that the lock was lost (with the error ``check`` raises).
    """

    spark: SparkSession
    checkpoint: str
    job: str
    settings: LockSettings = field(default_factory=LockSettings)
    folder: str | None = None  # where the lock file lives; <checkpoint>/onceflow by default
    refusal: str = "GUARANTEE_CHECKPOINT_LOCKED"
    on_lost: Callable[[GuaranteeError], None] | None = None
    token: str = field(default_factory=lambda: uuid.uuid4().hex)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _renewed: float = 0.0  # time.monotonic() of the last write of our record
    _lost: str | None = None

    @property
    def location(self) -> str:
        """The folder of the lock file."""
        return self.folder or onceflow_state(self.checkpoint)

    def _files(self) -> CheckpointFiles:
        return CheckpointFiles(self.spark, self.location)

    def _record(self) -> str:
        pid = os.getpid()
        return json.dumps(
            {
                "job": self.job,
                "token": self.token,
                "host": socket.gethostname(),
                "pid": pid,
                "start": process_start(pid),
                "heartbeat": time.time(),
            }
        )

    def acquire(self) -> None:
        """Take the lock or raise ``refusal`` (GUARANTEE_CHECKPOINT_LOCKED) naming its holder."""
        with _IN_PROCESS:
            self._acquire()
            self._renewed = time.monotonic()
        self._start_heartbeat()

    def _acquire(self) -> None:
        files = self._files()
        for _ in range(3):
            if files.create(_LOCK, self._record()):
                return
            holder = _read_holder(files)
            if holder is None or _is_stale(holder, self.settings.stale_after_seconds):
                files.delete(_LOCK)
                continue
            raise GuaranteeError(
                self.refusal,
                job=self.job,
                checkpoint=self.checkpoint,
                holder=_describe(holder),
                age=f"{_age(holder):.0f}",
            )
        raise GuaranteeError(
            self.refusal,
            job=self.job,
            checkpoint=self.checkpoint,
            holder="another process racing for it",
            age="0",
        )

    def check(self) -> None:
        """Raise GUARANTEE_LOCK_LOST unless the lock is still ours: not taken over, and
        renewed within the stale window (a frozen process may have been replaced meanwhile)."""
        if self._lost is None:
            silent = time.monotonic() - self._renewed
            if silent > self.settings.stale_after_seconds:
                self._lose(
                    f"not renewed for {silent:.0f}s, past its stale window of "
                    f"{self.settings.stale_after_seconds:g}s, so another instance may own it"
                )
        if self._lost is not None:
            raise self._error()

    def _error(self) -> GuaranteeError:
        return GuaranteeError(
            "GUARANTEE_LOCK_LOST", job=self.job, what=self.location, why=self._lost or "?"
        )

    def _lose(self, why: str) -> None:
        if self._lost is not None:
            return
        self._lost = why
        _log.error("%s", self._error())
        if self.on_lost is not None:
            self.on_lost(self._error())

    def _start_heartbeat(self) -> None:
        def beat() -> None:
            failure = ""
            while not self._stop.wait(self.settings.heartbeat_seconds):
                try:
                    self._renew()
                    failure = ""
                except Exception as exc:  # a store that is down; retried until stale
                    if not failure:
                        _log.warning(
                            "job '%s': could not renew its lock in %s (%s); retrying",
                            self.job,
                            self.location,
                            first_line(exc),
                        )
                    failure = first_line(exc)
                if self._lost is None:
                    silent = time.monotonic() - self._renewed
                    if silent > self.settings.stale_after_seconds:
                        cause = f": {failure}" if failure else ""
                        self._lose(f"could not renew it for {silent:.0f}s{cause}")
                if self._lost is not None:
                    return

        self._thread = threading.Thread(target=beat, name=f"onceflow-lock-{self.job}", daemon=True)
        self._thread.start()

    def _renew(self) -> None:
        lost = self._rewrite()
        if lost:
            self._lose(lost)  # outside the in-process lock: on_lost may stop the query

    def _rewrite(self) -> str | None:
        """Rewrite our record into the lock; why it is lost, if it is."""
        with _IN_PROCESS:
            if self._stop.is_set() or self._lost is not None:
                return None
            silent = time.monotonic() - self._renewed
            if silent > self.settings.stale_after_seconds:
                return None  # too late to renew: another start may be taking it over now
            files = self._files()
            holder = _parse(files.read(_LOCK))
            if holder is None:
                return "its lock file is gone"
            if holder.get("token") != self.token:
                return f"taken over by {_describe(holder)}"
            files.overwrite(_LOCK, self._record())
            self._renewed = time.monotonic()
            return None

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


def table_lock(
    spark: SparkSession, table: str, job: str, settings: LockSettings | None = None
) -> CheckpointLock:
    """The single-writer lock of the Delta table at ``table`` (for tables on S3)."""
    return CheckpointLock(
        spark,
        table,
        job,
        settings=settings or LockSettings(),
        folder=table_lock_folder(table),
        refusal="GUARANTEE_TABLE_LOCKED",
    )


def _describe(holder: dict[str, object]) -> str:
    return f"job '{holder.get('job')}' on {holder.get('host')} pid {holder.get('pid')}"


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
    ``_UNREADABLE_SECONDS`` (a lock an older onceflow was killed while writing: it wrote
    the lock in two steps, create then fill, and a reader between them saw it empty).
    """
    deadline = time.monotonic() + _UNREADABLE_SECONDS
    while True:
        text = files.read(_LOCK)
        if text is None:
            return None
        holder = _parse(text)
        if holder is not None or time.monotonic() > deadline:
            return holder
        _pause(0.1)


def _pause(seconds: float) -> None:
    """Wait between two reads of an unreadable lock."""
    time.sleep(seconds)


def _is_stale(holder: dict[str, object], stale_after: float) -> bool:
    """True when the holder is gone (``_stale_reason``)."""
    return _stale_reason(holder, stale_after) is not None


def _stale_reason(holder: dict[str, object], stale_after: float) -> str | None:
    """Why the holder is gone, for a person: its heartbeat is older than ``stale_after``
    seconds, or it ran on this host and its process is gone, or its pid is another
    process's now. None when it is not gone."""
    age = _age(holder)
    if age > stale_after:
        if age == float("inf"):
            return "it records no heartbeat"
        return f"not renewed for {age:.0f}s, past its stale window of {stale_after:g}s"
    if holder.get("host") != socket.gethostname():
        return None
    pid = holder.get("pid")
    if not isinstance(pid, int):
        return "it names no process"
    if pid == os.getpid():
        # ours, from a query of this process that has ended (or a reused pid: not running
        # queries of ours, either way)
        return "it is this process's own, from a query that has ended"
    runs = _process_runs(pid, holder.get("start"))
    if runs is None:
        return f"pid {pid} is another process now"
    return None if runs else f"pid {pid} is gone"


def _process_runs(pid: int, started: object) -> bool | None:
    """True when ``pid`` runs and is the process that started at ``started`` (ticks since
    boot, if recorded); False when no process has that pid; None when another one does."""
    running = process_start(pid)
    if running is None:
        try:
            os.kill(pid, 0)  # no /proc: ask the kernel whether the pid exists at all
        except ProcessLookupError:
            return False
        except PermissionError:
            pass  # another user's process: it exists
        return True
    return None if isinstance(started, int) and started != running else True


@dataclass(frozen=True)
class LockHolder:
    """Who a lock names, and what can be told of that process from here.

    Attributes:
        job, host, pid: as the lock names them; all None when it cannot be read.
        since: when the holder's process started, ISO 8601 local time (this host, alive).
        heartbeat_age_seconds: since the holder last wrote the lock; None if it never did.
        alive: the holder's process runs (this host only: its pid, and its start time when
            recorded); None when it ran on another host, or the lock cannot be read.
        stale: why the next start takes the lock over, as ``acquire`` judges it; None when
            the next start would be refused.
    """

    job: str | None
    host: str | None
    pid: int | None
    since: str | None
    heartbeat_age_seconds: float | None
    alive: bool | None
    stale: str | None


def inspect_lock(spark: SparkSession, folder: str, stale_after: float) -> LockHolder | None:
    """The holder of the lock in ``folder`` (a checkpoint's: ``onceflow_state(checkpoint)``),
    or None when there is no lock. Reads only: takes, renews and removes nothing."""
    files = CheckpointFiles(spark, folder)
    holder = _read_holder(files)  # waits out a lock caught while being written
    if holder is None:
        if files.read(_LOCK) is None:
            return None
        return LockHolder(None, None, None, None, None, None, "cannot be read")
    job, host, pid, age = holder.get("job"), holder.get("host"), holder.get("pid"), _age(holder)
    alive, since = None, None
    if host == socket.gethostname() and isinstance(pid, int):
        alive = _process_runs(pid, holder.get("start")) is True
        started = _started_at(pid) if alive else None
        if started is not None:
            since = time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started))
    return LockHolder(
        job=job if isinstance(job, str) else None,
        host=host if isinstance(host, str) else None,
        pid=pid if isinstance(pid, int) else None,
        since=since,
        heartbeat_age_seconds=None if age == float("inf") else round(age, 1),
        alive=alive,
        stale=_stale_reason(holder, stale_after),
    )


def _started_at(pid: int) -> float | None:
    """When ``pid`` started, in seconds since the epoch (Linux: boot time + its ticks)."""
    ticks = process_start(pid)
    try:
        stat = Path("/proc/stat").read_text()
    except OSError:
        return None
    boot = next((line.split()[1] for line in stat.splitlines() if line.startswith("btime ")), None)
    if ticks is None or boot is None:
        return None
    return int(boot) + ticks / os.sysconf("SC_CLK_TCK")


def _age(holder: dict[str, object]) -> float:
    """Seconds since the holder's last heartbeat (infinite if it never wrote one)."""
    heartbeat = holder.get("heartbeat")
    return time.time() - heartbeat if isinstance(heartbeat, int | float) else float("inf")
