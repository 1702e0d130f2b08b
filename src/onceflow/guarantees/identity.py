"""Which job a checkpoint belongs to, recorded in it on the job's first start.

A checkpoint holds what its job has read (offsets, the file source's log) and the app id
its sinks' marks carry. Another job pointed at it would plan no batch for what the first
job read, take over its query, and never deliver those records; a sink moved under it
would never get the batches before the move. So the first start records the job's
identity, ``<checkpoint>/onceflow/job.json``: its name, its source's kind and location (and
a stream join's second source's, whose reads the checkpoint logs as the first's), and each
sink's name, kind and location. Every later start compares; a difference is refused
with GUARANTEE_CHECKPOINT_MISMATCH unless the start adopts the checkpoint on purpose, which
records the new identity.

Settings that do not change what the checkpoint means (batch sizes, triggers, Spark
settings, the guarantee) are not part of the identity.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from pyspark.sql import SparkSession

from onceflow.config import JobSpec
from onceflow.errors import GuaranteeError
from onceflow.files import CheckpointFiles
from onceflow.storage import onceflow_state

__all__ = ["claim_checkpoint", "job_identity", "read_identity"]

_IDENTITY_FILE = "job.json"
_log = logging.getLogger("onceflow.guarantees")


def job_identity(spec: JobSpec) -> dict[str, Any]:
    """What a checkpoint must keep belonging to: job name, source (and a stream join's
    second source), sinks."""
    identity: dict[str, Any] = {
        "job": spec.name,
        "source": {"kind": spec.source.kind, "location": spec.source.location},
        "sinks": sorted(
            ({"name": s.name, "kind": s.kind, "location": s.location} for s in spec.sinks),
            key=lambda sink: sink["name"],
        ),
    }
    other = spec.stream_join
    if other is not None:  # absent otherwise: the identities recorded before joins still match
        identity["joined_source"] = {"kind": other.source.kind, "location": other.source.location}
    return identity


def read_identity(spark: SparkSession, checkpoint: str) -> dict[str, Any] | None:
    """The identity recorded in ``checkpoint``; None when there is none (or unreadable)."""
    text = CheckpointFiles(spark, onceflow_state(checkpoint)).read(_IDENTITY_FILE)
    try:
        recorded = json.loads(text) if text else None
    except ValueError:
        return None
    return recorded if isinstance(recorded, dict) else None


def claim_checkpoint(spark: SparkSession, spec: JobSpec, adopt: bool = False) -> None:
    """Record the job's identity in its checkpoint, or check it against the one there.

    Raises:
        GuaranteeError: GUARANTEE_CHECKPOINT_MISMATCH when the checkpoint belongs to another
            job (or this job's source or sinks moved), unless ``adopt``.
    """
    files = CheckpointFiles(spark, onceflow_state(spec.checkpoint))
    mine = job_identity(spec)
    text = json.dumps(mine, indent=2) + "\n"
    if files.create(_IDENTITY_FILE, text):
        return
    recorded = read_identity(spark, spec.checkpoint)
    differences = differences_from(recorded, mine)
    if not differences:
        return
    owner = recorded.get("job", "?") if recorded else "?"
    if not adopt:
        raise GuaranteeError(
            "GUARANTEE_CHECKPOINT_MISMATCH",
            job=spec.name,
            checkpoint=spec.checkpoint,
            owner=owner,
            differences="; ".join(differences),
        )
    files.overwrite(_IDENTITY_FILE, text)
    _log.warning(
        "job '%s' adopted checkpoint %s of job '%s' (%s)",
        spec.name,
        spec.checkpoint,
        owner,
        "; ".join(differences),
    )


def differences_from(recorded: dict[str, Any] | None, mine: dict[str, Any]) -> list[str]:
    """How ``mine`` differs from the ``recorded`` identity, one phrase each."""
    if recorded is None:
        return ["its identity file is unreadable"]
    found = []
    if recorded.get("job") != mine["job"]:
        found.append(f"this job is '{mine['job']}'")
    theirs, ours = recorded.get("source") or {}, mine["source"]
    if theirs != ours:
        found.append(
            f"it read {theirs.get('kind')} {theirs.get('location')}, this job reads "
            f"{ours['kind']} {ours['location']}"
        )
    theirs, ours = recorded.get("joined_source"), mine.get("joined_source")
    if theirs != ours:
        found.append(f"it joined {_described(theirs)}, this job joins {_described(ours)}")
    recorded_sinks = {s.get("name"): s for s in recorded.get("sinks") or []}
    my_sinks = {s["name"]: s for s in mine["sinks"]}
    for name in sorted(recorded_sinks.keys() | my_sinks.keys(), key=str):
        before, now = recorded_sinks.get(name), my_sinks.get(name)
        if before == now:
            continue
        if now is None:
            found.append(f"it wrote sink '{name}', which this job has not")
        elif before is None:
            found.append(f"this job writes sink '{name}', which it never wrote")
        else:
            found.append(
                f"it wrote sink '{name}' as {before.get('kind')} at {before.get('location')}, "
                f"this job as {now['kind']} at {now['location']}"
            )
    return found


def _described(source: dict[str, Any] | None) -> str:
    """A joined source in a phrase: its kind and location, or that there is none."""
    if not source:
        return "no second stream"
    return f"the {source.get('kind')} stream {source.get('location')}"
