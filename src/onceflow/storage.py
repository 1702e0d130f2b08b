"""Storage — local, HDFS or S3A alike: where onceflow keeps its state beside a checkpoint,
the reachability check before a query starts, and what S3 needs beyond a path.

onceflow keeps its own state under ``<checkpoint>/onceflow/`` (the app id, the job's
identity, the at-most-once claims, the lock, replay intents, metrics), in small files
written whole or not at all (``onceflow.files``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from pyspark.sql import SparkSession

from onceflow.config import JobSpec, kinds
from onceflow.errors import StorageError
from onceflow.files import CheckpointFiles

__all__ = [
    "CheckpointFiles",
    "check_storage",
    "onceflow_state",
    "single_writer_tables",
    "storage_failure",
    "use_abortable_checkpoints",
]

_CHECKPOINT_MANAGER = "spark.sql.streaming.checkpointFileManagerClass"
_ABORTABLE_MANAGER = "org.apache.spark.internal.io.cloud.AbortableStreamBasedCheckpointFileManager"
_MULTI_WRITER_LOG_STORE = re.compile(r"DynamoDB", re.IGNORECASE)


# Java exceptions (by the names Hadoop, S3A and the AWS SDK give them) that mean the storage
# cannot be reached, refused the credentials, or has no live node to write to.
_UNREACHABLE = re.compile(
    r"java\.net\.(?:Connect|UnknownHost|NoRouteToHost|SocketTimeout)Exception"
    r"|ConnectTimeoutException|Connection refused|Unable to execute HTTP request"
    r"|AWSClientIOException|ApiCallTimeoutException|could only be written to 0 of the"
    r"|no live datanodes"
    r"|All datanodes .* are bad|Unable to close file because the last block"
    r"|SafeModeException"
    # Hadoop IPC, when the server dies during a call rather than before it
    r"|failed on (?:socket|connection) exception|java\.net\.SocketException"
    r"|End of File Exception between local host"
)
_DENIED = re.compile(
    r"java\.nio\.file\.AccessDeniedException|AccessControlException|403 Forbidden"
    r"|SignatureDoesNotMatch|InvalidAccessKeyId|Status Code: 403"
)


def storage_failure(text: str) -> tuple[str, str] | None:
    """``(kind, line)`` when an error's text shows a storage failure, else None.

    ``kind`` is "denied" or "unreachable"; ``line`` is the first line of the text that
    names it (a Java exception and its message), cut to 300 characters.
    """
    for kind, pattern in (("denied", _DENIED), ("unreachable", _UNREACHABLE)):
        match = pattern.search(text)
        if match is not None:
            start = text.rfind("\n", 0, match.start()) + 1
            end = text.find("\n", match.end())
            line = text[start : end if end >= 0 else len(text)].strip()
            return kind, line[:300]
    return None


def check_storage(spark: SparkSession, job: str, locations: Mapping[str, str]) -> None:
    """Ask each location's file system whether the path exists, before anything is written.

    ``locations`` maps a role ("checkpoint", "sink 'events'") to its path. How long an
    unreachable store takes to answer is the Hadoop client's retry settings (the ``hdfs``
    and ``s3`` profiles keep them short).

    Raises:
        StorageError: STORAGE_ACCESS_DENIED or STORAGE_UNREACHABLE naming the role, the
            path and the cause; any other failure as it came.
    """
    jvm: Any = spark.sparkContext._jvm
    hadoop_conf = spark._jsparkSession.sessionState().newHadoopConf()
    for role, location in locations.items():
        path = jvm.org.apache.hadoop.fs.Path(location)
        try:
            path.getFileSystem(hadoop_conf).exists(path)
        except Exception as exc:
            failure = storage_failure(str(exc))
            if failure is None:
                raise
            kind, cause = failure
            error_class = "STORAGE_ACCESS_DENIED" if kind == "denied" else "STORAGE_UNREACHABLE"
            raise StorageError(
                error_class, job=job, role=role, path=location, cause=cause
            ) from None


def onceflow_state(checkpoint: str) -> str:
    """Where onceflow keeps its own state for a checkpoint: app id, identity, at-most-once
    claims, replay intents, lock, metrics."""
    return checkpoint.rstrip("/") + "/onceflow"


# -- what S3 needs beyond a path --------------------------------------------------------


def single_writer_tables(spark: SparkSession, spec: JobSpec) -> list[str]:
    """The job's outputs on S3 that one driver at a time may write (their kinds say so:
    Delta tables).

    Delta's default LogStore for ``s3a://`` (S3SingleDriverLogStore) cannot stop two
    drivers from writing the same commit; a multi-writer LogStore (S3DynamoDBLogStore) can,
    and when one is configured no lock is needed.
    """
    if _MULTI_WRITER_LOG_STORE.search(" ".join(_log_store_settings(spark))):
        return []
    registry = kinds()
    return [
        s.location
        for s in spec.outputs
        if registry.sink(s.kind).single_writer_on_s3 and _on_s3a(s.location)
    ]


def _log_store_settings(spark: SparkSession) -> list[str]:
    keys = ("spark.delta.logStore.s3a.impl", "spark.delta.logStore.s3.impl")
    static = spark.sparkContext.getConf()
    return [str(spark.conf.get(k, None) or static.get(k) or "") for k in keys]


def _on_s3a(path: str) -> bool:
    return path.startswith("s3a://")


def use_abortable_checkpoints(spark: SparkSession, checkpoint: str) -> Callable[[], None] | None:
    """For a checkpoint on S3A, Spark's abortable-stream checkpoint file manager (from
    spark-hadoop-cloud): a checkpoint file is one PUT, visible whole or not at all, instead
    of a write and a copy-and-delete "rename". Spark reads the setting from the session
    when a query starts, and the manager refuses ``file:`` and ``hdfs:`` checkpoints, so it
    is set on the session for the query's lifetime only (the caller undoes it when the
    query ends); a manager the user chose is kept. A local-checkpoint query started in the
    same session meanwhile would see it too: one S3 query per session, or set it yourself.

    Returns what undoes it (None when nothing was set).
    """
    if not _on_s3a(checkpoint) or spark.conf.get(_CHECKPOINT_MANAGER, None):
        return None
    spark.conf.set(_CHECKPOINT_MANAGER, _ABORTABLE_MANAGER)
    return lambda: spark.conf.unset(_CHECKPOINT_MANAGER)
