"""``onceflow validate --deep`` and ``onceflow run`` ask Spark about a job before its query
starts: a schema, SQL or an interval Spark cannot read, or a missing input, ends in one
classed line per mistake naming the file, line and key, and nothing is written.

The jobs are files under tests/resources/config/deep; each mistake is marked on its line
as ``# <- ERROR_CLASS key``, and the expected errors are read from those marks.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pyspark.sql import SparkSession

from onceflow.cli import EXIT_INVALID, EXIT_OK, main
from tests.conftest import ROOT

pytestmark = pytest.mark.spark

DEEP = ROOT / "tests" / "resources" / "config" / "deep"
_MARK = re.compile(r"#\s*<-\s*(?P<code>[A-Z_]+)\s+(?P<key>\S+)")


def _marks(job: Path) -> set[tuple[str, int, str]]:
    """(error class, line, key) of every mistake marked in ``job``."""
    found = set()
    for number, text in enumerate(job.read_text().splitlines(), start=1):
        match = _MARK.search(text)
        if match:
            found.add((match["code"], number, match["key"]))
    return found


def _reported(err: str, job: Path) -> set[tuple[str, int, str]]:
    """(error class, line, key) of every ``error: [CLASS] file:line: 'key' ...`` line."""
    line = re.compile(rf"^error: \[(\w+)\] {re.escape(str(job))}:(\d+): '([^']+)'")
    return {(m[1], int(m[2]), m[3]) for m in map(line.match, err.splitlines()) if m}


def _args(command: str, job: Path, root: Path, *more: str) -> list[str]:
    return [
        command,
        str(job),
        "--env",
        "local",
        "--conf-dir",
        str(ROOT / "conf"),
        "--set",
        f"storage.root={root}",
        *more,
    ]


@pytest.mark.parametrize("job", sorted(p.name for p in DEEP.glob("*.yaml")))
def test_validate_deep_names_every_mistake_by_file_line_and_key(
    job: str, spark: SparkSession, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "data" / "in").mkdir(parents=True)
    path = DEEP / job
    assert main(_args("validate", path, tmp_path)) == EXIT_OK  # Spark is never asked
    capsys.readouterr()

    code = main(_args("validate", path, tmp_path, "--deep"))

    err = capsys.readouterr().err
    assert code == EXIT_INVALID
    assert _reported(err, path) == _marks(path)
    assert len(err.strip().splitlines()) == len(_marks(path)), err  # one line each
    assert "Traceback" not in err and "== SQL ==" not in err
    assert not (tmp_path / "state").exists()


@pytest.mark.parametrize(
    "job", ["payments.yaml", "payments_exactly_once_merge.yaml", "payments_quality.yaml"]
)
def test_validate_deep_passes_the_example_jobs(
    job: str, spark: SparkSession, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """No false alarm: MERGE clauses over ``t`` and ``s``, rules, a sink query, a select."""
    (tmp_path / "data" / "sample" / "payments").mkdir(parents=True)
    code = main(_args("validate", ROOT / "jobs" / job, tmp_path, "--deep"))
    shown = capsys.readouterr()
    assert code == EXIT_OK, shown.err
    assert "is valid" in shown.out


def test_run_with_a_missing_input_stops_before_the_checkpoint(
    spark: SparkSession, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    job = ROOT / "jobs" / "payments.yaml"  # reads data/sample/payments, not created here
    line = job.read_text().splitlines().index("  path: data/sample/payments") + 1
    code = main(_args("run", job, tmp_path))
    err = capsys.readouterr().err
    assert code == EXIT_INVALID
    missing = tmp_path / "data" / "sample" / "payments"
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert errors == [
        f"error: [CONFIG_INPUT_MISSING] {job}:{line}: 'source.path': {missing} does not "
        "exist; point it at the job's input, or create that first"
    ]
    assert not (tmp_path / "state").exists()  # no checkpoint left behind


def test_run_with_bad_sql_stops_before_its_query_starts(
    spark: SparkSession, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Before, the query ran its first batch and failed inside foreachBatch."""
    incoming = tmp_path / "data" / "in"
    incoming.mkdir(parents=True)
    (incoming / "one.json").write_text('{"id": 1, "account": "acct-1", "amount": 2}\n')
    job = DEEP / "sql_select.yaml"

    code = main(_args("run", job, tmp_path))

    err = capsys.readouterr().err
    assert code == EXIT_INVALID
    assert _reported(err, job) == _marks(job)
    (error,) = [line for line in err.splitlines() if line.startswith("error:")]
    assert "`amont` cannot be resolved" in error
    assert not (tmp_path / "state").exists()
