"""``onceflow schema`` and ``onceflow reference``: what a job file may say, for an editor
(a JSON Schema) and for a reader (``docs/reference.md``). Neither starts Spark."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from onceflow.cli.common import EXIT_INVALID, EXIT_OK

if TYPE_CHECKING:
    from onceflow.cli.common import Commands

__all__ = ["register", "write_out"]


def register(commands: Commands) -> None:
    """Add schema and reference."""
    schema = commands.add_parser(
        "schema",
        help="print the JSON Schema of a job file (every installed kind), for an editor",
    )
    schema.add_argument(
        "--out", type=Path, help="write it to this file, e.g. .onceflow/job.schema.json"
    )
    schema.set_defaults(handler=_schema)

    reference = commands.add_parser(
        "reference", help="print the reference of every job key, as Markdown (docs/reference.md)"
    )
    reference.add_argument("--out", type=Path, help="write it to this file")
    reference.set_defaults(handler=_reference)


def _schema(args: argparse.Namespace) -> int:
    from onceflow.config.schema import job_schema

    return write_out(json.dumps(job_schema(), indent=2) + "\n", args.out)


def _reference(args: argparse.Namespace) -> int:
    from onceflow.config.reference import reference_markdown

    return write_out(reference_markdown(), args.out)


def write_out(text: str, out: Path | None) -> int:
    """``text`` to ``out`` (its folder made if needed), else to stdout; the exit code."""
    if out is None:
        print(text, end="")
        return EXIT_OK
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text, encoding="utf-8")
    except OSError as exc:  # a folder, a read-only place: the command line's fault
        print(f"error: --out {out}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_INVALID
    print(f"wrote {out}")
    return EXIT_OK
