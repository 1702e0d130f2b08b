"""``onceflow status``: where a job stands, read from its checkpoint, its sinks and its
metrics, without starting its query or taking its lock (a running job may be asked).

It answers: which batch Spark committed last; whether a batch is in flight (planned, not
committed), which the next start replays, and what that replay will do to each sink; how
far the source is ahead; and whether the checkpoint and each sink agree. It flags, as
problems:

- a sink that holds a batch the checkpoint never planned: the checkpoint was rolled back
  or replaced by an older copy, and exactly-once sinks will silently skip those batch ids
  when the job reaches them again;
- a sink written by another checkpoint's app id that this checkpoint never wrote: a fresh
  checkpoint against an existing sink (the next start is refused: GUARANTEE_FOREIGN_SINK);
- a sink missing a committed batch the guarantee promised to deliver (at-least-once,
  exactly-once): that batch is lost (the quarantine table is written only by batches that
  quarantine records, so a gap there is no loss);
- a checkpoint recorded as another job's (the next start is refused:
  GUARANTEE_CHECKPOINT_MISMATCH).

It also counts Kafka offsets the job skipped as gone (``failOnDataLoss: false``), from the
metrics lines it keeps, and says whether the job runs now: whether a live process holds
its checkpoint lock, or a lock was left by one that is gone (which the next start takes
over, as the lock's own rules decide: ``onceflow.guarantees.lock``).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from pyspark.sql import SparkSession

from onceflow.config import Guarantee, JobSpec, kinds
from onceflow.config.kinds import load_reference
from onceflow.guarantees import (
    BatchClaims,
    CheckpointPosition,
    checkpoint_position,
    job_identity,
    read_app_id,
    read_identity,
    read_state_operators,
)
from onceflow.guarantees.identity import differences_from
from onceflow.guarantees.lock import LockHolder, inspect_lock
from onceflow.observe import read_metrics
from onceflow.status.sinks import SinkStatus, sink_status, sink_verdict
from onceflow.storage import onceflow_state

__all__ = [
    "JobStatus",
    "SinkStatus",
    "job_status",
    "render_status",
    "sink_verdict",
]


@dataclass(frozen=True)
class JobStatus:
    """Where one job stands; ``problems`` empty means checkpoint and sinks agree."""

    job: str
    guarantee: str
    checkpoint: str
    app_id: str | None
    last_committed: int | None
    in_flight: int | None
    claimed_last: int | None  # at-most-once: the highest batch id claimed
    source_lag: dict[str, Any] | None
    last_batch: dict[str, Any] | None  # the metrics file's newest line
    # Kafka offsets skipped as gone (failOnDataLoss: false), over the kept metrics lines
    skipped_offsets: dict[str, Any] | None = None
    sinks: list[SinkStatus] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    # whether a process runs the job now (holds its checkpoint lock): True, False, or None
    # when the lock cannot be read; ``lock`` is None when there is no lock at all
    running: bool | None = False
    lock: LockHolder | None = None
    # each stateful operator: its state's partitions, batches, store and place (Spark's
    # state-metadata source), with its rows and memory after the newest batch (metrics)
    state: list[dict[str, Any]] = field(default_factory=list)

    @property
    def healthy(self) -> bool:
        return not self.problems

    def to_json(self) -> str:
        return json.dumps(asdict(self) | {"healthy": self.healthy}, indent=2, default=str)


def job_status(spark: SparkSession, spec: JobSpec) -> JobStatus:
    """Read the job's checkpoint, sinks and metrics; nothing is written."""
    app_id = read_app_id(spark, spec.checkpoint)
    position = checkpoint_position(spark, spec.checkpoint)
    claimed_last = None
    if spec.guarantee is Guarantee.AT_MOST_ONCE:
        claimed_last = max(BatchClaims(spark, spec.checkpoint).claimed(), default=None)
    sinks = [sink_status(spark, spec, sink, app_id, position) for sink in spec.outputs]
    # every kept line only where offsets can be skipped (a Kafka source's failOnDataLoss)
    skips = "failOnDataLoss" in type(spec.source).model_fields
    metrics = read_metrics(spark, spec.checkpoint, last=None if skips else 1)
    last_line = metrics[-1] if metrics else None
    problems = [f"sink '{s.name}': {s.verdict}" for s in sinks if s.problem]
    recorded = read_identity(spark, spec.checkpoint)
    if recorded is not None:
        differences = differences_from(recorded, job_identity(spec))
        if differences:
            problems.insert(
                0,
                f"the checkpoint belongs to job '{recorded.get('job')}' "
                f"({'; '.join(differences)}): the next start is refused",
            )
    running, lock = _liveness(spark, spec)
    state = _state(spark, spec, last_line) if spec.is_stateful else []
    return JobStatus(
        job=spec.name,
        guarantee=spec.guarantee.value,
        checkpoint=spec.checkpoint,
        app_id=app_id,
        last_committed=position.last_committed,
        in_flight=position.in_flight,
        claimed_last=claimed_last,
        source_lag=_source_lag(spark, spec, position, last_line),
        last_batch=last_line,
        skipped_offsets=_skipped(metrics),
        sinks=sinks,
        problems=problems,
        running=running,
        lock=lock,
        state=state,
    )


def _state(
    spark: SparkSession, spec: JobSpec, last_line: dict[str, Any] | None
) -> list[dict[str, Any]]:
    """The checkpoint's stateful operators, each with the rows and memory the newest
    batch's metrics give it (in the operators' order)."""
    operators = read_state_operators(spark, spec.checkpoint)
    measured = (last_line or {}).get("state") or []
    for operator, metrics in zip(operators, measured, strict=False):
        operator["state_rows"] = metrics.get("state_rows")
        operator["memory_bytes"] = metrics.get("memory_bytes")
    return operators


def _liveness(spark: SparkSession, spec: JobSpec) -> tuple[bool | None, LockHolder | None]:
    """Whether a process runs the job now, and the lock that says so. On this host the
    holder's process is looked up; on another, a heartbeat within the stale window is all
    there is to go by."""
    stale_after = spec.locks.stale_after_seconds
    lock = inspect_lock(spark, onceflow_state(spec.checkpoint), stale_after)
    if lock is None:
        return False, None
    if lock.pid is None and lock.host is None:
        return None, lock
    return (lock.stale is None if lock.alive is None else lock.alive), lock


def running_line(status: JobStatus) -> str:
    """The status's ``running`` line: ``yes (pid 1234 on host, since ...)``, ``no``, or
    ``no — a lock was left by pid 1234, which is gone; the next run takes it over``."""
    lock = status.lock
    if lock is None:
        return "no"
    if lock.pid is None and lock.host is None:
        return f"unknown — its lock file {lock.stale}; the next run replaces it"
    who = f"pid {lock.pid}" + ("" if lock.job == status.job else f" of job '{lock.job}'")
    age = lock.heartbeat_age_seconds
    beat = "no heartbeat" if age is None else f"heartbeat {age:.0f}s ago"
    if lock.stale is None:
        if lock.alive:
            return f"yes ({who} on {lock.host}, since {lock.since or '?'}, {beat})"
        return f"yes, by its lock ({who} on {lock.host}, another host: {beat})"
    if lock.alive:
        return (
            f"stalled — {who} on {lock.host} runs, but its lock was {lock.stale}; the "
            "next run takes it over, and this one stops before its next write"
        )
    if lock.alive is False:
        reused = "" if lock.stale.endswith("gone") else " (its pid is another process's now)"
        return f"no — a lock was left by {who}, which is gone{reused}; the next run takes it over"
    return (
        f"no — a lock was left by {who} on {lock.host} ({lock.stale}); the next run takes it over"
    )


def _skipped(metrics: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Offsets skipped as gone, in total and by batch; None when none were."""
    by_batch = {
        int(line["batch_id"]): int(line.get("skipped_offsets") or 0)
        for line in metrics
        if line.get("skipped_offsets")
    }
    if not by_batch:
        return None
    return {"total": sum(by_batch.values()), "batches": by_batch}


def _source_lag(
    spark: SparkSession,
    spec: JobSpec,
    position: CheckpointPosition,
    last_line: dict[str, Any] | None,
) -> dict[str, Any] | None:
    """How much of the source the job has not read, counted now where its kind can (files
    its file source has not listed, Kafka offsets past the last planned batch), else what
    the last batch's metrics line said, with its batch."""
    probe = kinds().source(spec.source.kind).lag
    if probe is not None:
        now: dict[str, Any] | None = load_reference(probe)(
            spark, spec.source, spec.checkpoint, position.last_planned
        )
        if now is not None:
            return now
    if last_line and last_line.get("source_lag"):
        return dict(last_line["source_lag"]) | {"as_of": f"batch {last_line['batch_id']}"}
    return None


def render_status(status: JobStatus) -> str:
    """The status as lines for a terminal."""

    def batch(value: int | None) -> str:
        return "none" if value is None else f"batch {value}"

    lines = [
        f"job '{status.job}' ({status.guarantee}), checkpoint {status.checkpoint}",
        f"  running         {running_line(status)}",
        f"  app id          {status.app_id or 'none yet (the job never started)'}",
        f"  last committed  {batch(status.last_committed)}",
    ]
    if status.in_flight is not None:
        lines.append(
            f"  in flight       batch {status.in_flight}: planned, not committed; "
            "the next start replays it"
        )
    else:
        lines.append("  in flight       none")
    if status.claimed_last is not None:
        lines.append(f"  claimed         batch {status.claimed_last} last (at-most-once)")
    lag = status.source_lag
    if lag:
        amounts = ", ".join(f"{v:,} {k}" for k, v in lag.items() if k != "as_of")
        lines.append(f"  source lag      {amounts} ({lag['as_of']})")
    else:
        lines.append("  source lag      unknown")
    if status.skipped_offsets:
        skipped = status.skipped_offsets
        batches = ", ".join(f"{b} ({n:,})" for b, n in sorted(skipped["batches"].items()))
        lines.append(
            f"  skipped         {skipped['total']:,} Kafka offset(s) gone before they were "
            f"read (failOnDataLoss: false), in batch(es) {batches}"
        )
    last = status.last_batch
    if last:
        guarantee = (last.get("guarantee") or {}).get("action", "-")
        seconds = float((last.get("durations_ms") or {}).get("triggerExecution", 0)) / 1000
        lines.append(
            f"  last metrics    batch {last['batch_id']} at {last.get('timestamp')}: "
            f"{int(last.get('input_rows') or 0):,} rows in {seconds:.2f} s, {guarantee}"
        )
    for operator in status.state:
        low, high = operator["batches"]
        rows = operator.get("state_rows")
        held = (
            f"{rows:,} rows, {operator['memory_bytes'] / 2**20:.1f} MiB in memory, "
            if rows is not None
            else ""
        )
        lines.append(
            f"  state           {operator['operator']} (operator {operator['operator_id']}): "
            f"{held}{operator['partitions']} partitions, batches {low}-{high}, "
            f"{operator['store'] or 'unknown store'} at {operator['location']}"
        )
    for sink in status.sinks:
        lines.append(f"  sink '{sink.name}' ({sink.kind}, {sink.path})")
        lines.append(f"    {'PROBLEM: ' if sink.problem else ''}{sink.verdict}")
        if sink.parts:
            marks = ", ".join(f"{part}: {batch}" for part, batch in sorted(sink.parts.items()))
            lines.append(f"    last batch per part  {marks}")
    if status.healthy:
        lines.append("ok: the checkpoint and the sinks agree")
    else:
        lines.append(f"{len(status.problems)} problem(s): checkpoint and sinks disagree")
    return "\n".join(lines)
