"""What every sink shares: its identity, the batch shaping, and how failures surface."""

from __future__ import annotations

from pyspark.sql import DataFrame, SparkSession

from onceflow.config import DeltaSinkSpec, ParquetSinkSpec, PostgresSinkSpec, WriteMode
from onceflow.contracts import BatchContext
from onceflow.errors import SinkError, first_line
from onceflow.sinks.shaping import shaped_batch

__all__ = ["BatchSink", "is_delta_conflict"]


def is_delta_conflict(exc: BaseException) -> bool:
    """True for Delta's typed concurrent-modification exceptions (safe to retry)."""
    from delta import exceptions as delta_errors

    conflicts = (
        delta_errors.ConcurrentAppendException,
        delta_errors.ConcurrentDeleteDeleteException,
        delta_errors.ConcurrentDeleteReadException,
        delta_errors.ConcurrentTransactionException,
        delta_errors.ConcurrentWriteException,
        delta_errors.DeltaConcurrentModificationException,
        delta_errors.MetadataChangedException,
        delta_errors.ProtocolChangedException,
    )
    return isinstance(exc, conflicts)


class BatchSink:
    """A sink of one job: subclasses write a shaped batch in ``_write``.

    ``write`` runs the sink's ``query`` over the batch, then ``_write``; a failure comes
    out as SINK_WRITE_FAILED naming job, sink and batch, except Delta's conflict
    exceptions, which pass through unwrapped so the policy's retry can recognise them, and
    the sink's own SinkErrors, which say more already.
    """

    def __init__(
        self, job: str, spec: DeltaSinkSpec | ParquetSinkSpec | PostgresSinkSpec, mode: WriteMode
    ) -> None:
        self._job = job
        self._spec = spec
        self._mode = mode

    @property
    def name(self) -> str:
        return self._spec.name

    @property
    def path(self) -> str:
        return self._spec.path

    @property
    def mode(self) -> WriteMode:
        return self._mode

    def write(self, batch: DataFrame, context: BatchContext) -> None:
        """Write one batch as ``mode`` says; see the subclass for what a replay does."""
        try:
            with shaped_batch(batch, self._spec.query, self.name) as frame:
                self._write(frame, context)
        except Exception as exc:
            if is_delta_conflict(exc) or isinstance(exc, SinkError):
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

    def check(self) -> None:
        """Called once before the query starts; raises when the sink cannot be written.
        File sinks are checked with the checkpoint's storage (``storage.check_storage``)."""

    def batch_marks(self, spark: SparkSession) -> dict[str, int] | None:
        """App id -> the highest batch id that app wrote here, from the marks the sink
        keeps (Delta's commit markers and transaction ids, the database ledger); None for a
        sink that keeps no marks (Parquet)."""
        return None

    def foreign_writers(self, spark: SparkSession, app_id: str) -> set[str]:
        """The app ids other than ``app_id`` whose writes the sink holds, by its marks."""
        return set(self.batch_marks(spark) or {}) - {app_id}

    def read(self, spark: SparkSession) -> DataFrame:
        """What the sink holds, read as any reader would (verification, row counts)."""
        return spark.read.format(self._spec.kind).load(self.path)

    def _write(self, frame: DataFrame, context: BatchContext) -> None:
        raise NotImplementedError
