"""What a windowed aggregate of the payments workload must hold, recomputed in plain
Python from the generated payments, never by the job's code.

The job's window (tumbling, sliding or session, with its durations) and its measures say
what to recompute; the measures prove can check are ``count(*)`` (or ``count(1)``) and
``sum(amount)``. A window is keyed by its bounds and its groups (``account``, or none);
``append`` holds only the windows the final watermark (the latest event time less the
delay) has closed.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from onceflow.config import AggregateSpec, JobSpec
from onceflow.prove.workload import Payment, payments

__all__ = ["WindowDelivery", "expected_windows", "measure_windows"]

Key = tuple[datetime, datetime, str | None]
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_UNITS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}
_COUNT = re.compile(r"^count\((\*|1)\)$", re.IGNORECASE)
_SUM = re.compile(r"^sum\(amount\)$", re.IGNORECASE)


def interval(text: str) -> timedelta:
    """``10 seconds``, ``1 minute``, ``2 hours``: what the prove workload's jobs write."""
    found = re.fullmatch(r"\s*(\d+)\s+(second|minute|hour|day)s?\s*", text, re.IGNORECASE)
    if found is None:
        raise ValueError(f"prove reads intervals like '10 seconds' or '1 minute', not {text!r}")
    return timedelta(seconds=int(found.group(1)) * _UNITS[found.group(2).lower()])


def measures_of(aggregate: AggregateSpec) -> tuple[str, str]:
    """The names of the job's ``count(*)`` and ``sum(amount)`` measures."""
    count = [n for n, sql in aggregate.measures.items() if _COUNT.match(sql.replace(" ", ""))]
    total = [n for n, sql in aggregate.measures.items() if _SUM.match(sql.replace(" ", ""))]
    if not count or not total or set(aggregate.group_by) - {"account"}:
        raise ValueError(
            "prove checks a window aggregate of the payments by account (or none) with a "
            "count(*) and a sum(amount) measure"
        )
    return count[0], total[0]


def expected_windows(spec: JobSpec, count: int, seed: int) -> dict[Key, tuple[int, Decimal]]:
    """Window key -> (payments, total) for payments ``1..count`` of ``seed``."""
    aggregate = spec.aggregate
    assert aggregate is not None and aggregate.window is not None  # noqa: S101 - the caller's
    sent = list(payments(count, seed=seed))
    by_account = "account" in aggregate.group_by
    found: dict[Key, list[Decimal]] = defaultdict(list)
    for key, payment in _placed(aggregate, sent, by_account):
        found[key].append(payment.amount)
    closed = None
    if aggregate.output == "append":
        assert spec.watermark is not None  # noqa: S101 - the config rules ensure it
        closed = max(p.event_time for p in sent) - interval(spec.watermark.delay)
    return {
        key: (len(amounts), sum(amounts, Decimal(0)))
        for key, amounts in found.items()
        if closed is None or key[1] <= closed
    }


def _placed(
    aggregate: AggregateSpec, sent: list[Payment], by_account: bool
) -> Iterable[tuple[Key, Payment]]:
    window = aggregate.window
    assert window is not None  # noqa: S101 - the caller's
    if window.type == "session":
        assert window.gap is not None  # noqa: S101 - WindowSpec's validator
        yield from _sessions(sent, interval(window.gap), by_account)
        return
    assert window.duration is not None  # noqa: S101 - WindowSpec's validator
    size = interval(window.duration)
    step = interval(window.slide) if window.slide else size
    for payment in sent:
        offset = (payment.event_time - _EPOCH) % step
        start = payment.event_time - offset
        while start + size > payment.event_time:  # every window that holds it
            yield (start, start + size, payment.account if by_account else None), payment
            start -= step


def _sessions(
    sent: list[Payment], gap: timedelta, by_account: bool
) -> Iterable[tuple[Key, Payment]]:
    """Per group, events less than ``gap`` apart share a session [first, last + gap)."""
    groups: dict[str | None, list[Payment]] = defaultdict(list)
    for payment in sorted(sent, key=lambda p: p.event_time):
        groups[payment.account if by_account else None].append(payment)
    for group, events in groups.items():
        sessions: list[list[Payment]] = []
        for event in events:
            if sessions and event.event_time < sessions[-1][-1].event_time + gap:
                sessions[-1].append(event)
            else:
                sessions.append([event])
        for session in sessions:
            key = (session[0].event_time, session[-1].event_time + gap, group)
            yield from ((key, member) for member in session)


@dataclass(frozen=True)
class WindowDelivery:
    """A window sink against its recomputation: windows as records (lost, repeated) and
    the drift of their values (the totals' absolute differences, payments missing from
    or counted twice in the windows' counts)."""

    expected: int
    delivered: int
    lost: int
    duplicated: int
    drift: Decimal
    under_applied: int
    over_applied: int


def measure_windows(frame: DataFrame, spec: JobSpec, count: int, seed: int) -> WindowDelivery:
    """Compare the window sink ``frame`` with ``expected_windows``."""
    aggregate = spec.aggregate
    assert aggregate is not None  # noqa: S101 - the caller's
    count_name, total_name = measures_of(aggregate)
    wanted = expected_windows(spec, count, seed)
    account = F.col("account") if "account" in aggregate.group_by else F.lit(None)
    rows = frame.select(
        F.unix_micros("window_start").alias("start"),
        F.unix_micros("window_end").alias("end"),
        account.cast("string").alias("account"),
        F.col(count_name).alias("payments"),
        F.col(total_name).alias("total"),
    ).collect()
    keys = [(_instant(r.start), _instant(r.end), r.account) for r in rows]
    have = {
        key: (int(r.payments or 0), r.total or Decimal(0))
        for key, r in zip(keys, rows, strict=True)
    }
    drift, under, over = Decimal(0), 0, 0
    for key, (payments_wanted, total_wanted) in wanted.items():
        payments_had, total_had = have.get(key, (0, Decimal(0)))
        drift += abs(total_had - total_wanted)
        under += max(0, payments_wanted - payments_had)
        over += max(0, payments_had - payments_wanted)
    delivered = len(wanted.keys() & have.keys())
    return WindowDelivery(
        expected=len(wanted),
        delivered=delivered,
        lost=len(wanted) - delivered,
        duplicated=len(keys) - len(set(keys)),
        drift=drift,
        under_applied=under,
        over_applied=over,
    )


def _instant(micros: int) -> datetime:
    return _EPOCH + timedelta(microseconds=micros)
