"""The writer policies: how a job's sinks are wrapped into its ``foreachBatch`` writer.

Spark writes ``offsets/N`` before batch N and ``commits/N`` after ``foreachBatch`` returns;
a crash in between replays N with the same batch id and, for a replayable source and a
deterministic query, the same rows. Each policy below states what it makes of that.

| guarantee     | order of work                                | after a crash anywhere          |
|---------------|----------------------------------------------|---------------------------------|
| at-most-once  | ledger(N), then sinks; N in ledger -> skip   | no duplicate; N may be lost     |
| at-least-once | sinks, then Spark commits                    | no loss; N may be written twice |
| exactly-once  | sinks, each guarded by (app id, N)           | no loss, no duplicate           |
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

from pyspark.sql import DataFrame

from onceflow.config import Guarantee, WriteMode
from onceflow.contracts import BatchContext, BatchWriter, Sink, record_batch_note
from onceflow.guarantees.ledger import BatchLedger
from onceflow.guarantees.retry import retry_conflicts
from onceflow.quality import QualityStage

__all__ = ["WriterSettings", "guarded_writer"]

_log = logging.getLogger("onceflow.guarantees")


@dataclass(frozen=True)
class WriterSettings:
    """Everything a policy needs besides the sinks."""

    job: str
    guarantee: Guarantee
    app_id: str
    retries: int = 3
    ledger: BatchLedger | None = None
    # parse and judge each batch first; the good rows go to the sinks, the rest to quarantine
    quality: QualityStage | None = None
    quarantine: Sink | None = None
    # the batch in flight when the job last stopped (``CheckpointPosition.in_flight``): the
    # first batch of this run, if it has that id, is its replay
    replay_of: int | None = None
    # raises when the job's locks are no longer its own; asked before every sink write
    lease: Callable[[], None] | None = None


def guarded_writer(sinks: Sequence[Sink], settings: WriterSettings) -> BatchWriter:
    """The ``foreachBatch`` writer for ``sinks`` under ``settings.guarantee``.

    Every sink of a batch is written with the same batch id; under exactly-once each is
    guarded by it, so a crash between two sinks replays the batch and the sink already
    written skips it while the other catches up.
    """
    if settings.guarantee is Guarantee.AT_MOST_ONCE and settings.ledger is None:
        raise ValueError("at-most-once needs the checkpoint's ledger")
    guarded = settings.guarantee is Guarantee.EXACTLY_ONCE

    def write(batch: DataFrame, batch_id: int) -> None:
        # judged before the ledger: an expect_or_fail batch must not be claimed and then lost
        with _outputs(batch, batch_id, sinks, settings) as outputs:
            timing = _BatchTiming()
            if settings.ledger is not None:
                with timing.guard():
                    claimed = settings.ledger.claim(batch_id)
                if not claimed:
                    _log.warning(
                        "job '%s': batch %d is in the at-most-once ledger: skipped (a replay "
                        "after a crash; whatever it had not written is lost, as at-most-once "
                        "allows)",
                        settings.job,
                        batch_id,
                    )
                    timing.replay = True
                    timing.record(settings.job, batch_id, "skipped_as_replay", by="ledger")
                    return
            context = BatchContext(settings.app_id, batch_id, guarded)
            if batch_id == settings.replay_of:
                timing.replay = True
                timing.sinks = _replay_outcomes(batch, [s for s, _ in outputs], context, settings)
            for sink, frame in outputs:
                with timing.write(sink.name):
                    timing.retries += _write_with_retries(sink, frame, context, settings)
            timing.record(settings.job, batch_id, timing.action())

    return write


@contextmanager
def _outputs(
    batch: DataFrame, batch_id: int, sinks: Sequence[Sink], settings: WriterSettings
) -> Iterator[list[tuple[Sink, DataFrame]]]:
    """Each sink with the frame it writes: the batch, or with a quality stage its good rows
    (and the quarantined ones for the quarantine sink). A frame several sinks read is
    persisted for the batch and unpersisted after."""
    if settings.quality is not None:
        # the split reads one judged, persisted frame: the sinks share it already
        with settings.quality.split(batch, batch_id) as split:
            outputs = [(sink, split.good) for sink in sinks]
            # a batch that quarantined nothing leaves the quarantine table alone: an empty
            # commit per batch would cost time and guard nothing (a replay is empty too)
            if settings.quarantine is not None and split.counts.quarantined:
                outputs.append((settings.quarantine, split.quarantined))
            yield outputs
        return
    reused = len(sinks) > 1
    frame = batch.persist() if reused else batch
    try:
        yield [(sink, frame) for sink in sinks]
    finally:
        if reused:
            frame.unpersist()


def _replay_outcomes(
    batch: DataFrame, sinks: list[Sink], context: BatchContext, settings: WriterSettings
) -> dict[str, str]:
    """What replaying ``context.batch_id`` does to each sink, from the marks it keeps:
    ``skipped_as_replay`` (it holds the batch and its guard skips it), ``written_again``
    (it holds the batch and nothing guards it: duplicates, or an update applied twice),
    ``replaced`` (replace-batch overwrites it), ``written`` (it did not hold the batch, or
    keeps no marks to tell)."""
    outcomes = {}
    for sink in sinks:
        marks = sink.batch_marks(batch.sparkSession)
        held = marks is not None and marks.get(context.app_id, -1) >= context.batch_id
        if not held:
            outcomes[sink.name] = "written"
        elif sink.mode is WriteMode.REPLACE_BATCH:
            outcomes[sink.name] = "replaced"
        elif context.guarded:
            outcomes[sink.name] = "skipped_as_replay"
        else:
            outcomes[sink.name] = "written_again"
            _log.warning(
                "job '%s': batch %d is a replay and sink '%s' already holds it: written "
                "again (%s allows duplicates)",
                settings.job,
                context.batch_id,
                sink.name,
                settings.guarantee.value,
            )
    return outcomes


class _BatchTiming:
    """What a batch's writer did, left as the batch's ``guarantee`` note: its ``action``
    (``written``, ``retried``, ``replayed``, ``skipped_as_replay``), whether the batch was
    a replay, each sink's outcome on a replay, and where the time went: the guard's own
    work (the at-most-once ledger claim) and each sink's write, in ms.

    Under exactly-once the guard is inside each sink's commit (Delta's transaction id, the
    database ledger row), so it is part of ``write_ms``; ``make bench`` measures it against
    the same write unguarded."""

    def __init__(self) -> None:
        self.guard_ms = 0.0
        self.write_ms: dict[str, float] = {}
        self.retries = 0  # Delta conflicts retried, over every sink
        self.replay = False  # the batch in flight when the job last stopped
        self.sinks: dict[str, str] = {}  # sink -> its outcome, on a replay

    def action(self) -> str:
        """The batch's action once its sinks were called."""
        if self.sinks and all(o == "skipped_as_replay" for o in self.sinks.values()):
            return "skipped_as_replay"
        if self.retries:
            return "retried"
        return "replayed" if self.replay else "written"

    @contextmanager
    def guard(self) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.guard_ms += (time.perf_counter() - started) * 1000

    @contextmanager
    def write(self, sink: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.write_ms[sink] = round((time.perf_counter() - started) * 1000, 1)

    def record(self, job: str, batch_id: int, action: str, by: str | None = None) -> None:
        note: dict[str, object] = {
            "action": action,
            "replay": self.replay,
            "guard_ms": round(self.guard_ms, 1),
            "write_ms": self.write_ms,
            "retries": self.retries,
        }
        if by is not None:
            note["by"] = by
        if self.sinks:
            note["sinks"] = self.sinks
        record_batch_note(job, batch_id, "guarantee", note)


def _write_with_retries(
    sink: Sink, frame: DataFrame, context: BatchContext, settings: WriterSettings
) -> int:
    """Write, retrying Delta's typed conflicts; how many retries it took."""

    def attempt() -> None:
        if settings.lease is not None:
            settings.lease()  # a lost lock stops the batch here, before this write
        sink.write(frame, context)

    return retry_conflicts(
        attempt,
        what=f"job '{settings.job}' sink '{sink.name}' batch {context.batch_id}",
        retries=settings.retries,
    )
