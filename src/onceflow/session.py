"""The SparkSession a job runs in: Delta enabled, jars from the project, the profile's conf.

Nothing is downloaded when a session starts: the JVM jars were resolved by ``make jars``
into ``spark.jars_dir`` and are handed to Spark as ``spark.jars``. When the Python process
was launched by ``spark-submit`` the JVM already runs with the ``--jars`` it was given, so
the builder leaves ``spark.jars`` alone. A session on a cluster master that spark-submit
did not start ships the onceflow package to the executors itself (``addPyFile``).
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pyspark.sql import DataFrame, SparkSession

from onceflow.class_sharing import driver_java_options
from onceflow.config import JobSpec
from onceflow.errors import ConfigError, first_line
from onceflow.shipping import module_zip, package_zip

__all__ = [
    "DELTA_CONF",
    "analysis_failure",
    "build_session",
    "jar_paths",
    "launched_by_spark_submit",
    "set_log_levels",
]

_DRIVER_OPTIONS = "spark.driver.extraJavaOptions"
DELTA_CONF: dict[str, str] = {
    "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
    "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
}


def launched_by_spark_submit() -> bool:
    """True when a JVM started by ``spark-submit`` (or pyspark's shell) is already waiting."""
    return "PYSPARK_GATEWAY_PORT" in os.environ


def jar_paths(jars_dir: str) -> list[str]:
    """The jars ``make jars`` placed in ``jars_dir``, sorted.

    Raises:
        ConfigError: JARS_MISSING when the folder holds no jar.
    """
    folder = Path(jars_dir)
    jars = sorted(str(p) for p in folder.glob("*.jar")) if folder.is_dir() else []
    if not jars:
        raise ConfigError("JARS_MISSING", jars_dir=jars_dir)
    return jars


def build_session(spec: JobSpec) -> SparkSession:
    """Get or create the SparkSession for ``spec``.

    An existing session (a notebook's, pytest's) is reused: its static settings (master,
    jars) stay as they are, and the job's runtime SQL conf is applied on top, as are its
    log levels (``spark.log_level``, ``spark.log_levels``).
    """
    builder = SparkSession.builder.appName(spec.spark.app_name or f"onceflow:{spec.name}")
    # Under spark-submit, its --master and --jars rule: a profile must not override them.
    if not launched_by_spark_submit():
        # pyspark starts Python workers with $PYSPARK_PYTHON or else whatever "python3" is
        # on the PATH, which need not have onceflow; the driver's interpreter does.
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        if spec.spark.master:
            builder = builder.master(spec.spark.master)
    conf = {**DELTA_CONF, **spec.spark.conf}
    if not launched_by_spark_submit() and SparkSession.getActiveSession() is None:
        builder = builder.config("spark.jars", ",".join(jar_paths(spec.spark.jars_dir)))
        if spec.spark.class_data_sharing:  # this process launches the driver's JVM
            options = driver_java_options(spec.spark.jars_dir, conf.get(_DRIVER_OPTIONS))
            conf.update({_DRIVER_OPTIONS: options} if options else {})
    for key, value in conf.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel(spec.spark.log_level)
    set_log_levels(spark, spec.spark.log_levels)
    _apply_hadoop_conf(spark, spec.spark.conf)
    if not launched_by_spark_submit() and not _is_local(spark.sparkContext.master):
        _ship_package(spark)
    _ship_functions(spark, spec)
    return spark


def set_log_levels(spark: SparkSession, levels: Mapping[str, str]) -> None:
    """Set single JVM loggers' levels (``spark.log_levels``), over the root's.

    Set through log4j2's ``Configurator`` once the JVM runs rather than by a properties file
    in ``-Dlog4j2.configurationFile``: that one is read only by a JVM this process starts,
    while spark-submit, a notebook or pytest may have started it already.
    """
    if not levels:
        return
    jvm: Any = spark.sparkContext._jvm
    log4j = jvm.org.apache.logging.log4j
    for logger, level in levels.items():
        log4j.core.config.Configurator.setLevel(logger, log4j.Level.toLevel(level))


def _ship_package(spark: SparkSession) -> None:
    """Ship onceflow to the executors, as spark-submit --py-files would (crash injection's
    tasks import it there); once per context: Spark refuses a second file of the same name."""
    context = spark.sparkContext
    if any(Path(p).name.startswith("onceflow-") for p in context._python_includes or []):
        return
    context.addPyFile(str(package_zip(Path(tempfile.mkdtemp(prefix="onceflow-pyfiles-")))))


def _ship_functions(spark: SparkSession, spec: JobSpec) -> None:
    """Ship the packages of the job's own functions (``transform.python``,
    ``.batch_python``) to the executors' Python workers, which a UDF of theirs runs in; in
    local mode too, whose workers do not share the driver's ``sys.path``. Once per context
    and package: a notebook that edits one restarts its session to ship the edit."""
    context = spark.sparkContext
    shipped = {Path(p).name for p in context._python_includes or []}
    references = (spec.transform.python, spec.transform.batch_python)
    for module in {r.partition(":")[0] for r in references if r is not None}:
        if f"{module.partition('.')[0]}.zip" in shipped:
            continue
        zipped = module_zip(module, Path(tempfile.mkdtemp(prefix="onceflow-pyfiles-")))
        if zipped is not None:
            context.addPyFile(str(zipped))
            shipped.add(zipped.name)


def _apply_hadoop_conf(spark: SparkSession, conf: dict[str, str]) -> None:
    """Give a reused session the profile's ``spark.hadoop.*`` settings (S3A endpoint, HDFS
    client retries). Spark copies them into Hadoop's configuration only when the context
    starts; set later they would stay SQL conf that no file system reads. File systems
    already cached for a URI keep the settings they were made with.
    """
    hadoop_conf = spark.sparkContext._jsc.hadoopConfiguration()
    for key, value in conf.items():
        if key.startswith("spark.hadoop."):
            hadoop_conf.set(key.removeprefix("spark.hadoop."), value)


def _is_local(master: str | None) -> bool:
    return master is None or master.startswith("local")


def analysis_failure(build: Any) -> str:
    """Spark's one-line reason when building (and so analysing) a frame fails, else ''."""
    try:
        frame: DataFrame = build()
        frame.schema  # noqa: B018 - asking for it completes the analysis
    except Exception as exc:
        return first_line(exc)
    return ""
