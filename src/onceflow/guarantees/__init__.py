"""Delivery guarantees: policies that wrap a job's sinks into one ``foreachBatch`` writer,
the app id, identity, claims and locks they rest on, and the foreign-sink check.
"""

from __future__ import annotations

from onceflow.guarantees.app_id import AppIdentity, onceflow_state, read_app_id, resolve_app_id
from onceflow.guarantees.foreign import check_foreign_sinks, delta_app_ids
from onceflow.guarantees.identity import claim_checkpoint, job_identity, read_identity
from onceflow.guarantees.ledger import BatchLedger
from onceflow.guarantees.lock import CheckpointLock, table_lock
from onceflow.guarantees.policies import WriterSettings, guarded_writer
from onceflow.guarantees.position import CheckpointPosition, checkpoint_position
from onceflow.guarantees.retry import retry_conflicts

__all__ = [
    "AppIdentity",
    "BatchLedger",
    "CheckpointLock",
    "CheckpointPosition",
    "WriterSettings",
    "check_foreign_sinks",
    "checkpoint_position",
    "claim_checkpoint",
    "delta_app_ids",
    "guarded_writer",
    "job_identity",
    "onceflow_state",
    "read_app_id",
    "read_identity",
    "resolve_app_id",
    "retry_conflicts",
    "table_lock",
]
