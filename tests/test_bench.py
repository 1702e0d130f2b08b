"""A smoke run of ``make bench``: both benchmarks, tiny, end to end, with their reports.

Not a measurement (the figures of a few thousand records say nothing); it proves that the
benchmarks run, that every run's table held each record once (the benchmark exits
non-zero otherwise), and that the JSON, Markdown and PNG reports come out whole.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.spark, pytest.mark.slow]

BENCH = Path(__file__).resolve().parent.parent / "bench"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _start(log: Path, script: str, *arguments: str) -> subprocess.Popen[bytes]:
    """Start a benchmark, its output into ``log`` (a pipe nobody reads could stall it)."""
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, str(BENCH / script), *arguments],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "SPARK_LOCAL_IP": "127.0.0.1"},
        )


def _finish(process: subprocess.Popen[bytes], log: Path) -> None:
    try:
        process.wait(timeout=600)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, log.read_text(errors="replace")[-3000:]


def test_both_benchmarks_run_and_report(tmp_path: Path) -> None:
    """Both at once: each is mostly JVM start-up, which two cores overlap well."""
    writers = ["baseline", "at-least-once", "exactly-once"]
    cost_log, merge_log = tmp_path / "cost.log", tmp_path / "merge.log"
    cost = _start(
        cost_log,
        "guarantee_cost.py", "--records", "4000", "--per-batch", "2000", "--file-records", "1000",
        "--rounds", "1", "--sources", "files", "--writers", *writers, "--env", "test",
        "--out", str(tmp_path), "--name", "smoke",
    )  # fmt: skip
    merge = _start(
        merge_log,
        "merge_scaling.py", "--targets", "2000", "6000", "--batch", "500", "--file-rows", "1000",
        "--rounds", "1", "--ways", "pruned", "--env", "test", "--out", str(tmp_path),
        "--name", "smoke_merge",
    )  # fmt: skip
    _finish(cost, cost_log)
    _finish(merge, merge_log)
    _check_guarantee_cost(tmp_path, writers)
    _check_merge_scaling(tmp_path)


def _check_guarantee_cost(tmp_path: Path, writers: list[str]) -> None:
    report = json.loads((tmp_path / "smoke.json").read_text())
    rows = {row["writer"]: row for row in report["results"]}
    assert sorted(rows) == sorted(writers)
    for row in rows.values():
        assert (row["source"], row["records"], row["batches"]) == ("files", 4000, 2)
        assert 0 < row["p50_batch_ms"] <= row["p95_batch_ms"]
        assert row["records_per_s_min"] <= row["records_per_s"] <= row["records_per_s_max"]
        assert row["driver_jvm_peak_mb"] > 100 and row["driver_python_peak_mb"] > 10
    assert rows["baseline"]["x_baseline"] == 1.0
    exactly_once = rows["exactly-once"]
    assert exactly_once["x_baseline"] == round(
        exactly_once["records_per_s"] / rows["baseline"]["records_per_s"], 2
    )
    overhead = exactly_once["p50_batch_ms"] - rows["at-least-once"]["p50_batch_ms"]
    assert exactly_once["guard_overhead_ms_p50"] == overhead
    assert {t["target"] for t in report["targets"]} == {
        "exactly-once transactional >= 0.9x baseline",
        "exactly-once guard overhead <= 100 ms",
    }
    assert "| files | 4,000 | exactly-once |" in (tmp_path / "smoke.md").read_text()
    assert (tmp_path / "smoke.png").read_bytes().startswith(PNG_MAGIC)


def _check_merge_scaling(tmp_path: Path) -> None:
    report = json.loads((tmp_path / "smoke_merge.json").read_text())
    by_size = {row["target_rows"]: row for row in report["results"]}
    assert sorted(by_size) == [2000, 6000]
    for row in by_size.values():
        # 450 new ids inserted, 50 of the latest updated, in the one measured batch
        assert (row["numTargetRowsInserted"], row["numTargetRowsUpdated"]) == (450, 50)
    ratio = by_size[6000]["merge_s"] / by_size[2000]["merge_s"]
    assert report["x_largest_vs_smallest_target"]["pruned"] == pytest.approx(ratio, abs=0.01)
    assert (tmp_path / "smoke_merge.png").read_bytes().startswith(PNG_MAGIC)
