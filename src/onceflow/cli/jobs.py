"""The commands that run a job or read its state: run, status, replay-quarantine."""

from __future__ import annotations

import argparse
import logging
import sys
from typing import TYPE_CHECKING

from onceflow.cli.common import EXIT_FAILED, EXIT_OK, job_arguments, load

if TYPE_CHECKING:
    from onceflow.cli.common import Commands

__all__ = ["EXIT_INTERRUPTED", "register"]

#: ``onceflow run`` stopped by Ctrl-C (128 + SIGINT, as shells report it).
EXIT_INTERRUPTED = 130


def register(commands: Commands) -> None:
    """Add run, status and replay-quarantine."""
    run = commands.add_parser("run", help="run a job until its trigger ends it")
    job_arguments(run)
    run.add_argument(
        "--adopt-checkpoint",
        action="store_true",
        help="take over a checkpoint recorded as another job's (or whose source or sinks "
        "moved) on purpose, and record this job as its owner",
    )
    run.set_defaults(handler=_run)

    status = commands.add_parser(
        "status",
        help="where the job stands: last committed batch, a batch in flight, source lag, and "
        "whether its checkpoint and sinks agree (exit 1 when they do not)",
    )
    job_arguments(status)
    status.add_argument("--json", action="store_true", help="print the status as JSON")
    status.set_defaults(handler=_status)

    replay = commands.add_parser(
        "replay-quarantine",
        help="re-feed the job's quarantined records that now pass into its sinks, exactly once",
    )
    job_arguments(replay)
    replay.set_defaults(handler=_replay_quarantine)


def _run(args: argparse.Namespace) -> int:
    loaded = load(args)  # every config error surfaces here, before Spark starts
    from onceflow.observe import console_handler  # imports pyspark: only when running
    from onceflow.runner import run_job
    from onceflow.session import build_session
    from onceflow.stopping import stopped_line
    from onceflow.summary import run_summary

    # a terminal gets one live progress line; a pipe or a file gets plain log lines
    handler = console_handler(sys.stderr)
    logging.getLogger("onceflow").addHandler(handler)
    logging.getLogger("onceflow").setLevel(logging.INFO)
    try:
        result = run_job(loaded, adopt_checkpoint=args.adopt_checkpoint)
    except KeyboardInterrupt:  # before the run could stop its query, or a second Ctrl-C
        print(
            f"job '{loaded.spec.name}' stopped at once (Ctrl-C): a restart resumes after "
            "the last committed batch and replays one in flight under the job's guarantee",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED
    finally:
        logging.getLogger("onceflow").removeHandler(handler)
        handler.close()
    if result.stopped_at is not None:
        print(stopped_line(loaded.spec, result.stopped_at), file=sys.stderr)
        return EXIT_INTERRUPTED
    print(
        f"job '{loaded.spec.name}' on {result.master}: {result.batches} batch(es), "
        f"{result.input_rows} input row(s), query {result.query_id}"
    )
    if result.skipped_offsets:
        print(f"warning: {result.skipped_offsets} Kafka offset(s) skipped: gone before read")
    spark = build_session(loaded.spec)  # the run's own
    for line in run_summary(spark, loaded.spec, result.batches, result.records):
        print(line)
    return EXIT_OK


def _status(args: argparse.Namespace) -> int:
    loaded = load(args)
    from onceflow.session import build_session  # imports pyspark: only when reading state
    from onceflow.status import job_status, render_status

    status = job_status(build_session(loaded.spec), loaded.spec)
    print(status.to_json() if args.json else render_status(status))
    return EXIT_OK if status.healthy else EXIT_FAILED


def _replay_quarantine(args: argparse.Namespace) -> int:
    loaded = load(args)
    from onceflow.replay import replay_quarantine  # imports pyspark: only when replaying
    from onceflow.session import build_session

    result = replay_quarantine(build_session(loaded.spec), loaded.spec)
    print(
        f"job '{loaded.spec.name}': replayed {result.replayed} quarantined record(s) into its "
        f"sinks; {result.still_failing} still fail and stay in quarantine "
        f"(quarantine version {result.version})"
    )
    return EXIT_OK
