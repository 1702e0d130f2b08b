"""The job processes of one prove run, each in its own process group and known until it
ends, so that a run that stops early (Ctrl-C, SIGTERM, a scenario that failed) kills every
one of them, Python and JVM alike, and starts no other.

A job process must be its own group: its crash plan SIGKILLs its group, which must not be
the harness's. The price is that a Ctrl-C on the terminal reaches the harness only, never
its jobs, so stopping them is the harness's work: ``JobProcesses.stop``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = ["JobProcesses", "JobRun", "Stopping"]


class Stopping(Exception):
    """The run is stopping: a scenario's thread gets this instead of a new process or
    instead of the exit status of a process the stop killed."""


@dataclass(frozen=True, eq=False)
class JobRun:
    """One job process and its log."""

    process: subprocess.Popen[bytes]
    log: Path

    def tail(self, lines: int = 30) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def kill(self) -> bool:
        """SIGKILL the whole process group, Python and JVM alike; True if it was running."""
        running = self.process.poll() is None
        # only while the leader is unreaped: after that its pid (our group id) may be reused
        if running:
            try:
                os.killpg(self.process.pid, signal.SIGKILL)
            except ProcessLookupError:  # it ended between the poll and the kill
                running = False
        self.process.wait()
        return running


class JobProcesses:
    """Starts job processes and tracks the live ones until ``stop``.

    Thread-safe: scenarios run on a pool's threads while the caller's thread may ``stop``.
    A process is either started before ``stop`` (and then killed by it) or not at all.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._live: list[JobRun] = []
        self._stopping = False

    @property
    def stopping(self) -> bool:
        return self._stopping

    def start(self, command: Sequence[str], log: Path) -> JobRun:
        """Start ``command`` in a new session (its own process group), output to ``log``.

        Raises:
            Stopping: ``stop`` was called; nothing is started.
        """
        with self._lock:
            if self._stopping:
                raise Stopping
            with log.open("wb") as out:
                process = subprocess.Popen(  # noqa: S603 - the harness's own command line
                    list(command),
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,  # the job's own group: its crash kills it, not us
                )
            run = JobRun(process, log)
            self._live.append(run)
            return run

    def wait(self, run: JobRun, timeout: float | None) -> int:
        """``run``'s exit status, waiting up to ``timeout`` seconds.

        Raises:
            subprocess.TimeoutExpired: still running after ``timeout``.
            Stopping: the run is stopping (its status may be the stop's SIGKILL, not its own).
        """
        code = run.process.wait(timeout)
        with self._lock:
            if run in self._live:
                self._live.remove(run)
        if self._stopping:
            raise Stopping
        return code

    def kill(self, run: JobRun) -> None:
        """SIGKILL ``run``'s process group (a kill the scenario itself wants) and forget it."""
        run.kill()
        with self._lock:
            if run in self._live:
                self._live.remove(run)

    def check(self) -> None:
        """Raise ``Stopping`` if the run is stopping: before work that starts no process."""
        if self._stopping:
            raise Stopping

    def stop(self) -> int:
        """Start nothing more and SIGKILL every live job process's group; how many ran."""
        with self._lock:
            self._stopping = True
            live, self._live = self._live, []
        return sum(run.kill() for run in live)
