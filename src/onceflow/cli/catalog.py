"""``onceflow list``: the jobs in a folder, one line each; and the job files that paths
name, which ``validate`` shares.

Loading a job starts no Spark, so listing a folder of jobs is as cheap as validating them.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from onceflow.cli.common import EXIT_INVALID, EXIT_OK
from onceflow.config import LoadedJob, load_job
from onceflow.errors import ConfigError

if TYPE_CHECKING:
    from onceflow.cli.common import Commands

__all__ = ["JOB_PATTERN", "Outcome", "job_files", "load_each", "register"]

#: The files a folder of jobs holds.
JOB_PATTERN = "*.yaml"


def register(commands: Commands) -> None:
    """Add list."""
    listing = commands.add_parser(
        "list",
        help="one line per job file in the folders: its name, source, guarantee and sinks, "
        "or its error class (exit 2 when one is invalid; one that needs an unset ${env:VAR} "
        "says so, and is not counted invalid)",
    )
    listing.add_argument(
        "folders",
        nargs="*",
        type=Path,
        default=[Path("jobs")],
        metavar="FOLDER",
        help="folders of job files (*.yaml), or job files (default: jobs/)",
    )
    listing.add_argument("--env", help="profile(s) to load each job with, as for validate")
    listing.add_argument("--conf-dir", type=Path, help="profile folder (default: conf/)")
    listing.set_defaults(handler=_list)


def job_files(path: Path) -> list[Path]:
    """``path`` when it is no folder, else the ``*.yaml`` files in it, sorted.

    Raises:
        ConfigError: CONFIG_NO_JOBS for a folder that holds no job file.
    """
    if not path.is_dir():
        return [path]  # a missing file is load_job's to report
    inside = sorted(p for p in path.glob(JOB_PATTERN) if p.is_file())
    if not inside:
        raise ConfigError("CONFIG_NO_JOBS", folder=str(path), pattern=JOB_PATTERN)
    return inside


@dataclass(frozen=True)
class Outcome:
    """One job file loaded: the job, or the error that refused it."""

    path: Path
    loaded: LoadedJob | None = None
    error: ConfigError | None = None


def load_each(
    paths: Iterable[Path],
    env: str | None = None,
    overrides: Iterable[str] = (),
    conf_dir: Path | None = None,
) -> Iterator[Outcome]:
    """Load every job file ``paths`` name (see ``job_files``), each on its own: one invalid
    job (or an empty folder) does not hide the others."""
    for given in paths:
        try:
            files = job_files(given)
        except ConfigError as exc:
            yield Outcome(given, error=exc)
            continue
        for path in files:
            try:
                yield Outcome(path, loaded=load_job(path, env, overrides, conf_dir))
            except ConfigError as exc:
                yield Outcome(path, error=exc)


def _list(args: argparse.Namespace) -> int:
    lines: list[tuple[str, ...]] = []
    invalid = False
    for outcome in load_each(args.folders, env=args.env, conf_dir=args.conf_dir):
        if outcome.error is not None and _only_needs_environment(outcome.error):
            lines.append((str(outcome.path), _needs_summary(outcome.error)))
        elif outcome.error is not None:
            invalid = True
            lines.append((str(outcome.path), _error_summary(outcome.error)))
        elif outcome.loaded is not None:
            lines.append((str(outcome.path), *_summary(outcome.loaded)))
    for line in _aligned(lines):
        print(line)
    return EXIT_INVALID if invalid else EXIT_OK


def _summary(loaded: LoadedJob) -> tuple[str, ...]:
    """Name, source kind, guarantee (with its strategy) and ``name:kind`` of each sink."""
    spec = loaded.spec
    guarantee = spec.guarantee.value
    if spec.strategy is not None:
        guarantee += f"/{spec.strategy.value}"
    sinks = ", ".join(f"{sink.name}:{sink.kind}" for sink in spec.sinks)
    return (spec.name, spec.source.kind, guarantee, sinks)


def _only_needs_environment(error: ConfigError) -> bool:
    """True when the job's one problem is a variable not set in this shell: a catalog
    lists it (the variable is the user's to set, as for a run), it is not invalid."""
    return error.error_class == "CONFIG_ENV_UNSET" and not error.others


def _needs_summary(error: ConfigError) -> str:
    return f"needs ${{env:{error.params['var']}}}, unset here (set it to load this job)"


def _error_summary(error: ConfigError) -> str:
    more = f" (+{len(error.others)} more)" if error.others else ""
    return f"invalid: {error.error_class}{more}"


def _aligned(lines: list[tuple[str, ...]]) -> Iterator[str]:
    """Columns padded to their widest cell; an error's one cell runs on unpadded."""
    widths: dict[int, int] = {}
    for cells in lines:
        if len(cells) > 2:
            for index, cell in enumerate(cells[:-1]):
                widths[index] = max(widths.get(index, 0), len(cell))
    for cells in lines:
        padded = [cell.ljust(widths.get(index, 0)) for index, cell in enumerate(cells[:-1])]
        yield "  ".join([*padded, cells[-1]])
