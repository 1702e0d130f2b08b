"""Ctrl-C on a running job: the query stops, the process does not die in the middle of it.

pyspark's own SIGINT handler cancels every Spark job and raises KeyboardInterrupt wherever
the main thread is, usually inside the py4j call that waits for the query: py4j then logs
the broken call, the batch fails inside ``foreachBatch``, and Spark logs that failure with
the batch's Python traceback, over a hundred lines in all. ``StopOnInterrupt`` replaces the
handler while a job runs: Ctrl-C only asks for a stop, and the runner, which waits for the
query in short steps, stops it (``StreamingQuery.stop``) and reports where the checkpoint
stands. A second Ctrl-C leaves at once (KeyboardInterrupt, as Python's own handler does).

A batch in flight is cancelled by the stop, and is not committed: the next start replays it
under the job's guarantee, as after any crash. ``guard`` makes its failure read as the
cancellation it is, so that Spark ends the query quietly instead of as failed. From the
stop on, the JVM's log is off: what Spark and Delta log then, some of it after the query has
ended, only echoes the stop (a job group with no job left to cancel, killed tasks, a write
aborted with an InterruptedException and its stack), and the one line the run prints says
it all. The next ``build_session`` (the next run) sets the log level again.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType, TracebackType
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.streaming.query import StreamingQuery

from onceflow.config import Guarantee, JobSpec
from onceflow.contracts import BatchWriter
from onceflow.guarantees import CheckpointPosition

__all__ = ["BatchStopped", "StopOnInterrupt", "stopped_line"]

# how often the runner looks up from waiting for the query to see whether a stop was asked
_POLL_SECONDS = 1

_REPLAY = {
    Guarantee.AT_LEAST_ONCE: "replays it (at-least-once: an append sink may get its rows twice)",
    Guarantee.AT_MOST_ONCE: "skips it if it was claimed (at-most-once: what it did not write "
    "is lost), else replays it",
    Guarantee.EXACTLY_ONCE: "replays it (exactly-once: each sink skips what it holds)",
}


class BatchStopped(Exception):
    """A batch cut short because its query was being stopped; it is replayed at restart."""


class StopOnInterrupt:
    """While entered (in the main thread), Ctrl-C sets ``requested`` instead of raising.

    Elsewhere (a thread, where Python delivers no signals) it does nothing, and a stop
    happens only if asked by ``request``. ``spark`` is the session the query runs in.
    """

    def __init__(self, spark: SparkSession) -> None:
        self._spark = spark
        self.requested = threading.Event()
        self._previous: Any = None
        self._installed = False

    def __enter__(self) -> StopOnInterrupt:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._on_sigint)
            self._installed = True
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._installed:
            signal.signal(signal.SIGINT, self._previous)
            self._installed = False

    def request(self) -> None:
        """Ask for the stop, as Ctrl-C does."""
        self.requested.set()

    def _on_sigint(self, signum: int, frame: FrameType | None) -> None:
        if self.requested.is_set():  # the second Ctrl-C: the user does not want to wait
            raise KeyboardInterrupt
        self.requested.set()

    def wait(self, query: StreamingQuery) -> bool:
        """Wait for ``query`` to end; stop it when a stop is asked. True when it was
        stopped so, False when it ended by itself (a failure raises, as
        ``awaitTermination`` does)."""
        while not query.awaitTermination(_POLL_SECONDS):
            if self.requested.is_set():
                jvm: Any = self._spark.sparkContext._jvm
                log4j = jvm.org.apache.logging.log4j
                log4j.core.config.Configurator.setRootLevel(log4j.Level.OFF)
                query.stop()
                return True
        return False

    def guard(self, writer: BatchWriter) -> BatchWriter:
        """``writer``, with a failure after a stop was asked (the stop cancelled the batch's
        Spark jobs) raised as a short BatchStopped that Spark takes for the cancellation.

        Spark ends a stopped query quietly only when the batch's failure reads as the
        stop's: its message names the cancelled job group (the query's run id). Passed on
        whole, the failure carries the Python and JVM stacks, which Spark logs as a failed
        query; Spark 4.2's check of such a long message even overflows the JVM's stack.
        """

        def guarded(batch: DataFrame, batch_id: int) -> None:
            try:
                writer(batch, batch_id)
            except Exception:
                if not self.requested.is_set():
                    raise
                group = batch.sparkSession.sparkContext.getLocalProperty("spark.jobGroup.id")
                raise BatchStopped(
                    f"org.apache.spark.SparkException: batch {batch_id} cancelled: its query "
                    f"(job group {group}) was stopped"
                ) from None

        return guarded


def stopped_line(spec: JobSpec, position: CheckpointPosition) -> str:
    """One line: where a job stopped by Ctrl-C stands, and what its next start does."""
    committed = position.last_committed
    where = (
        f"the last batch it committed is {committed}"
        if committed is not None
        else "it committed no batch"
    )
    line = f"job '{spec.name}' stopped (Ctrl-C): {where} (checkpoint {spec.checkpoint}); "
    in_flight = position.in_flight
    if in_flight is None:
        after = f"after batch {committed}" if committed is not None else "from the start"
        return line + f"a restart resumes {after}"
    return line + (
        f"batch {in_flight} was in flight: a restart {_REPLAY[spec.guarantee]}, then resumes"
    )
