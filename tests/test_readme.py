"""The README's examples are true: its job file is the real one, its error is the real error."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from pyspark.sql import SparkSession

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
ONCEFLOW = Path(sys.executable).with_name("onceflow")


def blocks(language: str) -> list[str]:
    """The fenced code blocks of the README whose fence names ``language`` ("" for none)."""
    found: list[str] = []
    current: list[str] | None = None
    current_language = ""
    for line in README.splitlines():
        if line.startswith("```"):
            if current is None:
                current, current_language = [], line[3:].strip()
            else:
                if current_language == language:
                    found.append("\n".join(current) + "\n")
                current = None
        elif current is not None:
            current.append(line)
    return found


def test_readme_job_is_the_default_job() -> None:
    shown = next(b for b in blocks("yaml") if b.startswith("name: payments"))
    assert yaml.safe_load(shown) == yaml.safe_load((ROOT / "jobs/payments.yaml").read_text())


def test_readme_error_example_is_what_validate_prints() -> None:
    example = next(b for b in blocks("") if "CONFIG_UNKNOWN_KEY" in b)
    command, *expected_lines = example.strip().splitlines()
    expected = "\n".join(expected_lines)
    args = command.removeprefix("$ onceflow ").split()
    result = subprocess.run([str(ONCEFLOW), *args], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.strip() == expected


def test_readme_documents_every_top_level_key() -> None:
    from onceflow.config import JobSpec

    documented = set(re.findall(r"^\| `([a-z_]+)[.`\[]", README, flags=re.M))
    assert set(JobSpec.model_fields) <= documented


@pytest.mark.spark
def test_readme_notebook_block_runs_as_written(
    spark: SparkSession, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The "In a notebook or in pytest" block, in a project folder whose sample input is
    where `onceflow sample` writes it; only its /tmp/demo becomes this test's folder."""
    from onceflow.prove.workload import write_payment_files

    block = next(b for b in blocks("python") if "build_session(job.spec)" in b)
    assert "/tmp/demo" in block
    project = tmp_path / "project"
    shutil.copytree(ROOT / "jobs", project / "jobs")
    shutil.copytree(ROOT / "conf", project / "conf")
    write_payment_files(project / "data/sample/payments", count=40, files=2)
    monkeypatch.chdir(project)
    exec(block.replace("/tmp/demo", str(tmp_path / "demo")), {})  # noqa: S102 - the README's own code
    events = spark.read.format("delta").load(str(tmp_path / "demo/data/tables/payments/events"))
    assert sorted(row.id for row in events.collect()) == list(range(1, 41))
