"""Crash injection: end a job hard at a chosen point of a chosen batch.

An explicit API for the prove harness and tests only: a ``CrashPlan`` is handed to
``start_query`` / ``run_job`` / ``replay_quarantine`` (``instrument=``), or to the prove
harness's child process on its command line (``python -m onceflow.prove.child``). A
production run has no way to read one: no job key and no environment variable turns it on.
It wraps the job's pipeline from outside, the writer and the sinks, and changes nothing in
between.

Points, for batch N:

- ``before_write``: before anything of batch N (before the at-most-once claim too).
- ``mid_write``: after the first of several sinks; with a single sink, inside its write
  job, in the last partition's task, so other tasks may have written their files (the
  quarantine table, written last, is not counted among the sinks); for a sink that commits
  part by part (Kafka's transactions, under exactly-once), in its last part's task with the
  part's records produced and its transaction open, while the other parts commit (the task
  pauses first, so that the records are on the broker, not in the client's queue).
- ``after_write``: every output written, Spark's commit of N not yet.
- ``after_commit``: Spark has written ``commits/N``; fires as batch N+1 begins, before
  anything of it is written.

For a quarantine replay, N is the replay's intent number and ``after_write`` is after its
sinks were written, before the replayed records leave the quarantine.

Actions: ``raise`` throws ``CrashInjected`` (in-process tests: the query stops with it);
``kill`` sends SIGKILL to the whole process group, Python and JVM alike, as a power cut
would; ``stop`` sends it SIGSTOP, freezing it there (a VM paused, a long GC) until someone
sends SIGCONT, and then it goes on. Only use ``kill`` and ``stop`` in a process started
with its own session/process group.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Literal

from pyspark.sql import DataFrame

from onceflow.contracts import BatchContext, BatchWriter, Sink, WrappedSink

__all__ = ["CrashInjected", "CrashPlan", "CrashPoint"]

#: how long a part's task waits, its records produced, before it crashes (a local broker
#: has them in well under a second, even on a busy machine)
_SEND_PAUSE_S = 2.0


class CrashPoint(StrEnum):
    BEFORE_WRITE = "before_write"
    MID_WRITE = "mid_write"
    AFTER_WRITE = "after_write"
    AFTER_COMMIT = "after_commit"


Action = Literal["kill", "raise", "stop"]


class CrashInjected(RuntimeError):
    """The crash a ``raise`` plan asked for; its message starts with ``[CRASH_INJECTED]``."""


@dataclass(frozen=True)
class CrashPlan:
    """Crash at ``point`` of batch ``batch_id`` by ``action``."""

    point: CrashPoint
    batch_id: int
    action: Action = "raise"

    @classmethod
    def parse(cls, text: str) -> CrashPlan:
        """``"after_write@2:kill"`` -> CrashPlan(AFTER_WRITE, 2, "kill"); actions ``raise``
        (the default), ``kill``, ``stop``.

        Raises:
            ValueError: naming the expected form.
        """
        where, _, action = text.partition(":")
        point, _, batch = where.partition("@")
        try:
            return cls(CrashPoint(point), int(batch), _action(action or "raise"))
        except ValueError:
            points = ", ".join(p.value for p in CrashPoint)
            raise ValueError(
                f"crash plan {text!r}: expected <point>@<batch_id>[:raise|kill|stop], "
                f"point one of {points}"
            ) from None

    def __str__(self) -> str:
        return f"{self.point.value}@{self.batch_id}:{self.action}"

    def fires(self, point: CrashPoint, batch_id: int) -> bool:
        """True when ``point`` of ``batch_id`` is this plan's."""
        if point is CrashPoint.AFTER_COMMIT:
            return self.point is point and batch_id == self.batch_id + 1
        return self.point is point and batch_id == self.batch_id

    def crash_if(self, point: CrashPoint, batch_id: int) -> None:
        """Crash now if ``point`` of ``batch_id`` is this plan's."""
        if self.fires(point, batch_id):
            _crash(self.action, self.point, self.batch_id, os.getpgid(0))

    # -- the instrument: what start_query, run_job and replay_quarantine install ---------
    def wrap_writer(self, writer: BatchWriter) -> BatchWriter:
        """``writer`` with ``after_commit`` and ``before_write`` before each batch, and
        ``after_write`` once it returned (every output written, nothing committed yet)."""

        def write(batch: DataFrame, batch_id: int) -> None:
            self.crash_if(CrashPoint.AFTER_COMMIT, batch_id)
            self.crash_if(CrashPoint.BEFORE_WRITE, batch_id)
            writer(batch, batch_id)
            self.crash_if(CrashPoint.AFTER_WRITE, batch_id)

        return write

    def wrap_sinks(self, sinks: Sequence[Sink]) -> list[Sink]:
        """The job's ``sinks``, in write order, with ``mid_write`` at its place."""
        count = len(sinks)
        return [_CrashingSink(sink, self, index, count) for index, sink in enumerate(sinks)]

    def poison(self, batch: DataFrame) -> DataFrame:
        """``batch``, but its last partition's task crashes after reading its rows."""
        frame = batch if batch.rdd.getNumPartitions() > 1 else batch.repartition(2)
        last = frame.rdd.getNumPartitions() - 1
        action, point, batch_id, group = self.action, self.point, self.batch_id, os.getpgid(0)

        def crash_last(index: int, rows: Iterable[Any]) -> Iterable[Any]:
            yield from rows
            if index == last:
                _crash(action, point, batch_id, group)

        rdd = frame.rdd.mapPartitionsWithIndex(crash_last)
        return frame.sparkSession.createDataFrame(rdd, frame.schema)


class _CrashingSink(WrappedSink):
    """One output of a batch, crashing where the plan says."""

    def __init__(self, sink: Sink, plan: CrashPlan, index: int, count: int) -> None:
        super().__init__(sink)
        self._plan = plan
        self._index = index
        self._count = count

    def write(self, batch: DataFrame, context: BatchContext) -> None:
        plan, batch_id = self._plan, context.batch_id
        if self._count == 1 and plan.fires(CrashPoint.MID_WRITE, batch_id):
            # a sink that commits part by part, when it does (the Kafka sink's guarded
            # write; unguarded, it is Spark's writer and never asks for a part fault)
            if hasattr(self._sink, "part_fault") and context.guarded:
                self._write_crashing_in_a_part(batch, context)
                return
            batch = plan.poison(batch)
        self._sink.write(batch, context)
        if self._index == 0 and self._count > 1:
            plan.crash_if(CrashPoint.MID_WRITE, batch_id)

    def _write_crashing_in_a_part(self, batch: DataFrame, context: BatchContext) -> None:
        """The write, crashing in its last part's task once that part's records are produced
        and before it commits, while the other parts commit or have committed (the Kafka
        sink's transactions)."""
        sink: Any = self._sink
        sink.part_fault = _PartCrash(self._plan.action, self._plan.point, context.batch_id,
                                     os.getpgid(0))  # fmt: skip
        try:
            sink.write(batch, context)
        finally:
            sink.part_fault = None


@dataclass(frozen=True)
class _PartCrash:
    """Crash in the task of a sink's last part (pickled to the executors)."""

    action: Action
    point: CrashPoint
    batch_id: int
    group: int

    def __call__(self, part: int, partitions: int) -> None:
        if part == partitions - 1:
            # the part's records were only handed to the client, which sends them from its
            # own thread after a linger: without a pause they die in its queue, and the
            # crash leaves no open transaction on the broker, nothing for the replay to
            # fence, nothing a read_uncommitted reader would see twice
            time.sleep(_SEND_PAUSE_S)
            _crash(self.action, self.point, self.batch_id, self.group)


def _action(text: str) -> Action:
    if text == "kill":
        return "kill"
    if text == "raise":
        return "raise"
    if text == "stop":
        return "stop"
    raise ValueError(text)


def _crash(action: Action, point: CrashPoint, batch_id: int, group: int) -> None:
    if action == "stop":
        os.killpg(group, signal.SIGSTOP)  # returns once someone sends SIGCONT
        return
    if action == "kill":
        os.killpg(group, signal.SIGKILL)
    raise CrashInjected(f"[CRASH_INJECTED] injected crash at {point.value} on batch {batch_id}")
