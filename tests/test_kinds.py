"""Kinds of sources and sinks: everything asks a kind's declaration, so a kind from another
package works without a change to onceflow. tests/kinds/jsonl_sink is such a package: one
module, registered through its ``onceflow.sinks`` entry point (the Makefile installs it)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from pyspark.sql import SparkSession

from onceflow.config import kinds, load_job
from onceflow.errors import ConfigError
from onceflow.prove.workload import payments
from onceflow.status import job_status
from onceflow.testing import assert_exactly_once, run_job
from tests.conftest import ROOT
from tests.streaming import crash_at

JOB = ROOT / "tests" / "resources" / "kinds" / "payments_jsonl.yaml"
CONF = ROOT / "conf"


def test_the_registry_holds_the_built_in_kinds_and_the_installed_one() -> None:
    registry = kinds()
    assert sorted(registry.sources) == ["delta", "files", "kafka"]
    assert sorted(registry.sinks) == ["delta", "jsonl", "kafka", "parquet", "postgres"]
    plugin = registry.sink("jsonl")
    assert plugin.spec.__module__ == "onceflow_jsonl_sink"  # not onceflow's
    assert plugin.read_format == "json" and plugin.file_backed


def test_loading_any_job_loads_no_spark() -> None:
    """Every kind's declaration is Spark-free: validating a job starts no JVM and imports no
    pyspark, whatever kinds are installed."""
    jobs = [str(p) for p in sorted((ROOT / "jobs").glob("*.yaml"))] + [str(JOB)]
    script = (
        "import sys\n"
        "from onceflow.config import load_job\n"
        "for job in sys.argv[1:]:\n"
        "    load_job(job, env='local', conf_dir=" + repr(str(CONF)) + ")\n"
        "print([m for m in ('pyspark', 'delta', 'py4j') if m in sys.modules])\n"
    )
    env = {"KAFKA_BOOTSTRAP": "127.0.0.1:9092", "ONCEFLOW_PG_HOST": "h", "ONCEFLOW_PG_PORT": "1",
           "ONCEFLOW_PG_DATABASE": "d", "ONCEFLOW_PG_USER": "u", "ONCEFLOW_PG_PASSWORD": "p",
           "PATH": "/usr/bin:/bin"}  # fmt: skip
    result = subprocess.run(
        [sys.executable, "-c", script, *jobs], capture_output=True, text=True, env=env, check=False
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "[]"


@pytest.mark.parametrize(
    ("override", "key", "why"),
    [
        (
            "sinks[0].mode=merge",
            "sinks[0].mode",
            "a JSON lines sink writes by append, replace-batch",
        ),
        ("sinks[0].mode=append", "sinks[0]", "exactly-once cannot guard a JSON lines append"),
        ("sinks[0].query=SELECT 1", "sinks[0].query", "writes the batch as it comes"),
    ],
)
def test_what_the_plugin_kind_cannot_do_is_refused(override: str, key: str, why: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_job(JOB, env="local", conf_dir=CONF, overrides=[override])
    assert caught.value.error_class == "CONFIG_GUARANTEE_REFUSED"
    assert f"'{key}'" in str(caught.value) and why in str(caught.value)


@pytest.mark.spark
def test_the_plugin_kind_keeps_exactly_once_across_a_crash(
    spark: SparkSession, tmp_path: Path
) -> None:
    records = [p.as_record() for p in payments(40)]
    batches = [records[:20], records[20:]]
    with pytest.raises(Exception, match="CRASH_INJECTED"):
        run_job(JOB, spark=spark, root=tmp_path, env="local", conf_dir=CONF,
                input_rows=batches, instrument=crash_at("after_write", 0))  # fmt: skip
    # the restart reads the same input (the first run wrote it under the root)
    spec = load_job(JOB, env="local", conf_dir=CONF,
                    overrides=[f"storage.root={tmp_path}", f"source.path={tmp_path / 'input'}",
                               "source.max_files_per_trigger=1"]).spec  # fmt: skip
    run = run_job(spec, spark=spark)
    assert_exactly_once(run.sinks["events"], range(1, 41))
    assert [r.action for r in run.reports.values()] == ["replayed", "written"]
    status = job_status(spark, spec)
    assert status.healthy and status.sinks[0].verdict == "in step: last batch 1", status
    marks = [json.loads(p.read_text()) for p in (tmp_path / "tables/events_jsonl/_marks").iterdir()]
    assert [m["last_batch"] for m in marks] == [1]
