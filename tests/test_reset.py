"""``onceflow reset`` and ``make run``: one job's local state goes, no other job's."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from onceflow.cli import EXIT_INVALID, EXIT_OK, main
from tests.conftest import ROOT


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The project's jobs and profiles, with every local job's state folders filled."""
    folder = tmp_path / "project"
    shutil.copytree(ROOT / "jobs", folder / "jobs")
    shutil.copytree(ROOT / "conf", folder / "conf")
    for place in (
        "state/payments/checkpoint",
        "data/tables/payments/events",
        "data/quarantine/payments",
        "state/payments_exactly_once_merge/checkpoint",
        "data/tables/payments_exactly_once_merge/events",
        "data/sample/payments",
    ):
        (folder / place).mkdir(parents=True)
        (folder / place / "file").write_text("x")
    monkeypatch.chdir(folder)
    return folder


def present(project: Path) -> set[str]:
    return {str(p.parent.relative_to(project)) for p in project.glob("**/file")}


def test_reset_deletes_the_jobs_state_and_nothing_else(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = present(project)
    assert main(["reset", "jobs/payments.yaml", "--env", "local"]) == EXIT_OK
    assert "nothing deleted: add --yes" in capsys.readouterr().out
    assert present(project) == before
    assert main(["reset", "jobs/payments.yaml", "--env", "local", "--yes"]) == EXIT_OK
    assert present(project) == {
        "state/payments_exactly_once_merge/checkpoint",
        "data/tables/payments_exactly_once_merge/events",
        "data/sample/payments",
    }


def test_reset_leaves_a_job_with_a_database_sink_whole(
    project: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("HOST", "PORT", "DATABASE", "USER", "PASSWORD"):
        monkeypatch.setenv(f"ONCEFLOW_PG_{name}", "5432" if name == "PORT" else "x")
    (project / "state/payments_postgres/checkpoint").mkdir(parents=True)
    job = ["reset", "jobs/payments_postgres.yaml", "--env", "local", "--yes"]
    assert main(job) == EXIT_INVALID
    assert "(postgres): not local folders" in capsys.readouterr().err
    assert main([*job, "--if-local"]) == EXIT_OK
    assert (project / "state/payments_postgres/checkpoint").exists()


def test_make_run_resets_only_the_job_it_runs() -> None:
    recipe = subprocess.run(
        ["make", "-n", "-o", "setup", "run", "JOB=jobs/payments_exactly_once_merge.yaml"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    removals = [line for line in recipe.splitlines() if "rm -rf" in line]
    assert removals == ["rm -rf data/sample/payments"]
    assert "onceflow reset jobs/payments_exactly_once_merge.yaml --env local --yes" in recipe
