"""The closed vocabularies of delivery: what a job promises, and how a sink writes a batch."""

from __future__ import annotations

from enum import StrEnum

__all__ = ["MODE_OF_STRATEGY", "STRATEGY_OF_MODE", "Guarantee", "Strategy", "WriteMode"]


class Guarantee(StrEnum):
    """What a job promises about each record after a crash anywhere."""

    AT_MOST_ONCE = "at-most-once"
    AT_LEAST_ONCE = "at-least-once"
    EXACTLY_ONCE = "exactly-once"


class Strategy(StrEnum):
    """How an exactly-once job makes a replayed batch harmless."""

    MERGE = "merge"
    TRANSACTIONAL = "transactional"
    REPLACE_BATCH = "replace-batch"


class WriteMode(StrEnum):
    """What a sink does with a batch: append it, MERGE it on keys, replace its batch,
    (a database) upsert it on keys with ``INSERT ... ON CONFLICT``, or apply it as a feed
    of changes ordered by a sequence (``cdc``: SCD type 1 or 2)."""

    APPEND = "append"
    MERGE = "merge"
    REPLACE_BATCH = "replace-batch"
    UPSERT = "upsert"
    CDC = "cdc"


#: The exactly-once strategy each write mode is guarded by. An upsert commits with the
#: batch's ledger row in one database transaction: it is transactional. A CDC apply is a
#: MERGE, guarded by the MERGE's transaction id.
STRATEGY_OF_MODE: dict[WriteMode, Strategy] = {
    WriteMode.APPEND: Strategy.TRANSACTIONAL,
    WriteMode.MERGE: Strategy.MERGE,
    WriteMode.REPLACE_BATCH: Strategy.REPLACE_BATCH,
    WriteMode.UPSERT: Strategy.TRANSACTIONAL,
    WriteMode.CDC: Strategy.MERGE,
}
#: The write mode a job-wide ``strategy`` gives a sink that names none.
MODE_OF_STRATEGY: dict[Strategy, WriteMode] = {
    Strategy.TRANSACTIONAL: WriteMode.APPEND,
    Strategy.MERGE: WriteMode.MERGE,
    Strategy.REPLACE_BATCH: WriteMode.REPLACE_BATCH,
}
