"""A child process with a log file, a readiness wait and a clean stop."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from onceflow.errors import ServiceError

__all__ = [
    "LocalService",
    "ManagedProcess",
    "free_port",
    "java_command",
    "log_tail",
    "running_pid",
    "stop_pid",
]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def log_tail(log: Path, lines: int = 40) -> str:
    """The last ``lines`` lines of ``log`` ("" if it does not exist)."""
    if not log.exists():
        return ""
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])


def java_command(
    service: str,
    jars: Path,
    main: str,
    *args: str,
    heap: str = "512m",
    options: Sequence[str] = (),
    classpath_first: Sequence[Path] = (),
    make_target: str | None = None,
) -> list[str]:
    """``java -Xmx<heap> <options> -cp <classpath_first>:<jars>/* <main> <args>``.

    Raises:
        ServiceError: SERVICE_START_FAILED when ``jars`` holds no jar, naming the make target
            that resolves them (``<service>-jars`` unless ``make_target`` says otherwise).
    """
    if not any(jars.glob("*.jar")):
        raise ServiceError(
            "SERVICE_START_FAILED",
            service=service,
            timeout=0,
            log=str(jars),
            tail=f"no {service} jars there: run `make {make_target or service + '-jars'}`",
        )
    classpath = ":".join([*(str(p) for p in classpath_first), f"{jars}/*"])
    java = shutil.which("java") or "java"
    return [java, f"-Xmx{heap}", "-Xms64m", *options, "-cp", classpath, main, *args]


def running_pid(state_file: Path) -> int | None:
    """The ``pid`` recorded in a service's state file, if that process still runs."""
    if not state_file.exists():
        return None
    pid = json.loads(state_file.read_text()).get("pid")
    if not isinstance(pid, int):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    return pid


def stop_pid(
    pid: int, timeout: float = 20.0, first_signal: signal.Signals = signal.SIGTERM
) -> None:
    """Send ``first_signal`` (SIGTERM) to ``pid``'s process group, then SIGKILL it if it
    outlives ``timeout``.

    A service whose polite stop is another signal says so (PostgreSQL: SIGINT, fast
    shutdown; its SIGTERM waits for every client to disconnect).
    """
    for sig, wait in ((first_signal, timeout), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            try:  # reap it if it is our child
                if os.waitpid(pid, os.WNOHANG)[0] == pid:
                    return
            except ChildProcessError:
                pass
            time.sleep(0.1)


class ManagedProcess:
    """One service process, in its own process group, writing to ``log``.

    ``stop_signal`` is what ``stop()`` sends first (SIGKILL follows if it is ignored).
    """

    def __init__(
        self,
        name: str,
        command: Sequence[str],
        log: Path,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        stop_signal: signal.Signals = signal.SIGTERM,
    ) -> None:
        self.name = name
        self.command = list(command)
        self.log = log
        self.env = dict(os.environ if env is None else env)
        self.cwd = cwd
        self.stop_signal = stop_signal
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def start(self, ready: Callable[[], bool], timeout: float = 90.0) -> None:
        """Start, then poll ``ready()`` until it is true.

        Raises:
            ServiceError: SERVICE_START_FAILED when the process exits or ``timeout`` passes
                first; the message carries the log's tail.
        """
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(  # noqa: S603 - a fixed command of ours
                self.command,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=self.env,
                cwd=self.cwd,
                start_new_session=True,  # its own group: a stop takes its children too
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            with contextlib.suppress(Exception):  # "not ready yet" is any error at all
                if ready():
                    return
            time.sleep(0.5)
        self.stop()
        raise ServiceError(
            "SERVICE_START_FAILED",
            service=self.name,
            timeout=int(timeout),
            log=str(self.log),
            tail=log_tail(self.log),
        )

    def stop(self) -> None:
        """Stop the process and its group; waits for it to exit."""
        if self.process is None:
            return
        stop_pid(self.process.pid, first_signal=self.stop_signal)
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        self.process = None


class LocalService:
    """What every local service shares: a ``home`` folder, ``with`` support, and the
    ``state.json`` that ``make <service>-up`` writes for ``-down`` and for users.

    Subclasses provide ``start``, ``stop`` and ``state`` (which never holds a secret).
    """

    home: Path

    def start(self, timeout: float = 90.0) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def state(self) -> dict[str, Any]:
        raise NotImplementedError

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def write_state(self) -> Path:
        path = self.home / "state.json"
        path.write_text(json.dumps(self.state(), indent=2))
        return path
