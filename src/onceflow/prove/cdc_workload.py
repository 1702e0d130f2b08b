"""A change feed of customers, deterministic for a seed, delivered as a real feed is:
out of order across batches, some changes twice, several changes of one customer in one
batch, and the update before a delete arriving after it.

Each change has a unique ``lsn`` (1..N, the order the source database made them) and an
``op``: ``I`` inserts an absent customer, ``U`` updates a present one (some columns may be
NULL: a partial update), ``D`` deletes one (only its key is set). What a CDC sink must
hold is computed from these changes by the verifier, never by the sink.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from onceflow.files import write_for_a_file_source

__all__ = [
    "CUSTOMER_CHANGES_SCHEMA",
    "Change",
    "change_batches",
    "customer_changes",
    "delivered",
    "write_cdc_files",
]

CUSTOMER_CHANGES_SCHEMA = (
    "customer_id BIGINT, op STRING, lsn BIGINT, commit_ts TIMESTAMP, "
    "name STRING, email STRING, tier STRING"
)
_EPOCH = datetime(2026, 1, 1, tzinfo=UTC)
_TIERS = ("bronze", "silver", "gold")


@dataclass(frozen=True)
class Change:
    customer_id: int
    op: str
    lsn: int
    name: str | None = None
    email: str | None = None
    tier: str | None = None

    @property
    def commit_ts(self) -> datetime:
        """When the source committed it: three changes a second, so that ``[commit_ts,
        lsn]`` orders by both."""
        return _EPOCH + timedelta(seconds=self.lsn // 3)

    def as_record(self) -> dict[str, object]:
        return {
            "customer_id": self.customer_id,
            "op": self.op,
            "lsn": self.lsn,
            "commit_ts": self.commit_ts.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "name": self.name,
            "email": self.email,
            "tier": self.tier,
        }

    def to_json(self) -> str:
        return json.dumps(self.as_record())


def customer_changes(count: int, customers: int = 20, seed: int = 7) -> list[Change]:
    """``count`` changes in lsn order: an absent customer is inserted; a present one is
    updated (one change in three partial: the columns it does not change are NULL) or, one
    change in six, deleted. A deleted customer may be inserted again."""
    rng = random.Random(seed)  # noqa: S311 - a reproducible workload, not a secret
    present: set[int] = set()
    changes = []
    for lsn in range(1, count + 1):
        key = rng.randrange(1, customers + 1)
        name, email, tier = f"name-{lsn}", f"c{key}-{lsn}@example.com", rng.choice(_TIERS)
        if key not in present:
            present.add(key)
            changes.append(Change(key, "I", lsn, name, email, tier))
        elif rng.random() < 1 / 6:
            present.discard(key)
            changes.append(Change(key, "D", lsn))
        elif rng.random() < 1 / 3:
            changed = rng.choice(("name", "email", "tier"))
            values = {"name": name, "email": email, "tier": tier}
            partial = {k: (v if k == changed else None) for k, v in values.items()}
            changes.append(Change(key, "U", lsn, **partial))
        else:
            changes.append(Change(key, "U", lsn, name, email, tier))
    return changes


def delivered(
    changes: list[Change], batches: int, seed: int = 7, late: float = 0.2, again: float = 0.1
) -> list[list[Change]]:
    """``changes`` as a feed delivers them in ``batches`` batches: cut in lsn order, then
    each change, with probability ``late``, one or two batches later; the change before each
    delete of a customer, after that delete's batch (when there is a later one); each
    change, with probability ``again``, once more in its batch or the next. Each batch is
    shuffled."""
    rng = random.Random(seed)  # noqa: S311 - as above
    size = -(-len(changes) // batches)
    batch_of = {change.lsn: min(index // size, batches - 1) for index, change in enumerate(changes)}
    for change in changes:
        if rng.random() < late:
            batch_of[change.lsn] = min(batch_of[change.lsn] + rng.choice((1, 2)), batches - 1)
    before: dict[int, Change] = {}
    for change in changes:
        previous = before.get(change.customer_id)
        if change.op == "D" and previous is not None:
            later = batch_of[change.lsn] + 1
            if later < batches:
                batch_of[previous.lsn] = max(batch_of[previous.lsn], later)
        before[change.customer_id] = change
    sent: list[list[Change]] = [[] for _ in range(batches)]
    for change in changes:
        sent[batch_of[change.lsn]].append(change)
        if rng.random() < again:
            sent[min(batch_of[change.lsn] + rng.choice((0, 1)), batches - 1)].append(change)
    for batch in sent:
        rng.shuffle(batch)
    return sent


def change_batches(
    count: int, batches: int, seed: int = 7, duplicate_every: int = 0
) -> list[list[dict[str, object]]]:
    """Changes ``1..count`` as ``delivered`` sends them in ``batches`` batches, as records
    (JSON's types), every ``duplicate_every``-th (by lsn) once more: what prove feeds a
    CDC job."""
    from onceflow.prove.workload import with_retries

    sent = with_retries(
        delivered(customer_changes(count, seed=seed), batches, seed),
        duplicate_every,
        lambda c: c.lsn,
    )
    return [[change.as_record() for change in batch] for batch in sent]


def write_cdc_files(
    folder: Path, count: int, files: int, customers: int = 20, seed: int = 7
) -> list[list[Change]]:
    """Write ``count`` changes of ``customers`` customers, as ``delivered`` sends them, as
    JSON lines in ``files`` files in ``folder`` (one batch each with one file a trigger);
    return what each file holds.

    Each file is written under a hidden name and renamed into place, and their modification
    times are a second apart in file order, so that a file source reads them in order.
    """
    if files < 1 or count < 0:
        raise ValueError(f"need files >= 1 and count >= 0, got files={files}, count={count}")
    folder.mkdir(parents=True, exist_ok=True)
    sent = delivered(customer_changes(count, customers, seed), files, seed)
    write_for_a_file_source(
        [
            (folder / f"changes-{index:05d}.json", "".join(c.to_json() + "\n" for c in batch))
            for index, batch in enumerate(sent)
        ]
    )
    return sent
