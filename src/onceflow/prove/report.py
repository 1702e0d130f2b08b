"""The guarantee report: a terminal table, JSON with the documented field names, Markdown."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from onceflow.prove.harness import ProveRow

__all__ = ["FIELDS", "to_json", "to_markdown", "to_table"]

FIELDS = (
    "guarantee",
    "strategy",
    "crash_point",
    "kills",
    "expected",
    "delivered",
    "lost",
    "duplicated",
    "balance_drift",
    "promise",
    "promise_held",
)


def _cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "NO"
    if isinstance(value, float):
        return f"{value:.2f}"
    return str(value)


def to_table(rows: Sequence[ProveRow]) -> str:
    """Fixed-width columns for a terminal (the promise text left out: it is per guarantee)."""
    fields = [f for f in FIELDS if f != "promise"]
    cells = [[_cell(row.as_report()[f]) for f in fields] for row in rows]
    widths = [max(len(f), *(len(c[i]) for c in cells)) for i, f in enumerate(fields)]
    lines = ["  ".join(f.ljust(w) for f, w in zip(fields, widths, strict=True))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)) for line in cells]
    return "\n".join(lines)


def to_markdown(rows: Sequence[ProveRow], title: str) -> str:
    """A Markdown table of every field, and a one-line verdict."""
    held = sum(row.promise_held for row in rows)
    header = "| " + " | ".join(FIELDS) + " |"
    rule = "|" + "---|" * len(FIELDS)
    body = ["| " + " | ".join(_cell(row.as_report()[f]) for f in FIELDS) + " |" for row in rows]
    verdict = f"{held} of {len(rows)} scenario(s) kept their promise."
    return "\n".join([f"# {title}", "", header, rule, *body, "", verdict, ""])


def to_json(rows: Sequence[ProveRow], path: Path) -> None:
    """Write the rows as a JSON list of objects with exactly ``FIELDS``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps([row.as_report() for row in rows], indent=2) + "\n")
