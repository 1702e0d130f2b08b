"""The payments workload: uniquely numbered payment events, deterministic for a seed.

Every record has a unique ``id`` (1..N), so a verifier can count lost (expected - delivered)
and duplicated (rows - distinct ids) records; the per-account sums give exact balances to
check an aggregate sink against.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import TypeVar

from onceflow.files import write_for_a_file_source

__all__ = [
    "PAYMENTS_SCHEMA",
    "Payment",
    "in_parts",
    "payment_batches",
    "payments",
    "with_retries",
    "write_payment_files",
]

_R = TypeVar("_R")
PAYMENTS_SCHEMA = "id BIGINT, account STRING, amount DECIMAL(18,2), event_time TIMESTAMP"
_EPOCH = datetime(2026, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Payment:
    id: int
    account: str
    amount: Decimal
    event_time: datetime

    def as_record(self) -> dict[str, object]:
        """The payment as JSON's types: the amount as exact text, the time in UTC."""
        return {
            "id": self.id,
            "account": self.account,
            "amount": str(self.amount),
            "event_time": self.event_time.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        }

    def to_json(self) -> str:
        return json.dumps(self.as_record())


def payments(count: int, seed: int = 7, accounts: int = 50, first_id: int = 1) -> Iterator[Payment]:
    """``count`` payments with ids ``first_id..first_id+count-1``; same seed, same records."""
    rng = random.Random(seed)  # noqa: S311 - a reproducible workload, not a secret
    for offset in range(count):
        record_id = first_id + offset
        yield Payment(
            id=record_id,
            account=f"acct-{rng.randrange(accounts):04d}",
            amount=Decimal(rng.randrange(-5_000, 20_000)) / 100,
            event_time=_EPOCH + timedelta(seconds=record_id, milliseconds=rng.randrange(1000)),
        )


def with_retries(batches: list[list[_R]], every: int, id_of: Callable[[_R], int]) -> list[list[_R]]:
    """``batches`` as a retrying producer sends them: every ``every``-th record (by id) once
    more, in the next batch, or at the end of its own when it is in the last. 0: as given."""
    sent = [list(batch) for batch in batches]
    if every <= 0:
        return sent
    for index, batch in enumerate(batches):
        again = [record for record in batch if id_of(record) % every == 0]
        sent[min(index + 1, len(batches) - 1)].extend(again)
    return sent


def in_parts(items: list[_R], parts: int) -> list[list[_R]]:
    """``items`` in order, cut into ``parts`` runs whose lengths differ by one at most (the
    longer first): how the payments are spread over files or batches."""
    size, extra = divmod(len(items), parts)
    cut, start = [], 0
    for index in range(parts):
        end = start + size + (1 if index < extra else 0)
        cut.append(items[start:end])
        start = end
    return cut


def payment_batches(
    count: int, batches: int, seed: int = 7, duplicate_every: int = 0
) -> list[list[dict[str, object]]]:
    """Payments ``1..count`` cut into ``batches`` batches in id order, as records (JSON's
    types), every ``duplicate_every``-th sent again (``with_retries``): what prove feeds."""
    cut = in_parts(list(payments(count, seed=seed)), batches)
    return [
        [p.as_record() for p in batch]
        for batch in with_retries(cut, duplicate_every, lambda p: p.id)
    ]


def write_payment_files(
    folder: Path,
    count: int,
    files: int,
    seed: int = 7,
    accounts: int = 50,
    duplicate_every: int = 0,
) -> list[Path]:
    """Write ``count`` payments as JSON lines spread over ``files`` files in ``folder``.

    With ``duplicate_every`` k, every k-th payment is sent again, as a retrying producer
    would, the same record: in the next file, or later in the same file when it is in the
    last one. The files then hold ``count + count // k`` lines and still ``count`` ids.

    Each file is written under a hidden name and renamed into place, so a streaming file
    source that is already watching never reads half a file; their modification times are
    a second apart in file order, so one file per batch reads them in that order.
    """
    if files < 1 or count < 0 or duplicate_every < 0:
        raise ValueError(
            f"need files >= 1, count >= 0 and duplicate_every >= 0, got files={files}, "
            f"count={count}, duplicate_every={duplicate_every}"
        )
    folder.mkdir(parents=True, exist_ok=True)
    contents = in_parts(list(payments(count, seed=seed, accounts=accounts)), files)
    sent = with_retries(contents, duplicate_every, lambda p: p.id)
    return write_for_a_file_source(
        [
            (folder / f"payments-{index:05d}.json", "".join(p.to_json() + "\n" for p in lines))
            for index, lines in enumerate(sent)
        ]
    )
