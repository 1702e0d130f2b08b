"""Crash injection: end the job hard at a chosen point of a chosen batch.

Off unless set explicitly, by the job's ``faults:`` key (tests) or by the environment
variable ``ONCEFLOW_CRASH=<point>@<batch_id>[:kill|raise]`` (the prove harness, which
starts each job in its own process group).

Points, for batch N:

- ``before_write``: before anything of batch N (before the at-most-once ledger too).
- ``mid_write``: after the first sink of several; with a single sink, inside its write job,
  in the last partition's task, so other tasks may have written their files.
- ``after_write``: every sink written, Spark's commit of N not yet.
- ``after_commit``: Spark has written ``commits/N``; fires as batch N+1 begins, before
  anything of it is written.

Actions: ``raise`` throws GUARANTEE_CRASH_INJECTED (in-process tests: the query stops with
it); ``kill`` sends SIGKILL to the whole process group, Python and JVM alike, as a power
cut would. Only use ``kill`` in a process started with its own session/process group.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Literal

from pyspark.sql import DataFrame

from onceflow.config import FaultSpec
from onceflow.errors import ConfigError, GuaranteeError

__all__ = ["CRASH_ENV", "CrashPlan", "CrashPoint"]

CRASH_ENV = "ONCEFLOW_CRASH"


class CrashPoint(StrEnum):
    BEFORE_WRITE = "before_write"
    MID_WRITE = "mid_write"
    AFTER_WRITE = "after_write"
    AFTER_COMMIT = "after_commit"


Action = Literal["kill", "raise"]


@dataclass(frozen=True)
class CrashPlan:
    """Crash at ``point`` of batch ``batch_id`` by ``action``."""

    point: CrashPoint
    batch_id: int
    action: Action = "raise"

    @classmethod
    def from_job(cls, spec: FaultSpec | None, environ: Mapping[str, str]) -> CrashPlan | None:
        """The plan from ``ONCEFLOW_CRASH`` if set, else from the job's ``faults:``."""
        text = environ.get(CRASH_ENV)
        if text:
            return cls.parse(text)
        if spec is None:
            return None
        return cls(CrashPoint(spec.crash_point), spec.batch_id, spec.action)

    @classmethod
    def parse(cls, text: str) -> CrashPlan:
        """``"after_write@2:kill"`` -> CrashPlan(AFTER_WRITE, 2, "kill")."""
        where, _, action = text.partition(":")
        point, _, batch = where.partition("@")
        try:
            return cls(CrashPoint(point), int(batch), _action(action or "raise"))
        except ValueError:
            points = ", ".join(p.value for p in CrashPoint)
            raise ConfigError(
                "CONFIG_BAD_OVERRIDE",
                override=f"{CRASH_ENV}={text}",
                problem=f"expected <point>@<batch_id>[:kill|raise], point one of {points}",
            ) from None

    def fires(self, point: CrashPoint, batch_id: int) -> bool:
        """True when ``point`` of ``batch_id`` is this plan's."""
        if point is CrashPoint.AFTER_COMMIT:
            return self.point is point and batch_id == self.batch_id + 1
        return self.point is point and batch_id == self.batch_id

    def crash_if(self, point: CrashPoint, batch_id: int) -> None:
        """Crash now if ``point`` of ``batch_id`` is this plan's."""
        if self.fires(point, batch_id):
            _crash(self.action, self.point, self.batch_id, os.getpgid(0))

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


def _action(text: str) -> Action:
    if text == "kill":
        return "kill"
    if text == "raise":
        return "raise"
    raise ValueError(text)


def _crash(action: Action, point: CrashPoint, batch_id: int, group: int) -> None:
    if action == "kill":
        os.killpg(group, signal.SIGKILL)
    raise GuaranteeError("GUARANTEE_CRASH_INJECTED", crash_point=point.value, batch_id=batch_id)
