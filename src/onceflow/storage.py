"""Small files next to the checkpoint, through Hadoop's FileSystem: local, HDFS or S3A alike.

onceflow keeps its own state under ``<checkpoint>/onceflow/`` (the app id, the at-most-once
ledger). Going through the JVM's Hadoop FileSystem, not Python's ``open``, is what makes the
same code work for ``file:``, ``hdfs://`` and ``s3a://`` checkpoints with the session's
credentials and settings.
"""

from __future__ import annotations

from typing import Any

from pyspark.sql import SparkSession

__all__ = ["CheckpointFiles"]


class CheckpointFiles:
    """Read and create small text files under one folder, via Hadoop's FileSystem."""

    def __init__(self, spark: SparkSession, folder: str) -> None:
        jvm: Any = spark.sparkContext._jvm
        self._path_class = jvm.org.apache.hadoop.fs.Path
        self._folder = self._path_class(folder)
        hadoop_conf = spark._jsparkSession.sessionState().newHadoopConf()
        self._fs = self._folder.getFileSystem(hadoop_conf)
        self._charset = jvm.java.nio.charset.StandardCharsets.UTF_8
        self._io_utils = jvm.org.apache.commons.io.IOUtils
        self.folder = folder

    def _path(self, name: str) -> Any:
        return self._path_class(self._folder, name)

    def exists(self, name: str) -> bool:
        return bool(self._fs.exists(self._path(name)))

    def read(self, name: str) -> str | None:
        """The file's text, or None when it does not exist."""
        path = self._path(name)
        if not self._fs.exists(path):
            return None
        stream = self._fs.open(path)
        try:
            return str(self._io_utils.toString(stream, self._charset))
        finally:
            stream.close()

    def create(self, name: str, text: str) -> bool:
        """Create ``name`` with ``text`` unless it exists; True if this call created it.

        Uses ``create(overwrite=false)``: atomic on HDFS and local file systems; on S3A a
        race between two writers is not excluded, which is why only one job may own a
        checkpoint at a time.
        """
        path = self._path(name)
        if self._fs.exists(path):
            return False
        try:
            stream = self._fs.create(path, False)
        except Exception as exc:  # FileAlreadyExistsException: someone else won the race
            if "FileAlreadyExists" in str(exc):
                return False
            raise
        try:
            stream.write(bytearray(text.encode("utf-8")))
        finally:
            stream.close()
        return True

    def overwrite(self, name: str, text: str) -> None:
        """Write ``name`` with ``text``, replacing it if it exists."""
        stream = self._fs.create(self._path(name), True)
        try:
            stream.write(bytearray(text.encode("utf-8")))
        finally:
            stream.close()

    def delete(self, name: str) -> None:
        """Remove ``name`` if it exists."""
        self._fs.delete(self._path(name), False)

    def names(self) -> list[str]:
        """The names of the files directly in the folder (empty if it does not exist)."""
        if not self._fs.exists(self._folder):
            return []
        return sorted(
            str(status.getPath().getName()) for status in self._fs.listStatus(self._folder)
        )
