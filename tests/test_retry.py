"""Only Delta's typed conflict exceptions are retried, a bounded number of times."""

from __future__ import annotations

import pytest
from delta.exceptions import ConcurrentAppendException, ProtocolChangedException

from onceflow.guarantees import retry_conflicts
from onceflow.sinks.delta.sink import is_delta_conflict

DELTA = {"is_conflict": is_delta_conflict}  # Delta's typed conflicts are retried


class Flaky:
    def __init__(self, *errors: Exception) -> None:
        self.errors = list(errors)
        self.calls = 0

    def __call__(self) -> None:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)


def test_conflicts_are_retried_with_backoff() -> None:
    waits: list[float] = []
    write = Flaky(ConcurrentAppendException(message="a"), ProtocolChangedException(message="b"))
    assert retry_conflicts(write, what="t", retries=3, sleep=waits.append, **DELTA) == 2
    assert write.calls == 3
    assert waits == [0.5, 1.0]


def test_other_errors_are_not_retried() -> None:
    write = Flaky(RuntimeError("disk full"))
    with pytest.raises(RuntimeError, match="disk full"):
        retry_conflicts(write, what="t", retries=3, sleep=lambda _: None, **DELTA)
    assert write.calls == 1


def test_retries_are_bounded() -> None:
    write = Flaky(*[ConcurrentAppendException(message=str(i)) for i in range(5)])
    with pytest.raises(ConcurrentAppendException):
        retry_conflicts(write, what="t", retries=2, sleep=lambda _: None, **DELTA)
    assert write.calls == 3
