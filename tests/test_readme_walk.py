"""Every shell block of the README, run in order, as a newcomer runs them.

The walk happens in a fresh copy of the project: the files git tracks and nothing else (no
sample data, no state, no tables, no services), beside this checkout's ``.venv`` and
``.jars``, which ``make run``'s set-up made (the set-up is the first minutes of ``make
run`` on a fresh machine and is not repeated here). The shell starts without the variables
the README has the reader set (``KAFKA_BOOTSTRAP``, ``ONCEFLOW_*``, ``AWS_*``, ...).

Each block is one ``bash`` script under ``set -euo pipefail``, its text as the README has
it, in the README's order. A command whose comment says ``(exit N here: ...)`` must exit N.
What the walk does not run as written is in ``NOT_AS_WRITTEN``, with why and what it runs
instead; a block the walk does not know fails the test. Where the README shows what a
block prints, ``PRINTS`` checks it; what a block must leave behind, ``AFTER`` checks.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import ROOT

pytestmark = [
    pytest.mark.slow,
    pytest.mark.spark,
    pytest.mark.kafka,
    pytest.mark.postgres,
    pytest.mark.hdfs,
    pytest.mark.s3,
    pytest.mark.cluster,
]

#: Commands the walk runs otherwise, each with why: replaced by what follows the arrow.
NOT_AS_WRITTEN = {
    # this very suite
    "make test": "true",
    # the whole matrix, half an hour here: the same command's --plan checks every option,
    # the job under each guarantee and each crash point, and starts nothing
    "--random-kills 2 --records 400 --json report.json --markdown report.md": (
        "--random-kills 2 --records 400 --json report.json --markdown report.md --plan"
    ),
    # 48 scenarios: what make would run, printed (make -n)
    "make prove ": "make -n prove ",
    # a CDC job's matrix, a quarter of an hour: checked and planned, nothing started
    "prove jobs/customers_cdc.yaml --env test --random-kills 2": (
        "prove jobs/customers_cdc.yaml --env test --random-kills 2 --plan"
    ),
}

#: What a block's output must hold, by a command the block has: the README's own claims.
PRINTS = {
    "make run    #": ["sink 'events': 10000 row(s) at ", "records: 10000 good, 0 dropped"],
    "--set trigger.available_now=false": ["sink 'events': 10000 row(s)"],
    "onceflow list": ["payments-exactly-once-merge", "needs ${env:KAFKA_BOOTSTRAP}"],
    "onceflow init orders": [" passed"],
    "--master 'local[2]'": ["job 'payments' on local[2]:", "sink 'events': 10000 row(s)"],
    "make run JOB=jobs/payments_exactly_once_merge.yaml": ["sink 'balances': "],
    "--env test --quick": ["2 of 2 promise(s) held"],
    "--topic payments --records 20000": ["sink 'events': 20000 row(s)"],
    "make run JOB=jobs/payments_postgres.yaml": ["sink 'events': 10000 row(s)"],
    "--duplicate-every 10": [
        "records: 10000 good, 0 dropped, 0 quarantined, 1000 duplicate(s) and 0 late record(s) "
        "removed by dedup",
        "sink 'events': 10000 row(s)",
    ],
    "make hdfs-up": ["hdfs://127.0.0.1:", "s3a://lake/"],
    "--env cluster": ["job 'payments' on spark://127.0.0.1:"],
}


def executors_ran_on_both_workers(project: Path) -> None:
    """Block 14: each worker of the cluster started an executor for the job, and each such
    executor fetched the onceflow zip that --py-files named (the workers' folders stay
    after cluster-down)."""
    workers = sorted(p for p in (project / ".services/cluster").glob("worker-*") if p.is_dir())
    assert len(workers) == 2, workers
    for worker in workers:
        zips = list(worker.glob("app-*/*/onceflow-*.zip"))
        assert zips, f"no executor of the job fetched the onceflow zip under {worker}"


#: Checks on the project after a block, by a command the block has.
AFTER = {"--env cluster": executors_ran_on_both_workers}

#: The variables a fresh shell does not have: the README has the reader set them.
FRESH_SHELL_DROPS = re.compile(r"^(KAFKA_|ONCEFLOW_|AWS_|SPARK_|PYSPARK_|HADOOP_|JAVA_TOOL)")
EXPECTED_EXIT = re.compile(r"#.*\(exit (\d+) here\b")


@dataclass(frozen=True)
class Block:
    """A ```bash block of the README: where it starts and its text."""

    line: int
    text: str

    @property
    def id(self) -> str:
        first = self.text.strip().splitlines()[0].split("#")[0].strip()
        return f"line{self.line}:{first[:40]}"


def shell_blocks(readme: str) -> list[Block]:
    """The README's ```bash blocks, in order."""
    found, current, start = [], None, 0
    for number, line in enumerate(readme.splitlines(), start=1):
        if current is None and line.strip() == "```bash":
            current, start = [], number
        elif current is not None and line.strip() == "```":
            found.append(Block(start, "\n".join(current) + "\n"))
            current = None
        elif current is not None:
            current.append(line)
    return found


def as_run(text: str) -> str:
    """The script the walk runs for a block: NOT_AS_WRITTEN applied, expected exits checked."""
    for written, instead in NOT_AS_WRITTEN.items():
        text = text.replace(written, instead)
    lines = []
    for line in text.splitlines():
        wanted = EXPECTED_EXIT.search(line)
        if wanted:  # the README says this one fails here: it must, with that status
            command = line[: line.index("#")].rstrip()
            line = f"if {command}; then false; else test $? -eq {wanted.group(1)}; fi"
        lines.append(line)
    return "set -euo pipefail\n" + "\n".join(lines) + "\n"


BLOCKS = shell_blocks((ROOT / "README.md").read_text())


@pytest.fixture(scope="module")
def project() -> Iterator[Path]:
    """A fresh copy of the project: git's files (modification times kept, so make finds
    the shared venv and jars up to date), ``.venv`` and ``.jars`` linked. It lives in a
    folder others may traverse, as a clone in a home folder does: PostgreSQL's server runs
    as its own OS user (initdb refuses root) and must reach ``.services/postgres``."""
    home = Path(tempfile.mkdtemp(prefix="onceflow-newcomer-"))
    home.chmod(0o711)
    copy = home / "onceflow"
    tracked = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT, capture_output=True, check=True,
    ).stdout.decode().split("\0")  # fmt: skip
    for name in filter(None, tracked):
        source = ROOT / name
        if source.is_file():
            (copy / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, copy / name)
    for shared in (".venv", ".jars"):
        (copy / shared).symlink_to(ROOT / shared)
    stale = subprocess.run(
        ["make", "-q", "venv", "jars", "cds", "kafka-jars", "hdfs-jars", "s3-jars"],
        cwd=copy, capture_output=True, text=True,
    )  # fmt: skip
    assert stale.returncode == 0, "this checkout's set-up is not up to date: run make setup"
    yield copy
    # whatever a failed block left running
    for service in ("kafka", "pg", "hdfs", "s3", "cluster"):
        subprocess.run(["make", f"{service}-down"], cwd=copy, capture_output=True)
    shutil.rmtree(home, ignore_errors=True)


def fresh_shell() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not FRESH_SHELL_DROPS.match(k)}


def test_the_walk_knows_every_block() -> None:
    """Each NOT_AS_WRITTEN and PRINTS entry still names a command of the README."""
    every = "".join(block.text for block in BLOCKS)
    assert BLOCKS, "no ```bash block found"
    for command in [*NOT_AS_WRITTEN, *PRINTS, *AFTER]:
        assert command in every, f"the README no longer has {command!r}: update the walk"


@pytest.mark.parametrize("block", BLOCKS, ids=[block.id for block in BLOCKS])
def test_readme_block_runs_as_written(block: Block, project: Path) -> None:
    script = as_run(block.text)
    result = subprocess.run(
        ["bash", "-c", script], cwd=project, env=fresh_shell(), capture_output=True,
        text=True, timeout=1500,
    )  # fmt: skip
    output = result.stdout + result.stderr
    assert result.returncode == 0, (
        f"README.md:{block.line}: the block failed (exit {result.returncode}):\n{script}\n"
        f"--- its output, last lines:\n{output[-5000:]}"
    )
    for command, lines in PRINTS.items():
        if command in block.text:
            missing = [line for line in lines if line not in output]
            assert not missing, f"README.md:{block.line}: no {missing} in:\n{output[-5000:]}"
    for command, check in AFTER.items():
        if command in block.text:
            check(project)
