"""``onceflow status`` per sink: what a sink's batch marks say against the checkpoint's
position (``sink_verdict``), and, for a sink that commits a batch part by part (the Kafka
sink), each part's last batch and the parts behind."""

from __future__ import annotations

from dataclasses import dataclass

from pyspark.sql import SparkSession

from onceflow.config import Guarantee, JobSpec, SinkSpec
from onceflow.guarantees import CheckpointPosition
from onceflow.sinks.base import build_sink

__all__ = ["SinkStatus", "sink_status", "sink_verdict"]


@dataclass(frozen=True)
class SinkStatus:
    """One sink seen against the checkpoint.

    Attributes:
        last_batch: the highest batch id this checkpoint's app id wrote there; None if it
            wrote none, or the sink keeps no marks (``marks_kept`` False).
        other_writers: other app ids -> their highest batch id there.
        verdict: one sentence for the user.
        problem: True when the sink and the checkpoint disagree.
        parts: for a sink that commits a batch part by part (Kafka), this app id's last
            batch in each part; None for any other.
    """

    name: str
    kind: str
    path: str
    marks_kept: bool
    last_batch: int | None
    other_writers: dict[str, int]
    verdict: str
    problem: bool
    parts: dict[int, int] | None = None


def sink_status(
    spark: SparkSession,
    spec: JobSpec,
    sink_spec: SinkSpec,
    app_id: str | None,
    position: CheckpointPosition,
) -> SinkStatus:
    """``sink_spec``'s sink seen against the checkpoint's ``position`` (``app_id``: the
    checkpoint's, None before its first start)."""
    sink = build_sink(spec, sink_spec)
    marks = sink.batch_marks(spark)
    others = {a: b for a, b in (marks or {}).items() if a != app_id}
    last = (marks or {}).get(app_id) if app_id else None
    quarantine = spec.quarantine_sink()
    sparse = quarantine is not None and sink_spec.location == quarantine.location
    verdict, problem = sink_verdict(spec.guarantee, marks, last, others, position, sparse)
    part_marks = getattr(sink, "part_marks", None)  # optional for a plugin's sink
    parts = _parts_of(part_marks(spark), app_id, sink_spec) if part_marks else None
    if parts:
        verdict += _parts_verdict(parts)
    return SinkStatus(
        name=sink.name,
        kind=sink_spec.kind,
        path=sink.path,
        marks_kept=marks is not None,
        last_batch=last,
        other_writers=others,
        verdict=verdict,
        problem=problem,
        parts=parts,
    )


def _parts_of(
    marks: dict[str, dict[int, int]] | None, app_id: str | None, sink_spec: SinkSpec
) -> dict[int, int] | None:
    """This app id's last batch in each part (-1: none yet), or None."""
    if marks is None:
        return None
    count = getattr(sink_spec, "partitions", None) or 1
    mine = marks.get(app_id or "", {})
    return {part: mine.get(part, -1) for part in range(count)}


def _parts_verdict(parts: dict[int, int]) -> str:
    """The parts behind the furthest one: a batch that committed part by part and stopped
    in between (its replay writes the parts missing, and skips the others)."""
    furthest = max(parts.values())
    behind = sorted(part for part, batch in parts.items() if batch < furthest)
    if not behind:
        return f"; all {len(parts)} parts at batch {furthest}"
    described = ", ".join(f"{part} (at {parts[part]})" for part in behind)
    return (
        f"; part(s) {described} behind the others (at {furthest}): batch {furthest} became "
        "visible part by part, and its replay writes only the parts missing"
    )


def sink_verdict(
    guarantee: Guarantee,
    marks: dict[str, int] | None,
    last: int | None,
    others: dict[str, int],
    position: CheckpointPosition,
    sparse: bool = False,
) -> tuple[str, bool]:
    """A sink's state against the checkpoint's ``position`` in one sentence, and whether
    the two disagree. ``marks`` are all the sink's (None: it keeps none), ``last`` this
    checkpoint's app id's last batch there, ``others`` the other app ids' last batches.
    A ``sparse`` output (the quarantine table) is written only by the batches that have
    rows for it, so batches missing there are no loss."""
    if marks is None:
        return "keeps no batch marks: its agreement with the checkpoint cannot be read", False
    planned, committed = position.last_planned, position.last_committed
    if last is None:
        if others:
            ids = ", ".join(f"{a} (to batch {b})" for a, b in sorted(others.items()))
            return (
                f"written by another checkpoint's app id {ids}, never by this one: a fresh "
                "or replaced checkpoint against an existing sink",
                True,
            )
        if sparse:
            return "empty: no batch has quarantined a record yet", False
        if committed is not None and guarantee is not Guarantee.AT_MOST_ONCE:
            return f"holds no batch of this checkpoint, which committed batch {committed}", True
        return "empty: nothing written yet", False
    if planned is None or last > planned:
        return (
            f"holds batch {last}, but the checkpoint planned only up to "
            f"{'none' if planned is None else planned}: the checkpoint was rolled back or "
            "replaced; exactly-once writes will skip those batch ids when they come again",
            True,
        )
    if last == position.in_flight:
        return f"holds batch {last}, the one in flight: {_replay_effect(guarantee)}", False
    if committed is not None and last < committed:
        if sparse:
            return (
                f"last batch {last}: written only by the batches that quarantine records",
                False,
            )
        if guarantee is Guarantee.AT_MOST_ONCE:
            return (
                f"last batch {last}, the checkpoint committed {committed}: batches after "
                f"{last} wrote nothing here (at-most-once loses a batch a crash interrupted)",
                False,
            )
        return (
            f"last batch {last}, but the checkpoint committed {committed}: the batches "
            "between are missing here",
            True,
        )
    return f"in step: last batch {last}", False


def _replay_effect(guarantee: Guarantee) -> str:
    if guarantee is Guarantee.AT_MOST_ONCE:
        return "its replay is skipped by the at-most-once claim"
    if guarantee is Guarantee.EXACTLY_ONCE:
        return "its replay skips this sink (the batch id guards it)"
    return "its replay writes it again (at-least-once: duplicates)"
