"""``onceflow[testing]`` used as a user uses it: the README's example test of a job, in a
project of its own (its jobs/, conf/ and pytest.ini), run by pytest in a fresh process with
the plugin found through its ``pytest11`` entry point; and the helpers' own promises."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from pyspark.sql import SparkSession

from onceflow.testing import assert_exactly_once
from tests.conftest import ROOT
from tests.test_readme import blocks

pytest_plugins = ["pytester"]


@pytest.mark.spark
@pytest.mark.slow
def test_the_readme_example_passes_in_a_project_of_its_own(pytester: pytest.Pytester) -> None:
    example = next(b for b in blocks("python") if "from onceflow.testing import" in b)
    ini = next(b for b in blocks("ini") if "onceflow_jars_dir" in b)
    project = pytester.path
    shutil.copytree(ROOT / "conf", project / "conf")
    (project / "jobs").mkdir()
    shutil.copy(ROOT / "jobs" / "payments.yaml", project / "jobs")
    (project / "tests").mkdir()
    (project / "tests" / "test_payments_job.py").write_text(example)
    # the jars where this checkout's make jars put them
    (project / "pytest.ini").write_text(
        ini.replace("= .jars/spark", f"= {ROOT / '.jars' / 'spark'}").replace(
            "= .jars\n", f"= {ROOT / '.jars'}\n"
        )
    )
    result = pytester.runpytest_subprocess("-q", "-p", "no:cacheprovider", "tests")
    result.assert_outcomes(passed=1)


def test_assert_exactly_once_names_what_is_wrong(spark: SparkSession) -> None:
    frame = spark.createDataFrame([(1,), (2,), (2,), (9,)], "id BIGINT")
    with pytest.raises(AssertionError, match="1 lost, 1 duplicated, 1 unexpected"):
        assert_exactly_once(frame, [1, 2, 3])
    assert assert_exactly_once(frame.where("id < 3").distinct(), [1, 2]).delivered == 2


def test_the_plugin_is_registered_through_its_entry_point() -> None:
    from importlib.metadata import entry_points

    found = {entry.name: entry.value for entry in entry_points(group="pytest11")}
    assert found.get("onceflow") == "onceflow.testing.plugin"
    assert Path(ROOT / "src/onceflow/testing/plugin.py").is_file()
