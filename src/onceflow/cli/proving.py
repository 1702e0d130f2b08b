"""``onceflow prove``: crash the job's real processes and check its guarantee held.

It prints a line per scenario as each one finishes, with an estimate of the time left.
Interrupted (Ctrl-C, SIGTERM), it kills the job processes it started, writes what finished
as a report marked partial, and exits 128 + the signal's number with one line.
"""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, TypeVar

from onceflow.cli.common import EXIT_FAILED, EXIT_OK, job_arguments, load
from onceflow.errors import OnceflowError

if TYPE_CHECKING:
    from onceflow.cli.common import Commands
    from onceflow.prove.harness import ProveRow, ProveSettings, ProveStopped
    from onceflow.prove.report import Partial

__all__ = ["DEFAULTS", "QUICK", "Preset", "register"]


@dataclass(frozen=True)
class Preset:
    """What a prove run does where its options say nothing."""

    crash_points: str
    records: int
    batches: int
    crash_batch: int
    parallel: int


#: The whole matrix's defaults.
DEFAULTS = Preset("before_write,mid_write,after_write,after_commit", 400, 4, 1, 1)
#: ``--quick``: the job's own guarantee crashed before and after its write of the first of
#: two small batches, two scenarios at once. Options given explicitly win over it.
QUICK = Preset("before_write,after_write", 60, 2, 0, 2)
WORK_ROOT = Path("state/prove")  # the work dir is <this>/<job file's stem>
REPORT_ROOT = Path("state/prove-report")  # a bare --json / --markdown writes <stem>.json / .md
_ASKED = Path("-")
_T = TypeVar("_T")  # a bare --json / --markdown: the default place

_HELP = """\
Runs each guarantee x crash point as real job processes, SIGKILLs them there, restarts
them, and counts what reached the sinks. A line per scenario is printed as it finishes:
  [3/14] exactly-once mid_write@1: held (lost 0, duplicated 0) 31s - about 4 min left
the estimate being the mean time of a finished scenario x those left / --parallel.

--quick checks the job's own guarantee at before_write and after_write of the first of
two batches of 60 records, two scenarios at once: a minute or two on 2 cores (most of it
is JVMs starting). Options given explicitly win over it.

Ctrl-C or SIGTERM stops every job process it started, writes the finished scenarios as a
report marked partial (if --json/--markdown were given; its JSON is then an object,
{"partial": true, ..., "rows": [...]}), and exits 130 (SIGINT) or 143 (SIGTERM). A job
process that fails stops the run the same way, with exit status 1.

Work dir: state/prove/<job> (emptied first); a bare --json / --markdown writes
state/prove-report/<job>.json / .md; a PNG goes beside the report (plots extra).
Exit status: 0 every promise held, 1 one was broken or a run failed, 2 invalid input."""


def register(commands: Commands) -> None:
    """Add prove."""
    prove = commands.add_parser(
        "prove",
        help="crash the job's real processes and check its guarantee held",
        description=_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    job_arguments(prove)
    prove.add_argument(
        "--quick",
        action="store_true",
        help="a small, fast matrix (a minute or two on 2 cores): the job's own guarantee, "
        "--crash-points before_write,after_write --records 60 --batches 2 --crash-batch 0 "
        "--parallel 2",
    )
    prove.add_argument(
        "--guarantees",
        default="",
        help="comma list, e.g. at-most-once,at-least-once,exactly-once:merge "
        "(default: the job's own)",
    )
    prove.add_argument(
        "--crash-points",
        help="comma list of before_write, mid_write, after_write, after_commit, "
        "deleted_commit, second_instance, fresh_checkpoint "
        f"(default: {DEFAULTS.crash_points})",
    )
    prove.add_argument(
        "--plan",
        action="store_true",
        help="print the scenarios this command would run, each checked (the job loads "
        "under every guarantee, every crash point is one), and start nothing",
    )
    prove.add_argument("--random-kills", type=int, default=0, help="kills at random moments")
    prove.add_argument("--records", type=int, help=f"(default: {DEFAULTS.records})")
    prove.add_argument("--batches", type=int, help=f"(default: {DEFAULTS.batches})")
    prove.add_argument("--crash-batch", type=int, help=f"(default: {DEFAULTS.crash_batch})")
    prove.add_argument("--seed", type=int, default=7)
    prove.add_argument(
        "--duplicate-every",
        type=int,
        default=0,
        metavar="K",
        help="the producer sends every K-th record twice (the next batch): a job with "
        "dedup must still deliver each id once",
    )
    prove.add_argument(
        "--parallel", type=int, help=f"scenarios run at once (default: {DEFAULTS.parallel})"
    )
    prove.add_argument("--work-dir", type=Path, help=f"emptied first (default: {WORK_ROOT}/<job>)")
    prove.add_argument(
        "--storage-root",
        help="put checkpoints and sinks under this folder or URI (hdfs://..., s3a://...) "
        "instead of the work dir; the generated input stays local",
    )
    prove.add_argument(
        "--json",
        type=Path,
        nargs="?",
        const=_ASKED,
        help=f"write the rows as JSON here (bare: {REPORT_ROOT}/<job>.json)",
    )
    prove.add_argument(
        "--markdown",
        type=Path,
        nargs="?",
        const=_ASKED,
        help=f"write a Markdown report here (bare: {REPORT_ROOT}/<job>.md)",
    )
    prove.set_defaults(handler=_prove)


class _Interrupted(BaseException):
    """SIGINT or SIGTERM arrived: raised in the main thread, like KeyboardInterrupt."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signal = signal.Signals(signum)

    @property
    def exit_code(self) -> int:
        return 128 + self.signal.value


@contextmanager
def _interrupts() -> Iterator[None]:
    """Within: the first SIGINT or SIGTERM raises ``_Interrupted``; later ones are ignored,
    so that a second Ctrl-C cannot cut short the stopping of the job processes."""
    if not _in_main_thread():  # only the main thread may set handlers (tests call main())
        yield
        return
    heard: list[int] = []

    def handler(signum: int, frame: FrameType | None) -> None:
        if not heard:
            heard.append(signum)
            raise _Interrupted(signum)

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)


def _in_main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


@dataclass(frozen=True)
class _Reports:
    """Where the report goes: JSON and/or Markdown, and the PNG beside the first."""

    json: Path | None
    markdown: Path | None
    title: str

    @property
    def png(self) -> Path | None:
        report = self.json or self.markdown
        return report.with_suffix(".png") if report else None

    def clear(self) -> None:
        """Remove an earlier run's files, so none is taken for this run's."""
        for path in (self.json, self.markdown, self.png):
            if path is not None:
                path.unlink(missing_ok=True)

    def write(self, rows: list[ProveRow], partial: Partial | None = None) -> str:
        """Write the report; where it went, for a person."""
        from onceflow.prove.report import to_json, to_markdown, to_png

        if self.json:
            to_json(rows, self.json, partial)
        if self.markdown:
            self.markdown.parent.mkdir(parents=True, exist_ok=True)
            self.markdown.write_text(to_markdown(rows, self.title, partial))
        written = [str(p) for p in (self.json, self.markdown) if p]
        # the plot is a convenience, and none of a partial run: the report above is whole
        if self.png and partial is None:
            try:
                to_png(rows, self.png, self.title)
            except ModuleNotFoundError as exc:
                print(f"no PNG ({exc.name} missing): pip install 'onceflow[plots]'")
        return ", ".join(written) or "none asked (--json, --markdown)"


def _prove(args: argparse.Namespace) -> int:
    with _interrupts():
        try:
            return _run(args)
        except _Interrupted as exc:  # before the scenarios started, or after they ended
            print(f"onceflow prove: interrupted by {exc.signal.name}", file=sys.stderr)
            return exc.exit_code


def _run(args: argparse.Namespace) -> int:
    import shutil
    import time

    from onceflow.prove.harness import ProveStopped, count_scenarios, plan, prove
    from onceflow.prove.report import progress_line, to_table

    load(args)  # the job itself must be valid before anything starts
    settings = _settings(args)
    if args.plan:
        return _print_plan(args.job, settings, [scenario.label for scenario in plan(settings)])
    reports = _Reports(
        json=_report_path(args.json, args.job, ".json"),
        markdown=_report_path(args.markdown, args.job, ".md"),
        title=f"onceflow prove {args.job}",
    )
    reports.clear()
    shutil.rmtree(settings.work_dir, ignore_errors=True)
    print(
        f"onceflow prove {args.job}: {count_scenarios(settings)} scenario(s), "
        f"{settings.parallel} at a time; work dir {settings.work_dir}",
        flush=True,
    )
    started = time.monotonic()
    try:
        rows = prove(settings, on_done=lambda done: print(progress_line(done), flush=True))
    except ProveStopped as stopped:
        return _stopped(stopped, reports)
    print(to_table(rows))
    print(
        f"{sum(r.promise_held for r in rows)} of {len(rows)} promise(s) held "
        f"in {time.monotonic() - started:.0f}s"
    )
    if reports.json or reports.markdown:
        reports.write(rows)
    return EXIT_OK if all(row.promise_held for row in rows) else EXIT_FAILED


def _print_plan(job: Path, settings: ProveSettings, labels: list[str]) -> int:
    print(
        f"onceflow prove {job}: {len(labels)} scenario(s), {settings.parallel} at a time; "
        f"work dir {settings.work_dir} (--plan: nothing started)"
    )
    for label in labels:
        print(f"  {label}")
    return EXIT_OK


def _stopped(stopped: ProveStopped, reports: _Reports) -> int:
    """Write the partial report of a run that stopped early; its exit status."""
    from onceflow.prove.harness import ProveRunFailed
    from onceflow.prove.report import Partial

    cause = stopped.__cause__
    if isinstance(cause, OnceflowError):
        raise cause  # a scenario the job cannot make: the command's own error handling
    if isinstance(cause, KeyboardInterrupt):  # a SIGINT our handler did not see first
        cause = _Interrupted(signal.SIGINT)
    if isinstance(cause, _Interrupted):
        reason = f"interrupted by {cause.signal.name}"
    elif isinstance(cause, ProveRunFailed):
        reason = "a scenario's run failed"
        print(f"error: {cause}", file=sys.stderr)
    else:
        raise cause or stopped  # a bug: its traceback is wanted
    where = reports.write(stopped.rows, Partial(stopped.total, reason))
    print(
        f"onceflow prove: {reason} after {len(stopped.rows)} of {stopped.total} "
        f"scenario(s) finished; {stopped.killed} running job process(es) killed; "
        f"partial report: {where}",
        file=sys.stderr,
    )
    return cause.exit_code if isinstance(cause, _Interrupted) else EXIT_FAILED


def _settings(args: argparse.Namespace) -> ProveSettings:
    """The harness's settings: explicit options, else the preset's (``--quick``), else the
    whole matrix's defaults."""
    from onceflow.prove.harness import ProveSettings

    preset = QUICK if args.quick else DEFAULTS
    return ProveSettings(
        job_file=args.job,
        work_dir=args.work_dir or WORK_ROOT / args.job.stem,
        env=args.env,
        overrides=tuple(args.overrides),
        conf_dir=args.conf_dir,
        guarantees=tuple(g for g in args.guarantees.split(",") if g),
        crash_points=tuple(
            p for p in _pick(args.crash_points, preset.crash_points).split(",") if p
        ),
        random_kills=args.random_kills,
        records=_pick(args.records, preset.records),
        batches=_pick(args.batches, preset.batches),
        crash_batch=_pick(args.crash_batch, preset.crash_batch),
        seed=args.seed,
        duplicate_every=args.duplicate_every,
        parallel=_pick(args.parallel, preset.parallel),
        storage_root=args.storage_root,
    )


def _pick(given: _T | None, preset: _T) -> _T:
    return preset if given is None else given


def _report_path(given: Path | None, job: Path, suffix: str) -> Path | None:
    if given is None:
        return None
    return REPORT_ROOT / f"{job.stem}{suffix}" if given == _ASKED else given
