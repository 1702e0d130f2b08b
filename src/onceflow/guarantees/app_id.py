"""The job's app id: a UUID written into its checkpoint the first time the job runs.

Exactly-once Delta writes are keyed by ``(app id, batch id)`` and Delta skips every version
<= the last it saw for an app id. Batch ids restart at 0 with a new checkpoint, so the app id
must change with the checkpoint, never with the job name: a fresh checkpoint gets a fresh
app id, and its batch 0 is not mistaken for the old checkpoint's batch 0.

The file appears whole or not at all (``onceflow.files``). One that is there but empty or
not a UUID was damaged (or written by hand): it is refused, never used, since every guarded
write would carry it and Delta would skip the writes of any other checkpoint that ended up
with the same broken id.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from pyspark.sql import SparkSession

from onceflow.errors import GuaranteeError
from onceflow.files import CheckpointFiles
from onceflow.storage import onceflow_state

__all__ = ["AppIdentity", "onceflow_state", "read_app_id", "resolve_app_id"]

_APP_ID_FILE = "app_id"


@dataclass(frozen=True)
class AppIdentity:
    """The checkpoint's app id, and whether the checkpoint is new: no batch committed yet.

    "New" is read from Spark's ``commits/`` folder, not from whether this run created the
    app id, so a run refused for a foreign sink is refused again on the next try.
    """

    app_id: str
    is_new: bool


def read_app_id(spark: SparkSession, checkpoint: str) -> str | None:
    """The checkpoint's app id, or None before the job's first start; creates nothing.

    Raises:
        GuaranteeError: GUARANTEE_APP_ID_INVALID for a file that is empty or not a UUID.
    """
    text = CheckpointFiles(spark, onceflow_state(checkpoint)).read(_APP_ID_FILE)
    if text is None:
        return None
    app_id = text.strip()
    try:
        valid = str(uuid.UUID(app_id)) == app_id
    except ValueError:
        valid = False
    if not valid:
        raise GuaranteeError(
            "GUARANTEE_APP_ID_INVALID",
            file=f"{onceflow_state(checkpoint)}/{_APP_ID_FILE}",
            found=repr(app_id[:40]) if app_id else "nothing (an empty file)",
        )
    return app_id


def resolve_app_id(spark: SparkSession, checkpoint: str) -> AppIdentity:
    """Read the checkpoint's app id, creating it on first use."""
    is_new = not CheckpointFiles(spark, checkpoint.rstrip("/") + "/commits").names()
    existing = read_app_id(spark, checkpoint)
    if existing is None:
        # create-if-absent: if another process won the race, its id is the one read back
        CheckpointFiles(spark, onceflow_state(checkpoint)).create(
            _APP_ID_FILE, str(uuid.uuid4()) + "\n"
        )
        existing = read_app_id(spark, checkpoint)
        assert existing is not None  # noqa: S101 - created just now, by us or the winner
    return AppIdentity(existing, is_new=is_new)
