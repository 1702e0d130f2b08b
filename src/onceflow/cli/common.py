"""What the commands share: exit codes and the arguments that name a job."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from onceflow.config import LoadedJob, load_job

if TYPE_CHECKING:
    Commands = argparse._SubParsersAction[argparse.ArgumentParser]

__all__ = ["EXIT_FAILED", "EXIT_INVALID", "EXIT_OK", "job_arguments", "load"]

EXIT_OK, EXIT_FAILED, EXIT_INVALID = 0, 1, 2


def job_arguments(parser: argparse.ArgumentParser) -> None:
    """The job file, its profile(s), ``--set`` overrides and the profile folder."""
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
