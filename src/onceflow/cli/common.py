"""What the commands share: exit codes and the arguments that name a job."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from onceflow.config import LoadedJob, load_job

if TYPE_CHECKING:
    Commands = argparse._SubParsersAction[argparse.ArgumentParser]

__all__ = ["EXIT_FAILED", "EXIT_INVALID", "EXIT_OK", "job_arguments", "load", "positive_int"]

EXIT_OK, EXIT_FAILED, EXIT_INVALID = 0, 1, 2


def job_arguments(parser: argparse.ArgumentParser, several: bool = False) -> None:
    """The job file (``several``: files and folders of them, as ``jobs``), its profile(s),
    ``--set`` overrides and the profile folder."""
    if several:
        parser.add_argument(
            "jobs",
            nargs="+",
            type=Path,
            metavar="JOB",
            help="job files, or folders of them (each *.yaml inside)",
        )
    else:
        parser.add_argument("job", type=Path, help="the job's YAML file")
    parser.add_argument(
        "--env",
        help="profile: conf/<ENV>.yaml layered over conf/base.yaml; several as A,B "
        "(e.g. test,hdfs), later ones winning",
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one key, e.g. --set trigger.once=true (repeatable; applied last)",
    )
    parser.add_argument("--conf-dir", type=Path, help="profile folder (default: conf/)")


def load(args: argparse.Namespace) -> LoadedJob:
    """The job the arguments name; every config error surfaces here, before Spark."""
    return load_job(args.job, env=args.env, overrides=args.overrides, conf_dir=args.conf_dir)


def positive_int(text: str) -> int:
    """An argparse ``type``: a whole number of at least 1 (``--files 0`` is refused)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, got {value}")
    return value
