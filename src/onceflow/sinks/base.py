"""What every sink shares: its identity, the batch shaping, how failures surface, and how
a job's sinks are built from their kinds (``build_sink``)."""

from __future__ import annotations

from typing import Any

from pyspark.sql import DataFrame, SparkSession

from onceflow.config import JobSpec, SinkSpec, WriteMode
from onceflow.config.kinds import kinds, load_reference
from onceflow.contracts import BatchContext
from onceflow.errors import SinkError, first_line
from onceflow.sinks.shaping import shaped_batch

__all__ = ["BatchSink", "build_sink"]


def build_sink(job: JobSpec, spec: SinkSpec) -> BatchSink:
    """The sink object for one of ``job``'s outputs, built by its kind."""
    kind = kinds().sink(spec.kind)
    factory = load_reference(kind.build)
    sink: BatchSink = factory(job, spec, job.mode_of(spec))
    return sink


class BatchSink:
    """A sink of one job: subclasses write a shaped batch in ``_write``.

    ``write`` runs the sink's ``query`` over the batch, then ``_write``; a failure comes
    out as SINK_WRITE_FAILED naming job, sink and batch, except a conflict the sink says is
    safe to retry (``is_conflict``), which passes through unwrapped for the retry, and the
    sink's own SinkErrors, which say more already.
    """

    def __init__(self, job: str, spec: Any, mode: WriteMode) -> None:
        self._job = job
        self._spec = spec
        self._mode = mode

    @property
    def name(self) -> str:
        name: str = self._spec.name
        return name

    @property
    def path(self) -> str:
        """Where the sink writes (a folder, or ``postgres:<connection>/<table>``)."""
        location: str = self._spec.location
        return location

    @property
    def mode(self) -> WriteMode:
        return self._mode

    def write(self, batch: DataFrame, context: BatchContext) -> None:
        """Write one batch as ``mode`` says; see the subclass for what a replay does."""
        try:
            with shaped_batch(batch, self._spec.query, self.name) as frame:
                self._write(frame, context)
        except Exception as exc:
            if self.is_conflict(exc) or isinstance(exc, SinkError):
                raise
            raise self._write_failed(context, first_line(exc)) from exc

    def _write_failed(self, context: BatchContext, cause: str) -> SinkError:
        """SINK_WRITE_FAILED for this sink and batch."""
        return SinkError(
            "SINK_WRITE_FAILED",
            job=self._job,
            sink=self.name,
            batch_id=context.batch_id,
            cause=cause,
        )

    def is_conflict(self, exc: BaseException) -> bool:
        """True when ``exc`` says another writer committed first, so the write committed
        nothing and may be tried again (Delta's typed conflicts); False by default."""
        return False

    def check(self) -> None:
        """Called once before the query starts; raises when the sink cannot be written.
        File sinks are checked with the checkpoint's storage (``storage.check_storage``)."""

    def check_resume(self, spark: SparkSession, app_id: str, last_committed: int | None) -> None:
        """Called before the first batch with the checkpoint's app id and its last committed
        batch; raises when the sink lost the marks a replay would be guarded by (nothing to
        check by default: Delta, Parquet and PostgreSQL keep theirs with the data)."""

    def batch_marks(self, spark: SparkSession) -> dict[str, int] | None:
        """App id -> the highest batch id that app wrote here, from the marks the sink
        keeps (Delta's commit markers and transaction ids, the database ledger, Parquet's
        marks files); None for a sink that keeps none."""
        return None

    def part_marks(self, spark: SparkSession) -> dict[str, dict[int, int]] | None:
        """App id -> part -> the last batch that part committed, for a sink that commits a
        batch part by part (Kafka's transactions); None for one that commits it whole."""
        return None

    def foreign_writers(self, spark: SparkSession, app_id: str) -> set[str]:
        """The app ids other than ``app_id`` whose writes the sink holds, by its marks."""
        return set(self.batch_marks(spark) or {}) - {app_id}

    def read(self, spark: SparkSession) -> DataFrame:
        """What the sink holds, read as any reader would (``onceflow run``'s row counts)."""
        raise NotImplementedError(f"sink '{self.name}' cannot be read back")

    def _write(self, frame: DataFrame, context: BatchContext) -> None:
        raise NotImplementedError
