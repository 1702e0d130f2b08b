"""What each guarantee allows, as a predicate over a ``Delivery``."""

from __future__ import annotations

from onceflow.config import Guarantee
from onceflow.prove.verify import Delivery

__all__ = ["PROMISES", "promise_held"]

PROMISES: dict[Guarantee, str] = {
    Guarantee.AT_MOST_ONCE: "duplicated = 0, nothing applied twice (losses allowed)",
    Guarantee.AT_LEAST_ONCE: "lost = 0, nothing left unapplied (duplicates allowed)",
    Guarantee.EXACTLY_ONCE: "lost = 0, duplicated = 0, balance_drift = 0, wrong = 0",
}


def promise_held(guarantee: Guarantee, delivery: Delivery) -> bool:
    """True when ``delivery`` is within what ``guarantee`` allows."""
    if guarantee is Guarantee.AT_MOST_ONCE:
        return delivery.duplicated == 0 and delivery.over_applied == 0
    # a CDC row that is wrong holds a change not applied (a stale row, an interval not
    # closed): a loss of sorts, which at-most-once allows and the others do not
    if guarantee is Guarantee.AT_LEAST_ONCE:
        return delivery.lost == 0 and delivery.under_applied == 0 and not delivery.wrong
    return (
        delivery.lost == 0
        and delivery.duplicated == 0
        and not delivery.balance_drift
        and not delivery.wrong
    )
