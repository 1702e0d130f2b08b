"""``onceflow init NAME``: a new job, a test of it and (for files) sample input, ready to run.

Writes ``jobs/NAME.yaml`` and ``tests/test_NAME.py`` under the project folder (``--dir``),
and, for a files source, a hundred sample records under ``data/input/NAME``. The job is
loaded once written, with the project's ``conf/`` profiles: what ``init`` writes validates
as it is. It never overwrites a file unless told to (``--force``).
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from onceflow.cli.common import EXIT_INVALID, EXIT_OK
from onceflow.cli.templates import SOURCES, Scaffold, job_text, test_text
from onceflow.config import load_job
from onceflow.config.common import JOB_NAME_PATTERN
from onceflow.config.modes import Guarantee, Strategy

if TYPE_CHECKING:
    from onceflow.cli.common import Commands

__all__ = ["register"]

SAMPLE_RECORDS, SAMPLE_FILES = 100, 2


def register(commands: Commands) -> None:
    """Add init."""
    init = commands.add_parser(
        "init",
        help="write a new job (jobs/NAME.yaml) and a test of it (tests/test_NAME.py) that "
        "validate and run as they are",
    )
    init.add_argument("name", type=_job_name, help="the job's name: letters, digits, _ . -")
    init.add_argument("--source", choices=SOURCES, default="files", help="default: files")
    init.add_argument(
        "--guarantee",
        choices=[g.value for g in Guarantee],
        default=Guarantee.EXACTLY_ONCE.value,
        help="default: exactly-once",
    )
    init.add_argument(
        "--strategy",
        choices=[s.value for s in Strategy],
        help="how exactly-once makes a replayed batch harmless (default: transactional)",
    )
    init.add_argument("--dir", type=Path, default=Path("."), help="the project folder")
    init.add_argument("--force", action="store_true", help="overwrite files that exist")
    init.set_defaults(handler=_init)


def _job_name(text: str) -> str:
    if not re.match(JOB_NAME_PATTERN, text):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a job name: start with a letter or digit, then letters, "
            "digits, '_', '.' or '-'"
        )
    return text


def _init(args: argparse.Namespace) -> int:
    guarantee = Guarantee(args.guarantee)
    if args.strategy and guarantee is not Guarantee.EXACTLY_ONCE:
        print(f"error: --strategy is for exactly-once, not {guarantee}", file=sys.stderr)
        return EXIT_INVALID
    strategy = None
    if guarantee is Guarantee.EXACTLY_ONCE:
        strategy = Strategy(args.strategy or Strategy.TRANSACTIONAL)
    job = Scaffold(args.name, args.source, guarantee, strategy)
    root: Path = args.dir
    files = {
        root / "jobs" / f"{job.name}.yaml": job_text(job),
        root / "tests" / f"{job.test_module}.py": test_text(job),
    }
    there = [str(path) for path in files if path.exists()]
    if there and not args.force:
        print(f"error: {', '.join(there)} exist(s): nothing written (--force overwrites)",
              file=sys.stderr)  # fmt: skip
        return EXIT_INVALID
    for path, text in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        print(f"wrote {path}")
    job_file = root / "jobs" / f"{job.name}.yaml"
    conf = root / "conf"
    if (conf / "local.yaml").exists():
        # what init wrote must validate as it is: a template that does not is init's bug.
        # A Kafka job's broker comes from the environment, set later (`make kafka-env`)
        with _variable("KAFKA_BOOTSTRAP", "127.0.0.1:9092"):
            load_job(job_file, env="local", conf_dir=conf)
    if job.source == "files":
        _sample_input(root / job.input_path)
    print(_next_steps(job, job_file))
    return EXIT_OK


@contextmanager
def _variable(name: str, placeholder: str) -> Iterator[None]:
    """``name`` set to ``placeholder`` inside, unless it is set already."""
    if name in os.environ:
        yield
        return
    os.environ[name] = placeholder
    try:
        yield
    finally:
        del os.environ[name]


def _sample_input(folder: Path) -> None:
    from onceflow.prove.workload import write_payment_files

    if folder.exists() and any(folder.iterdir()):
        print(f"kept {folder}: it has files already")
        return
    write_payment_files(folder, SAMPLE_RECORDS, SAMPLE_FILES)
    print(f"wrote {folder}/ ({SAMPLE_RECORDS} sample records in {SAMPLE_FILES} files)")


def _next_steps(job: Scaffold, job_file: Path) -> str:
    steps = []
    if job.source == "kafka":
        steps += [
            'make kafka-up && eval "$(make -s kafka-env)"',
            f".venv/bin/onceflow produce --bootstrap $KAFKA_BOOTSTRAP --topic {job.name} "
            "--records 1000",
        ]
    steps.append(f".venv/bin/onceflow validate {job_file} --env local")
    if job.source == "delta":
        steps.append("make run   # writes data/tables/payments/events, which the job reads")
    steps += [
        f".venv/bin/onceflow run {job_file} --env local",
        f".venv/bin/pytest {job_file.parent.parent / 'tests' / job.test_module}.py",
    ]
    return "next:\n" + "\n".join(f"  {step}" for step in steps)
