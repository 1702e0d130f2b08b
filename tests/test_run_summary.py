"""What ``onceflow run`` says when it ends: the records by fate and every table's rows, why
a run found nothing, a table never written as not created yet; one line when Ctrl-C stops
it; and Spark's noise kept out of the local profiles."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from pyspark.sql import SparkSession

import onceflow
from onceflow.cli import EXIT_OK, main
from onceflow.config import load_job
from onceflow.prove.workload import write_payment_files
from onceflow.session import build_session
from tests.conftest import ROOT

pytestmark = pytest.mark.spark

JOB = ROOT / "jobs" / "payments.yaml"  # where "id IS NOT NULL"; JSON parsed by onceflow


def _run(root: Path, *more: str) -> list[str]:
    return ["run", str(JOB), "--env", "local", "--set", f"storage.root={root}", *more]


def test_a_run_on_empty_input_says_so_and_that_no_table_exists_yet(
    spark: SparkSession, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    incoming = tmp_path / "data" / "sample" / "payments"
    incoming.mkdir(parents=True)

    code = main(_run(tmp_path))

    out = capsys.readouterr().out.splitlines()
    assert code == EXIT_OK
    assert out[0].startswith("job 'payments' on ") and ": 0 batch(es), 0 input row(s)" in out[0]
    checkpoint = tmp_path / "state" / "payments" / "checkpoint"
    assert out[1:] == [
        f"no input: nothing to read under {incoming} yet (the checkpoint at {checkpoint} has "
        "committed no batch, 0 files unread now)",
        "sink 'events': 0 rows (not created yet) at "
        f"{tmp_path / 'data' / 'tables' / 'payments' / 'events'}",
        f"quarantine: 0 rows (not created yet) at {tmp_path / 'data/quarantine/payments'}",
    ]


def test_the_summary_counts_records_by_fate_and_explains_a_run_with_nothing_new(
    spark: SparkSession, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    incoming = tmp_path / "data" / "sample" / "payments"
    incoming.mkdir(parents=True)
    good = '{"id": %d, "account": "acct-%d", "amount": 1.5, "event_time": "2026-01-01T00:00:00Z"}'
    lines = [good % (n, n) for n in (1, 2, 3)]
    lines.append(good.replace("%d", "null", 1) % 4)  # no id: transform.where drops it
    lines.append("not json")  # quarantined as it arrived
    (incoming / "part-1.json").write_text("\n".join(lines) + "\n")
    events = tmp_path / "data" / "tables" / "payments" / "events"
    quarantine = tmp_path / "data" / "quarantine" / "payments"

    assert main(_run(tmp_path)) == EXIT_OK
    first = capsys.readouterr().out.splitlines()
    assert ": 1 batch(es), 5 input row(s)" in first[0]
    assert first[1:] == [
        "records: 3 good, 1 dropped, 1 quarantined",
        f"sink 'events': 3 row(s) at {events}",
        f"quarantine: 1 row(s) at {quarantine}",
    ]

    assert main(_run(tmp_path)) == EXIT_OK  # nothing new since
    again = capsys.readouterr().out.splitlines()
    checkpoint = tmp_path / "state" / "payments" / "checkpoint"
    assert ": 0 batch(es), 0 input row(s)" in again[0]
    assert again[1:] == [
        f"no new input: the checkpoint at {checkpoint} has read everything under {incoming}, "
        "up to batch 0 (0 files unread now)",
        f"sink 'events': 3 row(s) at {events}",
        f"quarantine: 1 row(s) at {quarantine}",
    ]


# what the local profiles quiet, by logger and by the line it would print
NOISE = {
    "org.apache.spark.util.SparkStringUtils": "Truncated the string representation of a plan",
    "org.apache.spark.sql.catalyst.util.StringUtils": "Truncated the string representation",
    "org.apache.spark.sql.execution.streaming.runtime.ResolveWriteToStream": (
        "spark.sql.adaptive.enabled is not supported in streaming"
    ),
    "org.apache.spark.sql.execution.streaming.runtime.ProcessingTimeExecutor": (
        "Current batch is falling behind"
    ),
}


@pytest.mark.parametrize("env", ["local", "test"])
def test_the_local_profiles_quiet_sparks_noise_and_nothing_else(
    env: str, spark: SparkSession
) -> None:
    build_session(load_job(JOB, env=env).spec)
    manager = spark.sparkContext._jvm.org.apache.logging.log4j.LogManager

    def level(logger: str) -> str:
        return str(manager.getLogger(logger).getLevel())

    assert {logger: level(logger) for logger in NOISE} == dict.fromkeys(NOISE, "ERROR")
    # their neighbours still warn: the scheduler, the stream's own failures
    assert level("org.apache.spark.scheduler.DAGScheduler") == "WARN"
    assert level("org.apache.spark.sql.execution.streaming.runtime.MicroBatchExecution") == "WARN"


@pytest.mark.slow
def test_ctrl_c_stops_the_run_with_one_line_and_no_traceback(tmp_path: Path) -> None:
    """A real ``onceflow run`` that runs until stopped (a 1 s processing-time trigger, one
    file a batch, each batch longer than that: Spark would warn it falls behind), sent
    SIGINT once its first batch is committed."""
    incoming = tmp_path / "data" / "sample" / "payments"
    write_payment_files(incoming, count=30, files=3)
    endless = [
        "--env", "test",
        "--set", "source.max_files_per_trigger=1",
        "--set", "trigger.available_now=false",
        "--set", "trigger.processing_time=1 second",
    ]  # fmt: skip
    process = subprocess.Popen(
        [sys.executable, "-m", "onceflow", *_run(tmp_path, *endless)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(Path(onceflow.__file__).parents[1])},
        start_new_session=True,  # its own group: a Ctrl-C from a terminal reaches the group
    )
    commits = tmp_path / "state" / "payments" / "checkpoint" / "commits"
    try:
        deadline = time.monotonic() + 240
        while not (commits.is_dir() and any(n.isdigit() for n in os.listdir(commits))):
            assert process.poll() is None, process.communicate()[1][-3000:]
            assert time.monotonic() < deadline, "no batch committed within 240 s"
            time.sleep(0.2)
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode == 130, err[-3000:]
    assert "Traceback" not in err and "Exception in thread" not in err
    assert not [line for line in err.splitlines() if " ERROR " in line]
    assert not [noise for noise in NOISE.values() if noise in err]
    (stopped,) = [line for line in err.splitlines() if "stopped (Ctrl-C)" in line]
    committed = max(int(n) for n in os.listdir(commits) if n.isdigit())
    offsets = tmp_path / "state" / "payments" / "checkpoint" / "offsets"
    planned = max(int(n) for n in os.listdir(offsets) if n.isdigit())
    assert stopped.startswith(
        f"job 'payments' stopped (Ctrl-C): the last batch it committed is {committed} "
        f"(checkpoint {commits.parent}); "
    )
    if planned > committed:
        assert f"batch {planned} was in flight: a restart replays it (at-least-once" in stopped
    else:
        assert stopped.endswith(f"a restart resumes after batch {committed}")
    assert out == ""  # no summary for a run that was stopped
