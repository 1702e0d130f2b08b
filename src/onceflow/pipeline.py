"""The batch pipeline: what ``foreachBatch`` runs for every micro-batch of a job.

    batch ──quality split──▶ good rows │ quarantined rows
          ──transform.batch_python──▶ the good rows the sinks get
          ──guarantee policy──▶ admitted? (at-most-once's claim)
          ──each sink, then the quarantine──▶ written with (app id, batch id), guarded or not
          ──▶ a BatchReport for the progress line and the metrics file

Every sink of a batch is written with the same batch id; under exactly-once each is guarded
by it, so a crash between two sinks replays the batch and the sink already written skips
it while the other catches up. Before every write the job's locks are asked
(``lease``): a job that lost its lock writes nothing more. A conflict a sink says is safe
to retry (Delta's) is retried, a bounded number of times.

Everything here is built once per start (``runner.start_query``) and then only called.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

from pyspark.sql import DataFrame, SparkSession

from onceflow.config import JobSpec
from onceflow.contracts import BatchContext, BatchReport, BatchReports, Sink
from onceflow.guarantees import JoinVersions, WritePolicy, retry_conflicts
from onceflow.quality import QualityStage
from onceflow.transforms import apply_batch_python, join_table

__all__ = ["BatchPipeline", "batch_function"]

_log = logging.getLogger("onceflow.guarantees")


@dataclass(frozen=True)
class BatchPipeline:
    """The ``foreachBatch`` writer of one job (see the module).

    Attributes:
        job: the job's name, for messages.
        app_id: the checkpoint's app id every write carries.
        sinks: the job's sinks, in write order.
        policy: the guarantee's policy.
        reports: where each batch's report goes.
        stage: parses and judges each batch first; None when nothing can be dropped,
            quarantined or failed (the batch goes to the sinks as it is).
        quarantine: the quarantine table, written after the sinks when a batch has rows
            for it; None without a stage that quarantines.
        retries: how often a conflict is retried per write.
        replay_of: the batch in flight when the job last stopped: the first batch of this
            run, if it has that id, is its replay.
        lease: raises when the job's locks are no longer its own.
        shape: the job's own function of each batch's good rows and its id
            (``transform.batch_python``), applied before the sinks get them.
    """

    job: str
    app_id: str
    sinks: Sequence[Sink]
    policy: WritePolicy
    reports: BatchReports
    stage: QualityStage | None = None
    quarantine: Sink | None = None
    retries: int = 3
    replay_of: int | None = None
    lease: Callable[[], None] | None = None
    shape: Callable[[DataFrame, int], DataFrame] | None = None

    def __call__(self, batch: DataFrame, batch_id: int) -> None:
        report = BatchReport(batch_id)
        # judged before the claim: an expect_or_fail batch must not be claimed and then lost
        with self._outputs(batch, batch_id, report) as outputs:
            with _timed() as guard:
                admitted = self.policy.admit(batch_id)
            report.guard_ms = guard.ms
            if not admitted:
                _log.warning(
                    "job '%s': batch %d is claimed already (at-most-once): skipped; it is a "
                    "replay after a crash, and whatever it had not written is lost, as "
                    "at-most-once allows",
                    self.job,
                    batch_id,
                )
                report.replay, report.action, report.skipped_by = (
                    True,
                    "skipped_as_replay",
                    "claims",
                )
                self.reports.put(report)
                return
            context = BatchContext(self.app_id, batch_id, self.policy.guarded)
            if batch_id == self.replay_of:
                report.replay = True
                report.sinks = self._replay_outcomes(batch, [s for s, _ in outputs], context)
            for sink, frame in outputs:
                with _timed() as write:
                    report.retries += self._write(sink, frame, context)
                report.write_ms[sink.name] = round(write.ms, 1)
        report.action = _action(report)
        self.reports.put(report)

    @contextmanager
    def _outputs(
        self, batch: DataFrame, batch_id: int, report: BatchReport
    ) -> Iterator[list[tuple[Sink, DataFrame]]]:
        """Each output with the frame it writes: the batch, or with a quality stage its
        good rows (and the quarantined ones for the quarantine). A frame several outputs
        read is persisted for the batch and unpersisted after."""
        if self.stage is not None:
            # the split reads one judged, persisted frame: the outputs share it already
            with self.stage.split(batch, batch_id) as split:
                report.quality = split.counts.as_note()
                # the judged frame is persisted; what a join or the job's function makes of
                # it is persisted too when several sinks read it, so it runs once
                reshaped = self.shape is not None and len(self.sinks) > 1
                good = self._shaped(split.good, batch_id)
                good = good.persist() if reshaped else good
                outputs = [(sink, good) for sink in self.sinks]
                # a batch that quarantined nothing leaves the quarantine table alone: an
                # empty commit per batch would cost time and guard nothing (a replay is empty)
                if self.quarantine is not None and split.counts.quarantined:
                    outputs.append((self.quarantine, split.quarantined))
                try:
                    yield outputs
                finally:
                    if reshaped:
                        good.unpersist()
            return
        reused = len(self.sinks) > 1
        frame = self._shaped(batch, batch_id)
        frame = frame.persist() if reused else frame
        try:
            yield [(sink, frame) for sink in self.sinks]
        finally:
            if reused:
                frame.unpersist()

    def _shaped(self, good: DataFrame, batch_id: int) -> DataFrame:
        """The rows the sinks get: ``good`` through the job's own batch function, if any."""
        return good if self.shape is None else self.shape(good, batch_id)

    def _write(self, sink: Sink, frame: DataFrame, context: BatchContext) -> int:
        """Write, retrying the sink's own conflicts; how many retries it took."""

        def attempt() -> None:
            if self.lease is not None:
                self.lease()  # a lost lock stops the batch here, before this write
            sink.write(frame, context)

        return retry_conflicts(
            attempt,
            what=f"job '{self.job}' sink '{sink.name}' batch {context.batch_id}",
            retries=self.retries,
            is_conflict=sink.is_conflict,
        )

    def _replay_outcomes(
        self, batch: DataFrame, sinks: list[Sink], context: BatchContext
    ) -> dict[str, str]:
        """What replaying ``context.batch_id`` does to each output, from the marks it keeps
        (``WritePolicy.replay_outcome``); a duplicate it writes is logged."""
        outcomes = {}
        for sink in sinks:
            marks = sink.batch_marks(batch.sparkSession)
            held = marks is not None and marks.get(context.app_id, -1) >= context.batch_id
            outcomes[sink.name] = self.policy.replay_outcome(held, sink.mode)
            if outcomes[sink.name] == "written_again":
                _log.warning(
                    "job '%s': batch %d is a replay and sink '%s' already holds it: written "
                    "again (%s allows duplicates)",
                    self.job,
                    context.batch_id,
                    sink.name,
                    self.policy.guarantee.value,
                )
        return outcomes


def _action(report: BatchReport) -> str:
    """The batch's action once its outputs were called."""
    if report.sinks and all(o == "skipped_as_replay" for o in report.sinks.values()):
        return "skipped_as_replay"
    if report.retries:
        return "retried"
    return "replayed" if report.replay else "written"


class _Stopwatch:
    ms = 0.0


@contextmanager
def _timed() -> Iterator[_Stopwatch]:
    watch = _Stopwatch()
    started = time.perf_counter()
    try:
        yield watch
    finally:
        watch.ms = (time.perf_counter() - started) * 1000


def batch_function(
    spark: SparkSession, spec: JobSpec
) -> Callable[[DataFrame, int], DataFrame] | None:
    """What the pipeline does to each batch's good rows: the ``join`` (at the table's
    version recorded for the batch), then ``transform.batch_python``; None for neither."""
    join, reference = spec.join, spec.transform.batch_python
    # a stream join runs in the stream (onceflow.stream), not per batch
    table = join.table if join is not None else None
    if table is None and reference is None:
        return None
    versions = JoinVersions(spark, spec.checkpoint) if table is not None else None

    def shape(good: DataFrame, batch_id: int) -> DataFrame:
        if join is not None and table is not None and versions is not None:
            good = join_table(good, join, versions.version_for(batch_id, table))
        if reference is not None:
            good = apply_batch_python(good, batch_id, reference, spec.name)
        return good

    return shape
