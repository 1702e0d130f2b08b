"""Bounded retries of the conflicts a sink says are safe to retry, and of nothing else.

A conflict (another writer committed first: Delta's typed concurrent-modification
exceptions) is safe to retry: the failed attempt committed nothing, and guarded writes are
idempotent anyway. Any other error is a real failure and goes straight up.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

__all__ = ["retry_conflicts"]

_log = logging.getLogger("onceflow.guarantees")


def retry_conflicts(
    write: Callable[[], None],
    *,
    what: str,
    retries: int,
    is_conflict: Callable[[BaseException], bool],
    backoff_seconds: float = 0.5,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """Call ``write``; on a conflict (``is_conflict``) wait (0.5 s, 1 s, 2 s, ...) and call
    it again, at most ``retries`` more times. Returns how many retries it took."""
    for attempt in range(retries + 1):
        try:
            write()
            return attempt
        except Exception as exc:
            if not is_conflict(exc) or attempt == retries:
                raise
            delay = backoff_seconds * 2**attempt
            _log.warning(
                "%s: conflict (%s), retry %d of %d in %.1fs",
                what,
                type(exc).__name__,
                attempt + 1,
                retries,
                delay,
            )
            sleep(delay)
    raise AssertionError("unreachable")  # pragma: no cover
