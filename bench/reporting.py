"""What every benchmark reports the same way: the machine, the JSON file, a Markdown table."""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


def machine() -> str:
    """The machine a figure was measured on, for the report."""
    return f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"


def save(name: str, report: dict[str, Any]) -> None:
    """Write ``bench/results/<name>.json`` (git-ignored) and print it."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))


def print_table(header: list[str], rows: list[list[str]]) -> None:
    """A Markdown table, ready for the README or a closing note."""
    print("\n| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(row) + " |")
