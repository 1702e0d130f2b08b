"""Shared fixtures: one local SparkSession for the whole run, and jobs rooted in tmp folders."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from pyspark.sql import SparkSession

from onceflow.config import LoadedJob, load_job
from onceflow.services import KafkaUser, LocalKafka, LocalPostgres
from onceflow.services.hdfs import LocalHdfs
from onceflow.services.s3 import LocalS3
from onceflow.services.spark_cluster import LocalSparkCluster
from onceflow.session import DELTA_CONF, jar_paths

ROOT = Path(__file__).resolve().parent.parent
JARS_DIR = ROOT / ".jars" / "spark"

# delta's own test settings (delta/testing/utils.py): few partitions, no UI
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


@pytest.fixture(scope="session")
def spark() -> Iterator[SparkSession]:
    """The one local SparkSession of the test run, with Delta and the project's jars."""
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)  # workers need onceflow too
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")  # loopback only
    builder = (
        SparkSession.builder.master("local[2]")
        .appName("onceflow-tests")
        .config("spark.jars", ",".join(jar_paths(str(JARS_DIR))))
    )
    for key, value in {**DELTA_CONF, **FAST_TEST_CONF}.items():
        builder = builder.config(key, value)
    session = builder.getOrCreate()
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


#: The SASL user of the test broker. Its password is a canary: no log, error, printed
#: config or Spark event log may ever contain it.
KAFKA_USER = KafkaUser("alice", "kafka-pw-CANARY-5e2d1f")


@pytest.fixture(scope="session")
def kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalKafka]:
    """A real single-node Kafka broker (KRaft) for the whole run, on free loopback ports."""
    broker = LocalKafka(
        tmp_path_factory.mktemp("kafka"), jars=ROOT / ".jars" / "kafka", users=[KAFKA_USER]
    )
    broker.start()
    yield broker
    broker.stop()


JobLoader = Callable[..., LoadedJob]


@pytest.fixture
def job_in(tmp_path: Path) -> JobLoader:
    """Load a job file of the project with ``storage.root`` in this test's tmp folder."""

    def load(job: str | Path, *overrides: str, env: str = "local") -> LoadedJob:
        path = Path(job) if Path(job).is_absolute() else ROOT / job
        return load_job(
            path,
            env=env,
            conf_dir=ROOT / "conf",
            overrides=[f"storage.root={tmp_path}", *overrides],
        )

    return load


@pytest.fixture(scope="session")
def spark_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalSparkCluster]:
    """A real Spark standalone cluster (a master, two 1-core workers) for the whole run."""
    cluster = LocalSparkCluster(tmp_path_factory.mktemp("cluster"), workers=2)
    cluster.start()
    yield cluster
    cluster.stop()


@pytest.fixture(scope="session")
def hdfs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalHdfs]:
    """A real HDFS (a NameNode and a DataNode) for the whole run, on free loopback ports.

    Sets ``ONCEFLOW_HDFS_URI``, which the ``hdfs`` profile reads, for this process and the
    job processes it starts.
    """
    cluster = LocalHdfs(tmp_path_factory.mktemp("hdfs"), jars=ROOT / ".jars" / "hdfs")
    cluster.start()
    os.environ["ONCEFLOW_HDFS_URI"] = cluster.uri
    yield cluster
    os.environ.pop("ONCEFLOW_HDFS_URI", None)
    cluster.stop()


#: The test S3 server's secret key: a canary like the Kafka password.
S3_SECRET_KEY = "s3-secret-CANARY-7c41b9"  # noqa: S105 - a test canary, not a secret
S3_BUCKET = "lake"


@pytest.fixture(scope="session")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalS3]:
    """A real S3-compatible endpoint (S3Proxy, objects on disk) with bucket ``lake``.

    Sets the variables the ``s3`` profile reads (endpoint, bucket, access and secret key)
    for this process and the job processes it starts.
    """
    server = LocalS3(
        tmp_path_factory.mktemp("s3"), jars=ROOT / ".jars" / "s3proxy", secret_key=S3_SECRET_KEY
    )
    server.create_bucket(S3_BUCKET)
    server.start()
    variables = server.profile_env(S3_BUCKET)
    os.environ.update(variables)
    yield server
    for name in variables:
        os.environ.pop(name, None)
    server.stop()


#: The test PostgreSQL role's password: a canary like the Kafka password.
PG_PASSWORD = "pg-pw-CANARY-3b8e6a"  # noqa: S105 - a test canary, not a secret


@pytest.fixture(scope="session")
def postgres() -> Iterator[LocalPostgres]:
    """A real PostgreSQL (role and database ``onceflow``) for the whole run, on a free port.

    Sets the variables a job reads for its connection (``ONCEFLOW_PG_HOST``, ``_PORT``,
    ``_DATABASE``, ``_USER``, ``_PASSWORD``) for this process and the job processes it starts.
    Its home is not under tmp_path_factory: pytest makes /tmp/pytest-of-<user> 0700, and as
    root the server runs as OS user ``postgres``, which must traverse to its data folder.
    """
    home = Path(tempfile.mkdtemp(prefix="onceflow-pg-"))
    home.chmod(0o711)
    server = LocalPostgres(home, password=PG_PASSWORD)
    try:
        server.start()
        os.environ.update(server.profile_env())
        yield server
    finally:
        for name in server.profile_env():
            os.environ.pop(name, None)
        server.stop()
        shutil.rmtree(home, ignore_errors=True)
