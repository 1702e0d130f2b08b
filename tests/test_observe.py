"""Seeing a job: the metrics lines true to the run, the live line on a terminal, and
``onceflow status`` on a job killed mid-batch, after its replay, and against a checkpoint
rolled back behind its sinks.

One real job is run twice as a separate process: killed inside batch 1 (after its first
sink was written), then restarted on a pseudo-terminal. Status is read in between.
"""

from __future__ import annotations

import io
import json
import logging
import os
import pty
import select
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from delta.tables import DeltaTable
from pyspark.sql import SparkSession

from onceflow.cli import EXIT_FAILED, EXIT_OK, main
from onceflow.config import Guarantee
from onceflow.guarantees import CheckpointPosition
from onceflow.observe import (
    LiveProgress,
    MetricsFile,
    console_handler,
    metrics_folder,
    progress_line,
    read_metrics,
    source_lag,
)
from onceflow.prove.workload import write_payment_files
from onceflow.status import sink_verdict
from tests.conftest import ROOT
from tests.test_readme import blocks

JOB = str(ROOT / "jobs" / "payments_exactly_once_transactional.yaml")
ONCEFLOW = str(Path(sys.executable).with_name("onceflow"))


def _settings(tmp_path: Path) -> list[str]:
    return [
        "--env", "test",
        "--set", f"source.path={tmp_path / 'in'}",
        "--set", f"sinks.0.path={tmp_path / 'events'}",
        "--set", f"sinks.1.path={tmp_path / 'balances'}",
        "--set", f"checkpoint={tmp_path / 'checkpoint'}",
        "--set", f"quality.quarantine={tmp_path / 'quarantine'}",
    ]  # fmt: skip


def _run_killed(tmp_path: Path) -> None:
    """Batch 0 completes; batch 1 dies after its first sink ('events') was written."""
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "onceflow.prove.child",
            "run",
            JOB,
            *_settings(tmp_path),
            "--crash",
            "mid_write@1:kill",
        ],
        start_new_session=True,  # the crash kills its whole process group
        capture_output=True,
        timeout=300,
    )
    assert result.returncode < 0, result.stderr.decode(errors="replace")[-2000:]


def _run_on_a_terminal(tmp_path: Path) -> tuple[int, str]:
    """Run the job with stderr on a pseudo-terminal; its exit code and what it showed.

    The environment asks for a crash the old way (ONCEFLOW_CRASH): a production run must
    not read it, so the run completes (its own group: were it read, the kill stays there).
    """
    leader, follower = pty.openpty()
    process = subprocess.Popen(
        [ONCEFLOW, "run", JOB, *_settings(tmp_path)],
        stdin=subprocess.DEVNULL,
        stdout=follower,
        stderr=follower,
        env={**os.environ, "ONCEFLOW_CRASH": "before_write@1:kill"},
        start_new_session=True,
    )
    os.close(follower)
    shown = bytearray()
    while True:
        ready, _, _ = select.select([leader], [], [], 300)
        if not ready:
            process.kill()
            break
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # the terminal closed: every process holding it has exited
            break
        if not chunk:
            break
        shown += chunk
    os.close(leader)
    return process.wait(timeout=60), shown.decode(errors="replace")


def _status(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, dict[str, Any]]:
    capsys.readouterr()
    code = main(["status", JOB, *_settings(tmp_path), "--json"])
    return code, json.loads(capsys.readouterr().out)


def _commit_rows(spark: SparkSession, path: Path) -> dict[int, int]:
    """Batch id -> rows its commit added to the Delta table at ``path`` (by the marker)."""
    history = DeltaTable.forPath(spark, str(path)).history().collect()
    return {
        json.loads(row["userMetadata"])["onceflow_batch_id"]: int(
            row["operationMetrics"]["numOutputRows"]
        )
        for row in history
        if (row["userMetadata"] or "").startswith("{") and row["operation"] == "WRITE"
    }


@pytest.mark.slow
def test_metrics_live_line_and_status_through_a_crash(
    tmp_path: Path, spark: SparkSession, capsys: pytest.CaptureFixture[str]
) -> None:
    write_payment_files(tmp_path / "in", 120, 4, seed=3)  # 2 files a trigger: batches 0, 1
    _run_killed(tmp_path)

    # killed mid-batch: batch 1 in flight, 'events' holds it, 'balances' does not
    code, status = _status(tmp_path, capsys)
    assert code == EXIT_OK and status["healthy"], status
    assert (status["last_committed"], status["in_flight"]) == (0, 1)
    sinks = {s["name"]: s for s in status["sinks"]}
    assert sinks["events"]["last_batch"] == 1
    assert "the one in flight: its replay skips this sink" in sinks["events"]["verdict"]
    assert sinks["balances"]["last_batch"] == 0
    assert status["last_batch"]["batch_id"] == 0  # the metrics file has batch 0 only
    assert status["source_lag"] == {"files": 0, "as_of": "now"}  # batch 1 listed them all

    # the restart, on a terminal: the replay completes batch 1
    code, shown = _run_on_a_terminal(tmp_path)
    assert code == 0, shown[-3000:]
    assert "\r\x1b[2K" in shown  # the line is redrawn in place
    assert "payments-exactly-once-transactional: batch 1 | 60 rows |" in shown
    assert "replayed" in shown
    assert '"batch_id": 1' not in shown  # on a terminal the JSON goes to the metrics only

    checkpoint = str(tmp_path / "checkpoint")
    lines = read_metrics(spark, checkpoint)
    assert [line["batch_id"] for line in lines] == [0, 1]
    written = _commit_rows(spark, tmp_path / "events")
    query_ids = {line["query_id"] for line in lines}
    assert len(query_ids) == 1  # one checkpoint, one query id, over both runs
    assert lines[0]["run_id"] != lines[1]["run_id"]  # two runs
    for line in lines:
        assert line["job"] == "payments-exactly-once-transactional"
        assert line["input_rows"] == written[line["batch_id"]] == 60
        durations = line["durations_ms"]
        assert 0 < durations["addBatch"] <= durations["triggerExecution"]
        # Spark's processed rate: the batch's rows over its trigger's time
        expected_out = line["input_rows"] / (durations["triggerExecution"] / 1000)
        assert line["rows_per_second"]["out"] == pytest.approx(expected_out, rel=0.02)
        assert set(line["guarantee"]["write_ms"]) == {"events", "balances"}
        assert line["skipped_offsets"] == 0 and line["source_lag"] is None  # a file source
    assert lines[0]["guarantee"]["action"] == "written"
    assert lines[0]["guarantee"]["replay"] is False
    replayed = lines[1]["guarantee"]
    assert (replayed["action"], replayed["replay"]) == ("replayed", True)
    assert replayed["sinks"] == {"events": "skipped_as_replay", "balances": "written"}
    assert _commit_rows(spark, tmp_path / "events") == written  # the replay added nothing
    # the README's metrics line has the fields of a real one
    shown_line = json.loads(next(b for b in blocks("json") if '"batch_id"' in b))
    assert set(shown_line) == set(lines[1])
    assert set(shown_line["guarantee"]) == set(replayed)

    # healthy: committed through 1, nothing in flight, both sinks in step
    code, status = _status(tmp_path, capsys)
    assert code == EXIT_OK and status["healthy"], status
    assert (status["last_committed"], status["in_flight"]) == (1, None)
    assert [s["verdict"] for s in status["sinks"]] == [
        "in step: last batch 1",
        "in step: last batch 1",
        "empty: no batch has quarantined a record yet",
    ]

    # the checkpoint restored from an older copy: the sinks hold a batch it never planned
    for folder in ("offsets", "commits"):
        (tmp_path / "checkpoint" / folder / "1").unlink()
    code, status = _status(tmp_path, capsys)
    assert code == EXIT_FAILED and not status["healthy"]
    assert len(status["problems"]) == 2
    assert "holds batch 1, but the checkpoint planned only up to 0" in status["problems"][0]
    capsys.readouterr()
    assert main(["status", JOB, *_settings(tmp_path)]) == EXIT_FAILED
    assert "2 problem(s): checkpoint and sinks disagree" in capsys.readouterr().out


def test_a_fresh_checkpoint_against_a_written_sink_is_flagged() -> None:
    fresh = CheckpointPosition(last_planned=None, last_committed=None)
    verdict, problem = sink_verdict(Guarantee.EXACTLY_ONCE, {"old": 7}, None, {"old": 7}, fresh)
    assert problem and "another checkpoint's app id old (to batch 7)" in verdict


@pytest.mark.parametrize(
    ("guarantee", "marks", "last", "problem", "says"),
    [
        (Guarantee.AT_LEAST_ONCE, {"me": 3}, 3, False, "replay writes it again"),
        (Guarantee.AT_MOST_ONCE, {"me": 3}, 3, False, "skipped by the at-most-once claim"),
        (Guarantee.EXACTLY_ONCE, {"me": 1}, 1, True, "the batches between are missing"),
        (Guarantee.AT_MOST_ONCE, {"me": 1}, 1, False, "at-most-once loses"),
        (Guarantee.EXACTLY_ONCE, {"me": 5}, 5, True, "planned only up to 3"),
        (Guarantee.EXACTLY_ONCE, {}, None, True, "holds no batch of this checkpoint"),
        (Guarantee.EXACTLY_ONCE, None, None, False, "keeps no batch marks"),
    ],
)
def test_sink_verdicts(
    guarantee: Guarantee, marks: dict[str, int] | None, last: int | None, problem: bool, says: str
) -> None:
    position = CheckpointPosition(last_planned=3, last_committed=2)  # batch 3 in flight
    verdict, flagged = sink_verdict(guarantee, marks, last, {}, position)
    assert (flagged, says in verdict) == (problem, True), verdict


def test_progress_line_and_the_console_handler() -> None:
    summary = {
        "job": "payments",
        "batch_id": 7,
        "input_rows": 12345,
        "rows_per_second": {"in": 2000.4, "out": 4100.6},
        "durations_ms": {"triggerExecution": 3010},
        "source_lag": {"offsets": 1500},
        "guarantee": {"action": "written"},
        "quality": {"quarantined": 3},
    }
    line = progress_line(summary)
    assert line == (
        "payments: batch 7 | 12,345 rows | 2,000 rows/s in | 4,101 rows/s out | "
        "lag 1,500 offsets | last batch 3.01 s | written | 3 quarantined"
    )

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    terminal = Terminal()
    handler = console_handler(terminal)
    assert isinstance(handler, LiveProgress)
    logger = logging.getLogger("onceflow.test_console")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("json", extra={"summary": summary})
        logger.warning("a warning in between")
        handler.close()
    finally:
        logger.removeHandler(handler)
    text = terminal.getvalue()
    assert text.startswith("\r\x1b[2K" + line)
    assert "WARNING onceflow.test_console: a warning in between\n" + line in text
    assert text.endswith(line + "\n")
    assert not isinstance(console_handler(io.StringIO()), LiveProgress)


def test_kafka_source_lag_from_the_progress() -> None:
    progress = {
        "sources": [
            {
                "description": "KafkaV2[Subscribe[payments]]",
                "startOffset": {"payments": {"0": 0, "1": 0}},
                "endOffset": {"payments": {"0": 100, "1": 90}},
                "latestOffset": {"payments": {"0": 250, "1": 90}},
                "numInputRows": 190,
            }
        ]
    }
    assert source_lag(json.dumps(progress)) == {"offsets": 150}
    assert source_lag(json.dumps({"sources": [{"description": "FileStreamSource"}]})) is None


def test_status_of_a_job_that_never_ran(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "in").mkdir()
    code, status = _status(tmp_path, capsys)
    assert code == EXIT_OK, status
    assert (status["app_id"], status["last_committed"], status["in_flight"]) == (None, None, None)
    assert [s["verdict"] for s in status["sinks"]] == [
        "empty: nothing written yet",
        "empty: nothing written yet",
        "empty: no batch has quarantined a record yet",
    ]
    assert not (tmp_path / "checkpoint").exists()  # status writes nothing


def test_the_metrics_file_keeps_the_newest_batches(spark: SparkSession, tmp_path: Path) -> None:
    checkpoint = str(tmp_path / "checkpoint")
    metrics = MetricsFile(spark, checkpoint, keep=2)
    for batch_id in range(5):
        metrics.write({"batch_id": batch_id, "input_rows": batch_id * 10})
    assert [line["batch_id"] for line in read_metrics(spark, checkpoint)] == [3, 4]
    assert read_metrics(spark, checkpoint, last=1) == [{"batch_id": 4, "input_rows": 40}]
    # whole files only: no temporary left, no checksum sidecar to go stale
    assert sorted(p.name for p in Path(metrics_folder(checkpoint)).iterdir()) == [
        "3.json",
        "4.json",
    ]


def test_a_metrics_file_that_cannot_be_written_warns_once_and_never_raises(
    spark: SparkSession, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    checkpoint = tmp_path / "checkpoint"
    checkpoint.mkdir()
    (checkpoint / "onceflow").write_text("a file where the state folder should be")
    metrics = MetricsFile(spark, str(checkpoint))
    with caplog.at_level(logging.WARNING, logger="onceflow.observe"):
        metrics.write({"batch_id": 0})
        metrics.write({"batch_id": 1})
    warnings = [r for r in caplog.records if "could not write the metrics line" in r.message]
    assert len(warnings) == 1
