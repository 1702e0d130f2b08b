"""A class-data-sharing archive of Spark's classes, so that a driver JVM starts faster.

A Spark driver spends much of its first seconds loading, parsing and verifying Spark's own
classes, the same ones every time. ``make setup`` runs a small job once in a JVM told to
dump what it loaded (``-XX:ArchiveClassesAtExit``) into ``<jars_dir>/../cds/spark.jsa``;
every driver onceflow launches afterwards maps that archive instead
(``-XX:SharedArchiveFile``), sharing its pages with the other JVMs of the machine.

The archive belongs to one JVM build and one classpath (the venv's pyspark jars). A JVM
that finds it does not match starts without it, exactly as it would have, and says nothing
(its ``cds`` logging is off); so does a JVM this process did not launch (spark-submit's, a
notebook's that was running already). ``spark.class_data_sharing: false`` turns it off.

``onceflow class-sharing`` writes the archive (``make cds``, part of ``make setup``).
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["QUIET", "archive_path", "driver_java_options"]

QUIET = "-Xlog:cds=off -Xlog:cds+dynamic=off"
_OWN_FLAGS = ("-XX:SharedArchiveFile", "-XX:ArchiveClassesAtExit", "-Xshare")


def archive_path(jars_dir: str | Path) -> Path:
    """Where the archive for the jars in ``jars_dir`` lives: ``<jars_dir>/../cds/spark.jsa``."""
    return Path(jars_dir).parent / "cds" / "spark.jsa"


def driver_java_options(jars_dir: str | Path, given: str | None) -> str | None:
    """The driver's ``extraJavaOptions``: ``given`` with the archive added when it exists
    and ``given`` does not handle class sharing itself; else ``given`` unchanged."""
    archive = archive_path(jars_dir)
    if not archive.is_file() or any(flag in (given or "") for flag in _OWN_FLAGS):
        return given
    return " ".join(filter(None, [given, f"-XX:SharedArchiveFile={archive}", QUIET]))
