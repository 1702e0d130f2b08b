"""What the stateful keys and the stream's transforms refuse before Spark starts.

Each refusal is a combination Spark would reject only when the query starts, or worse,
accept and then get wrong without a word: a watermark with nothing to bound, an
``update`` aggregate appended to a table (every change of a group becomes another row), a
session window updated in place (a session's start moves when sessions merge, so its new
row matches nothing of the old one).
"""

from __future__ import annotations

from onceflow.config.documents import KeyPath
from onceflow.config.job import JobSpec
from onceflow.config.kinds import kinds
from onceflow.config.modes import WriteMode

__all__ = ["stateful_problems"]

Problem = tuple[KeyPath, str]
#: The write modes that match a row on keys, so a group's new value replaces its old one.
_KEYED_MODES = frozenset({WriteMode.MERGE, WriteMode.UPSERT})


def stateful_problems(spec: JobSpec) -> list[Problem]:
    """Every stateful key the job cannot keep its promise with, as (key path, why)."""
    problems: list[Problem] = []
    if spec.watermark is not None and not spec.is_stateful:
        problems.append(
            (("watermark",), "a watermark bounds the state of a stateful key (dedup, "
             "aggregate, a stream join) and this job has none: it would change nothing")
        )  # fmt: skip
    dedup = spec.dedup
    if dedup is not None and dedup.within_watermark and spec.watermark is None:
        problems.append(
            (("dedup", "within_watermark"), "deduplicating within the watermark needs one: "
             "add watermark: {column: <event time>, delay: <interval>}")
        )  # fmt: skip
    return problems + _aggregate_problems(spec)


def _aggregate_problems(spec: JobSpec) -> list[Problem]:
    aggregate = spec.aggregate
    if aggregate is None:
        return []
    problems: list[Problem] = []
    window = aggregate.window
    if window is not None and spec.window_column is None:
        problems.append(
            (("aggregate", "window"), "a window needs an event-time column: add watermark: "
             "{column: <event time>, delay: <interval>}, or window.column")
        )  # fmt: skip
    if aggregate.output == "append":
        problems += _append_problems(spec)
    else:
        if window is not None and window.type == "session":
            problems.append(
                (("aggregate", "output"), "a session's start moves when a late event merges "
                 "it with another, so its updated row would not replace the old one: use "
                 "output: append (each session once, when the watermark closes it)")
            )  # fmt: skip
        if spec.dedup is not None:
            problems.append(
                (("aggregate", "output"), "Spark runs several stateful operators (dedup, "
                 "then aggregate) only in append mode: use output: append")
            )  # fmt: skip
        problems += _update_sink_problems(spec)
    return problems


def _append_problems(spec: JobSpec) -> list[Problem]:
    """``append`` emits a group once, when the watermark says it can no longer change: it
    needs a window over the watermark's own column."""
    aggregate = spec.aggregate
    assert aggregate is not None  # noqa: S101 - the caller's
    if aggregate.window is None:
        return [
            (("aggregate", "output"), "append emits a group once, final, and only a window "
             "the watermark has passed is final: add a window, or use output: update")
        ]  # fmt: skip
    if spec.watermark is None:
        return [
            (("aggregate", "output"), "append emits a window once the watermark passes its "
             "end: add watermark: {column: <event time>, delay: <interval>}")
        ]  # fmt: skip
    if spec.window_column != spec.watermark.column:
        return [
            (("aggregate", "window", "column"), f"append closes a window by the watermark, "
             f"which is on '{spec.watermark.column}', not '{spec.window_column}'")
        ]  # fmt: skip
    return []


def _update_sink_problems(spec: JobSpec) -> list[Problem]:
    """Under ``update`` every sink must replace a group's row: a keyed mode on the
    aggregate's keys (a sink with a ``query`` reshapes the rows: its keys are its own)."""
    aggregate = spec.aggregate
    assert aggregate is not None  # noqa: S101 - the caller's
    wanted = ", ".join(aggregate.keys)
    problems: list[Problem] = []
    for index, sink in enumerate(spec.sinks):
        kind = kinds().sink(sink.kind)
        mode = spec.mode_of(sink)
        if mode not in _KEYED_MODES:
            problems.append(
                (("sinks", index, "mode"), f"output: update hands on a group's new value "
                 f"each batch it changes, and {mode} would keep every value as another row: "
                 f"write it by a mode that matches on keys [{wanted}] (merge, upsert), or "
                 f"use output: append")
            )  # fmt: skip
            continue
        keys = kind.match_keys(sink)
        if keys and sink.query is None and set(keys) != set(aggregate.keys):
            problems.append(
                (("sinks", index), f"output: update replaces each group's row by its keys "
                 f"[{wanted}]; this sink matches on [{', '.join(keys)}]")
            )  # fmt: skip
    return problems
