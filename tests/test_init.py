"""``onceflow init``: the job and the test it writes validate, run and pass as they are."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path
from types import ModuleType

import pytest
from pyspark.sql import SparkSession

from onceflow.cli import EXIT_INVALID, EXIT_OK, main
from onceflow.testing.services import LocalKafka
from tests.conftest import ROOT

pytestmark = pytest.mark.spark


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A user's project folder with the profiles, as the working directory."""
    folder = tmp_path / "project"
    shutil.copytree(ROOT / "conf", folder / "conf")
    monkeypatch.chdir(folder)
    return folder


def generated_tests(project: Path, name: str) -> ModuleType:
    path = project / "tests" / f"test_{name.replace('-', '_')}.py"
    spec = importlib.util.spec_from_file_location(f"generated_{name.replace('-', '_')}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_new_files_job_validates_runs_and_its_test_passes(
    spark: SparkSession, project: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["init", "orders"]) == EXIT_OK
    out = capsys.readouterr().out
    assert "wrote jobs/orders.yaml" in out and "wrote tests/test_orders.py" in out
    assert main(["validate", "jobs/orders.yaml", "--env", "local"]) == EXIT_OK
    assert main(["run", "jobs/orders.yaml", "--env", "local"]) == EXIT_OK
    assert "sink 'events': 100 row(s)" in capsys.readouterr().out
    ids = [
        r.id
        for r in spark.read.format("delta")
        .load(str(project / "data/tables/orders/events"))
        .collect()
    ]
    assert sorted(ids) == list(range(1, 101))  # init's 100 sample records, each once
    tests = generated_tests(project, "orders")
    tests.test_every_record_lands_once(spark, tmp_path / "first")
    tests.test_a_record_that_does_not_parse_is_quarantined_not_lost(spark, tmp_path / "second")


def test_a_new_delta_job_reads_what_its_test_appends(
    spark: SparkSession, project: Path, tmp_path: Path
) -> None:
    assert main(["init", "copies", "--source", "delta", "--guarantee", "at-least-once"]) == 0
    assert "guarantee: at-least-once" in (project / "jobs/copies.yaml").read_text()
    assert main(["validate", "jobs/copies.yaml", "--env", "local"]) == EXIT_OK
    generated_tests(project, "copies").test_every_record_lands_once(spark, tmp_path / "run")


@pytest.mark.kafka
def test_a_new_kafka_job_passes_its_test_on_a_real_broker(
    spark: SparkSession, kafka: LocalKafka, project: Path, tmp_path: Path
) -> None:
    assert main(["init", "clicks", "--source", "kafka", "--strategy", "merge"]) == EXIT_OK
    assert "keys: [id]" in (project / "jobs/clicks.yaml").read_text()
    assert main(["validate", "jobs/clicks.yaml", "--env", "local"]) == EXIT_OK
    tests = generated_tests(project, "clicks")
    tests.test_every_record_lands_once(spark, kafka, tmp_path / "first")
    tests.test_a_record_that_does_not_parse_is_quarantined_not_lost(
        spark, kafka, tmp_path / "second"
    )


def test_init_overwrites_nothing_and_refuses_a_bad_name(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["init", "orders"]) == EXIT_OK
    (project / "jobs/orders.yaml").write_text("# mine\n")
    assert main(["init", "orders"]) == EXIT_INVALID
    assert "nothing written (--force overwrites)" in capsys.readouterr().err
    assert (project / "jobs/orders.yaml").read_text() == "# mine\n"
    with pytest.raises(SystemExit) as stopped:
        main(["init", "bad name!"])
    assert stopped.value.code == EXIT_INVALID
    assert main(["init", "orders", "--guarantee", "at-most-once", "--strategy", "merge"]) == 2
    assert "--strategy is for exactly-once" in capsys.readouterr().err
