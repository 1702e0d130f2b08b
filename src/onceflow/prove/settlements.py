"""The settlements workload: the payments' settlements, for a stream-stream join.

Derived from the payments of a seed (``onceflow.prove.workload.payments``), as
``write_payment_files`` spreads them over files: each payment is settled within the join's
time range (most), never, or too late (after the range: it matches nothing). A settlement
lands in the settlements file of its payment's file number, so a job reading one file of
each per batch meets them in the same batch; a few of the payments within ``delay`` of
their file's last one are settled in the next file instead, so the join's state must
carry the payment to a later batch. They arrive before the payments' watermark passes
them (their time is after it), so a correct join matches every settlement in range. A few
lines in the files cannot be joined (not JSON, a wrong type, no payment id): a job must
quarantine them.

The expected join is computed from the files as written, never from this module's
choices: a test reads the lines back.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path

from onceflow.files import write_for_a_file_source
from onceflow.prove.workload import in_parts, payments

__all__ = ["SETTLEMENTS_SCHEMA", "Settlement", "write_settlement_files"]

SETTLEMENTS_SCHEMA = "payment_id BIGINT, settled_at TIMESTAMP, fee DECIMAL(18,2)"
#: The share of payments never settled, and of those settled after the range.
_NEVER, _TOO_LATE = 0.10, 0.10
#: Of the payments within ``delay`` of their file's end, the share settled a file later.
_LATER = 0.5


@dataclass(frozen=True)
class Settlement:
    payment_id: int
    settled_at: datetime
    fee: Decimal

    def to_json(self) -> str:
        return json.dumps(
            {
                "payment_id": self.payment_id,
                "settled_at": self.settled_at.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
                "fee": str(self.fee),
            }
        )


def write_settlement_files(
    folder: Path,
    count: int,
    files: int,
    seed: int = 7,
    within: timedelta = timedelta(hours=1),
    delay: timedelta = timedelta(minutes=10),
) -> list[Path]:
    """Write the settlements of ``write_payment_files(count, files, seed)``'s payments as
    JSON lines in ``files + 1`` files (the last holds the settlements carried over from
    the last payments file), plus three lines that cannot join. ``within``: the join's
    time range after a payment; ``delay``: the payments' watermark delay."""
    if files < 1 or count < 0:
        raise ValueError(f"need files >= 1 and count >= 0, got files={files}, count={count}")
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed * 7_919 + 1)  # noqa: S311 - a reproducible workload
    contents: list[list[str]] = [[] for _ in range(files + 1)]
    millis = int(within.total_seconds() * 1000)
    for index, chunk in enumerate(in_parts(list(payments(count, seed=seed)), files)):
        last = max((p.event_time for p in chunk), default=None)
        for payment in chunk:
            fate = rng.random()
            if fate < _NEVER:
                continue
            # strictly inside the range, or strictly after it: never on its bounds
            offset = rng.randrange(1, millis - 1)
            if fate < _NEVER + _TOO_LATE:
                offset += millis
            fee = Decimal(rng.randrange(0, 500)) / 100
            target = index
            if last is not None and payment.event_time > last - delay and rng.random() < _LATER:
                target = index + 1
            at = payment.event_time + timedelta(milliseconds=offset)
            contents[target].append(Settlement(payment.id, at, fee).to_json())
    # lines that cannot join, in the middle of the second file (or the first)
    bad = contents[min(1, files - 1)]
    bad[len(bad) // 2 : len(bad) // 2] = [
        "settlement of payment 1",
        json.dumps({"payment_id": 2, "settled_at": "soon", "fee": "0.10"}),
        json.dumps({"settled_at": "2026-01-01T00:00:05.000000Z", "fee": "0.10"}),
    ]
    return write_for_a_file_source(
        [
            (folder / f"settlements-{index:05d}.json", "".join(line + "\n" for line in lines))
            for index, lines in enumerate(contents)
        ]
    )
