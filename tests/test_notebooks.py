"""The three notebooks, executed headless as ``make notebooks`` does, and what they produced.

They run at once, each in its own kernel (their JVM start-ups overlap). The guarantees
notebook runs the reduced prove matrix in real, SIGKILLed processes, and the performance
notebook, given an empty results folder, the benchmarks' smoke run: the assertions on both
live here, so that the suite does that work once. The prove report's plot is also tested
alone, on hand-made rows, without Spark.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from onceflow.prove.harness import ProveRow
from onceflow.prove.report import FIELDS, to_png
from tests.conftest import ROOT

pytestmark = [pytest.mark.spark, pytest.mark.chaos, pytest.mark.slow]

NOTEBOOKS = ROOT / "notebooks"
EXPLORE, GUARANTEES, PERFORMANCE = (
    "01_explore_a_job.ipynb",
    "02_guarantees_demonstrated.ipynb",
    "03_performance.ipynb",
)
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def ran(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Execute the notebooks at once, each with its own output folder; their folder."""
    base = tmp_path_factory.mktemp("notebooks")
    settings = {
        EXPLORE: {"ONCEFLOW_NB_OUT": str(base / "explore")},
        GUARANTEES: {
            "ONCEFLOW_NB_OUT": str(base / "guarantees"),
            # where at-least-once and exactly-once differ most: the batch written, the kill
            # before Spark's commit (two scenarios, run side by side)
            "ONCEFLOW_NB_GUARANTEES": "at-least-once,exactly-once",
            "ONCEFLOW_NB_CRASH_POINTS": "after_write",
        },
        PERFORMANCE: {"ONCEFLOW_NB_RESULTS": str(base / "results")},  # empty: the smoke run
    }
    environ = {
        **os.environ,
        "SPARK_LOCAL_IP": "127.0.0.1",
        "PYSPARK_PYTHON": os.environ.get("PYSPARK_PYTHON", sys.executable),
    }
    options = ["--out", str(base / "executed"), "--timeout", "600"]
    running = {}
    for name, extra in settings.items():
        log = (base / f"{name}.log").open("wb")  # a pipe nobody reads could stall it
        process = subprocess.Popen(
            [sys.executable, str(NOTEBOOKS / "run.py"), str(NOTEBOOKS / name), *options],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**environ, **extra},
            cwd=NOTEBOOKS,  # the notebooks find the project root themselves
        )
        running[name] = (process, log)
    failed = []
    for name, (process, log) in running.items():
        try:
            process.wait(timeout=1200)
        finally:
            if process.poll() is None:
                process.kill()
            log.close()
        if process.returncode != 0:
            failed.append(f"{name}:\n{(base / f'{name}.log').read_text(errors='replace')[-4000:]}")
    assert not failed, "\n\n".join(failed)
    return base


def test_committed_notebooks_have_no_outputs() -> None:
    for path in sorted(NOTEBOOKS.glob("*.ipynb")):
        notebook = nbformat.read(path, as_version=4)
        for cell in notebook.cells:
            if cell.cell_type == "code":
                assert (cell.outputs, cell.execution_count) == ([], None), path.name


def test_explore_notebook_plots_the_jobs_metrics(ran: Path) -> None:
    executed = nbformat.read(ran / "executed" / EXPLORE, as_version=4)
    assert all(cell.get("execution_count") for cell in executed.cells if cell.cell_type == "code")
    assert (ran / "explore" / "metrics.png").read_bytes().startswith(PNG_MAGIC)


def test_guarantees_notebook_shows_each_promise_kept(ran: Path) -> None:
    """At-least-once and exactly-once killed after the write, before Spark's commit, as
    SIGKILLed processes. tests/test_guarantees.py runs every guarantee at every crash point
    in process, test_guarantee_mechanics.py the at-most-once ledger's skip, and
    test_remote_storage.py exactly-once killed mid-write in real processes; here the
    notebook's report is checked."""
    out = ran / "guarantees"
    rows = json.loads((out / "report.json").read_text())
    assert len(rows) == 2
    assert all(tuple(row) == FIELDS for row in rows)
    assert all(row["promise_held"] for row in rows)
    by = {row["guarantee"]: row for row in rows}
    # every crash really happened in a separate process
    assert all(row["kills"] == 1 for row in rows)
    # the weaker guarantee's failure is visible, not assumed: batch 0 (30 events) written
    # twice, and applied to the balances twice
    weaker = by["at-least-once"]
    assert (weaker["lost"], weaker["duplicated"]) == (0, 30), weaker
    assert weaker["balance_drift"] > 0
    exact = by["exactly-once"]
    assert (exact["lost"], exact["duplicated"], exact["balance_drift"]) == (0, 0, 0.0), exact
    assert "2 of 2 scenario(s) kept their promise." in (out / "report.md").read_text()
    assert (out / "report.png").read_bytes().startswith(PNG_MAGIC)


def test_performance_notebook_ran_the_benchmarks_smoke(ran: Path) -> None:
    """Not a measurement (a few thousand records say nothing): the benchmarks run, every
    run's table held each record once (a benchmark exits non-zero otherwise), and the JSON,
    Markdown and PNG reports, the benchmarks' and the notebook's, come out whole."""
    results = ran / "results"
    _check_guarantee_cost(results, ["baseline", "at-least-once", "exactly-once"])
    _check_merge_scaling(results)
    for plot in ("records_per_s", "batch_ms", "merge"):
        assert (results / f"notebook_{plot}.png").read_bytes().startswith(PNG_MAGIC)
    executed = nbformat.read(ran / "executed" / PERFORMANCE, as_version=4)
    shown = [out.get("data", {}).get("text/markdown", "") for c in executed.cells
             for out in c.get("outputs", [])]  # fmt: skip
    assert any("Smoke run, not a measurement" in text for text in shown)


def _check_guarantee_cost(folder: Path, writers: list[str]) -> None:
    report = json.loads((folder / "smoke.json").read_text())
    rows = {row["writer"]: row for row in report["results"]}
    assert sorted(rows) == sorted(writers)
    for row in rows.values():
        assert (row["source"], row["records"], row["batches"]) == ("files", 4000, 2)
        assert 0 < row["p50_batch_ms"] <= row["p95_batch_ms"]
        assert row["records_per_s_min"] <= row["records_per_s"] <= row["records_per_s_max"]
        assert row["driver_jvm_peak_mb"] > 100 and row["driver_python_peak_mb"] > 10
    # measured, not recomputed here: each writer ran, its rate and its batch times are
    # real figures of a plausible size for a few thousand records on this machine
    assert rows["baseline"]["x_baseline"] == 1.0
    for row in rows.values():
        assert 10 < row["records_per_s"] < 10_000_000, row
        assert 1 < row["p50_batch_ms"] < 600_000, row
        assert 0.01 < row["x_baseline"] < 100, row
    assert isinstance(rows["exactly-once"]["guard_overhead_ms_p50"], int | float)
    assert {t["target"] for t in report["targets"]} == {
        "exactly-once transactional >= 0.9x baseline",
        "exactly-once guard overhead <= 100 ms",
    }
    assert "| files | 4,000 | exactly-once |" in (folder / "smoke.md").read_text()
    assert (folder / "smoke.png").read_bytes().startswith(PNG_MAGIC)


def _check_merge_scaling(folder: Path) -> None:
    report = json.loads((folder / "smoke_merge.json").read_text())
    by_size = {row["target_rows"]: row for row in report["results"]}
    assert sorted(by_size) == [2000, 6000]
    for row in by_size.values():
        # 450 new ids inserted, 50 of the latest updated, in the one measured batch
        assert (row["numTargetRowsInserted"], row["numTargetRowsUpdated"]) == (450, 50)
    for row in by_size.values():
        assert 0 < row["merge_s"] < 600, row
    assert 0.01 < report["x_largest_vs_smallest_target"]["pruned"] < 100
    assert (folder / "smoke_merge.png").read_bytes().startswith(PNG_MAGIC)


def _row(guarantee: str, point: str, lost: int = 0, duplicated: int = 0) -> ProveRow:
    held = guarantee != "exactly-once" or lost == duplicated == 0
    return ProveRow(
        guarantee, "append", point, 1, 60, 60 - lost + duplicated, lost, duplicated, 0.0, "", held
    )


def test_prove_report_png(tmp_path: Path) -> None:
    """Without Spark: a PNG of a plausible size, also for rows of all zeros."""
    rows = [
        _row("at-least-once", "after_write", duplicated=30),
        _row("at-least-once", "mid_write"),
        _row("exactly-once", "after_write", duplicated=30),  # a broken promise
        _row("exactly-once", "mid_write"),
    ]
    to_png(rows, tmp_path / "deep" / "report.png")
    data = (tmp_path / "deep" / "report.png").read_bytes()
    assert data.startswith(PNG_MAGIC) and len(data) > 10_000
    to_png([_row("exactly-once", "before_write")], tmp_path / "zeros.png")
    assert (tmp_path / "zeros.png").read_bytes().startswith(PNG_MAGIC)


def test_guarantees_notebook_shows_one_customers_history_across_a_kill(ran: Path) -> None:
    """The CDC section: the customer whose change arrives after the kill has no version at
    its sequence in the history the kill left, and after the restart exactly the versions
    the changes imply (recomputed by the notebook in plain Python), that one spliced in."""
    shown = json.loads((ran / "guarantees" / "cdc_history.json").read_text())
    starts = {name: [v["__start_at"] for v in shown[name]] for name in ("before", "after")}
    assert shown["late"] not in starts["before"], shown
    assert shown["late"] in starts["after"], shown
    assert shown["after"] == shown["expected"], shown
    assert len(starts["after"]) == len(set(starts["after"]))  # no version twice
