"""Shared fixtures. The session and the local services are the ``onceflow[testing]``
plugin's (``onceflow.testing.plugin``), as any project testing its jobs gets them; this file
names them for these tests and sets the secrets the canary tests look for."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from pyspark.sql import SparkSession

from onceflow.config import LoadedJob, load_job
from onceflow.testing.services import KafkaUser, LocalKafka, LocalPostgres
from onceflow.testing.services.hdfs import LocalHdfs
from onceflow.testing.services.s3 import LocalS3
from onceflow.testing.services.spark_cluster import LocalSparkCluster

ROOT = Path(__file__).resolve().parent.parent

#: The SASL user of the test broker. Its password is a canary: no log, error, printed
#: config or Spark event log may ever contain it.
KAFKA_USER = KafkaUser("alice", "kafka-pw-CANARY-5e2d1f")
#: The test S3 server's secret key: a canary like the Kafka password.
S3_SECRET_KEY = "s3-secret-CANARY-7c41b9"  # noqa: S105 - a test canary, not a secret
S3_BUCKET = "lake"
#: The test PostgreSQL role's password: a canary like the Kafka password.
PG_PASSWORD = "pg-pw-CANARY-3b8e6a"  # noqa: S105 - a test canary, not a secret


@pytest.fixture(scope="session")
def onceflow_kafka_users() -> list[KafkaUser]:
    return [KAFKA_USER]


@pytest.fixture(scope="session")
def onceflow_s3_secret_key() -> str:
    return S3_SECRET_KEY


@pytest.fixture(scope="session")
def onceflow_s3_bucket() -> str:
    return S3_BUCKET


@pytest.fixture(scope="session")
def onceflow_postgres_password() -> str:
    return PG_PASSWORD


@pytest.fixture(scope="session")
def spark(onceflow_spark: SparkSession) -> SparkSession:
    """The one local SparkSession of the test run (the plugin's)."""
    return onceflow_spark


@pytest.fixture(scope="session")
def kafka(onceflow_kafka: LocalKafka) -> LocalKafka:
    return onceflow_kafka


@pytest.fixture(scope="session")
def postgres(onceflow_postgres: LocalPostgres) -> LocalPostgres:
    return onceflow_postgres


@pytest.fixture(scope="session")
def hdfs(onceflow_hdfs: LocalHdfs) -> LocalHdfs:
    return onceflow_hdfs


@pytest.fixture(scope="session")
def s3(onceflow_s3: LocalS3) -> LocalS3:
    return onceflow_s3


@pytest.fixture(scope="session")
def spark_cluster(onceflow_spark_cluster: LocalSparkCluster) -> LocalSparkCluster:
    return onceflow_spark_cluster


#: The modules that take longest, longest first, as the last full run measured them (the
#: minutes of test time each took, the machine busy). ``make test`` hands whole modules
#: to two workers (``--dist loadscope --no-loadscope-reorder``) in the order collected:
#: the longest start first, so that the run does not end with one worker on a long module
#: and the other idle. Any order runs every test; this one only finishes sooner.
LONGEST_FIRST = (
    "test_readme_walk.py",  # 34
    "test_remote_storage.py",  # 17
    "test_guarantees.py",  # 15
    "test_cdc.py",  # 13
    "test_prove.py",  # 8
    "test_kafka.py",  # 7
    "test_kafka_sink.py",  # 4
    "test_prove_kafka_sink.py",  # 4
    "test_kafka_sink_chaos.py",  # 3
    "test_aggregate.py",  # 7
    "test_postgres_sink.py",  # 4
    "test_guarantee_mechanics.py",  # 3
    "test_stream_join.py",  # 3
    "test_dedup.py",  # 3
    "test_notebooks.py",  # 3
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Collect the longest modules first (``LONGEST_FIRST``), each module's tests in their
    own order (the README walk's blocks depend on it)."""
    rank = {name: place for place, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))


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
