"""The class-data-sharing archive ``make setup`` dumps, and the drivers that map it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from pyspark.sql import SparkSession

from onceflow.class_sharing import archive_path, driver_java_options
from tests.conftest import ROOT

ARCHIVE = archive_path(ROOT / ".jars/spark")


def mapped_files(spark: SparkSession) -> set[str]:
    """The files the session's driver JVM has mapped into its memory."""
    pid = spark.sparkContext._jvm.java.lang.ProcessHandle.current().pid()  # type: ignore[union-attr]
    maps = Path(f"/proc/{pid}/maps").read_text().splitlines()
    return {line.split(maxsplit=5)[5] for line in maps if len(line.split(maxsplit=5)) == 6}


@pytest.mark.spark
def test_the_test_sessions_driver_maps_the_archive(spark: SparkSession) -> None:
    """make setup dumped it, and a JVM that found it did not match would have unmapped it."""
    assert ARCHIVE.is_file(), "make setup dumps it (make cds)"
    assert str(ARCHIVE) in mapped_files(spark)


def test_the_archive_joins_the_given_options(tmp_path: Path) -> None:
    jars = tmp_path / "spark"
    assert driver_java_options(jars, "-XX:+UseSerialGC") == "-XX:+UseSerialGC"  # none yet
    archive = archive_path(jars)
    archive.parent.mkdir(parents=True)
    archive.write_bytes(b"")
    options = driver_java_options(jars, "-XX:+UseSerialGC")
    assert options is not None
    assert options.startswith(f"-XX:+UseSerialGC -XX:SharedArchiveFile={archive} ")
    assert "-Xlog:cds=off" in options
    # options that handle class sharing themselves are the user's: left as they are
    for own in ("-Xshare:off", "-XX:SharedArchiveFile=/x.jsa", "-XX:ArchiveClassesAtExit=y"):
        assert driver_java_options(jars, own) == own


PROBE = """
import sys
import os
import subprocess
import sys
from pathlib import Path
from onceflow import load_job
from onceflow.session import build_session
job = load_job("jobs/payments.yaml", env="test", overrides=sys.argv[1:])
spark = build_session(job.spec)
pid = spark.sparkContext._jvm.java.lang.ProcessHandle.current().pid()
print("mapped" if "cds/spark.jsa" in Path(f"/proc/{pid}/maps").read_text() else "not mapped")
"""


@pytest.mark.spark
@pytest.mark.slow
def test_a_job_driver_maps_the_archive_unless_told_not_to() -> None:
    """build_session, as onceflow run, prove's job processes and notebooks start a driver."""
    env = {**os.environ, "SPARK_LOCAL_IP": "127.0.0.1"}
    runs = {
        setting: subprocess.Popen(
            [sys.executable, "-c", PROBE, f"spark.class_data_sharing={setting}"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for setting in ("true", "false")
    }
    said = {setting: run.communicate(timeout=300) for setting, run in runs.items()}
    assert said["true"][0].strip() == "mapped", said["true"][1][-2000:]
    assert said["false"][0].strip() == "not mapped", said["false"][1][-2000:]
