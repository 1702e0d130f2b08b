"""``onceflow validate``: check jobs without starting Spark."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from onceflow.cli.catalog import load_each
from onceflow.cli.common import EXIT_INVALID, EXIT_OK, job_arguments

if TYPE_CHECKING:
    from onceflow.cli.common import Commands
    from onceflow.errors import ConfigError

__all__ = ["print_errors", "register"]


def register(commands: Commands) -> None:
    """Add validate."""
    validate = commands.add_parser(
        "validate",
        help="check jobs without starting Spark: files, or folders of them (exit 2 when one "
        "is invalid)",
    )
    job_arguments(validate, several=True)
    validate.add_argument(
        "--print", action="store_true", help="print the effective config, secrets as ***"
    )
    validate.add_argument(
        "--defaults",
        action="store_true",
        help="with --print: every key, the defaults filled in (implies --print)",
    )
    validate.add_argument(
        "--deep",
        action="store_true",
        help="also ask Spark, in a local session that starts no query: schemas, SQL, "
        "intervals, input paths",
    )
    validate.set_defaults(handler=_validate)


def _validate(args: argparse.Namespace) -> int:
    code = EXIT_OK
    for outcome in load_each(args.jobs, args.env, args.overrides, args.conf_dir):
        if outcome.error is not None:
            print_errors(outcome.error)
            code = EXIT_INVALID
            continue
        loaded = outcome.loaded
        if loaded is None:
            continue
        if args.deep:
            from onceflow.deep import deep_error  # starts Spark: only with --deep

            deep = deep_error(loaded)
            if deep is not None:
                print_errors(deep)
                code = EXIT_INVALID
                continue
        if args.print or args.defaults:
            print(loaded.to_yaml(defaults=args.defaults), end="")
        print(f"ok: job '{loaded.spec.name}' is valid (layers: {', '.join(loaded.layers)})")
    return code


def print_errors(error: ConfigError) -> None:
    """Every problem of one validation pass, one line each, on stderr."""
    for each in (error, *error.others):
        print(f"error: {each}", file=sys.stderr)
