"""The payments workload: uniquely numbered payment events, deterministic for a seed.

Every record has a unique ``id`` (1..N), so a verifier can count lost (expected - delivered)
and duplicated (rows - distinct ids) records; the per-account sums give exact balances to
check an aggregate sink against.
"""

from __future__ import annotations

import json
import os
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

__all__ = ["PAYMENTS_SCHEMA", "Payment", "payments", "write_payment_files"]

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


def write_payment_files(
    folder: Path, count: int, files: int, seed: int = 7, accounts: int = 50
) -> list[Path]:
    """Write ``count`` payments as JSON lines spread over ``files`` files in ``folder``.

    Each file is written under a hidden name and renamed into place, so a streaming file
    source that is already watching never reads half a file; their modification times are
    a second apart in file order, so one file per batch reads them in that order.
    """
    if files < 1 or count < 0:
        raise ValueError(f"need files >= 1 and count >= 0, got files={files}, count={count}")
    folder.mkdir(parents=True, exist_ok=True)
    records = payments(count, seed=seed, accounts=accounts)
    per_file, extra = divmod(count, files)
    written: list[Path] = []
    for index in range(files):
        size = per_file + (1 if index < extra else 0)
        target = folder / f"payments-{index:05d}.json"
        hidden = folder / f".{target.name}.tmp"
        with hidden.open("w", encoding="utf-8") as out:
            for _ in range(size):
                out.write(next(records).to_json() + "\n")
        os.replace(hidden, target)
        written.append(target)
    # a file source takes the oldest files first, and files written within the same
    # millisecond come in no set order: give them a second each, oldest first
    start = time.time() - len(written)
    for index, target in enumerate(written):
        os.utime(target, (start + index, start + index))
    return written
