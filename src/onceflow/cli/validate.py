"""``onceflow validate``: check a job without starting Spark."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from onceflow.cli.common import EXIT_OK, job_arguments, load

if TYPE_CHECKING:
    from onceflow.cli.common import Commands

__all__ = ["register"]


def register(commands: Commands) -> None:
    """Add validate."""
    validate = commands.add_parser("validate", help="check a job without starting Spark")
    job_arguments(validate)
    validate.add_argument(
        "--print", action="store_true", help="print the effective config, secrets as ***"
    )
    validate.set_defaults(handler=_validate)


def _validate(args: argparse.Namespace) -> int:
    loaded = load(args)
    if args.print:
        print(loaded.to_yaml(), end="")
    print(f"ok: job '{loaded.spec.name}' is valid (layers: {', '.join(loaded.layers)})")
    return EXIT_OK
