"""``onceflow reset JOB --yes``: delete one job's local state, and no other job's.

A job's state is its checkpoint, the folders of its file-backed sinks and its quarantine
table: deleting them together starts the job from nothing (the next run reads its whole
source again and writes fresh tables). Deleting the checkpoint alone would not: its sinks
hold the old checkpoint's writes, and the next run refuses them (GUARANTEE_FOREIGN_SINK).
Only local folders are deleted; a job whose state is on HDFS or S3, or in a database, is
named and left alone (with ``--if-local`` that is not an error). Without ``--yes`` it only
lists what it would delete.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlparse

from onceflow.cli.common import EXIT_INVALID, EXIT_OK, job_arguments, load
from onceflow.config import kinds

if TYPE_CHECKING:
    from onceflow.cli.common import Commands

__all__ = ["register"]


def register(commands: Commands) -> None:
    """Add reset."""
    reset = commands.add_parser(
        "reset",
        help="delete this job's local checkpoint, sink folders and quarantine, so it starts "
        "from nothing (lists them only, without --yes)",
    )
    job_arguments(reset)
    reset.add_argument("--yes", action="store_true", help="delete them")
    reset.add_argument(
        "--if-local",
        action="store_true",
        help="a job with state that is not a local folder is left as it is (exit 0), not "
        "an error: what `make run` does",
    )
    reset.set_defaults(handler=_reset)


def _reset(args: argparse.Namespace) -> int:
    spec = load(args).spec
    places = {"checkpoint": spec.checkpoint}
    remote = []
    for sink in spec.outputs:
        if kinds().sink(sink.kind).file_backed:
            places[f"sink '{sink.name}'"] = sink.location
        else:
            remote.append(f"sink '{sink.name}' ({sink.kind})")
    for role, location in places.items():
        if urlparse(location).scheme not in ("", "file"):
            remote.append(f"{role} at {location}")
    if remote:
        why = (
            f"job '{spec.name}': {'; '.join(remote)}: not local folders; reset deletes "
            "local state only, all of it or nothing (empty those yourself, together)"
        )
        if args.if_local:
            print(f"kept: {why}")
            return EXIT_OK
        print(f"error: {why}", file=sys.stderr)
        return EXIT_INVALID
    for role, location in places.items():
        folder = Path(urlparse(location).path if location.startswith("file:") else location)
        if not folder.exists():
            print(f"{role}: {folder} (absent)")
        elif args.yes:
            shutil.rmtree(folder)
            print(f"{role}: deleted {folder}")
        else:
            print(f"{role}: would delete {folder}")
    if not args.yes:
        print("nothing deleted: add --yes to delete them")
    return EXIT_OK
