"""A single-node Apache Kafka 4.x broker in KRaft mode, run from the jars in ``.jars/kafka``.

Three listeners on loopback and free ports: PLAINTEXT, SASL_PLAINTEXT (PLAIN and
SCRAM-SHA-256, for the users given) and the controller's. Data and the broker's log live in
``home``. Readiness is an admin client's metadata call answering, not a log line.

    with LocalKafka(Path("/tmp/k"), users=[KafkaUser("alice", "secret")]) as kafka:
        kafka.create_topic("payments", partitions=3)
        print(kafka.bootstrap, kafka.sasl_bootstrap)

``settings`` overrides or extends the broker's ``server.properties`` (a test's broker that
cannot run transactions: ``{"transaction.state.log.replication.factor": "3"}``). A
``stop()`` then ``start()`` brings the same broker back: same ports, same data.
"""

from __future__ import annotations

import base64
import secrets
import socket
import subprocess
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from onceflow.errors import ServiceError
from onceflow.testing.services.process import (
    LocalService,
    ManagedProcess,
    free_port,
    java_command,
    log_tail,
)

__all__ = ["KafkaUser", "LocalKafka"]

DEFAULT_JARS = Path(".jars/kafka")
_LOG4J2 = """\
status = warn
appender.out.type = Console
appender.out.name = out
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.out.ref = out
logger.kafka.name = kafka
logger.kafka.level = INFO
logger.kraft.name = org.apache.kafka
logger.kraft.level = WARN
"""


@dataclass(frozen=True)
class KafkaUser:
    """A SASL user of the local broker, for both PLAIN and SCRAM-SHA-256."""

    name: str
    password: str = field(repr=False)


@dataclass
class KafkaPorts:
    plaintext: int
    sasl: int
    controller: int


class LocalKafka(LocalService):
    """Start, use and stop one local broker. Also a context manager."""

    def __init__(
        self,
        home: Path,
        jars: Path = DEFAULT_JARS,
        users: list[KafkaUser] | None = None,
        heap: str = "512m",
        settings: dict[str, str] | None = None,
    ) -> None:
        self.home = home.resolve()
        self.jars = jars.resolve()
        self.users = users or []
        self.heap = heap
        #: server properties that override or extend the defaults below
        self.settings = dict(settings or {})
        self.ports = KafkaPorts(free_port(), free_port(), free_port())
        self._process: ManagedProcess | None = None

    @property
    def bootstrap(self) -> str:
        """``host:port`` of the plaintext listener."""
        return f"127.0.0.1:{self.ports.plaintext}"

    @property
    def sasl_bootstrap(self) -> str:
        """``host:port`` of the SASL_PLAINTEXT listener."""
        return f"127.0.0.1:{self.ports.sasl}"

    @property
    def log(self) -> Path:
        return self.home / "broker.log"

    def _java(self, main: str, *args: str) -> list[str]:
        log_config = f"-Dlog4j2.configurationFile={self.home / 'log4j2.properties'}"
        return java_command("kafka", self.jars, main, *args, heap=self.heap, options=[log_config])

    def _write_config(self) -> Path:
        self.home.mkdir(parents=True, exist_ok=True)
        (self.home / "log4j2.properties").write_text(_LOG4J2)
        plain_users = " ".join(f'user_{u.name}="{u.password}"' for u in self.users)
        p = self.ports
        properties = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.bootstrap.servers": f"127.0.0.1:{p.controller}",
            "listeners": f"PLAINTEXT://127.0.0.1:{p.plaintext},"
            f"SASL_PLAINTEXT://127.0.0.1:{p.sasl},CONTROLLER://127.0.0.1:{p.controller}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{p.plaintext},"
            f"SASL_PLAINTEXT://127.0.0.1:{p.sasl},CONTROLLER://127.0.0.1:{p.controller}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,"
            "SASL_PLAINTEXT:SASL_PLAINTEXT",
            "sasl.enabled.mechanisms": "PLAIN,SCRAM-SHA-256",
            "listener.name.sasl_plaintext.plain.sasl.jaas.config": (
                f"org.apache.kafka.common.security.plain.PlainLoginModule required {plain_users};"
            ),
            "listener.name.sasl_plaintext.scram-sha-256.sasl.jaas.config": (
                "org.apache.kafka.common.security.scram.ScramLoginModule required;"
            ),
            "log.dirs": str(self.home / "data"),
            "num.partitions": "1",
            "auto.create.topics.enable": "false",
            "offsets.topic.replication.factor": "1",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
            # lets a test age data out within seconds (topic retention.ms / segment.ms)
            "log.retention.check.interval.ms": "1000",
            "log.initial.task.delay.ms": "0",
        }
        properties |= self.settings
        config = self.home / "server.properties"
        config.write_text("".join(f"{k}={v}\n" for k, v in properties.items()))
        return config

    def start(self, timeout: float = 90.0) -> None:
        """Format the storage (once) and start the broker; returns when it answers."""
        config = self._write_config()
        if not (self.home / "data" / "meta.properties").exists():
            format_args = ["format", "-t", _cluster_id(), "-c", str(config), "--standalone"]
            for user in self.users:
                format_args += [
                    "--add-scram",
                    f"SCRAM-SHA-256=[name={user.name},password={user.password}]",
                ]
            result = subprocess.run(  # noqa: S603 - our own fixed command
                self._java("kafka.tools.StorageTool", *format_args),
                capture_output=True,
                text=True,
                timeout=120,
            )
            if result.returncode != 0:
                raise ServiceError(
                    "SERVICE_START_FAILED",
                    service="kafka storage format",
                    timeout=120,
                    log="(stderr)",
                    tail=(result.stdout + result.stderr)[-3000:],
                )
        self._process = ManagedProcess(
            "kafka", self._java("kafka.Kafka", str(config)), self.log, cwd=self.home
        )
        self._process.start(self._answers, timeout=timeout)

    def _answers(self) -> bool:
        # a plain TCP connect first: an admin client made too early keeps retrying, noisily
        with socket.create_connection(("127.0.0.1", self.ports.plaintext), timeout=1):
            pass
        self.admin().list_topics(timeout=5)
        return True

    def stop(self) -> None:
        if self._process is not None:
            self._process.stop()
            self._process = None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def admin(self) -> Any:
        """A confluent-kafka AdminClient on the plaintext listener."""
        from confluent_kafka.admin import AdminClient

        return AdminClient({"bootstrap.servers": self.bootstrap, "log_level": 3})

    def create_topic(
        self, name: str, partitions: int = 1, config: dict[str, str] | None = None
    ) -> None:
        """Create ``name`` and wait until its metadata shows every partition."""
        from confluent_kafka.admin import NewTopic  # type: ignore[attr-defined]

        admin = self.admin()  # held: a client collected mid-call cancels its futures
        futures = admin.create_topics(
            [NewTopic(name, num_partitions=partitions, replication_factor=1, config=config or {})]
        )
        futures[name].result(30)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            topic = admin.list_topics(topic=name, timeout=5).topics.get(name)
            if topic is not None and topic.error is None and len(topic.partitions) == partitions:
                return
            time.sleep(0.2)
        raise ServiceError(
            "SERVICE_START_FAILED",
            service=f"topic {name}",
            timeout=30,
            log=str(self.log),
            tail=log_tail(self.log),
        )

    def set_topic_config(self, name: str, config: dict[str, str]) -> None:
        """Set topic-level configs (e.g. ``retention.ms``) and wait for the broker's answer."""
        from confluent_kafka.admin import (  # type: ignore[attr-defined]
            AlterConfigOpType,
            ConfigEntry,
            ConfigResource,
            ResourceType,
        )

        admin = self.admin()
        entries = [
            ConfigEntry(key, value, incremental_operation=AlterConfigOpType.SET)
            for key, value in config.items()
        ]
        resource = ConfigResource(ResourceType.TOPIC, name, incremental_configs=entries)
        for future in admin.incremental_alter_configs([resource]).values():
            future.result(30)

    def state(self) -> dict[str, Any]:
        """What ``make kafka-up`` records for ``kafka-down`` and for users: ports and pid."""
        return {
            "pid": self.pid,
            "bootstrap": self.bootstrap,
            "sasl_bootstrap": self.sasl_bootstrap,
            "ports": asdict(self.ports),
            # what the Kafka jobs read (jobs/payments_kafka.yaml): `make kafka-env` exports it
            "env": {"KAFKA_BOOTSTRAP": self.bootstrap},
            "home": str(self.home),
            "log": str(self.log),
        }


def _cluster_id() -> str:
    """16 random bytes, base64url without padding; one starting with '-' reads as a flag."""
    while True:
        cluster_id = base64.urlsafe_b64encode(secrets.token_bytes(16)).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id
