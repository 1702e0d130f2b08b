"""The pytest plugin of ``onceflow[testing]`` (registered through the ``pytest11`` entry
point): fixtures for testing jobs in Spark local mode against real local services.

Session fixtures, each started on first use, on free loopback ports, and stopped at the end:

- ``onceflow_spark``: a local SparkSession with Delta, the project's jars and settings for
  fast tests (few partitions, no UI, UTC, loopback only);
- ``onceflow_kafka``: a Kafka broker (KRaft, one node), with the SASL users of
  ``onceflow_kafka_users``;
- ``onceflow_postgres``: a PostgreSQL server (role and database ``onceflow``, the password
  of ``onceflow_postgres_password``), its connection in ``ONCEFLOW_PG_*``;
- ``onceflow_hdfs``: HDFS (a NameNode and a DataNode), its URI in ``ONCEFLOW_HDFS_URI``;
- ``onceflow_s3``: an S3 server (S3Proxy) with bucket ``onceflow_s3_bucket``, its endpoint
  and keys in the variables the ``s3`` profile reads;
- ``onceflow_spark_cluster``: a Spark standalone cluster (a master, two 1-core workers).

The ``*_users`` / ``*_password`` / ``*_bucket`` / ``*_secret_key`` fixtures are there to be
overridden in a ``conftest.py``. Where the jars live (``make jars`` puts them in ``.jars/``
by default) is set in the ini file: ``onceflow_jars_dir`` (Spark's),
``onceflow_services_jars_dir`` (the services', a folder each), relative to the rootdir.
"""

from __future__ import annotations

import os
import secrets
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from pyspark.sql import SparkSession

from onceflow.class_sharing import driver_java_options
from onceflow.session import DELTA_CONF, jar_paths
from onceflow.testing.services import KafkaUser, LocalKafka, LocalPostgres
from onceflow.testing.services.hdfs import LocalHdfs
from onceflow.testing.services.s3 import LocalS3
from onceflow.testing.services.spark_cluster import LocalSparkCluster

#: delta's own test settings (delta/testing/utils.py): few partitions, no UI; loopback only
FAST_TEST_CONF = {
    "spark.sql.shuffle.partitions": "2",
    "spark.default.parallelism": "2",
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
    "spark.databricks.delta.snapshotPartitions": "2",
    "spark.sql.sources.parallelPartitionDiscovery.parallelism": "2",
    "spark.sql.session.timeZone": "UTC",
    "spark.driver.host": "127.0.0.1",
    "spark.driver.bindAddress": "127.0.0.1",
}


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini(
        "onceflow_jars_dir", "the jars handed to Spark (make jars)", default=".jars/spark"
    )
    parser.addini(
        "onceflow_services_jars_dir",
        "the local services' jars, a folder each: kafka, hdfs, s3proxy",
        default=".jars",
    )


def _ini_path(config: pytest.Config, name: str) -> Path:
    value = Path(str(config.getini(name)))
    return value if value.is_absolute() else Path(config.rootpath) / value


@pytest.fixture(scope="session")
def onceflow_spark(pytestconfig: pytest.Config) -> Iterator[SparkSession]:
    """A local SparkSession (``local[2]``) with Delta and the project's jars."""
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)  # workers need onceflow too
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")  # loopback only
    jars_dir = _ini_path(pytestconfig, "onceflow_jars_dir")
    jars = jar_paths(str(jars_dir))
    builder = (
        SparkSession.builder.master("local[2]")
        .appName("onceflow-tests")
        .config("spark.jars", ",".join(jars))
    )
    conf = {**DELTA_CONF, **FAST_TEST_CONF}
    options = driver_java_options(jars_dir, conf.get("spark.driver.extraJavaOptions"))
    if options:  # the class-sharing archive make setup dumped: a faster start
        conf["spark.driver.extraJavaOptions"] = options
    for key, value in conf.items():
        builder = builder.config(key, value)
    session = builder.getOrCreate()
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


@pytest.fixture(scope="session")
def onceflow_kafka_users() -> list[KafkaUser]:
    """The SASL users of ``onceflow_kafka`` (none: override it to add some)."""
    return []


@pytest.fixture(scope="session")
def onceflow_kafka(
    pytestconfig: pytest.Config,
    tmp_path_factory: pytest.TempPathFactory,
    onceflow_kafka_users: list[KafkaUser],
) -> Iterator[LocalKafka]:
    """A real single-node Kafka broker (KRaft) on free loopback ports; its plaintext
    listener in ``KAFKA_BOOTSTRAP``, which the Kafka jobs read
    (``kafka.bootstrap.servers: ${env:KAFKA_BOOTSTRAP}``)."""
    jars = _ini_path(pytestconfig, "onceflow_services_jars_dir") / "kafka"
    broker = LocalKafka(tmp_path_factory.mktemp("kafka"), jars=jars, users=onceflow_kafka_users)
    broker.start()
    os.environ["KAFKA_BOOTSTRAP"] = broker.bootstrap
    yield broker
    os.environ.pop("KAFKA_BOOTSTRAP", None)
    broker.stop()


@pytest.fixture(scope="session")
def onceflow_postgres_password() -> str:
    """The password of ``onceflow_postgres``'s role (random: override it to choose one)."""
    return secrets.token_urlsafe(16)


@pytest.fixture(scope="session")
def onceflow_postgres(onceflow_postgres_password: str) -> Iterator[LocalPostgres]:
    """A real PostgreSQL (role and database ``onceflow``) on a free port; its connection in
    ``ONCEFLOW_PG_HOST``, ``_PORT``, ``_DATABASE``, ``_USER``, ``_PASSWORD`` (for this process
    and the job processes it starts). Its home is not under pytest's base temp (made 0700
    there): as root the server runs as OS user ``postgres``, which must reach its data."""
    home = Path(tempfile.mkdtemp(prefix="onceflow-pg-"))
    home.chmod(0o711)
    server = LocalPostgres(home, password=onceflow_postgres_password)
    try:
        server.start()
        os.environ.update(server.profile_env())
        yield server
    finally:
        for name in server.profile_env():
            os.environ.pop(name, None)
        server.stop()
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(scope="session")
def onceflow_hdfs(
    pytestconfig: pytest.Config, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LocalHdfs]:
    """A real HDFS (a NameNode and a DataNode) on free loopback ports; its URI in
    ``ONCEFLOW_HDFS_URI``, which the ``hdfs`` profile reads."""
    jars = _ini_path(pytestconfig, "onceflow_services_jars_dir") / "hdfs"
    cluster = LocalHdfs(tmp_path_factory.mktemp("hdfs"), jars=jars)
    cluster.start()
    os.environ["ONCEFLOW_HDFS_URI"] = cluster.uri
    yield cluster
    os.environ.pop("ONCEFLOW_HDFS_URI", None)
    cluster.stop()


@pytest.fixture(scope="session")
def onceflow_s3_bucket() -> str:
    """The bucket ``onceflow_s3`` creates."""
    return "lake"


@pytest.fixture(scope="session")
def onceflow_s3_secret_key() -> str:
    """The secret key of ``onceflow_s3`` (random: override it to choose one)."""
    return secrets.token_urlsafe(16)


@pytest.fixture(scope="session")
def onceflow_s3(
    pytestconfig: pytest.Config,
    tmp_path_factory: pytest.TempPathFactory,
    onceflow_s3_bucket: str,
    onceflow_s3_secret_key: str,
) -> Iterator[LocalS3]:
    """A real S3-compatible endpoint (S3Proxy, objects on disk) with one bucket; the
    variables the ``s3`` profile reads (endpoint, bucket, access and secret key) set."""
    jars = _ini_path(pytestconfig, "onceflow_services_jars_dir") / "s3proxy"
    server = LocalS3(tmp_path_factory.mktemp("s3"), jars=jars, secret_key=onceflow_s3_secret_key)
    server.create_bucket(onceflow_s3_bucket)
    server.start()
    variables = server.profile_env(onceflow_s3_bucket)
    os.environ.update(variables)
    yield server
    for name in variables:
        os.environ.pop(name, None)
    server.stop()


@pytest.fixture(scope="session")
def onceflow_spark_cluster(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[LocalSparkCluster]:
    """A real Spark standalone cluster (a master, two 1-core workers) on loopback."""
    cluster = LocalSparkCluster(tmp_path_factory.mktemp("cluster"), workers=2)
    cluster.start()
    yield cluster
    cluster.stop()
