"""The guarantee policies: how a job's writes are guarded, and nothing else.

Spark writes ``offsets/N`` before batch N and ``commits/N`` after ``foreachBatch`` returns;
a crash in between replays N with the same batch id and, for a replayable source and a
deterministic query, the same rows. Each policy states what it makes of that; the batch
pipeline (``onceflow.pipeline``) asks it before writing and tells the sinks what it said.

| guarantee     | before the sinks                          | the sinks' writes      | after a crash anywhere          |
|---------------|-------------------------------------------|------------------------|---------------------------------|
| at-most-once  | claim N (``BatchClaims``); claimed: skip | unguarded              | no duplicate; N may be lost     |
| at-least-once | nothing                                   | unguarded              | no loss; N may be written twice |
| exactly-once  | nothing                                   | guarded by (app id, N) | no loss, no duplicate           |
"""  # noqa: E501

from __future__ import annotations

from dataclasses import dataclass

from onceflow.config import Guarantee, WriteMode
from onceflow.guarantees.claims import BatchClaims

__all__ = ["WritePolicy", "policy_for"]


@dataclass(frozen=True)
class WritePolicy:
    """How one job's writes are guarded.

    Attributes:
        guarantee: the job's.
        guarded: each sink makes a replay of a batch id harmless (``BatchContext.guarded``).
        claims: at-most-once's claims, made before any write; None otherwise.
    """

    guarantee: Guarantee
    guarded: bool
    claims: BatchClaims | None = None

    def admit(self, batch_id: int) -> bool:
        """Whether batch ``batch_id`` is written: False only when at-most-once has claimed
        it already (a replay: whatever it had not written is lost, as at-most-once allows)."""
        return self.claims is None or self.claims.claim(batch_id)

    def replay_outcome(self, held: bool, mode: WriteMode) -> str:
        """What replaying a batch does to a sink that ``held`` it already (by its marks):
        ``written`` (it did not hold it, or keeps no marks to tell), ``replaced``
        (replace-batch overwrites it), ``skipped_as_replay`` (its guard skips it),
        ``written_again`` (nothing guards it: duplicates, or an update applied twice)."""
        if not held:
            return "written"
        if mode is WriteMode.REPLACE_BATCH:
            return "replaced"
        return "skipped_as_replay" if self.guarded else "written_again"


def policy_for(guarantee: Guarantee, claims: BatchClaims | None = None) -> WritePolicy:
    """The policy of ``guarantee``; at-most-once needs the checkpoint's claims."""
    if guarantee is Guarantee.AT_MOST_ONCE:
        if claims is None:
            raise ValueError("at-most-once needs the checkpoint's claims")
        return WritePolicy(guarantee, guarded=False, claims=claims)
    return WritePolicy(guarantee, guarded=guarantee is Guarantee.EXACTLY_ONCE)
