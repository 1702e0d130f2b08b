"""What a ``join`` refuses before Spark starts.

A stream-stream join keeps both sides' rows as state until the watermarks say nothing
can match them any more: without a watermark on each side and a time range (``within``)
that state grows without bound (and Spark refuses a left join outright, but only when the
query starts). Its second source is read under the job's guarantee like the first, so it
must replay a batch's records as the first does. A table join has no time range and is
always a left join: the stream join's settings there would be ignored without a word.
"""

from __future__ import annotations

from onceflow.config.documents import KeyPath
from onceflow.config.job import JobSpec
from onceflow.config.kinds import kinds
from onceflow.config.modes import Guarantee

__all__ = ["join_problems"]

Problem = tuple[KeyPath, str]


def join_problems(spec: JobSpec) -> list[Problem]:
    """Every way the job's ``join`` cannot keep its promise, as (key path, why)."""
    join = spec.join
    if join is None:
        return []
    if join.stream is None:
        return _table_problems(spec)
    problems: list[Problem] = []
    if spec.watermark is None:
        problems.append(
            (("watermark",), "a stream join keeps this stream's rows as state until the "
             "watermark passes their time range: add watermark: {column: <event time>, "
             "delay: <interval>}")
        )  # fmt: skip
    if join.stream.watermark is None:
        problems.append(
            (("join", "stream", "watermark"), "a stream join keeps the second stream's rows "
             "as state until its watermark passes them: add watermark: {column: <event "
             "time>, delay: <interval>} to join.stream")
        )  # fmt: skip
    if join.within is None:
        problems.append(
            (("join", "within"), "without a time range the join keeps every row of both "
             "streams forever, and a left join never knows a row has no match: add within: "
             "\"<other time> BETWEEN <time> AND <time> + INTERVAL <n> <unit>\"")
        )  # fmt: skip
    aggregate = spec.aggregate
    if aggregate is not None and aggregate.output == "update":
        problems.append(
            (("aggregate", "output"), "Spark runs several stateful operators (a stream "
             "join, then aggregate) only in append mode: use output: append")
        )  # fmt: skip
    source = join.stream.source
    kind = kinds().source(source.kind)
    if spec.guarantee is Guarantee.EXACTLY_ONCE and not kind.replayable:
        title = kind.title or kind.name
        problems.append(
            (("join", "stream", "source", "kind"), f"exactly-once replays a batch with the "
             f"same records from both streams, and a {title} source does not replay them")
        )  # fmt: skip
    problems += [(("join", "stream", "source", *key), why) for key, why in kind.rules(source, spec)]
    return problems


def _table_problems(spec: JobSpec) -> list[Problem]:
    """A table join's keys name one column both sides have; it has no ``within`` or ``how``."""
    join = spec.join
    assert join is not None  # noqa: S101 - the caller's
    problems: list[Problem] = []
    for name in ("within", "how"):
        if getattr(join, name) is not None:
            problems.append(
                (("join", name), f"{name} is read only by a stream join (join.stream); a "
                 "table join is a left join of each batch with the table, with no time range")
            )  # fmt: skip
    for index, (this, other) in enumerate(join.key_pairs):
        if this != other:
            problems.append(
                (("join", "keys", index), "a table join matches columns of one name on both "
                 f"sides; name one column, not '{this} = {other}'")
            )  # fmt: skip
    return problems
