"""A stateful job's state: where its store keeps it, and a refusal of changes that break it.

The state in ``<checkpoint>/state`` was built by the job's stateful operators with their
keys. Run with other operators or keys, Spark would at best fail on its first batch with a
schema error, and at worst (an operator removed, a key added to a job that had none) drop
the state silently: records seen before would count as new. So the first start records
what the state depends on (``onceflow.transforms.stateful_shape``) in
``<checkpoint>/onceflow/state.json``, and a start that differs from the record, on a
checkpoint that has planned a batch, is refused before the query starts
(GUARANTEE_STATE_INCOMPATIBLE). Spark's own state schema check stays on behind it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from pyspark.sql import SparkSession

from onceflow.config import JobSpec
from onceflow.errors import GuaranteeError
from onceflow.files import CheckpointFiles
from onceflow.storage import onceflow_state
from onceflow.transforms import stateful_shape

__all__ = [
    "PROVIDERS",
    "claim_state",
    "read_state_operators",
    "read_state_shape",
    "state_store_settings",
]

_STATE_FILE = "state.json"
#: The state store providers, by ``state.store``.
PROVIDERS = {
    "rocksdb": "org.apache.spark.sql.execution.streaming.state.RocksDBStateStoreProvider",
    "hdfs": "org.apache.spark.sql.execution.streaming.state.HDFSBackedStateStoreProvider",
}
_PROVIDER = "spark.sql.streaming.stateStore.providerClass"
_CHANGELOG = "spark.sql.streaming.stateStore.rocksdb.changelogCheckpointing.enabled"


def read_state_shape(spark: SparkSession, checkpoint: str) -> dict[str, Any] | None:
    """What the checkpoint's state was recorded as depending on; None when it has none."""
    text = CheckpointFiles(spark, onceflow_state(checkpoint)).read(_STATE_FILE)
    recorded = json.loads(text) if text else None
    return recorded if isinstance(recorded, dict) and recorded.get("operators") else None


def read_state_operators(spark: SparkSession, checkpoint: str) -> list[dict[str, Any]]:
    """The checkpoint's stateful operators, from Spark's ``state-metadata`` source: each
    one's id, name, partitions and the batches its state covers, and the store that keeps
    it (from the newest ``offsets/`` entry). Empty when the checkpoint holds no state."""
    if not CheckpointFiles(spark, checkpoint.rstrip("/") + "/state").names():
        return []
    rows = spark.read.format("state-metadata").load(checkpoint).collect()
    store = _provider_of(spark, checkpoint)
    return [
        {
            "operator_id": int(row["operatorId"]),
            "operator": row["operatorName"],
            "partitions": int(row["numPartitions"]),
            "batches": [int(row["minBatchId"]), int(row["maxBatchId"])],
            "store": store,
            "location": f"{checkpoint.rstrip('/')}/state/{int(row['operatorId'])}",
        }
        for row in rows
    ]


def _provider_of(spark: SparkSession, checkpoint: str) -> str | None:
    """The state store the checkpoint's newest batch ran with (``rocksdb``, ``hdfs``, or
    the provider's class name)."""
    offsets = CheckpointFiles(spark, checkpoint.rstrip("/") + "/offsets")
    batches = [int(name) for name in offsets.names() if name.isdigit()]
    if not batches:
        return None
    lines = (offsets.read(str(max(batches))) or "").splitlines()
    try:
        provider = str(json.loads(lines[1])["conf"][_PROVIDER])
    except (IndexError, KeyError, ValueError):
        return None
    named = {cls: name for name, cls in PROVIDERS.items()}
    return named.get(provider, provider)


def claim_state(spark: SparkSession, spec: JobSpec) -> None:
    """Record the job's stateful shape in a checkpoint that has planned no batch yet, or
    check it against the one recorded.

    Raises:
        GuaranteeError: GUARANTEE_STATE_INCOMPATIBLE when the checkpoint has run batches
            with other stateful operators or keys (or none, or this job has none).
    """
    mine = stateful_shape(spec)
    started = bool(CheckpointFiles(spark, spec.checkpoint.rstrip("/") + "/offsets").names())
    files = CheckpointFiles(spark, onceflow_state(spec.checkpoint))
    if not started:
        if mine is not None:
            files.overwrite(_STATE_FILE, json.dumps(mine, indent=2) + "\n")
        elif files.exists(_STATE_FILE):
            files.delete(_STATE_FILE)
        return
    recorded = read_state_shape(spark, spec.checkpoint)
    if recorded == mine:
        return
    raise GuaranteeError(
        "GUARANTEE_STATE_INCOMPATIBLE",
        job=spec.name,
        checkpoint=spec.checkpoint,
        recorded=_described(recorded),
        mine=_described(mine),
    )


def _described(shape: dict[str, Any] | None) -> str:
    if shape is None:
        return "no stateful operator"
    return "; ".join(
        f"{op['operator']} on keys {', '.join(op['keys'])}"
        + (f" with event time {op['event_time']}" if op.get("event_time") else "")
        + (f" within {op['within']}" if op.get("within") else "")
        for op in shape["operators"]
    )


@contextmanager
def state_store_settings(spark: SparkSession, spec: JobSpec) -> Iterator[None]:
    """The job's state store set in the session while its query starts (the query keeps a
    copy of the session's settings, and its checkpoint records the provider), restored
    after, so other queries of a shared session keep theirs. Nothing for a stateless job."""
    if not spec.is_stateful:
        yield
        return
    wanted = {_PROVIDER: PROVIDERS[spec.state.store]}
    if spec.state.store == "rocksdb":
        wanted[_CHANGELOG] = str(spec.state.changelog_checkpointing).lower()
    before = {key: spark.conf.get(key, None) for key in wanted}
    for key, value in wanted.items():
        spark.conf.set(key, value)
    try:
        yield
    finally:
        for key, earlier in before.items():
            if earlier is None:
                spark.conf.unset(key)
            else:
                spark.conf.set(key, earlier)
