"""The ``onceflow`` command: validate, run, status, replay-quarantine, sample, produce,
prove, jars, pyfiles, entrypoint.

Exit codes: 0 success; 1 the job failed while running (for ``status``: its checkpoint and
sinks disagree; for ``prove``: a promise was broken); 2 the job or the command line is
invalid (found before Spark starts). Each command lives in the module of its group and
registers its own arguments (``register``).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from onceflow.cli import jobs, proving, tools, validate
from onceflow.cli.common import EXIT_FAILED, EXIT_INVALID, EXIT_OK
from onceflow.errors import ConfigError, OnceflowError

__all__ = ["EXIT_FAILED", "EXIT_INVALID", "EXIT_OK", "main"]

_DESCRIPTION = (
    "PySpark Structured Streaming jobs described in YAML, written under the delivery "
    "guarantee they declare, and proven by crashing them."
)
_GROUPS = (validate, jobs, proving, tools)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line ``argv`` (``sys.argv[1:]`` when None); returns the exit code."""
    args = parser().parse_args(argv)
    try:
        code: int = args.handler(args)
    except ConfigError as exc:
        for error in (exc, *exc.others):
            print(f"error: {error}", file=sys.stderr)
        return EXIT_INVALID
    except OnceflowError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    return code


def parser() -> argparse.ArgumentParser:
    """The whole command line: every group's commands."""
    top = argparse.ArgumentParser(prog="onceflow", description=_DESCRIPTION)
    commands = top.add_subparsers(dest="command", required=True)
    for group in _GROUPS:
        group.register(commands)
    return top
