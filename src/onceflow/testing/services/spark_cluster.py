"""A Spark standalone cluster — one master, N workers — from pyspark's own ``spark-class``.

The pip-installed pyspark has ``bin/spark-class`` but not the ``sbin/`` start scripts, so each
daemon is one ``spark-class`` process here, bound to loopback on free ports. Readiness is the
master's JSON status (``/json/``) saying ALIVE with every worker registered, not a log line.
Each worker has its own work folder: an executor's working directory lies under it, which
is how a test tells from a job's output that its tasks ran on the workers.

    with LocalSparkCluster(Path("/tmp/cluster"), workers=2) as cluster:
        print(cluster.master_url)          # spark://127.0.0.1:PORT
"""

from __future__ import annotations

import json
import os
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyspark

from onceflow.testing.services.process import LocalService, ManagedProcess, free_port

__all__ = ["LocalSparkCluster", "spark_home"]


def spark_home() -> Path:
    """The folder of the installed pyspark: it holds ``bin/spark-class`` and ``jars/``."""
    return Path(pyspark.__file__).resolve().parent


@dataclass(frozen=True)
class ClusterPorts:
    master: int
    master_ui: int
    workers: tuple[int, ...]
    worker_uis: tuple[int, ...]


class LocalSparkCluster(LocalService):
    """Start, use and stop one standalone cluster. Also a context manager.

    ``cores`` and ``memory`` are per worker; the daemons themselves get ``daemon_memory``.
    """

    def __init__(
        self,
        home: Path,
        workers: int = 2,
        cores: int = 1,
        memory: str = "2g",
        daemon_memory: str = "256m",
    ) -> None:
        self.home = home.resolve()
        self.workers = workers
        self.cores = cores
        self.memory = memory
        self.daemon_memory = daemon_memory
        self.ports = ClusterPorts(
            free_port(),
            free_port(),
            tuple(free_port() for _ in range(workers)),
            tuple(free_port() for _ in range(workers)),
        )
        self._master: ManagedProcess | None = None
        self._workers: list[ManagedProcess] = []

    @property
    def master_url(self) -> str:
        return f"spark://127.0.0.1:{self.ports.master}"

    @property
    def ui_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.master_ui}"

    def work_dir(self, worker: int) -> Path:
        """Worker ``worker``'s work folder: its executors run in ``<app-id>/<exec-id>/`` below."""
        return self.home / f"worker-{worker}"

    def _env(self) -> dict[str, str]:
        home = spark_home()
        return {
            **os.environ,
            "SPARK_HOME": str(home),
            "SPARK_LOCAL_IP": "127.0.0.1",
            "SPARK_DAEMON_MEMORY": self.daemon_memory,
            # spark-class would otherwise write its own log and pid files under SPARK_HOME
            "SPARK_LOG_DIR": str(self.home / "logs"),
            "SPARK_PID_DIR": str(self.home),
        }

    def _daemon(self, name: str, *args: str) -> ManagedProcess:
        command = [str(spark_home() / "bin" / "spark-class"), *args]
        return ManagedProcess(name, command, self.home / f"{name}.log", self._env(), self.home)

    def start(self, timeout: float = 120.0) -> None:
        """Start the master, then the workers; returns when all workers have registered."""
        self.home.mkdir(parents=True, exist_ok=True)
        self._master = self._daemon(
            "master",
            "org.apache.spark.deploy.master.Master",
            "--host", "127.0.0.1",
            "--port", str(self.ports.master),
            "--webui-port", str(self.ports.master_ui),
        )  # fmt: skip
        self._master.start(lambda: self.status().get("status") == "ALIVE", timeout=timeout)
        for index in range(self.workers):
            self.work_dir(index).mkdir(parents=True, exist_ok=True)
            worker = self._daemon(
                f"worker-{index}",
                "org.apache.spark.deploy.worker.Worker",
                self.master_url,
                "--host", "127.0.0.1",
                "--port", str(self.ports.workers[index]),
                "--webui-port", str(self.ports.worker_uis[index]),
                "--cores", str(self.cores),
                "--memory", self.memory,
                "--work-dir", str(self.work_dir(index)),
            )  # fmt: skip
            self._workers.append(worker)
            worker.start(self._registered(index + 1), timeout=timeout)

    def _registered(self, count: int) -> Callable[[], bool]:
        return lambda: self.alive_workers() >= count

    def status(self) -> dict[str, Any]:
        """The master's JSON status page (workers, apps, ``status``)."""
        with urllib.request.urlopen(f"{self.ui_url}/json/", timeout=2) as response:  # noqa: S310
            status: dict[str, Any] = json.load(response)
        return status

    def alive_workers(self) -> int:
        return int(self.status().get("aliveworkers", 0))

    def stop(self) -> None:
        """Stop the workers (and their executors), then the master."""
        for worker in self._workers:
            worker.stop()
        self._workers = []
        if self._master is not None:
            self._master.stop()
            self._master = None

    @property
    def pid(self) -> int | None:
        return self._master.pid if self._master is not None else None

    def state(self) -> dict[str, Any]:
        """What ``make cluster-up`` records for ``cluster-down`` and for users."""
        return {
            "pid": self.pid,
            "worker_pids": [w.pid for w in self._workers],
            "master_url": self.master_url,
            "ui": self.ui_url,
            "home": str(self.home),
        }
