"""``onceflow prove``: crash the job's real processes and check its guarantee held."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from onceflow.cli.common import EXIT_FAILED, EXIT_OK, job_arguments, load

if TYPE_CHECKING:
    from onceflow.cli.common import Commands

__all__ = ["register"]


def register(commands: Commands) -> None:
    """Add prove."""
    prove = commands.add_parser(
        "prove", help="crash the job's real processes and check its guarantee held"
    )
    job_arguments(prove)
    prove.add_argument(
        "--guarantees",
        default="",
        help="comma list, e.g. at-most-once,at-least-once,exactly-once:merge "
        "(default: the job's own)",
    )
    prove.add_argument(
        "--crash-points",
        default="before_write,mid_write,after_write,after_commit",
        help="comma list of before_write, mid_write, after_write, after_commit, "
        "deleted_commit, second_instance, fresh_checkpoint",
    )
    prove.add_argument("--random-kills", type=int, default=0, help="kills at random moments")
    prove.add_argument("--records", type=int, default=400)
    prove.add_argument("--batches", type=int, default=4)
    prove.add_argument("--crash-batch", type=int, default=1)
    prove.add_argument("--seed", type=int, default=7)
    prove.add_argument("--parallel", type=int, default=1, help="scenarios run at once")
    prove.add_argument("--work-dir", type=Path, default=Path("state/prove"))
    prove.add_argument(
        "--storage-root",
        help="put checkpoints and sinks under this folder or URI (hdfs://..., s3a://...) "
        "instead of the work dir; the generated input stays local",
    )
    prove.add_argument("--json", type=Path, help="write the rows as JSON here")
    prove.add_argument("--markdown", type=Path, help="write a Markdown report here")
    prove.set_defaults(handler=_prove)


def _prove(args: argparse.Namespace) -> int:
    import shutil
    import time

    from onceflow.prove.harness import ProveRunFailed, ProveSettings, prove
    from onceflow.prove.report import to_json, to_markdown, to_png, to_table

    load(args)  # the job itself must be valid before anything starts
    shutil.rmtree(args.work_dir, ignore_errors=True)
    settings = ProveSettings(
        job_file=args.job,
        work_dir=args.work_dir,
        env=args.env,
        overrides=tuple(args.overrides),
        conf_dir=args.conf_dir,
        guarantees=tuple(g for g in args.guarantees.split(",") if g),
        crash_points=tuple(p for p in args.crash_points.split(",") if p),
        random_kills=args.random_kills,
        records=args.records,
        batches=args.batches,
        crash_batch=args.crash_batch,
        seed=args.seed,
        parallel=args.parallel,
        storage_root=args.storage_root,
    )
    started = time.monotonic()
    try:
        rows = prove(settings)
    except ProveRunFailed as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    print(to_table(rows))
    print(
        f"{sum(r.promise_held for r in rows)} of {len(rows)} promise(s) held "
        f"in {time.monotonic() - started:.0f}s"
    )
    if args.json:
        to_json(rows, args.json)
    if args.markdown:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(to_markdown(rows, f"onceflow prove {args.job}"))
    report = args.json or args.markdown
    if report:
        # the plot is a convenience: without matplotlib the report above is still whole
        try:
            to_png(rows, report.with_suffix(".png"), f"onceflow prove {args.job.name}")
        except ModuleNotFoundError as exc:
            print(f"no PNG ({exc.name} missing): pip install 'onceflow[plots]'")
    return EXIT_OK if all(row.promise_held for row in rows) else EXIT_FAILED
