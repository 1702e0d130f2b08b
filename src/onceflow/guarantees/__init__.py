"""Delivery guarantees: the policies that decide how a job's writes are guarded, and what
they rest on: the app id, the job's identity, at-most-once's claims, the locks, the
position of the checkpoint, the intents of side paths, conflict retries, and the
foreign-sink check.
"""

from __future__ import annotations

from onceflow.guarantees.app_id import AppIdentity, onceflow_state, read_app_id, resolve_app_id
from onceflow.guarantees.claims import BatchClaims
from onceflow.guarantees.foreign import check_foreign_sinks
from onceflow.guarantees.identity import claim_checkpoint, job_identity, read_identity
from onceflow.guarantees.intents import Intent, ReplayIntents
from onceflow.guarantees.lock import CheckpointLock, table_lock
from onceflow.guarantees.pins import JoinVersions, newest_version
from onceflow.guarantees.policies import WritePolicy, policy_for
from onceflow.guarantees.position import CheckpointPosition, checkpoint_position
from onceflow.guarantees.retry import retry_conflicts
from onceflow.guarantees.state import (
    claim_state,
    read_state_operators,
    read_state_shape,
    state_store_settings,
)

__all__ = [
    "AppIdentity",
    "BatchClaims",
    "CheckpointLock",
    "CheckpointPosition",
    "Intent",
    "JoinVersions",
    "ReplayIntents",
    "WritePolicy",
    "check_foreign_sinks",
    "checkpoint_position",
    "claim_checkpoint",
    "claim_state",
    "job_identity",
    "newest_version",
    "onceflow_state",
    "policy_for",
    "read_app_id",
    "read_identity",
    "read_state_operators",
    "read_state_shape",
    "resolve_app_id",
    "retry_conflicts",
    "state_store_settings",
    "table_lock",
]
