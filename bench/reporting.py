"""What every benchmark reports the same way: the machine, the JSON file, a Markdown table."""

from __future__ import annotations

import json
import os
import platform
import statistics
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


def machine() -> str:
    """The machine a figure was measured on, for the report."""
    return f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"


def save(name: str, report: dict[str, Any], folder: Path = RESULTS) -> None:
    """Write ``<folder>/<name>.json`` (``bench/results/``, git-ignored) and print it."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.json").write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))


def print_table(header: list[str], rows: list[list[str]]) -> None:
    """A Markdown table, ready for the README or a closing note."""
    print("\n" + markdown_table(header, rows))


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    """A Markdown table as text."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def percentile(values: list[float], q: float) -> float:
    """The ``q``-th percentile by linear interpolation between closest ranks (numpy's
    default), so a p95 of few batches is not simply the slowest one."""
    if not values:
        raise ValueError("no values")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def rate_summary(values: list[float], baseline: float, against: str) -> dict[str, Any]:
    """Rounds of one way as its median rows/s, its range, and the median over the
    ``baseline`` way's median (the ratio named ``x_<against>``)."""
    median = statistics.median(values)
    return {
        "rows_per_s": round(median),
        "min": round(min(values)),
        "max": round(max(values)),
        f"x_{against}": round(median / baseline, 2),
    }
