"""Delivery guarantees: policies that wrap a job's sinks into one ``foreachBatch`` writer,
the app id and ledger they rest on, crash injection to show them, and the foreign-sink check.
"""

from __future__ import annotations

from onceflow.guarantees.app_id import AppIdentity, onceflow_state, read_app_id, resolve_app_id
from onceflow.guarantees.faults import CRASH_ENV, CrashPlan, CrashPoint
from onceflow.guarantees.foreign import check_foreign_sinks, delta_app_ids
from onceflow.guarantees.ledger import BatchLedger
from onceflow.guarantees.lock import CheckpointLock, table_lock
from onceflow.guarantees.policies import WriterSettings, guarded_writer
from onceflow.guarantees.position import CheckpointPosition, checkpoint_position
from onceflow.guarantees.retry import retry_conflicts

__all__ = [
    "CRASH_ENV",
    "AppIdentity",
    "BatchLedger",
    "CheckpointLock",
    "CheckpointPosition",
    "CrashPlan",
    "CrashPoint",
    "WriterSettings",
    "check_foreign_sinks",
    "checkpoint_position",
    "delta_app_ids",
    "guarded_writer",
    "onceflow_state",
    "read_app_id",
    "resolve_app_id",
    "retry_conflicts",
    "table_lock",
]
