"""The job process the prove harness (and tests) start, with crash injection installed
through its explicit API:

    python -m onceflow.prove.child run JOB --env test --set ... --crash after_write@1:kill
    python -m onceflow.prove.child replay-quarantine JOB --env test --crash after_write@0:kill

It does what ``onceflow run`` / ``onceflow replay-quarantine`` do, with the same exit codes
(0 done, 1 the job failed, 2 the job is invalid), plus the ``--crash`` plan
(``<point>@<batch id>[:raise|kill|stop]``, see ``onceflow.prove.crash``). A production run is
``onceflow`` itself, which has no way to take one.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from onceflow.config import load_job
from onceflow.errors import ConfigError, OnceflowError
from onceflow.prove.crash import CrashPlan

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run one job command with an optional crash plan; returns the exit code."""
    parser = argparse.ArgumentParser(prog="python -m onceflow.prove.child")
    parser.add_argument("command", choices=["run", "replay-quarantine"])
    parser.add_argument("job", type=Path)
    parser.add_argument("--env")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--conf-dir", type=Path)
    parser.add_argument(
        "--crash", type=CrashPlan.parse, help="<point>@<batch id>[:raise|kill|stop]"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        loaded = load_job(args.job, env=args.env, overrides=args.overrides, conf_dir=args.conf_dir)
        if args.command == "run":
            from onceflow.runner import run_job

            result = run_job(loaded, instrument=args.crash)
            print(f"job '{loaded.spec.name}': {result.batches} batch(es), {result.input_rows} rows")
        else:
            from onceflow.replay import replay_quarantine
            from onceflow.session import build_session

            replayed = replay_quarantine(
                build_session(loaded.spec), loaded.spec, instrument=args.crash
            )
            print(f"job '{loaded.spec.name}': {replayed}")
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OnceflowError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
