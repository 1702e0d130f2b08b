"""Small files beside a checkpoint or a table, written so that a reader sees each one whole
or not at all: the app id, the job's identity, the at-most-once claims, locks, marks,
replay intents, metrics lines.

``CheckpointFiles(spark, folder)`` picks how, by the folder's scheme:

- a local folder (no scheme, or ``file:``): Python's own file calls. A file is written to a
  temporary name in the same folder and then linked (create: ``os.link``, which fails if
  the name exists, so of two creators exactly one wins) or renamed (overwrite:
  ``os.replace``) into place. No Hadoop ``.crc`` sidecar is written, so none can go stale.
- ``s3a://``: one PUT per file, which S3 makes visible whole; a create is a conditional
  PUT (``If-None-Match: *``, hadoop-aws 3.4.2+), so exactly one of two creators wins.
- any other Hadoop file system (``hdfs://``): the JVM's ``FileContext``: the file is
  written to a temporary name and renamed into place, atomically on HDFS, without
  replacing (create) or replacing (overwrite) what is there.

Every file system is reached through the session's Hadoop configuration, so credentials
and endpoints are the job's own.
"""

from __future__ import annotations

import os
import re
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

__all__ = ["CheckpointFiles", "is_local_path", "write_for_a_file_source"]

# hadoop-aws's createFile() option that turns a create into a PUT with If-None-Match: *
_S3A_CONDITIONAL_CREATE = "fs.option.create.conditional.overwrite"
# another writer made the file first: HDFS/local at create or rename, S3 (HTTP 412) at close
_LOST_RACE = re.compile(r"FileAlreadyExists|RemoteFileChangedException|PreconditionFailed|\b412\b")


_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")


def is_local_path(path: str) -> bool:
    """True for a path on the driver's own disk: no scheme, or ``file:``."""
    return path.startswith("file:") or not _SCHEME.match(path)


def write_for_a_file_source(files: Sequence[tuple[Path, str]]) -> list[Path]:
    """Write each (path, text) on the local disk for a streaming file source to read, in
    the order given: each under a hidden name renamed into place, so a source already
    watching never reads half a file; their modification times a second apart, oldest
    first, since a file source takes the oldest first and files written within the same
    millisecond come in no set order."""
    written: list[Path] = []
    for target, text in files:
        hidden = target.parent / f".{target.name}.tmp"
        hidden.write_text(text, encoding="utf-8")
        os.replace(hidden, target)
        written.append(target)
    start = time.time() - len(written)
    for index, target in enumerate(written):
        os.utime(target, (start + index, start + index))
    return written


def _temporary(name: str) -> str:
    return f".{name}.{uuid.uuid4().hex}.tmp"


class CheckpointFiles:
    """Read, create and replace small text files directly in one folder (see the module)."""

    def __init__(self, spark: SparkSession, folder: str) -> None:
        self.folder = folder
        self._impl: _LocalFiles | _HadoopFiles = (
            _LocalFiles(folder) if is_local_path(folder) else _HadoopFiles(spark, folder)
        )

    def exists(self, name: str) -> bool:
        return self._impl.exists(name)

    def read(self, name: str) -> str | None:
        """The file's text, or None when it does not exist."""
        return self._impl.read(name)

    def create(self, name: str, text: str) -> bool:
        """Create ``name`` holding ``text`` unless it exists; True if this call created it.
        A reader never finds the file without its whole text."""
        return self._impl.create(name, text)

    def overwrite(self, name: str, text: str) -> None:
        """Make ``name`` hold ``text``, replacing it whole if it exists."""
        self._impl.overwrite(name, text)

    def delete(self, name: str) -> None:
        """Remove ``name`` if it exists."""
        self._impl.delete(name)

    def names(self) -> list[str]:
        """The names directly in the folder, sorted (empty if it does not exist)."""
        return self._impl.names()


class _LocalFiles:
    def __init__(self, folder: str) -> None:
        self._folder = Path(folder.removeprefix("file://").removeprefix("file:"))

    def exists(self, name: str) -> bool:
        return (self._folder / name).exists()

    def read(self, name: str) -> str | None:
        try:
            return (self._folder / name).read_text(encoding="utf-8")
        except FileNotFoundError:
            return None

    def _written_aside(self, name: str, text: str) -> Path:
        self._folder.mkdir(parents=True, exist_ok=True)
        aside = self._folder / _temporary(name)
        with aside.open("w", encoding="utf-8") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        return aside

    def create(self, name: str, text: str) -> bool:
        if self.exists(name):
            return False
        aside = self._written_aside(name, text)
        try:
            os.link(aside, self._folder / name)  # fails if the name exists: one creator wins
        except FileExistsError:
            return False
        finally:
            aside.unlink()
        self._drop_checksum(name)
        return True

    def overwrite(self, name: str, text: str) -> None:
        os.replace(self._written_aside(name, text), self._folder / name)
        self._drop_checksum(name)

    def delete(self, name: str) -> None:
        (self._folder / name).unlink(missing_ok=True)
        self._drop_checksum(name)

    def _drop_checksum(self, name: str) -> None:
        # a Hadoop LocalFileSystem of an older onceflow left ".<name>.crc": stale now
        (self._folder / f".{name}.crc").unlink(missing_ok=True)

    def names(self) -> list[str]:
        try:
            return sorted(os.listdir(self._folder))
        except (FileNotFoundError, NotADirectoryError):
            return []


class _HadoopFiles:
    def __init__(self, spark: SparkSession, folder: str) -> None:
        jvm: Any = spark.sparkContext._jvm
        self._jvm = jvm
        self._gateway: Any = spark.sparkContext._gateway
        self._path_class = jvm.org.apache.hadoop.fs.Path
        self._folder = self._path_class(folder)
        self._conf = spark._jsparkSession.sessionState().newHadoopConf()
        self._fs = self._folder.getFileSystem(self._conf)
        self._s3 = self._folder.toUri().getScheme() == "s3a"
        self._charset = jvm.java.nio.charset.StandardCharsets.UTF_8
        self._io_utils = jvm.org.apache.commons.io.IOUtils

    def _path(self, name: str) -> Any:
        return self._path_class(self._folder, name)

    def exists(self, name: str) -> bool:
        return bool(self._fs.exists(self._path(name)))

    def read(self, name: str) -> str | None:
        path = self._path(name)
        if not self._fs.exists(path):
            return None
        stream = self._fs.open(path)
        try:
            return str(self._io_utils.toString(stream, self._charset))
        finally:
            stream.close()

    def _write(self, stream: Any, text: str) -> None:
        try:
            stream.write(bytearray(text.encode("utf-8")))
        finally:
            stream.close()  # S3A: the (conditional) PUT happens here

    def create(self, name: str, text: str) -> bool:
        path = self._path(name)
        if self._fs.exists(path):
            return False
        try:
            if self._s3:
                builder = self._fs.createFile(path).overwrite(False)
                self._write(builder.must(_S3A_CONDITIONAL_CREATE, True).build(), text)
            else:
                self._rename_into(name, text, replace=False)
        except Exception as exc:
            if _LOST_RACE.search(str(exc)):
                return False
            raise
        return True

    def overwrite(self, name: str, text: str) -> None:
        if self._s3:
            self._write(self._fs.create(self._path(name), True), text)
        else:
            self._rename_into(name, text, replace=True)

    def _rename_into(self, name: str, text: str, replace: bool) -> None:
        aside = self._path(_temporary(name))
        self._write(self._fs.create(aside, False), text)
        rename = self._jvm.org.apache.hadoop.fs.Options.Rename
        options = self._gateway.new_array(rename, 1)
        options[0] = rename.OVERWRITE if replace else rename.NONE
        context = self._jvm.org.apache.hadoop.fs.FileContext.getFileContext(
            self._folder.toUri(), self._conf
        )
        try:
            context.rename(aside, self._path(name), options)
        finally:
            self._fs.delete(aside, False)  # gone after a rename; left after a lost race

    def delete(self, name: str) -> None:
        self._fs.delete(self._path(name), False)

    def names(self) -> list[str]:
        if not self._fs.exists(self._folder):
            return []
        return sorted(
            str(status.getPath().getName()) for status in self._fs.listStatus(self._folder)
        )
