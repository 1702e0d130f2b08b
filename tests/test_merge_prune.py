"""A MERGE carries its batch's key range (``merge.prune``), so Delta skips target files
outside it; the range must mean exactly the batch's values, and the result must not change.

The range is printed by Spark as text and read back as a SQL literal: a timestamp in a
session time zone that is not UTC, a string with a quote and a backslash, a decimal, a
date. For each, the predicate selects exactly the target rows between the batch's min and
max (computed by Spark, not by the sink), and a pruned MERGE leaves the same table as an
unpruned one.
"""

from __future__ import annotations

import datetime
import shutil
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from chispa import assert_df_equality
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from onceflow.config import WriteMode
from onceflow.contracts import BatchContext
from onceflow.errors import SinkError
from onceflow.sinks.delta import DeltaSinkSpec
from onceflow.sinks.delta.sink import DeltaSink, _key_summary

pytestmark = pytest.mark.spark

_T = datetime.datetime
KEYS: dict[str, tuple[str, list[Any]]] = {
    "bigint": ("BIGINT", [-5, 3, 10, 11, 200, 7_000_000_000]),
    "string": ("STRING", ["a", "it's\\", "m", "n", "q'\\z", "zz"]),
    "decimal": (
        "DECIMAL(18,2)",
        [Decimal(x) for x in ("-1.50", "0.01", "2.00", "2.01", "9.99", "10.00")],
    ),
    "date": ("DATE", [datetime.date(2026, 1, d) for d in (1, 2, 5, 9, 20, 31)]),
    # 05:30 and 06:30 UTC on 2026-11-01 are both "01:30" in New York (EDT, then EST)
    "timestamp": (
        "TIMESTAMP",
        [
            _T(2026, 11, 1, h, m, 0, 250, tzinfo=datetime.UTC)
            for h, m in ((4, 0), (5, 30), (5, 45), (6, 10), (6, 30), (9, 0))
        ],
    ),
}


@pytest.fixture
def new_york(spark: SparkSession) -> Iterator[None]:
    """A session time zone with an hour that happens twice (2026-11-01, 01:00-02:00)."""
    before = spark.conf.get("spark.sql.session.timeZone")
    spark.conf.set("spark.sql.session.timeZone", "America/New_York")
    yield
    spark.conf.set("spark.sql.session.timeZone", before)


def _frame(spark: SparkSession, rows: list[int], tag: str) -> DataFrame:
    """Rows ``rows`` of the key table: row i holds the i-th value of every key type."""
    ddl = ", ".join(f"k_{kind} {sql_type}" for kind, (sql_type, _) in KEYS.items())
    data = [(*(values[i] for _, values in KEYS.values()), tag) for i in rows]
    return spark.createDataFrame(data, f"{ddl}, v STRING")


def _sink(path: Path, prune: bool, **merge: Any) -> DeltaSink:
    merge_spec = {"keys": [f"k_{kind}" for kind in KEYS], "prune": prune, **merge}
    spec = DeltaSinkSpec.model_validate(
        {"name": "t", "kind": "delta", "path": str(path), "merge": merge_spec}
    )
    return DeltaSink("prune-test", spec, WriteMode.MERGE)


def test_the_key_range_selects_what_the_batch_spans_and_changes_no_result(
    spark: SparkSession, tmp_path: Path, new_york: None
) -> None:
    pruned, unpruned = tmp_path / "pruned", tmp_path / "unpruned"
    for rows in ([0, 1], [2, 3], [4, 5]):  # three files, in key order
        _frame(spark, rows, "old").write.format("delta").mode("append").save(str(pruned))
    shutil.copytree(pruned, unpruned)
    # updates rows 1 and 4: the range spans the middle file and part of the others
    batch = _frame(spark, [1, 4], "new")
    merge = _sink(pruned, prune=True)._spec.merge
    assert merge is not None

    null_keys, predicates = _key_summary(batch, merge)
    assert (null_keys, len(predicates)) == (0, 2 * len(KEYS))
    target = spark.read.format("delta").load(str(pruned)).alias("t")
    for kind in KEYS:
        key = f"k_{kind}"
        mine = [p for p in predicates if p.startswith(f"t.`{key}` ")]
        low, high = batch.agg(F.min(key), F.max(key)).first()  # type: ignore[misc]
        expected = target.where((F.col(key) >= F.lit(low)) & (F.col(key) <= F.lit(high)))
        selected = target.where(" AND ".join(mine))
        assert sorted(r[key] for r in selected.collect()) == sorted(
            r[key] for r in expected.collect()
        ), mine
        assert expected.count() == 4, kind  # rows 1-4: both ends exact, not merely wide

    for path, prune in ((pruned, True), (unpruned, False)):
        _sink(path, prune=prune).write(batch, BatchContext("prune-test", 0, guarded=True))
    result = spark.read.format("delta").load(str(pruned)).orderBy("k_bigint")
    assert_df_equality(result, spark.read.format("delta").load(str(unpruned)).orderBy("k_bigint"))
    assert [r.v for r in result.collect()] == ["old", "new", "old", "old", "new", "old"]


def test_a_null_key_still_stops_the_batch_with_its_sample(
    spark: SparkSession, tmp_path: Path
) -> None:
    batch = _frame(spark, [0], "a").union(
        _frame(spark, [1], "the null one").withColumn("k_date", F.lit(None).cast("date"))
    )
    with pytest.raises(SinkError, match="SINK_MERGE_KEY_REFUSED") as refused:
        _sink(tmp_path / "t", prune=True).write(batch, BatchContext("prune-test", 0, guarded=True))
    assert "the null one" in str(refused.value)
    assert not (tmp_path / "t").exists()


def test_no_aggregate_runs_when_nothing_asks_for_one(spark: SparkSession, tmp_path: Path) -> None:
    merge = _sink(tmp_path / "t", prune=False, on_null_key="quarantine")._spec.merge
    assert merge is not None
    assert _key_summary(_frame(spark, [0], "a"), merge) == (0, [])
