"""The ``onceflow`` command: init, validate, list, schema, reference, run, status,
replay-quarantine, reset, sample, produce, prove, jars, pyfiles, entrypoint, completion.

Exit codes: 0 success; 1 the job failed while running (for ``status``: its checkpoint and
sinks disagree; for ``prove``: a promise was broken); 2 the job or the command line is
invalid (found before Spark starts, or by ``run``'s checks before the checkpoint is
touched), and so is a bad command line: one line on stderr, never a usage dump or a
traceback; 130 stopped by Ctrl-C (one line says where). Each command lives in the module
of its group and registers its own arguments (``register``).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import NoReturn

from onceflow.cli import (
    archive,
    catalog,
    init,
    jobs,
    proving,
    reference,
    reset,
    shell,
    tools,
    validate,
)
from onceflow.cli.common import EXIT_FAILED, EXIT_INVALID, EXIT_OK
from onceflow.errors import ConfigError, OnceflowError

__all__ = ["EXIT_FAILED", "EXIT_INVALID", "EXIT_OK", "main"]

_DESCRIPTION = (
    "PySpark Structured Streaming jobs described in YAML, written under the delivery "
    "guarantee they declare, and proven by crashing them."
)
_GROUPS = (init, validate, catalog, reference, jobs, reset, proving, tools, archive, shell)


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
    top = _Parser(prog="onceflow", description=_DESCRIPTION)
    top.add_argument("--version", action=shell.VersionAction)
    commands = top.add_subparsers(dest="command", required=True)  # of the same class
    for group in _GROUPS:
        group.register(commands)
    return top


class _Parser(argparse.ArgumentParser):
    """argparse, with its errors as one line (``error: onceflow sample: argument --files:
    ...``) and exit 2, like a config error."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_INVALID, f"error: {self.prog}: {message} (see {self.prog} --help)\n")
