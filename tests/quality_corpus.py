"""Good payments with every kind of bad record mixed in: what the quality tests feed.

Each bad record says why it must be quarantined (a substring of the reason onceflow gives)
or dropped; good records are the payments workload, so sinks can be checked exactly.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from onceflow.prove.workload import payments

__all__ = ["BAD", "DROPPED", "Bad", "good_payloads", "write_corpus_files"]

_TIME = '"event_time": "2026-01-01T00:00:00Z"'


@dataclass(frozen=True)
class Bad:
    payload: bytes
    reason: str


BAD = [
    Bad(b'{"id": 90001, "account": "acct-0001", "amount": ', "parse: not valid JSON"),
    Bad(
        b'{"id": "ninety", "account": "acct-0001", "amount": "1.00", ' + _TIME.encode() + b"}",
        "parse: field 'id': not a bigint",
    ),
    Bad(
        b'{"id": 90003, "account": "acct-0001", ' + _TIME.encode() + b"}",
        "parse: missing required field 'amount'",
    ),
    Bad(
        b'{"id": 90004, "account": {"name": "acct-0001"}, "amount": "1.00", '
        + _TIME.encode()
        + b"}",
        "parse: field 'account': nesting where a string belongs",
    ),
    Bad(
        b'{"id": 90005, "account": "acct-\xff\xfe", "amount": "1.00", ' + _TIME.encode() + b"}",
        "parse: invalid UTF-8",
    ),
    Bad(b"", "parse: empty payload"),
    Bad(
        b'{"id": 90007, "account": "acct-0001", "amount": "1.00", '
        + _TIME.encode()
        + b', "memo": "'
        + b"x" * 5000
        + b'"}',
        "parse: payload of 5",  # ... bytes is over max_payload_bytes 4096
    ),
    Bad(b'[90008, "acct-0001"]', "parse: not a JSON object"),
    Bad(
        b'{"id": 90009, "account": "acct-0001", "amount": "0.00", ' + _TIME.encode() + b"}",
        "rule nonzero_amount (expect_or_quarantine: amount <> 0)",
    ),
]
DROPPED = [b'{"id": 90010, "account": "test-0001", "amount": "5.00", ' + _TIME.encode() + b"}"]


def good_payloads(count: int, seed: int = 7) -> list[bytes]:
    """Payments 1..count as JSON lines (amounts are never 0.00 for seed 7 up to 10,000)."""
    return [p.to_json().encode() for p in payments(count, seed=seed)]


def write_corpus_files(folder: Path, count: int, files: int) -> list[list[bytes]]:
    """``count`` good payments and every BAD and DROPPED record, spread over ``files``
    JSON-lines files (bad ones in the middle of files). Returns each file's lines."""
    folder.mkdir(parents=True, exist_ok=True)
    good = good_payloads(count)
    odd = [bad.payload for bad in BAD] + DROPPED
    per_file = -(-count // files)
    contents: list[list[bytes]] = []
    for index in range(files):
        lines = good[index * per_file : (index + 1) * per_file]
        middle = len(lines) // 2
        lines = lines[:middle] + odd[index::files] + lines[middle:]
        target = folder / f"payments-{index:05d}.json"
        hidden = folder / f".{target.name}.tmp"
        hidden.write_bytes(b"\n".join(lines) + b"\n")
        os.replace(hidden, target)
        contents.append(lines)
    return contents
