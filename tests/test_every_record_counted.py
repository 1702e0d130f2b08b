"""Every input record is accounted for in every job, a job without a ``quality:`` block
included: written, quarantined, or dropped by a named reason. Spark's own JSON reader would
turn a nested object into an account, NULL a wrong type and skip blank lines, uncounted."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from pyspark.sql import SparkSession

from onceflow.observe import read_metrics
from onceflow.runner import run_job
from tests.conftest import JobLoader

pytestmark = pytest.mark.spark

AT = "2026-01-01T00:00:00Z"


def payment(record_id: object, **fields: object) -> str:
    return json.dumps(
        {"id": record_id, "account": "acct-0001", "amount": "1.00", "event_time": AT} | fields
    )


# line number -> (text, where it must end), decided here by hand, not by onceflow's parser
LINES: dict[int, tuple[str, str]] = {
    1: (payment(1), "written"),
    2: (payment(2), "written"),
    3: (payment(3), "written"),
    4: (payment(4, account={"name": "x"}), "quarantined"),  # an object taken for an account
    5: (payment(5, amount="abc"), "quarantined"),  # a wrong type NULLed
    6: ("", "quarantined"),  # a blank line skipped
    7: ("oops, not json", "quarantined"),
    8: (payment(None), "dropped"),  # by the job's own transform.where: id IS NOT NULL
    9: ("[1, 2]", "quarantined"),
    10: (json.dumps({"note": "nothing the schema knows"}), "quarantined"),
    11: (payment(11), "written"),
    12: (payment(12, extra="ignored"), "written"),
}


def quality_totals(lines: list[dict[str, Any]]) -> Counter[str]:
    totals: Counter[str] = Counter()
    for line in lines:
        quality = line.get("quality") or {}
        for key in ("input", "good", "dropped", "quarantined"):
            totals[key] += int(quality.get(key, 0))
        for rule, count in (quality.get("violations") or {}).items():
            totals[f"violations.{rule}"] += int(count)
    return totals


def test_a_job_without_a_quality_block_accounts_for_every_line(
    spark: SparkSession, job_in: JobLoader, tmp_path: Path
) -> None:
    folder = tmp_path / "data/sample/payments"
    folder.mkdir(parents=True)
    (folder / "twelve.json").write_text("".join(text + "\n" for text, _ in LINES.values()))
    loaded = job_in("jobs/payments.yaml")
    assert "quality" not in (Path(loaded.job_file).read_text())

    result = run_job(loaded)

    expected = Counter(fate for _, fate in LINES.values())
    assert result.input_rows == len(LINES)
    written = {row["id"] for row in spark.read.format("delta").load(loaded.spec.sinks[0].path)
               .select("id").collect()}  # fmt: skip
    assert written == {n for n, (_, fate) in LINES.items() if fate == "written"}
    quarantine = tmp_path / "data/quarantine/payments"
    positions = sorted(
        row["position"] for row in spark.read.format("delta").load(str(quarantine)).collect()
    )
    assert positions == [n for n, (_, fate) in LINES.items() if fate == "quarantined"]
    totals = quality_totals(read_metrics(spark, loaded.spec.checkpoint))
    assert totals["input"] == len(LINES)
    assert (totals["good"], totals["quarantined"], totals["dropped"]) == (
        expected["written"],
        expected["quarantined"],
        expected["dropped"],
    )
    assert totals["violations.transform_where"] == expected["dropped"]


def test_an_all_empty_csv_row_is_quarantined_not_written(
    spark: SparkSession, job_in: JobLoader, tmp_path: Path
) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "rows.csv").write_text(f"1,acct-0001,1.00,{AT}\n,,,\n2,acct-0002,2.00,{AT}\n")
    loaded = job_in(
        "jobs/payments.yaml", "source.format=csv", f"source.path={folder}", "transform.where=null"
    )
    run_job(loaded)
    written = spark.read.format("delta").load(loaded.spec.sinks[0].path).select("id").collect()
    assert sorted(row["id"] for row in written) == [1, 2]
    quarantine = spark.read.format("delta").load(str(tmp_path / "data/quarantine/payments"))
    assert [row["position"] for row in quarantine.collect()] == [2]
